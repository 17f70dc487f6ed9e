//! `cargo build`, then a bundled copy of each executable it produced.
//!
//! The build is a plain `cargo build` (nothing about the bundle reaches cargo, so it shares every
//! artifact with the user's own `cargo build`, `cargo check` and `cargo run`, and alternating
//! them recompiles nothing). Each executable is then copied to `bundled/` beside it with the
//! archive and a trailer appended (see `pybundle_runtime`'s `embed` module): cargo's own
//! `target/<profile>/<bin>` stays the plain program, which runs in development mode, and
//! `target/<profile>/bundled/<bin>` is the one to ship. Messages are read with
//! `--message-format=json-render-diagnostics` (cargo still renders diagnostics for the user) and
//! parsed with `cargo_metadata`, as cargo-dist does.

use anyhow::{bail, Context as _, Result};
use cargo_metadata::Message;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::metadata::Target;
use crate::ui::Ui;

/// How to run `cargo build`.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--release`.
    pub release: bool,
    /// `--target <triple>`.
    pub target: Option<String>,
    /// `--features`, as given.
    pub features: Vec<String>,
    /// `--all-features`.
    pub all_features: bool,
    /// `--no-default-features`.
    pub no_default_features: bool,
    /// `--bin <name>`.
    pub bin: Option<String>,
    /// `--target-dir`.
    pub target_dir: Option<PathBuf>,
    /// Further arguments, after the others.
    pub extra: Vec<String>,
}

/// `cargo <verb>` for the package with `options` (`build` or `test`).
pub fn command(verb: &str, target: &Target, cargo_args: &Options, ui: &Ui) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.arg(verb);
    if verb == "build" {
        cmd.arg("--message-format=json-render-diagnostics");
    }
    cmd.arg("--manifest-path")
        .arg(&target.manifest_path)
        .args(["--package", &target.name]);
    if let Some(dir) = &cargo_args.target_dir {
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
    cmd.args(&cargo_args.extra);
    cmd
}

/// Runs `cargo build` for the package, then writes the bundled copies; returns them, in
/// cargo's order.
pub fn build(
    target: &Target,
    cargo_args: &Options,
    archive: &Path,
    ui: &Ui,
) -> Result<Vec<PathBuf>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = command("build", target, cargo_args, ui);
    cmd.stdout(Stdio::piped()).stdin(Stdio::null());
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
            Message::TextLine(line) => ui.relay(&line),
            _ => {}
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() || success == Some(false) {
        bail!("`cargo build` failed ({status}); its messages are above");
    }
    binaries
        .iter()
        .map(|exe| bundle_copy(exe, archive))
        .collect()
}

/// Writes `<dir of exe>/bundled/<name>`: the executable, the archive and the trailer, through a
/// temp file renamed into place (a half-written program is never left under the name).
pub fn bundle_copy(exe: &Path, archive: &Path) -> Result<PathBuf> {
    let name = exe.file_name().context("an executable has a file name")?;
    let dir = exe.parent().unwrap_or(Path::new(".")).join("bundled");
    fs_err::create_dir_all(&dir)?;
    let dest = dir.join(name);
    let mut out = tempfile::Builder::new()
        .prefix(".bundling-")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    let mut program = fs_err::File::open(exe)?;
    std::io::copy(&mut program, out.as_file_mut())
        .with_context(|| format!("copying {}", exe.display()))?;
    let mut bundle = fs_err::File::open(archive)?;
    let len = std::io::copy(&mut bundle, out.as_file_mut())
        .with_context(|| format!("appending {}", archive.display()))?;
    std::io::Write::write_all(out.as_file_mut(), &pybundle_runtime::trailer(len))?;
    let mode = fs_err::metadata(exe)?.permissions();
    out.as_file().set_permissions(mode)?;
    out.persist(&dest)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", dest.display()))?;
    Ok(dest)
}
