//! `cargo xtask stress`: the long runs kept out of `cargo xtask test`. Each cargo-fuzz target
//! in `fuzz/` runs for a while from seeds made of real inputs, then the worker soak test runs;
//! a table sums up, and any crash or failure makes the command fail.
//!
//! Seeds: `cargo pybundle pack` of examples/hello (a real archive: its manifest, the files it
//! relocates, a small real body) and the frames the real Python runner writes, both turned
//! into corpus files by `fuzz/src/seeds.rs`, plus the hostile archive shapes of issue 20
//! (`fuzz/src/hostile_seeds.rs`). They are added to `fuzz/corpus/<target>/` (ignored by
//! git), which keeps what earlier runs found. Every target runs with a cap on any single
//! allocation ([`MALLOC_LIMIT_MB`]), so a record that makes the runtime allocate what it
//! claims fails.
//!
//! cargo-fuzz needs nightly-only rustc flags (`-Zsanitizer=address`); on a stable toolchain it
//! runs with `RUSTC_BOOTSTRAP=1`, which lets stable rustc accept them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::{channel, pixi, tools};

/// The cargo-fuzz targets, as named in fuzz/Cargo.toml.
const TARGETS: &[&str] = &[
    "frame_decoder",
    "manifest",
    "binary_relocation",
    "text_relocation",
    "archive",
];

/// Any single allocation over this many MB is a failure (libFuzzer's `-malloc_limit_mb`):
/// hostile input must meet a limit, not an allocation of what it claims.
const MALLOC_LIMIT_MB: u32 = 300;

/// The ignored soak test in pybundle-runtime's integration tests.
const SOAK_TEST: &str = "soak::a_million_calls_with_random_payloads";

/// One row of the summary.
struct Row {
    name: String,
    seconds: f64,
    executions: Option<u64>,
    per_second: Option<u64>,
    result: String,
    ok: bool,
}

/// Fuzz seconds per target and soak calls of the short pass `cargo xtask test` runs.
pub const SHORT_FUZZ_SECS: u64 = 60;
/// See [`SHORT_FUZZ_SECS`].
pub const SHORT_SOAK_CALLS: u64 = 100_000;

/// Run the fuzz targets for `fuzz_secs` each, then the soak test (`soak_calls` calls, or its
/// default); print the table, and write it to STRESS.md at the workspace root (the record of
/// the last full run).
pub fn run(fuzz_secs: u64, soak_calls: Option<u64>) -> Result<()> {
    let rows = rows(fuzz_secs, soak_calls)?;
    let table = table(&rows);
    println!("\n{table}");
    let record = format!(
        "# Stress\n\nWritten by `cargo xtask stress --fuzz-secs {fuzz_secs}{}` (xtask/src/stress.rs) \
         on {} (load average before the table: {}). Each cargo-fuzz target ran for the seconds \
         shown from seeds made of real inputs (a real archive of examples/hello, real frames, \
         the hostile archive shapes), with any single allocation over {MALLOC_LIMIT_MB} MB a \
         failure; then the worker soak test.\n\n{table}",
        soak_calls.map_or(String::new(), |n| format!(" --soak-calls {n}")),
        tools::output(Command::new("date").arg("-u"), "date")?.trim(),
        fs_err::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    );
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| !r.ok)
        .map(|r| r.name.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("stress failed: {}", failed.join(", "));
    }
    fs_err::write(tools::workspace_root().join("STRESS.md"), record)?;
    Ok(())
}

/// The short pass of `cargo xtask test`: each target for [`SHORT_FUZZ_SECS`], the soak at
/// [`SHORT_SOAK_CALLS`]; one line per row, with whether it passed.
pub fn short() -> Result<Vec<(String, bool)>> {
    let rows = rows(SHORT_FUZZ_SECS, Some(SHORT_SOAK_CALLS))?;
    println!("\n{}", table(&rows));
    Ok(rows
        .iter()
        .map(|r| {
            let runs = r
                .executions
                .map_or(String::new(), |n| format!(", {n} runs"));
            (
                format!("stress: {} ({:.0} s{runs})", r.name, r.seconds),
                r.ok,
            )
        })
        .collect())
}

/// The fuzz targets, then the soak test; one row each.
fn rows(fuzz_secs: u64, soak_calls: Option<u64>) -> Result<Vec<Row>> {
    let root = tools::workspace_root();
    let cache = tools::dev_cache()?;
    let cargo_fuzz = ensure_cargo_fuzz(&cache)?;
    let pixi = pixi::ensure().context("preparing the test pixi")?;
    let channel = channel::ensure().context("preparing the test channel")?;
    let work = tools::target_dir(&root)?.join("stress");
    fs_err::create_dir_all(&work)?;
    let fuzz_target_dir = work.join("fuzz-target");
    let corpus = root.join("fuzz").join("corpus");

    let archive = work.join("hello.tar.zst");
    pack_example(&root, &pixi, &channel, &archive)?;
    let seeds = Command::new(tools::cargo())
        .args([
            "run",
            "--quiet",
            "--release",
            "--bin",
            "seeds",
            "--target-dir",
        ])
        .arg(&fuzz_target_dir)
        .arg("--")
        .arg(&corpus)
        .arg(&archive)
        .current_dir(root.join("fuzz"))
        .status()
        .context("running the fuzz crate's seed writer")?;
    if !seeds.success() {
        bail!("writing the seed corpora failed ({seeds}); see the output above");
    }

    // Build first, so each row's seconds are fuzzing time only.
    eprintln!("xtask: building the fuzz targets (cargo fuzz build -O)");
    let build = Command::new(&cargo_fuzz)
        .args(["fuzz", "build", "-O", "--target-dir"])
        .arg(&fuzz_target_dir)
        .current_dir(root.join("fuzz"))
        .env("RUSTC_BOOTSTRAP", "1")
        .status()
        .context("running cargo fuzz build")?;
    if !build.success() {
        bail!(
            "`cargo fuzz build -O` failed ({build}); cargo-fuzz needs a C++ compiler for \
             libFuzzer, see the output above"
        );
    }

    let mut rows = Vec::new();
    for target in TARGETS {
        rows.push(fuzz(
            &cargo_fuzz,
            &root,
            &fuzz_target_dir,
            &work,
            target,
            fuzz_secs,
        )?);
        eprintln!("xtask: {target}: {}", rows.last().map_or("", |r| &r.result));
    }
    rows.push(soak(&root, &pixi, &channel, soak_calls)?);
    Ok(rows)
}

/// The rows as a markdown table.
fn table(rows: &[Row]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| {:<18} | {:>8} | {:>13} | {:>9} | result |",
        "target", "seconds", "executions", "execs/s"
    );
    let _ = writeln!(
        out,
        "|{:-<20}|{:->10}|{:->15}|{:->11}|--------|",
        "", "", "", ""
    );
    for row in rows {
        let num = |n: Option<u64>| n.map_or("-".into(), |n| n.to_string());
        let _ = writeln!(
            out,
            "| {:<18} | {:>8.0} | {:>13} | {:>9} | {} |",
            row.name,
            row.seconds,
            num(row.executions),
            num(row.per_second),
            row.result
        );
    }
    out
}

/// cargo-fuzz from PATH, else `<dev cache>/tools/cargo-fuzz/bin/cargo-fuzz`, installed there
/// from crates.io when missing.
fn ensure_cargo_fuzz(cache: &Path) -> Result<PathBuf> {
    if let Some(found) = tools::find_on_path("cargo-fuzz") {
        return Ok(found);
    }
    let root = cache.join("tools").join("cargo-fuzz");
    let bin = root.join("bin").join("cargo-fuzz");
    if bin.is_file() {
        return Ok(bin);
    }
    eprintln!(
        "xtask: cargo-fuzz is not installed; installing it from crates.io into {}",
        root.display()
    );
    let status = Command::new(tools::cargo())
        .args(["install", "cargo-fuzz", "--locked", "--root"])
        .arg(&root)
        .status()
        .context("running cargo install cargo-fuzz")?;
    if !status.success() || !bin.is_file() {
        bail!(
            "`cargo install cargo-fuzz --locked --root {}` failed ({status}); install cargo-fuzz \
             yourself (it needs a C++ compiler for libFuzzer) and put it on PATH",
            root.display()
        );
    }
    Ok(bin)
}

/// A real archive to seed from: examples/hello packed against the local test channel.
fn pack_example(root: &Path, pixi: &Path, channel: &str, archive: &Path) -> Result<()> {
    let manifest = root.join("examples").join("hello").join("Cargo.toml");
    let status = tools::checkout_cli(root, pixi, channel, "pack")
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--output")
        .arg(archive)
        .status()
        .context("running cargo pybundle pack")?;
    if !status.success() {
        bail!(
            "`cargo pybundle pack --manifest-path {}` failed ({status}); the seeds need a real \
             archive, see the output above",
            manifest.display()
        );
    }
    Ok(())
}

/// Runs one fuzz target for `secs` seconds; its libFuzzer output goes to `<work>/<target>.log`.
fn fuzz(
    cargo_fuzz: &Path,
    root: &Path,
    target_dir: &Path,
    work: &Path,
    target: &str,
    secs: u64,
) -> Result<Row> {
    let log_path = work.join(format!("{target}.log"));
    let log = fs_err::File::create(&log_path)?.into_parts().0;
    eprintln!(
        "xtask: fuzzing {target} for {secs} s (log: {})",
        log_path.display()
    );
    let corpus = root.join("fuzz").join("corpus").join(target);
    fs_err::create_dir_all(&corpus)?;
    let started = Instant::now();
    let status = Command::new(cargo_fuzz)
        .args(["fuzz", "run", "-O", "--target-dir"])
        .arg(target_dir)
        .arg(target)
        .arg(&corpus)
        .arg("--")
        .arg(format!("-max_total_time={secs}"))
        // A single input taking 10 s is a hang worth reporting, not a slow machine.
        .arg("-timeout=10")
        .arg(format!("-malloc_limit_mb={MALLOC_LIMIT_MB}"))
        .arg("-print_final_stats=1")
        .current_dir(root.join("fuzz"))
        .env("RUSTC_BOOTSTRAP", "1")
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("running cargo fuzz run {target}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let text = fs_err::read_to_string(&log_path)?;
    let stat = |name: &str| {
        text.lines()
            .rev()
            .filter_map(|l| l.strip_prefix(name))
            .find_map(|v| v.trim_start_matches(':').trim().parse::<u64>().ok())
    };
    let executions = stat("stat::number_of_executed_units");
    let per_second = stat("stat::average_exec_per_sec");
    let (result, ok) = if status.success() {
        ("ok, no crash".to_owned(), true)
    } else {
        let artifact = text
            .lines()
            .find_map(|l| l.split_once("Test unit written to ").map(|(_, p)| p.trim()))
            .unwrap_or(if text.contains("could not compile") {
                "the target did not build"
            } else {
                "no crashing input written"
            });
        (
            format!("FAILED ({status}): {artifact}; see {}", log_path.display()),
            false,
        )
    };
    Ok(Row {
        name: target.to_owned(),
        seconds,
        executions,
        per_second,
        result,
        ok,
    })
}

/// The worker soak test, in release mode, with the test toolchain as `cargo xtask test` hands
/// it over.
fn soak(root: &Path, pixi: &Path, channel: &str, calls: Option<u64>) -> Result<Row> {
    eprintln!("xtask: soak test ({SOAK_TEST})");
    let mut cmd = Command::new(tools::cargo());
    cmd.args([
        "test",
        "-p",
        "pybundle-runtime",
        "--release",
        "--test",
        "it",
        "--",
        "--ignored",
        "--exact",
        SOAK_TEST,
        "--nocapture",
    ])
    .current_dir(root)
    .env("PYBUNDLE_PIXI", pixi)
    .env("PYBUNDLE_TEST_CHANNEL", channel);
    if let Some(n) = calls {
        cmd.env("PYBUNDLE_SOAK_CALLS", n.to_string());
    }
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .context("running the soak test")?;
    // Passed through, and read: a filter that matches nothing (a renamed test) also exits 0.
    let mut ran = false;
    if let Some(out) = child.stdout.take() {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(out).lines() {
            let line = line.context("reading the soak test's output")?;
            println!("{line}");
            ran |= line.starts_with("test result: ok. 1 passed");
        }
    }
    let status = child.wait().context("waiting for the soak test")?;
    let ok = status.success() && ran;
    Ok(Row {
        name: "soak".into(),
        seconds: started.elapsed().as_secs_f64(),
        // Calls made; the test prints its own rate and RSS rows (the time here includes the
        // release build).
        executions: calls,
        per_second: None,
        result: if ok {
            "ok".into()
        } else if status.success() {
            format!("FAILED: no test named {SOAK_TEST} ran (renamed?)")
        } else {
            format!("FAILED ({status}); see the output above")
        },
        ok,
    })
}

#[cfg(test)]
mod tests {
    use super::MALLOC_LIMIT_MB;

    /// README's sentence on the fuzz runs, rebuilt from `cargo xtask stress`'s default seconds
    /// (as the command line parses with no options) and from the allocation limit.
    #[test]
    fn the_readme_states_the_default_seconds_and_the_allocation_limit() {
        use clap::Parser as _;
        let cli = crate::Cli::try_parse_from(["cargo xtask", "stress"]).unwrap();
        let crate::Task::Stress { fuzz_secs, .. } = cli.task else {
            panic!("`stress` parsed as another task");
        };
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
        let readme = fs_err::read_to_string(path).unwrap();
        let readme = readme.split_whitespace().collect::<Vec<_>>().join(" ");
        for sentence in [
            format!("a hostile archive — {fuzz_secs} s each by default,"),
            format!("any single allocation over {MALLOC_LIMIT_MB} MB counted as a failure"),
        ] {
            assert!(
                readme.contains(&sentence),
                "README.md no longer says `{sentence}`"
            );
        }
    }
}
