//! Checks that an extracted bundle still matches its archive ([`Bundle::verify`]).
//!
//! The archive body is decompressed again and every entry compared with the file on disk:
//! its kind, a file's mode and bytes (after applying its relocation, with the same code
//! extraction used), a symlink's target, a hard link's inode. Nothing beside the archive is
//! trusted (no hash list written at extraction that damage could reach too), and the first
//! run pays nothing for it. Bytecode (`.pyc`) the archive does ship is not compared: Python
//! rewrites it. Files the archive does not name are then looked for ([`extra`]): those that
//! change what Python runs (`.pth` files, `sitecustomize`, modules and libraries, bytecode
//! Python would not check against its source) are damage; the rest (Python's own
//! `__pycache__`, data files programs write) is allowed.
//!
//! Reads of the disk are bounded by what the archive says the file must be: a file of the
//! wrong size is reported without being read, and binary relocations are compared window by
//! window.
//!
//! [`Bundle::verify`]: crate::Bundle::verify

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::extract::entries::{Entries, Item};
use crate::extract::limits::{max_relocated_text, MAX_TEXT_RELOCATION};
use crate::extract::{archive_err, safe_relative, sanitized_mode, stream};
use crate::format::{FileMode, Relocation};
use crate::relocate::window::{relocate_binary_windows, window_for, WindowError};
use crate::{Error, Result};

mod extra;

/// What is compared against what.
pub(crate) struct Check<'a> {
    /// The archive after its manifest frame.
    pub body: &'a [u8],
    /// The extracted bundle directory.
    pub dir: &'a Path,
    /// The prefix written into relocated files (`<dir>/env`).
    pub prefix: &'a Path,
    /// The manifest's relocations.
    pub relocations: &'a [Relocation],
    /// See [`crate::extract::Options::release_read_pages`].
    pub release_read_pages: bool,
}

/// Compares the tree with the archive. Returns the damaged entries, each as
/// `<relative path> (<what is wrong>)`, in archive order; empty when the tree matches.
///
/// An archive that cannot be read is an error (the same as extraction would report); a file
/// that cannot be read is damage.
pub(crate) fn damaged(check: &Check<'_>) -> Result<Vec<String>> {
    let new = crate::relocate::path_bytes(check.prefix)?;
    let relocations: HashMap<PathBuf, &Relocation> = check
        .relocations
        .iter()
        .filter_map(|r| Some((safe_relative(r.path.as_bytes())?, r)))
        .collect();
    let (result, _) = stream::decoded(check.body, false, check.release_read_pages, |reader| {
        let mut walk = Walk {
            dir: check.dir,
            new,
            relocations: &relocations,
            damaged: Vec::new(),
            pending: BTreeMap::new(),
            named: HashSet::new(),
            buf: vec![0; 256 * 1024],
            disk: vec![0; 256 * 1024],
        };
        let mut archive = tar::Archive::new(&mut *reader);
        let mut entries = Entries::new(&mut archive)?;
        while let Some(mut item) = entries.next_item()? {
            walk.entry(&mut item)?;
        }
        walk.finish();
        extra::unnamed(check.dir, &walk.named, &mut walk.damaged);
        Ok(walk.damaged)
    });
    result
}

struct Walk<'a> {
    dir: &'a Path,
    new: &'a [u8],
    relocations: &'a HashMap<PathBuf, &'a Relocation>,
    damaged: Vec<String>,
    /// Files with other hard links whose content differs from the archive's: the manifest
    /// may relocate them through a link that comes later in the archive (extraction rewrote
    /// the shared inode then). Their expected content, until such a link settles it.
    pending: BTreeMap<PathBuf, Vec<u8>>,
    /// Every path the archive names.
    named: HashSet<PathBuf>,
    buf: Vec<u8>,
    disk: Vec<u8>,
}

impl Walk<'_> {
    fn entry<R: Read>(&mut self, item: &mut Item<'_, R>) -> Result<()> {
        use tar::EntryType as T;
        let kind = item.kind;
        // Extraction refused such an entry, so no tree of this archive exists to compare.
        let rel = safe_relative(&item.path).ok_or_else(|| Error::UnsafeEntry {
            entry: item.name(),
            reason: "absolute path or `..` component",
        })?;
        if rel.as_os_str().is_empty() {
            return Ok(());
        }
        self.named.insert(rel.clone());
        if matches!(kind, T::Regular | T::Continuous) && rel.extension().is_some_and(|e| e == "pyc")
        {
            // Bytecode is Python's own cache: it rewrites a packed `.pyc` whose source times
            // do not match (they never do after extraction) and recompiles a broken one.
            return Ok(());
        }
        let entry = &mut item.entry;
        let path = self.dir.join(&rel);
        let meta = std::fs::symlink_metadata(&path);
        let problem = match kind {
            T::Directory => match &meta {
                Ok(m) if m.is_dir() => None,
                _ => Some(wrong_kind(&meta, "a directory")),
            },
            T::Regular | T::Continuous => match &meta {
                Ok(m) if m.is_file() => self.file(entry, &rel, &path, m)?,
                _ => Some(wrong_kind(&meta, "a file")),
            },
            T::Symlink => {
                let want = item.link.as_deref().unwrap_or_default();
                match std::fs::read_link(&path) {
                    Ok(got) if crate::relocate::path_bytes(&got)? == want => None,
                    Ok(got) => Some(format!(
                        "points to `{}`, not `{}`",
                        got.display(),
                        String::from_utf8_lossy(want)
                    )),
                    Err(_) => Some(wrong_kind(&meta, "a symlink")),
                }
            }
            T::Link => {
                let target = item
                    .link
                    .as_deref()
                    .and_then(safe_relative)
                    .unwrap_or_default();
                match (&meta, std::fs::symlink_metadata(self.dir.join(&target))) {
                    (Ok(a), Ok(b)) if a.is_file() && same_inode(a, &b) => {
                        self.settle(&target, &rel, &path)?;
                        None
                    }
                    (Ok(a), _) if a.is_file() => {
                        Some(format!("no longer the same file as `{}`", target.display()))
                    }
                    _ => Some(wrong_kind(&meta, "a file")),
                }
            }
            // Never extracted (refused), so nothing to compare.
            _ => None,
        };
        if let Some(problem) = problem {
            self.damaged.push(format!("{} ({problem})", rel.display()));
        }
        Ok(())
    }

    fn relocate(&self, data: &mut Vec<u8>, reloc: &Relocation, path: &Path) -> Result<()> {
        crate::relocate::relocate_bytes(data, reloc.placeholder.as_bytes(), self.new, reloc.mode)
            .map(drop)
            .map_err(|reason| Error::Relocate {
                path: path.to_path_buf(),
                reason,
            })
    }

    /// A hard link `rel` (at `path`) to `target`: if `target` is pending and the manifest
    /// relocates the link, the shared content must be the archive's relocated through it.
    fn settle(&mut self, target: &Path, rel: &Path, path: &Path) -> Result<()> {
        let (Some(want), Some(reloc)) = (self.pending.get(target), self.relocations.get(rel))
        else {
            return Ok(());
        };
        let mut want = want.clone();
        self.relocate(&mut want, reloc, path)?;
        if open_regular(path)
            .and_then(|f| read_at_most(f, want.len() as u64))
            .is_ok_and(|got| got.as_deref() == Some(&want[..]))
        {
            self.pending.remove(target);
        }
        Ok(())
    }

    /// Reports the pending files no relocated link explained.
    fn finish(&mut self) {
        for (rel, want) in std::mem::take(&mut self.pending) {
            let got = std::fs::symlink_metadata(self.dir.join(&rel)).map_or(0, |m| m.len());
            let problem = differs(got, want.len() as u64);
            self.damaged.push(format!("{} ({problem})", rel.display()));
        }
    }

    /// Compares a regular file: mode, then content (relocated when the manifest lists it or
    /// another hard link may, else streamed side by side with the archive).
    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        rel: &Path,
        path: &Path,
        meta: &Metadata,
    ) -> Result<Option<String>> {
        let want_mode = sanitized_mode(entry.header().mode().ok());
        let got_mode = file_mode(meta);
        if got_mode != want_mode {
            return Ok(Some(format!("mode {got_mode:o}, not {want_mode:o}")));
        }
        let file = match open_regular(path) {
            Ok(f) => f,
            Err(e) => return Ok(Some(format!("cannot be read: {e}"))),
        };
        let reloc = self.relocations.get(rel).copied();
        let linked = links(meta) > 1;
        match reloc {
            Some(r) if r.mode == FileMode::Binary && !linked => {
                return self.binary(entry, r, path, meta, file)
            }
            Some(r) if r.mode == FileMode::Text => {
                crate::relocate::check_text_size(&rel.display().to_string(), entry.size())?;
            }
            _ => {}
        }
        // In memory: relocated text, and hard-linked files that a later link may relocate.
        if reloc.is_some() || (linked && entry.size() <= MAX_TEXT_RELOCATION) {
            let mut want = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
            entry.read_to_end(&mut want).map_err(archive_err)?;
            if let Some(reloc) = reloc {
                self.relocate(&mut want, reloc, path)?;
            }
            // A file relocated through a later link may differ from the archive, within the
            // growth relocation allows; anything larger is damage, found without reading it.
            let most = if reloc.is_some() {
                want.len() as u64
            } else {
                max_relocated_text(want.len() as u64)
            };
            let got = match read_at_most(file, most) {
                Ok(Some(got)) => got,
                Ok(None) => return Ok(Some(differs(meta.len(), want.len() as u64))),
                Err(e) => return Ok(Some(format!("cannot be read: {e}"))),
            };
            if got == want {
                return Ok(None);
            }
            if reloc.is_none() {
                self.pending.insert(rel.to_path_buf(), want);
                return Ok(None);
            }
            return Ok(Some(differs(got.len() as u64, want.len() as u64)));
        }
        self.plain(entry, meta, file)
    }

    /// A file compared byte for byte with its archive entry, both streamed.
    fn plain<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        meta: &Metadata,
        mut file: File,
    ) -> Result<Option<String>> {
        if meta.len() != entry.size() {
            return Ok(Some(size_differs(meta.len(), entry.size())));
        }
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(archive_err(e)),
            };
            match file.read_exact(&mut self.disk[..n]) {
                Ok(()) if self.disk[..n] == self.buf[..n] => {}
                Ok(()) => return Ok(Some("content differs".into())),
                Err(e) => return Ok(Some(format!("cannot be read: {e}"))),
            }
        }
        // Same size as the archive's entry and every byte read matched; a file that grew
        // after the size check is caught here.
        Ok(match file.read(&mut self.disk[..1]) {
            Ok(0) => None,
            _ => Some("content differs".into()),
        })
    }

    /// A binary relocation, compared window by window: the archive's bytes relocated as
    /// extraction did, against the same bytes of the file (binary relocation keeps the size).
    fn binary<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        reloc: &Relocation,
        path: &Path,
        meta: &Metadata,
        mut file: File,
    ) -> Result<Option<String>> {
        if meta.len() != entry.size() {
            return Ok(Some(size_differs(meta.len(), entry.size())));
        }
        let mut problem = None;
        let disk = &mut self.disk;
        let window = window_for(entry.size(), reloc.placeholder.as_bytes());
        let result = relocate_binary_windows(
            &mut *entry,
            reloc.placeholder.as_bytes(),
            self.new,
            window,
            |region, _| {
                let mut at = 0;
                while at < region.len() {
                    let n = (region.len() - at).min(disk.len());
                    if let Err(e) = file.read_exact(&mut disk[..n]) {
                        problem = Some(format!("cannot be read: {e}"));
                    } else if disk[..n] != region[at..at + n] {
                        problem = Some("content differs".to_owned());
                    }
                    if problem.is_some() {
                        // Stops the comparison; told apart from a read error of the archive.
                        return Err(io::Error::other("differs"));
                    }
                    at += n;
                }
                Ok(())
            },
        );
        match result {
            Ok(_) if problem.is_none() => Ok(match file.read(&mut self.disk[..1]) {
                Ok(0) => None,
                _ => Some("content differs".into()),
            }),
            Ok(_) => Ok(problem),
            Err(WindowError::Io(_)) if problem.is_some() => Ok(problem),
            Err(WindowError::Io(e)) => Err(archive_err(e)),
            Err(WindowError::Refused(reason)) => Err(Error::Relocate {
                path: path.to_path_buf(),
                reason,
            }),
        }
    }
}

/// The whole file if it holds at most `most` bytes, `None` if it holds more (not read past).
fn read_at_most(file: File, most: u64) -> io::Result<Option<Vec<u8>>> {
    let mut got = Vec::new();
    file.take(most.saturating_add(1)).read_to_end(&mut got)?;
    Ok((got.len() as u64 <= most).then_some(got))
}

/// What a path that is not the expected kind is instead.
fn wrong_kind(meta: &io::Result<Metadata>, want: &str) -> String {
    let is = match meta {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return "missing".into(),
        Err(e) => return format!("cannot be read: {e}"),
        Ok(m) if m.is_dir() => "a directory",
        Ok(m) if m.is_symlink() => "a symlink",
        Ok(m) if m.is_file() => "a file",
        Ok(_) => "a special file",
    };
    format!("{is}, not {want}")
}

fn size_differs(got: u64, want: u64) -> String {
    format!("{got} bytes, not {want}")
}

fn differs(got: u64, want: u64) -> String {
    if got == want {
        "content differs".into()
    } else {
        size_differs(got, want)
    }
}

fn links(meta: &Metadata) -> u64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        meta.nlink()
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        1
    }
}

/// Opens a file for reading without following a symlink and without blocking on a fifo that
/// replaced it since it was looked at; only a regular file is accepted.
fn open_regular(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = opts.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(file)
}

fn file_mode(meta: &Metadata) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o777
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        0o644
    }
}

fn same_inode(a: &Metadata, b: &Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        a.dev() == b.dev() && a.ino() == b.ino()
    }
    #[cfg(not(unix))]
    {
        a.len() == b.len()
    }
}

/// How many damaged entries an error message lists before saying how many more there are.
const LISTED: usize = 10;

/// `a (missing), b (content differs) and 3 more` for messages.
pub(crate) fn summary(damaged: &[String]) -> String {
    let mut out = damaged
        .iter()
        .take(LISTED)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if damaged.len() > LISTED {
        out.push_str(&format!(" and {} more", damaged.len() - LISTED));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_ten_then_counts() {
        let d: Vec<String> = (0..12).map(|i| format!("f{i} (missing)")).collect();
        let s = summary(&d);
        assert!(s.starts_with("f0 (missing), f1 (missing)"), "{s}");
        assert!(s.ends_with("f9 (missing) and 2 more"), "{s}");
        assert_eq!(summary(&d[..1]), "f0 (missing)");
    }
}
