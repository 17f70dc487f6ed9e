//! `cargo xtask test`: prepare the real test toolchain (pixi + the local channel), then run
//! `cargo fmt --check`, `cargo clippy -D warnings` and the whole workspace's tests with the
//! toolchain handed over in `PYBUNDLE_PIXI` / `PYBUNDLE_TEST_CHANNEL`, then the air-gap cases.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{channel, pixi, tools};

/// Run the suite; fails when formatting or any test fails.
pub fn run(extra: &[String]) -> Result<()> {
    let root = tools::workspace_root();
    let started = std::time::Instant::now();

    // Formatting first: it takes a second and its failure is worth seeing early, but it does not
    // stop the tests, so one run reports everything.
    let fmt = Command::new(tools::cargo())
        .args(["fmt", "--all", "--check"])
        .current_dir(&root)
        .status()
        .context("running `cargo fmt --all --check`")?;
    eprintln!(
        "xtask: cargo fmt --check: {}",
        if fmt.success() { "ok" } else { "FAILED" }
    );

    // Lints next, for the same reason; they do not stop the tests either.
    let clippy = Command::new(tools::cargo())
        .args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--quiet",
            "--",
            "-D",
            "warnings",
        ])
        .current_dir(&root)
        .status()
        .context("running `cargo clippy`")?;
    eprintln!(
        "xtask: cargo clippy -D warnings: {}",
        if clippy.success() { "ok" } else { "FAILED" }
    );

    let pixi = pixi::ensure().context("preparing the test pixi")?;
    let channel = channel::ensure().context("preparing the test channel")?;
    eprintln!("xtask: PYBUNDLE_PIXI={}", pixi.display());
    eprintln!("xtask: PYBUNDLE_TEST_CHANNEL={channel}");

    // CI passes through from our own environment: testkit fails instead of skipping under CI.
    let tests = Command::new(tools::cargo())
        .args(["test", "--workspace", "--all-targets", "--no-fail-fast"])
        .args(extra)
        .current_dir(&root)
        .env("PYBUNDLE_PIXI", &pixi)
        .env("PYBUNDLE_TEST_CHANNEL", &channel)
        .status()
        .context("running `cargo test`")?;
    // The bare-machine proof runs whatever the suite said, so one run reports everything; not
    // for a filtered run (`cargo xtask test -- <filter>`).
    let airgap = if extra.is_empty() {
        crate::airgap::run(false)
    } else {
        Ok(())
    };
    if let Err(e) = &airgap {
        eprintln!("xtask: airgap: FAILED: {e:#}");
    }
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    eprintln!(
        "xtask: cargo test: {} ({minutes:.1} min in all)",
        if tests.success() { "ok" } else { "FAILED" }
    );
    if !tests.success() {
        bail!("tests failed (see the cargo test output above)");
    }
    if !fmt.success() {
        bail!("formatting differs from rustfmt: run `cargo fmt --all`");
    }
    if !clippy.success() {
        bail!("clippy found warnings (see above): fix them or run `cargo clippy --fix`");
    }
    airgap.context("the air-gap cases failed (see above)")
}
