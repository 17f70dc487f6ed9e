//! Cross-process file locks: one build of a package at a time, one `pixi install` per pixi
//! package cache at a time.

use anyhow::{Context as _, Result};
use std::fs::File;
use std::path::Path;

use crate::ui::Ui;

/// Takes an exclusive lock on `path` (created if missing), saying what it waits for when another
/// process holds it. The lock lasts as long as the returned file is open.
pub fn exclusive(path: &Path, waiting_for: &str, ui: &Ui) -> Result<File> {
    if let Some(dir) = path.parent() {
        fs_err::create_dir_all(dir)?;
    }
    let file = fs_err::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?
        .into_parts()
        .0;
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => {}
        Err(fs4::TryLockError::WouldBlock) => {
            ui.status(
                "Blocking",
                format!("waiting for {waiting_for} ({})", path.display()),
            );
            fs4::FileExt::lock(&file).with_context(|| format!("locking {}", path.display()))?;
        }
        Err(fs4::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
    Ok(file)
}
