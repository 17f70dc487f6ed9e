//! `cargo xtask demo`: the whole flow for real, offline: build examples/hello with the real
//! `cargo pybundle build` against the local test channel, then run the bundled binary from a fresh
//! cache directory and show what it says.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{channel, pixi, tools};

/// Build and run the hello example.
pub fn run() -> Result<()> {
    let root = tools::workspace_root();
    let pixi = pixi::ensure().context("preparing the test pixi")?;
    let channel = channel::ensure().context("preparing the test channel")?;
    let manifest = root.join("examples").join("hello").join("Cargo.toml");

    eprintln!(
        "xtask: building {} with cargo pybundle build",
        manifest.display()
    );
    let mut build = Command::new(tools::cargo());
    build
        .args([
            "run",
            "--release",
            "-p",
            "cargo-pybundle",
            "--",
            "pybundle",
            "build",
            "--release",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .current_dir(&root)
        .env("PYBUNDLE_PIXI", &pixi)
        // The example lists conda-forge, which these machines cannot reach: use the test channel.
        .env("PYBUNDLE_CHANNEL_MIRRORS", format!("conda-forge={channel}"));
    let status = build.status().context("running cargo-pybundle")?;
    if !status.success() {
        bail!(
            "`cargo-pybundle pybundle build --release --manifest-path {}` failed ({status}); the \
             demo needs a working `cargo pybundle build`, see its output above",
            manifest.display()
        );
    }

    let binary = tools::target_dir(&root)?.join("release/bundled/hello");
    if !binary.is_file() {
        bail!(
            "cargo pybundle build succeeded but {} does not exist",
            binary.display()
        );
    }
    let cache = tempfile::Builder::new()
        .prefix("pybundle-demo-cache-")
        .tempdir()?;
    eprintln!(
        "xtask: running {} (PYBUNDLE_CACHE_DIR={})",
        binary.display(),
        cache.path().display()
    );
    let started = std::time::Instant::now();
    let out = Command::new(&binary)
        .env("PYBUNDLE_CACHE_DIR", cache.path())
        .output()
        .with_context(|| format!("starting {}", binary.display()))?;
    let elapsed = started.elapsed();
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    println!("{}", String::from_utf8_lossy(&out.stdout).trim_end());
    if !out.status.success() {
        bail!("{} failed ({})", binary.display(), out.status);
    }
    eprintln!(
        "xtask: first run (extract + reply) took {:.0} ms",
        elapsed.as_secs_f64() * 1000.0
    );
    Ok(())
}
