//! Copying a download into a temp file through sha256: the one path every source (HTTP or a
//! `file://` mirror) takes, so the file is hashed as it is written and kept only on a match.

use anyhow::{bail, Context as _, Result};
use sha2::{Digest as _, Sha256};
use std::io::Write as _;
use std::path::Path;

use crate::ui::Ui;

/// Bytes asked of the source per read.
const CHUNK: usize = 256 * 1024;

/// Streams what `read` yields (0 = end) into a temp file in `dir`, hashing it on the way; the
/// file is returned only if the digest is `expected` (dropping it otherwise removes it).
/// `len` sizes the progress bar when the source knows it.
pub(super) fn copy_verified(
    mut read: impl FnMut(&mut [u8]) -> Result<usize>,
    len: Option<u64>,
    dir: &Path,
    expected: &str,
    ui: &Ui,
) -> Result<tempfile::NamedTempFile> {
    let bar = ui.bytes_bar(len, "pixi");
    let mut file = tempfile::Builder::new()
        .prefix(".pixi-download-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).context("writing the download")?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    file.flush().context("writing the download")?;
    let actual = hex::encode(hasher.finalize());
    if actual != expected {
        bail!(
            "checksum mismatch: expected sha256 {expected}, got {actual}; the file was discarded"
        );
    }
    Ok(file)
}
