//! `cargo xtask bench`: the benchmarks, side by side with peers, on one application
//! (examples/outliers: a numpy script and its pixi environment) built with the real CLI.
//! Writes `BENCHMARKS.md` and `target/bench/results.json`; every number comes from here.
//! `--quick` writes its report to `target/bench/BENCHMARKS.md` instead, never over the committed
//! one.

mod devloop;
mod instructions;
mod measure;
mod peers;
mod protocol;
mod report;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::{channel, pixi, tools};

/// What the outliers example prints for its 1000 seeded values.
pub const EXPECTED: &str = "[7, 113, 835]";

/// Median, min and max of a row's samples (in the row's unit).
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    /// The median (the upper one for an even count).
    pub med: f64,
    /// The smallest sample.
    pub min: f64,
    /// The largest sample.
    pub max: f64,
    /// How many samples.
    pub n: usize,
}

impl Stat {
    /// Stats of `samples`; `None` for no samples.
    pub fn of(samples: &[f64]) -> Option<Stat> {
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        Some(Stat {
            med: *v.get(v.len() / 2)?,
            min: v[0],
            max: v[v.len() - 1],
            n: v.len(),
        })
    }
}

/// One line of a table: what was measured, its unit and stats, and its results.json key.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was run.
    pub what: String,
    /// The results.json key, if the row has one.
    pub key: Option<&'static str>,
    /// Unit as printed: "s", "ms", "µs", "MB", "calls/s", "GB/s", "MB/s", "M instr".
    pub unit: &'static str,
    /// The stats, in `unit`; `None` when the row could not be measured.
    pub stat: Option<Stat>,
    /// Why the row is empty, or a remark.
    pub note: String,
}

/// A topic: a heading, a sentence on what is compared, and rows (ours first, then peers).
#[derive(Debug, Clone, Default)]
pub struct Topic {
    /// Heading.
    pub title: String,
    /// What the rows measure, in one or two sentences.
    pub about: String,
    /// The rows; ratios in the table are to the first row.
    pub rows: Vec<Row>,
    /// Whether the table shows the first row's ratio to each other row.
    pub compare: bool,
}

/// Everything the runs share.
pub struct Setup {
    /// The workspace root.
    pub root: PathBuf,
    /// The target dir cargo uses.
    pub target: PathBuf,
    /// The test pixi.
    pub pixi: PathBuf,
    /// The test channel URL.
    pub channel: String,
    /// `<target>/release/cargo-pybundle`.
    pub cli: PathBuf,
    /// The bundled outliers binary.
    pub app: PathBuf,
    /// The bundled hello binary (examples/hello: a one-shot script, no numpy), for the
    /// runtime's own warm-start cost.
    pub hello: PathBuf,
    /// Its archive.
    pub archive: PathBuf,
    /// The conda prefix pixi installed for it.
    pub prefix: PathBuf,
    /// Scratch space under `<target>/bench/work`.
    pub work: PathBuf,
    /// Copies of the examples the bench builds and edits, `<target>/bench/src/<name>` (a bench
    /// run leaves the source tree as it found it).
    pub examples: PathBuf,
    /// Repetitions of a slow row (builds, extractions).
    pub slow_runs: usize,
    /// Repetitions of a fast row (process starts).
    pub fast_runs: usize,
    /// `--quick`.
    pub quick: bool,
}

impl Setup {
    /// `cargo-pybundle pybundle <cmd> --release -p outliers` with the test toolchain.
    pub fn cli(&self, cmd: &str) -> Command {
        self.cli_for(cmd, "outliers")
    }

    /// `cargo-pybundle pybundle <cmd> --release -p <example>` with the test toolchain.
    pub fn cli_for(&self, cmd: &str, example: &str) -> Command {
        let mut c = Command::new(&self.cli);
        c.args([
            "pybundle",
            cmd,
            "--release",
            "-q",
            "-p",
            example,
            "--manifest-path",
        ])
        .arg(self.examples.join(example).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&self.target)
        .current_dir(&self.root)
        .env("PYBUNDLE_PIXI", &self.pixi)
        .env(
            "PYBUNDLE_CHANNEL_MIRRORS",
            format!("conda-forge={}", self.channel),
        );
        c
    }

    /// The prefix's interpreter.
    pub fn python(&self) -> PathBuf {
        self.prefix.join("bin/python3.11")
    }
}

/// Run the benchmarks and write the reports.
pub fn run(quick: bool) -> Result<()> {
    let setup = prepare(quick)?;
    let load_before = report::loadavg();
    let mut topics = Vec::new();
    let mut peer_notes = Vec::new();
    let peers = if quick {
        peer_notes.push(
            "`--quick`: peers (conda-pack, PyInstaller) were not installed or run; their rows \
             are empty."
                .to_string(),
        );
        peers::Peers {
            why: "not run (`--quick`)".into(),
            ..Default::default()
        }
    } else {
        peers::run(&setup, &mut peer_notes)
    };
    topics.push(measure::sizes(&setup, &peers)?);
    topics.push(measure::first_run(&setup, &peers)?);
    topics.push(measure::warm(&setup, &peers)?);
    topics.push(instructions::warm(&setup)?);
    topics.push(protocol::run(&setup)?);
    topics.push(protocol::start_costs(&setup)?);
    topics.push(measure::builds(&setup)?);
    topics.push(devloop::script_edit(&setup)?);
    let load_after = report::loadavg();
    let out = setup.target.join("bench");
    fs_err::create_dir_all(&out)?;
    let json = report::results_json(&topics);
    fs_err::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&json)? + "\n",
    )?;
    let md = report::markdown(&setup, &topics, &peer_notes, &load_before, &load_after);
    // Only a full run may replace the committed report: a quick run (used by the test suite)
    // has single samples and no peers, so it goes beside results.json.
    let md_path = if quick {
        out.join("BENCHMARKS.md")
    } else {
        setup.root.join("BENCHMARKS.md")
    };
    fs_err::write(&md_path, md)?;
    eprintln!(
        "xtask: bench: wrote {} and {}",
        md_path.display(),
        out.join("results.json").display()
    );
    Ok(())
}

/// Build the CLI, and the outliers and hello apps with it; find the archive and the prefix.
fn prepare(quick: bool) -> Result<Setup> {
    let root = tools::workspace_root();
    let pixi = pixi::ensure().context("preparing the test pixi")?;
    let channel = channel::ensure().context("preparing the test channel")?;
    let target = tools::target_dir(&root)?;
    eprintln!("xtask: bench: building cargo-pybundle (release)");
    tools::run(
        Command::new(tools::cargo())
            .args(["build", "--release", "-q", "-p", "cargo-pybundle"])
            .current_dir(&root),
        "building cargo-pybundle",
    )?;
    let work = target.join("bench/work");
    if work.exists() {
        fs_err::remove_dir_all(&work)?;
    }
    fs_err::create_dir_all(&work)?;
    let examples = target.join("bench/src");
    for name in ["outliers", "hello"] {
        tools::copy_example(&root, name, &examples.join(name))?;
    }
    let mut setup = Setup {
        cli: target.join("release/cargo-pybundle"),
        app: target.join("release/bundled/outliers"),
        hello: target.join("release/bundled/hello"),
        archive: target.join("pybundle/outliers/release/bundle.tar.zst"),
        // pixi installs the example's environment in the example's project folder.
        prefix: examples.join("outliers/.pixi/envs/default"),
        examples,
        root,
        target,
        pixi,
        channel,
        work,
        slow_runs: if quick { 1 } else { 5 },
        fast_runs: if quick { 1 } else { 20 },
        quick,
    };
    if let Some(app) = build_example(&setup, "outliers")? {
        setup.app = app;
    }
    if let Some(app) = build_example(&setup, "hello")? {
        setup.hello = app;
    }
    for (what, path) in [
        ("the app", &setup.app),
        ("the hello app", &setup.hello),
        ("the archive", &setup.archive),
        ("the interpreter", &setup.python()),
    ] {
        if !path.exists() {
            bail!(
                "after the build, {what} is not at {}; the build layout changed?",
                path.display()
            );
        }
    }
    Ok(setup)
}

/// `cargo pybundle build --release -p <example>`; the binary path it printed, if any.
fn build_example(setup: &Setup, example: &str) -> Result<Option<PathBuf>> {
    eprintln!("xtask: bench: cargo pybundle build --release -p {example}");
    let out = setup
        .cli_for("build", example)
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo-pybundle")?;
    if !out.status.success() {
        bail!(
            "`cargo pybundle build --release -p {example}` failed ({}); see its output above",
            out.status
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .map(|last| PathBuf::from(last.trim())))
}

/// Seconds and stdout of one run of `cmd`, which must succeed.
pub fn timed(cmd: &mut Command, what: &str) -> Result<(f64, String)> {
    let start = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{what}: cannot start {cmd:?}"))?;
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "{what}: {cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok((
        secs,
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}
