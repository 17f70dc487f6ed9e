//! `cargo xtask airgap`: the proof of the promise. The example binaries, built with the real
//! `cargo pybundle build`, run on a bare Debian (debootstrap minbase: no Python, no pixi, no
//! conda) with no network (`unshare --net`) and none of the build machine's files (`chroot`).
//!
//! Needs root (debootstrap, chroot and namespaces do). A missing prerequisite is named; under
//! `cargo xtask test` it skips the run unless `CI` is set, where it fails.

mod cases;
mod machine;
mod offline;
mod root;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::{channel, pixi, tools};

/// The examples run on the bare machine, when they exist (some are written by others).
const EXAMPLES: &[&str] = &["hello", "outliers", "service", "pyreport"];

/// An example's name and the bundled binary built from it.
type Binary = (String, PathBuf);

/// Whether this run is CI, where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// What the air-gap run did.
#[derive(Debug, Default)]
pub struct Tally {
    /// Cases (builds included) that passed.
    pub passed: usize,
    /// Names of the cases that failed.
    pub failed: Vec<String>,
    /// Why nothing ran, when the prerequisites are missing outside CI.
    pub skipped: Option<String>,
}

/// Run every case. `strict`: a missing prerequisite fails (else it skips, unless CI is set).
pub fn run(strict: bool) -> Result<Tally> {
    let started = Instant::now();
    if let Some(missing) = missing_prerequisites() {
        if strict || in_ci() {
            bail!("the air-gap test cannot run: {missing}");
        }
        eprintln!("xtask: airgap: SKIPPED: {missing} (set CI to make this a failure)");
        return Ok(Tally {
            skipped: Some(missing),
            ..Tally::default()
        });
    }
    let cached = root::ensure().context("preparing the bare Debian root")?;
    let (mut binaries, mut failed) = build_examples()?;
    let mut passed = binaries.len();
    let case = "cargo pybundle build --release of pyreport inside `unshare --net` (local channel and PyPI index)";
    eprintln!("xtask: airgap: case: {case} ...");
    let channel = channel::ensure().context("preparing the test channel")?;
    match offline::build(std::path::Path::new(channel.trim_start_matches("file://"))) {
        Ok(binary) => {
            eprintln!("xtask: airgap: ok: {case}: {}", binary.display());
            binaries.push(("pyreport-offline".to_owned(), binary));
            passed += 1;
        }
        Err(err) => {
            eprintln!("xtask: airgap: FAILED: {case}: {err:#}");
            failed.push(case.to_owned());
        }
    }
    let cases_started = Instant::now();
    let mut machine = machine::Machine::copy_of(&cached)?;
    eprintln!(
        "xtask: airgap: target machine {} (a copy of {})",
        machine.root().display(),
        cached.display()
    );
    let (cases_passed, case_failures) = cases::run_all(&machine, &binaries)?;
    passed += cases_passed;
    let seconds = started.elapsed().as_secs_f64();
    if !case_failures.is_empty() {
        eprintln!(
            "xtask: airgap: the machine is kept for inspection at {}: chroot into it",
            machine.keep().display()
        );
    }
    failed.extend(case_failures);
    eprintln!(
        "xtask: airgap: {passed} passed, {} failed ({:.0} s on the machine, {seconds:.0} s in all)",
        failed.len(),
        cases_started.elapsed().as_secs_f64()
    );
    Ok(Tally {
        passed,
        failed,
        skipped: None,
    })
}

/// What the host lacks to run the cases, or `None`.
fn missing_prerequisites() -> Option<String> {
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    if uid != Some(0) {
        return Some(
            "it must run as root (debootstrap, chroot and network namespaces need it); run \
             `sudo -E cargo xtask airgap`"
                .into(),
        );
    }
    for tool in ["unshare", "chroot", "timeout", "cp", "ip"] {
        if tools::find_on_path(tool).is_none() && root::sbin(tool).is_none() {
            return Some(format!(
                "`{tool}` is not installed (util-linux / coreutils / iproute2)"
            ));
        }
    }
    // Containers often forbid namespaces: try the exact unshare the cases use.
    let works = Command::new("unshare")
        .args(["--net", "--pid", "--fork", "--mount-proc"])
        .args(["sh", "-c", "ip link set lo up"])
        .output();
    match works {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "`unshare --net --pid --fork --mount-proc sh -c 'ip link set lo up'` fails here ({}): {}; namespaces are \
             needed to cut the network (in a container: run it privileged)",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("cannot start unshare: {e}")),
    }
}

/// Builds each existing example with the real CLI. Returns the (name, binary) pairs built and
/// the failures, which are reported as failed cases so the other examples still run.
fn build_examples() -> Result<(Vec<Binary>, Vec<String>)> {
    let root = tools::workspace_root();
    let pixi = pixi::ensure().context("preparing the test pixi")?;
    let channel = channel::ensure().context("preparing the test channel")?;
    // The CLI first, untimed: compiling it is not part of any example's build.
    tools::run(
        Command::new(tools::cargo())
            .args(["build", "--release", "--quiet", "-p", "cargo-pybundle"])
            .current_dir(&root),
        "building cargo-pybundle (release)",
    )?;
    let cli = tools::target_dir(&root)?.join("release/cargo-pybundle");
    let mut built = Vec::new();
    let mut failed = Vec::new();
    for name in EXAMPLES {
        let manifest = root.join("examples").join(name).join("Cargo.toml");
        if !manifest.is_file() {
            eprintln!(
                "xtask: airgap: FAILED: {} does not exist",
                manifest.display()
            );
            failed.push(format!("examples/{name} is missing"));
            continue;
        }
        let case = format!("cargo pybundle build --release -p {name}");
        eprintln!("xtask: airgap: case: {case} ...");
        let started = Instant::now();
        let out = build(&cli, name, &manifest, &pixi, &channel)?;
        if out.status.code() == Some(TIMED_OUT) {
            eprintln!("xtask: airgap: {case} took over {BUILD_TIMEOUT_SECS} s and was killed");
        }
        // On success the CLI prints the binary's path as its last stdout line.
        let stdout = String::from_utf8_lossy(&out.stdout);
        let binary = stdout.lines().last().map(PathBuf::from);
        match binary.filter(|b| out.status.success() && b.is_file()) {
            Some(binary) => {
                eprintln!(
                    "xtask: airgap: ok: {case}: {} ({:.1} MB) in {:.0} s",
                    binary.display(),
                    fs_err::metadata(&binary)?.len() as f64 / 1e6,
                    started.elapsed().as_secs_f64()
                );
                built.push((name.to_string(), binary));
            }
            None => {
                eprintln!(
                    "xtask: airgap: FAILED: {case} ({}; its output is above; stdout: {:?}); the \
                     example's cases are left out",
                    out.status,
                    stdout.trim()
                );
                failed.push(case);
            }
        }
    }
    Ok((built, failed))
}

/// `timeout`'s exit code when it killed the command.
const TIMED_OUT: i32 = 124;

/// Bound on one example's build: a guard against a hang, not a performance check (pixi install
/// and cargo build --release take 1-2 min here; the first example also compiles the release
/// dependencies, several minutes on a loaded 2-core machine).
const BUILD_TIMEOUT_SECS: u32 = 1200;

/// One run of `cargo pybundle build` for `name`, killed (pixi with it: `timeout` signals its
/// whole process group) after [`BUILD_TIMEOUT_SECS`].
fn build(
    cli: &std::path::Path,
    name: &str,
    manifest: &std::path::Path,
    pixi: &std::path::Path,
    channel: &str,
) -> Result<std::process::Output> {
    Command::new("timeout")
        .args(["--kill-after=10", &BUILD_TIMEOUT_SECS.to_string()])
        .arg(cli)
        .args([
            "pybundle",
            "build",
            "--release",
            "-p",
            name,
            "--manifest-path",
        ])
        .arg(manifest)
        .current_dir(tools::workspace_root())
        .env("PYBUNDLE_PIXI", pixi)
        // The examples list conda-forge, which these machines cannot reach.
        .env("PYBUNDLE_CHANNEL_MIRRORS", format!("conda-forge={channel}"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo-pybundle")
}
