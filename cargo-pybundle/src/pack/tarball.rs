//! Putting the archive in place. Its bytes come from the format's one writer,
//! `pybundle_runtime::format::write`: frame 2 (the body) is written first, to a temp file, and
//! frame 1 (the manifest naming the body's id) after it; here the two are joined into a temp
//! file beside the destination and renamed, so a half-written archive never sits at the
//! destination.

use anyhow::{Context as _, Result};
use std::io::{self, Read, Write};
use std::path::Path;

/// Writes frame 1 + frame 2 to `dest` via a temp file in its directory, then renames.
pub fn assemble(frame1: &[u8], body: &mut std::fs::File, dest: &Path) -> Result<u64> {
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut out = readable_temp(".pybundle-archive-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    out.write_all(frame1)?;
    io::Seek::seek(body, io::SeekFrom::Start(0))?;
    let copied = io::copy(&mut io::BufReader::new(Read::by_ref(body)), &mut out)?;
    out.as_file().sync_all()?;
    let size = frame1.len() as u64 + copied;
    // Same bytes as the archive already there: keep that file (and its mtime), so the
    // runtime crate, which rebuilds when the archive changes, is not rebuilt for nothing.
    if same_content(out.path(), dest, size)? {
        return Ok(size);
    }
    out.persist(dest)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming into {}", dest.display()))?;
    Ok(size)
}

fn same_content(a: &Path, b: &Path, size: u64) -> Result<bool> {
    match fs_err::metadata(b) {
        Ok(meta) if meta.is_file() && meta.len() == size => {}
        _ => return Ok(false),
    }
    let (mut a, mut b) = (
        io::BufReader::new(fs_err::File::open(a)?),
        io::BufReader::new(fs_err::File::open(b)?),
    );
    let (mut x, mut y) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = a.read(&mut x)?;
        if n == 0 {
            return Ok(true);
        }
        b.read_exact(&mut y[..n])?;
        if x[..n] != y[..n] {
            return Ok(false);
        }
    }
}

/// A temp file builder whose file ends up readable by all (tempfile's default is 0600; the
/// archive and its key are build products like any other).
pub fn readable_temp(prefix: &str) -> tempfile::Builder<'_, 'static> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_one_then_frame_two_and_an_identical_archive_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a.tar.zst");
        let mut body = tempfile::tempfile().unwrap();
        body.write_all(b"frame two").unwrap();
        let size = assemble(b"frame one, ", &mut body, &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"frame one, frame two");
        assert_eq!(size, 20);

        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(&dest)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assemble(b"frame one, ", &mut body, &dest).unwrap();
        let kept = std::fs::metadata(&dest).unwrap().modified().unwrap();
        assert_eq!(kept, old, "same bytes: the file (and its mtime) stays");
        assemble(b"frame 1, ", &mut body, &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"frame 1, frame two");
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temp file left beside the archive");
    }
}
