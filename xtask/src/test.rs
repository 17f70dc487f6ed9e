//! `cargo xtask test`: prepare the real test toolchain (pixi + the local channel), then run
//! `cargo fmt --check`, `cargo clippy -D warnings`, `cargo xtask deps`, `cargo pybundle build` of
//! examples/hello (its own `cargo test` runs in development mode), the whole workspace's
//! tests and doctests with the toolchain handed over in `PYBUNDLE_PIXI` / `PYBUNDLE_TEST_CHANNEL`,
//! the air-gap cases, a short stress pass (`cargo xtask stress` with 60 s per fuzz target and
//! the soak at 100k calls) and the release check. Under `CI` the build output no later step reads
//! (the tests' scratch, incremental caches, the fuzz build) is removed as the run goes, and free
//! disk is reported at the start and the end. Every step runs whatever the others said, and the
//! run ends with one summary: counts of passed, failed and ignored tests, and every skip by name
//! (tests report theirs through `testkit::skip`, which appends to `PYBUNDLE_SKIP_LOG`). Under `CI`
//! a skip fails the run.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::{channel, pixi, tools};

/// Run the suite; fails when formatting, lints or any test fails, or (under CI) anything skips.
pub fn run(extra: &[String]) -> Result<()> {
    let root = tools::workspace_root();
    let started = std::time::Instant::now();
    let mut summary = Summary::default();
    // A full disk fails late steps with errors far from their cause (a CI run once ran out while
    // linking a fuzz target and packaging the crates, with ~12 GB of build output under
    // target/ by then): say what there was, and under CI give back what is done with.
    let start_free = free_bytes(&root);
    if let Some(free) = start_free {
        eprintln!("xtask: disk: {} free under {}", gb(free), root.display());
    }

    // Formatting and lints first: their failure is worth seeing early, but they do not stop the
    // tests, so one run reports everything.
    let fmt = tools::status(
        Command::new(tools::cargo())
            .args(["fmt", "--all", "--check"])
            .current_dir(&root),
    )?;
    summary.step("cargo fmt --check", fmt);
    let clippy = tools::status(
        Command::new(tools::cargo())
            .args(["clippy", "--workspace", "--all-targets", "--quiet"])
            .args(["--", "-D", "warnings"])
            .current_dir(&root),
    )?;
    summary.step("cargo clippy -D warnings", clippy);
    let deps = crate::deps::run();
    if let Err(e) = &deps {
        eprintln!("xtask: deps: {e:#}");
    }
    summary.step(
        "every declared dependency used (cargo xtask deps)",
        deps.is_ok(),
    );

    let pixi = pixi::ensure().context("preparing the test pixi")?;
    let channel = channel::ensure().context("preparing the test channel")?;
    eprintln!("xtask: PYBUNDLE_PIXI={}", pixi.display());
    eprintln!("xtask: PYBUNDLE_TEST_CHANNEL={channel}");
    let skip_log = tools::target_dir(&root)?.join("xtask/skips.log");
    fs_err::create_dir_all(skip_log.parent().context("the skip log has a folder")?)?;
    fs_err::write(&skip_log, "")?;

    // CI passes through from our own environment: testkit fails instead of skipping under CI.
    let cargo_test = |args: &[&str]| {
        let mut cmd = Command::new(tools::cargo());
        cmd.arg("test")
            .args(args)
            .args(extra)
            .current_dir(&root)
            .env("PYBUNDLE_PIXI", &pixi)
            .env("PYBUNDLE_TEST_CHANNEL", &channel)
            .env("PYBUNDLE_SKIP_LOG", &skip_log);
        cmd
    };
    // The example's own `cargo test` runs in development mode, which needs the record the
    // first `cargo pybundle build` of the package writes: do that step, as its README says.
    let prepared = prepare_hello(&root, &pixi, &channel);
    if let Err(e) = &prepared {
        eprintln!("xtask: preparing examples/hello: FAILED: {e:#}");
    }
    summary.step(
        "cargo pybundle build of examples/hello (for its cargo test)",
        prepared.is_ok(),
    );
    let tests = counted(&mut cargo_test(&[
        "--workspace",
        "--all-targets",
        "--no-fail-fast",
    ]))?;
    summary.tests("cargo test --workspace --all-targets", tests);
    let doctests = counted(&mut cargo_test(&["--workspace", "--doc", "--no-fail-fast"]))?;
    summary.tests("cargo test --workspace --doc", doctests);
    let target = tools::target_dir(&root)?;
    // The tests' scratch (apps they built, each with its own target dir) and the incremental
    // caches are read by no later step; the air-gap cases, the stress pass and the release check
    // build in their own folders.
    free_in_ci(&[target.join("tmp"), target.join("debug/incremental")]);

    // The bare-machine proof; not for a filtered run (`cargo xtask test -- <filter>`).
    if extra.is_empty() {
        match crate::airgap::run(false) {
            Ok(tally) => summary.airgap(tally),
            Err(e) => {
                eprintln!("xtask: airgap: FAILED: {e:#}");
                summary.failures.push(format!("airgap: {e:#}"));
            }
        }
    }
    // A short stress pass: every fuzz target briefly, the soak at 100k calls.
    if extra.is_empty() {
        match crate::stress::short() {
            Ok(rows) => {
                for (what, ok) in rows {
                    summary.step(&what, ok);
                }
            }
            Err(e) => {
                eprintln!("xtask: stress: FAILED: {e:#}");
                summary.failures.push(format!("short stress pass: {e:#}"));
            }
        }
        free_in_ci(&[target.join("stress")]);
    }
    // Both crates as a user gets them (`cargo xtask release-check`); not for a filtered run.
    if extra.is_empty() {
        let release = crate::release::run(false);
        if let Err(e) = &release {
            eprintln!("xtask: release-check: FAILED: {e:#}");
        }
        summary.step("cargo xtask release-check", release.is_ok());
    }
    summary.skips_from(&skip_log)?;
    if let Some(free) = free_bytes(&target) {
        eprintln!(
            "xtask: disk: {} free under {} at the end (at the start: {})",
            gb(free),
            target.display(),
            start_free.map_or("unknown".to_owned(), gb)
        );
    }
    summary.print(started.elapsed().as_secs_f64() / 60.0);
    summary.verdict(crate::airgap::in_ci())
}

/// `cargo pybundle build` (debug profile) of examples/hello in place, with the CLI of this
/// checkout: installs the example's pixi environment and writes
/// `<target>/pybundle/hello/dev.json`, so `examples/hello/tests/greeting.rs` finds it under plain
/// `cargo test`. conda-forge maps to the local test channel, as in `cargo xtask demo`.
fn prepare_hello(root: &Path, pixi: &Path, channel: &str) -> Result<()> {
    let manifest = root.join("examples/hello/Cargo.toml");
    eprintln!(
        "xtask: cargo pybundle build --manifest-path {} (development record for its cargo test)",
        manifest.display()
    );
    tools::run(
        tools::checkout_cli(root, pixi, channel, "build")
            .arg("--manifest-path")
            .arg(&manifest),
        "cargo pybundle build of examples/hello",
    )
}

/// Under CI (a throw-away checkout on a machine whose disk is not ours to size), removes build
/// output no later step reads, saying how much that gave back. Elsewhere it keeps everything:
/// a developer's next run reuses it.
fn free_in_ci(dirs: &[std::path::PathBuf]) {
    if !crate::airgap::in_ci() {
        return;
    }
    for dir in dirs.iter().filter(|d| d.exists()) {
        let before = free_bytes(dir);
        match fs_err::remove_dir_all(dir) {
            Ok(()) => {
                let after = free_bytes(dir.parent().unwrap_or(dir));
                eprintln!(
                    "xtask: disk: removed {} (no later step reads it): {} free now, {} more",
                    dir.display(),
                    after.map_or("?".to_owned(), gb),
                    before
                        .zip(after)
                        .map_or("?".to_owned(), |(b, a)| gb(a.saturating_sub(b)))
                );
            }
            // Only space is lost; the steps that follow do not need it gone.
            Err(e) => eprintln!("xtask: disk: could not remove {}: {e}", dir.display()),
        }
    }
}

/// Bytes available to us on the file system holding `path` (`df -Pk`), if df answers.
fn free_bytes(path: &Path) -> Option<u64> {
    let out = Command::new("df").arg("-Pk").arg(path).output().ok()?;
    parse_df(&String::from_utf8_lossy(&out.stdout))
}

/// The "Available" column (KiB) of `df -Pk`'s one data line, in bytes.
fn parse_df(text: &str) -> Option<u64> {
    let line = text.lines().nth(1)?;
    let kib: u64 = line.split_whitespace().nth(3)?.parse().ok()?;
    Some(kib * 1024)
}

fn gb(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

/// What a `cargo test` run reported, summed over its test binaries.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Counts {
    passed: usize,
    failed: usize,
    ignored: usize,
    /// Names of failed tests.
    failures: Vec<String>,
    /// Whether cargo itself succeeded (a build failure has no test lines).
    ok: bool,
}

/// Runs `cmd` (a `cargo test`), passing its output through, and counts the results.
fn counted(cmd: &mut Command) -> Result<Counts> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {cmd:?}"))?;
    let stdout = child.stdout.take().context("cargo test's stdout")?;
    let mut counts = Counts::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test's output")?;
        println!("{line}");
        count_line(&line, &mut counts);
    }
    counts.ok = child.wait().context("waiting for cargo test")?.success();
    Ok(counts)
}

/// Adds what one line of libtest output says to `counts`.
fn count_line(line: &str, counts: &mut Counts) {
    if let Some(rest) = line.strip_prefix("test result: ") {
        let number = |label: &str| -> usize {
            rest.split(';')
                .find_map(|part| part.trim().strip_suffix(label))
                .and_then(|n| n.trim().rsplit(' ').next()?.parse().ok())
                .unwrap_or(0)
        };
        counts.passed += number(" passed");
        counts.failed += number(" failed");
        counts.ignored += number(" ignored");
    } else if let Some(name) = line
        .strip_prefix("test ")
        .and_then(|l| l.strip_suffix(" ... FAILED"))
    {
        counts.failures.push(name.to_owned());
    }
}

/// Everything the run found, printed at the end.
#[derive(Debug, Default)]
struct Summary {
    lines: Vec<String>,
    failures: Vec<String>,
    skipped: Vec<String>,
}

impl Summary {
    fn step(&mut self, what: &str, ok: bool) {
        self.lines
            .push(format!("{what}: {}", if ok { "ok" } else { "FAILED" }));
        if !ok {
            self.failures.push(what.to_owned());
        }
    }

    fn tests(&mut self, what: &str, c: Counts) {
        self.lines.push(format!(
            "{what}: {} passed, {} failed, {} ignored{}",
            c.passed,
            c.failed,
            c.ignored,
            if c.ok { "" } else { " — FAILED" }
        ));
        self.failures
            .extend(c.failures.iter().map(|f| format!("test {f}")));
        if !c.ok && c.failures.is_empty() {
            self.failures
                .push(format!("{what} (did not finish: see its output)"));
        }
    }

    fn airgap(&mut self, tally: crate::airgap::Tally) {
        if let Some(why) = tally.skipped {
            self.skipped.push(format!("airgap: {why}"));
            return;
        }
        self.lines.push(format!(
            "air-gap cases: {} passed, {} failed",
            tally.passed,
            tally.failed.len()
        ));
        self.failures
            .extend(tally.failed.iter().map(|f| format!("airgap: {f}")));
    }

    /// Reads the skips tests reported (`<test>\t<why>` lines).
    fn skips_from(&mut self, log: &Path) -> Result<()> {
        let text = fs_err::read_to_string(log).unwrap_or_default();
        let mut skips: Vec<String> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.replace('\t', ": "))
            .collect();
        skips.sort();
        skips.dedup();
        self.skipped.extend(skips);
        Ok(())
    }

    fn print(&self, minutes: f64) {
        eprintln!("\nxtask: summary ({minutes:.1} min)");
        for line in &self.lines {
            eprintln!("xtask:   {line}");
        }
        eprintln!("xtask:   skipped: {}", self.skipped.len());
        for skip in &self.skipped {
            eprintln!("xtask:     {skip}");
        }
        for failure in &self.failures {
            eprintln!("xtask:   FAILED: {failure}");
        }
    }

    fn verdict(&self, ci: bool) -> Result<()> {
        if !self.failures.is_empty() {
            bail!(
                "{} failure(s): {}",
                self.failures.len(),
                self.failures.join("; ")
            );
        }
        if ci && !self.skipped.is_empty() {
            bail!(
                "CI is set and {} check(s) skipped: {}",
                self.skipped.len(),
                self.skipped.join("; ")
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn df_available_column_is_read() {
        let text = "Filesystem     1024-blocks     Used Available Capacity Mounted on\n\
                    /dev/vda         263174212 85899348 10035456      90% /\n";
        assert_eq!(parse_df(text), Some(10_035_456 * 1024));
        assert_eq!(parse_df("Filesystem 1024-blocks Used Available\n"), None);
        assert_eq!(free_bytes(Path::new("/")).map(|b| b > 0), Some(true));
    }

    #[test]
    fn libtest_lines_are_counted() {
        let mut c = Counts::default();
        for line in [
            "test a::b ... ok",
            "test a::c ... FAILED",
            "test result: FAILED. 12 passed; 1 failed; 2 ignored; 0 measured; 3 filtered out; finished in 1.2s",
            "test result: ok. 5 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.0s",
            "   Doc-tests pybundle_runtime",
        ] {
            count_line(line, &mut c);
        }
        assert_eq!((c.passed, c.failed, c.ignored), (17, 1, 2));
        assert_eq!(c.failures, ["a::c"]);
    }

    #[test]
    fn skips_fail_only_under_ci() {
        let mut s = Summary::default();
        s.skipped.push("x: needs root".into());
        assert!(s.verdict(false).is_ok());
        assert!(s
            .verdict(true)
            .unwrap_err()
            .to_string()
            .contains("x: needs root"));
        s.failures.push("test y".into());
        assert!(s.verdict(false).is_err());
    }
}
