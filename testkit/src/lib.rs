//! Test support: locating the real test toolchain (pixi and the local conda test channel) that
//! `cargo xtask test` prepares and hands over through environment variables.
//!
//! A test that needs the toolchain calls [`toolchain`]. Outside CI a missing toolchain skips the
//! test with a printed line (so `cargo test` works before `cargo xtask pixi` has run); with `CI`
//! set it fails loudly, so CI can never pass by skipping.

use std::path::PathBuf;

pub mod pyenv;

/// The test toolchain: a real pixi and the `file://` URL of the local conda test channel.
#[derive(Clone, Debug)]
pub struct Toolchain {
    /// Path to the pixi binary (`PYBUNDLE_PIXI`).
    pub pixi: PathBuf,
    /// `file://` URL of the test channel (`PYBUNDLE_TEST_CHANNEL`).
    pub channel: String,
}

impl Toolchain {
    /// The `PYBUNDLE_CHANNEL_MIRRORS` value that maps `conda-forge` to the test channel.
    pub fn mirrors(&self) -> String {
        format!("conda-forge={}", self.channel)
    }

    /// The channel as a local directory.
    pub fn channel_dir(&self) -> PathBuf {
        PathBuf::from(self.channel.trim_start_matches("file://"))
    }
}

/// Whether this run is CI (where skipping is not allowed).
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The toolchain, or `None` (after printing why) when it is not prepared and this is not CI.
///
/// # Panics
/// When the toolchain is missing and `CI` is set.
pub fn toolchain(test: &str) -> Option<Toolchain> {
    let pixi = std::env::var_os("PYBUNDLE_PIXI")
        .map(PathBuf::from)
        .filter(|p| p.is_file());
    let channel = std::env::var("PYBUNDLE_TEST_CHANNEL")
        .ok()
        .filter(|c| !c.is_empty());
    match (pixi, channel) {
        (Some(pixi), Some(channel)) => Some(Toolchain { pixi, channel }),
        _ => {
            skip(
                test,
                "needs PYBUNDLE_PIXI and PYBUNDLE_TEST_CHANNEL; run the suite with `cargo xtask \
                 test`, which prepares both",
            );
            None
        }
    }
}

/// Reports that `test` does not run here, and why: printed, and appended to the file
/// `PYBUNDLE_SKIP_LOG` names (`cargo xtask test` lists every skip in its summary). The caller
/// returns after this.
///
/// # Panics
/// When `CI` is set: CI never passes by skipping.
pub fn skip(test: &str, why: &str) {
    let msg = format!("{test}: {why}");
    assert!(
        !in_ci(),
        "{msg} (CI is set, so this fails instead of skipping)"
    );
    eprintln!("SKIPPED {msg}");
    if let Some(log) = std::env::var_os("PYBUNDLE_SKIP_LOG").filter(|l| !l.is_empty()) {
        use std::io::Write as _;
        let line = format!("{test}\t{}\n", why.replace(['\t', '\n'], " "));
        // One write per line on an O_APPEND file: lines of parallel tests do not mix.
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = appended {
            eprintln!(
                "cannot record the skip in {}: {e}",
                std::path::Path::new(&log).display()
            );
        }
    }
}

/// The workspace root (for finding examples and templates).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}
