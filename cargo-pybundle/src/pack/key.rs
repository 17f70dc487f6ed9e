//! The reuse key: a hash of every input of packing. When the archive on disk was written
//! from the same key, packing again would produce the same bytes, so it is skipped.

use anyhow::Result;
use sha2::{Digest as _, Sha256};
use std::path::Path;
use walkdir::WalkDir;

/// Accumulates the key's inputs, each labelled and length-prefixed so no two different input
/// sets can hash alike by shifting bytes from one part into the next.
pub struct Key(Sha256);

impl Key {
    /// A key naming this cargo-pybundle version and bundle format.
    pub fn new() -> Self {
        let mut key = Key(Sha256::new());
        key.part("creator", env!("CARGO_PKG_VERSION").as_bytes());
        key.part(
            "format",
            &pybundle_runtime::format::FORMAT_VERSION.to_le_bytes(),
        );
        key
    }

    /// Adds one labelled input.
    pub fn part(&mut self, label: &str, bytes: &[u8]) {
        for piece in [label.as_bytes(), bytes] {
            self.0.update((piece.len() as u64).to_le_bytes());
            self.0.update(piece);
        }
    }

    /// Adds a file's content, or a marker that it does not exist.
    pub fn file(&mut self, label: &str, path: &Path) -> Result<()> {
        match fs_err::read(path) {
            Ok(bytes) => self.part(label, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.part(label, b"<absent>"),
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Adds a directory tree: sorted relative paths, modes, link targets and file contents.
    pub fn tree(&mut self, label: &str, dir: &Path) -> Result<()> {
        for entry in WalkDir::new(dir).sort_by_file_name().follow_links(false) {
            let entry = entry?;
            let rel = entry.path().strip_prefix(dir).unwrap_or(entry.path());
            self.part(label, rel.to_string_lossy().as_bytes());
            let meta = entry.metadata()?;
            #[cfg(unix)]
            self.part(
                "mode",
                &std::os::unix::fs::PermissionsExt::mode(&meta.permissions()).to_le_bytes(),
            );
            if entry.path_is_symlink() {
                self.part(
                    "link",
                    fs_err::read_link(entry.path())?
                        .to_string_lossy()
                        .as_bytes(),
                );
            } else if meta.is_file() {
                self.file("content", entry.path())?;
            }
        }
        Ok(())
    }

    /// Adds entries as they will be packed: each path, mode, and its content or link target.
    pub fn entries(&mut self, entries: &[super::walk::Entry]) -> Result<()> {
        use super::walk::Source;
        for entry in entries {
            self.part("entry", entry.path.as_bytes());
            self.part("mode", &entry.mode.to_le_bytes());
            match &entry.source {
                Source::File(path) => self.file("content", path)?,
                Source::Embedded(bytes) => self.part("content", bytes),
                Source::Bytes(bytes) => self.part("content", bytes),
                Source::Symlink(target) => self.part("link", target.as_os_str().as_encoded_bytes()),
                Source::Dir => {}
            }
        }
        Ok(())
    }

    /// The key as hex.
    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// The first 16 hex digits of the sha256 of `bytes`: a short, stable name for a path.
pub fn short_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    hex::encode(&digest[..8])
}

impl Default for Key {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_do_not_run_together() {
        let mut a = Key::new();
        a.part("x", b"ab");
        a.part("y", b"c");
        let mut b = Key::new();
        b.part("x", b"a");
        b.part("y", b"bc");
        assert_ne!(a.finish(), b.finish());
    }

    #[test]
    fn tree_sees_content_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.py"), "1").unwrap();
        let key = |d: &Path| {
            let mut k = Key::new();
            k.tree("t", d).unwrap();
            k.finish()
        };
        let first = key(dir.path());
        assert_eq!(first, key(dir.path()));
        std::fs::write(dir.path().join("a.py"), "2").unwrap();
        assert_ne!(first, key(dir.path()));
    }
}
