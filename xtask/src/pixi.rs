//! The test pixi: `PYBUNDLE_PIXI` when set, else pixi [`VERSION`] fetched exactly as a user's build
//! fetches it — cargo-pybundle's own download code (checksum while streaming, `--version` check,
//! cached in `~/.cache/cargo-pybundle/pixi/<version>/`) — from `PYBUNDLE_PIXI_MIRROR`.
//!
//! These machines cannot reach pixi's release site, so when `PYBUNDLE_PIXI_MIRROR` is unset and
//! `../shared/pixi-releases` (beside the checkout) exists, [`use_local_mirror`] points the
//! variable there as a `file://` URL for this process and everything it starts.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::tools;

/// The pixi version the suite runs: cargo-pybundle's default.
pub(crate) const VERSION: &str = cargo_pybundle::DEFAULT_PIXI_VERSION;

/// The folder of mirrored pixi releases beside the checkout, if it exists.
pub fn local_mirror() -> Option<PathBuf> {
    let dir = tools::workspace_root().join("../shared/pixi-releases");
    dir.is_dir().then(|| dir.canonicalize().unwrap_or(dir))
}

/// Sets `PYBUNDLE_PIXI_MIRROR` to [`local_mirror`] unless it is set already; called once at
/// start-up, before any thread exists.
pub fn use_local_mirror() {
    if std::env::var_os("PYBUNDLE_PIXI_MIRROR").is_some_and(|v| !v.is_empty()) {
        return;
    }
    if let Some(dir) = local_mirror() {
        std::env::set_var("PYBUNDLE_PIXI_MIRROR", format!("file://{}", dir.display()));
    }
}

/// Make sure the test pixi exists; return its path.
pub fn ensure() -> Result<PathBuf> {
    if let Some(pixi) = std::env::var_os("PYBUNDLE_PIXI").filter(|p| !p.is_empty()) {
        let pixi = PathBuf::from(pixi);
        if !pixi.is_file() {
            bail!(
                "PYBUNDLE_PIXI={} is not a file; point it at a pixi binary or unset it",
                pixi.display()
            );
        }
        return Ok(pixi);
    }
    let mirror = std::env::var("PYBUNDLE_PIXI_MIRROR").unwrap_or_default();
    let choice = cargo_pybundle::pixi::Choice {
        version: Some(VERSION.to_owned()),
        ..Default::default()
    };
    let pixi = cargo_pybundle::pixi::locate(&choice, &cargo_pybundle::ui::Ui::default())
        .with_context(|| {
            format!(
                "getting pixi {VERSION} through cargo-pybundle's download path (PYBUNDLE_PIXI_MIRROR={}); \
                 put pixi's releases in ../shared/pixi-releases, set PYBUNDLE_PIXI_MIRROR, or set \
                 PYBUNDLE_PIXI to a pixi {VERSION} binary",
                if mirror.is_empty() { "unset: pixi's release site" } else { &mirror }
            )
        })?;
    Ok(pixi.path)
}
