//! Finding pixi and running it.
//!
//! Order: `--pixi PATH` / `PYBUNDLE_PIXI` → the cached `<cache>/cargo-pybundle/pixi/<version>/pixi`
//! → a download (see `download`). pixi's own output goes straight to the user.

use anyhow::{bail, Context as _, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::download;
use crate::ui::Ui;

/// pixi version downloaded unless `pixi-version` says otherwise.
pub const DEFAULT_PIXI_VERSION: &str = "0.59.0";

/// Settings that decide which pixi to use.
#[derive(Clone, Debug, Default)]
pub struct Choice {
    /// `--pixi` / `PYBUNDLE_PIXI`.
    pub explicit: Option<PathBuf>,
    /// `pixi-version` from configuration.
    pub version: Option<String>,
    /// `pixi-sha256` from configuration.
    pub sha256: Option<String>,
}

/// A pixi binary we can run.
#[derive(Clone, Debug)]
pub struct Pixi {
    /// Path of the binary.
    pub path: PathBuf,
}

/// Where downloaded pixi binaries are cached: `<cache dir>/cargo-pybundle/pixi`.
pub fn cache_root() -> Result<PathBuf> {
    let base = dirs::cache_dir().context(
        "this system has no cache directory (set XDG_CACHE_HOME or HOME), so pixi cannot be \
         cached; supply it with --pixi PATH or PYBUNDLE_PIXI=PATH",
    )?;
    Ok(base.join("cargo-pybundle").join("pixi"))
}

/// Finds (or downloads) pixi.
pub fn locate(choice: &Choice, ui: &Ui) -> Result<Pixi> {
    if let Some(path) = &choice.explicit {
        if !path.is_file() {
            bail!(
                "the pixi given with --pixi or PYBUNDLE_PIXI ({}) is not a file; fix the path or \
                 unset it to let cargo pybundle download pixi",
                path.display()
            );
        }
        return Ok(Pixi { path: path.clone() });
    }
    let version = choice.version.as_deref().unwrap_or(DEFAULT_PIXI_VERSION);
    let dest = cache_root()?.join(version).join(exe_name());
    if dest.is_file() {
        tracing::debug!("using cached pixi {}", dest.display());
        return Ok(Pixi { path: dest });
    }
    let base_url = std::env::var("PYBUNDLE_PIXI_MIRROR")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| download::DEFAULT_BASE_URL.to_owned());
    let request = download::Request {
        base_url,
        version: version.to_owned(),
        sha256: choice.sha256.clone(),
    };
    let path = download::fetch(&request, &dest, ui)?;
    Ok(Pixi { path })
}

fn exe_name() -> &'static str {
    if cfg!(windows) {
        "pixi.exe"
    } else {
        "pixi"
    }
}

impl Pixi {
    /// A command running this pixi, with colour off when our stderr is not a terminal.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.path);
        // pixi reads these to decide how to behave; keep the build reproducible.
        cmd.env_remove("PIXI_LOCKED").env_remove("PIXI_FROZEN");
        cmd
    }

    /// Runs pixi with `args`, inheriting all streams; returns its exit status code.
    pub fn run_passthrough(&self, args: &[String]) -> Result<i32> {
        let status = Command::new(&self.path)
            .args(args)
            .status()
            .with_context(|| format!("running {}", self.path.display()))?;
        Ok(status.code().unwrap_or(1))
    }

    /// Whether `pixi install` knows `--environment` (pixi added it in 0.13).
    pub fn install_knows_environment(&self) -> Result<bool> {
        let out = self
            .command()
            .args(["install", "--help"])
            .output()
            .with_context(|| format!("running {} install --help", self.path.display()))?;
        Ok(String::from_utf8_lossy(&out.stdout).contains("--environment"))
    }

    /// The file this pixi is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
