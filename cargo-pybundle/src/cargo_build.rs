//! `cargo build` with the archive embedded, reporting the binaries it produced.
//!
//! The archive path goes to the build in `PYBUNDLE_ARCHIVE`; `pybundle-runtime`'s build script
//! embeds it. Messages are read with `--message-format=json-render-diagnostics` (cargo still
//! renders diagnostics for the user) and parsed with `cargo_metadata`, as cargo-dist does.

use anyhow::{bail, Context as _, Result};
use cargo_metadata::Message;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::cli::CargoArgs;
use crate::metadata::Target;
use crate::ui::Ui;

/// Runs `cargo build` for the package; returns the executables built, in cargo's order.
pub fn build(
    target: &Target,
    cargo_args: &CargoArgs,
    extra: &[String],
    target_dir: Option<&Path>,
    archive: &Path,
    ui: &Ui,
) -> Result<Vec<PathBuf>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args([
        "build",
        "--message-format=json-render-diagnostics",
        "--manifest-path",
    ])
    .arg(&target.manifest_path)
    .args(["--package", &target.name]);
    if let Some(dir) = target_dir {
        cmd.arg("--target-dir").arg(dir);
    }
    if cargo_args.release {
        cmd.arg("--release");
    }
    if let Some(t) = &cargo_args.target {
        cmd.args(["--target", t]);
    }
    for f in &cargo_args.features {
        cmd.args(["--features", f]);
    }
    if cargo_args.all_features {
        cmd.arg("--all-features");
    }
    if cargo_args.no_default_features {
        cmd.arg("--no-default-features");
    }
    if let Some(bin) = &cargo_args.bin {
        cmd.args(["--bin", bin]);
    }
    if ui.quiet {
        cmd.arg("--quiet");
    }
    for _ in 0..ui.verbose {
        cmd.arg("--verbose");
    }
    cmd.args(extra);
    let archive = std::path::absolute(archive)?;
    cmd.env("PYBUNDLE_ARCHIVE", &archive)
        .stdout(Stdio::piped())
        .stdin(Stdio::null());
    tracing::debug!("running {cmd:?}");

    let mut child = cmd
        .spawn()
        .with_context(|| format!("running {}", cargo.to_string_lossy()))?;
    let stdout = child.stdout.take().context("cargo's stdout")?;
    let mut binaries = Vec::new();
    let mut success = None;
    for message in Message::parse_stream(BufReader::new(stdout)) {
        match message.context("reading cargo's JSON messages")? {
            Message::CompilerArtifact(artifact)
                if artifact.manifest_path.as_std_path() == target.manifest_path =>
            {
                if let Some(exe) = artifact.executable {
                    binaries.push(exe.into_std_path_buf());
                }
            }
            Message::BuildFinished(done) => success = Some(done.success),
            Message::TextLine(line) => eprintln!("{line}"),
            _ => {}
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() || success == Some(false) {
        bail!("`cargo build` failed ({status}); its messages are above");
    }
    Ok(binaries)
}
