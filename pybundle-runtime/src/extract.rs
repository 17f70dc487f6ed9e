//! Streams the archive's zstd → tar body into a fresh private directory, writing every entry
//! ourselves so that nothing is ever written outside it.
//!
//! The rules, each refused with [`Error::UnsafeEntry`] naming the entry:
//! - paths must be relative and free of `..`; `.pybundle/` is reserved for the runtime;
//! - parents are directories this extraction created: a path never goes through a symlink
//!   (files are created with `O_NOFOLLOW | O_EXCL`, directories with `mkdir`);
//! - symlink targets must be relative, with `..` only as leading components, and stay inside
//!   the root (so no chain of links can climb out);
//! - hard links may only point at a regular file extracted earlier;
//! - devices, fifos and other special files are never created;
//! - no file or directory is group- or world-writable, and no setuid, setgid or sticky bit
//!   is kept.
//!
//! And the limits of [`limits`], each [`Error::ArchiveLimit`] naming the entry: path length
//! and depth (checked by [`entries`] as each entry is read, long names included), entry
//! count against the manifest's `file_count`, bytes against its `unpacked_size` (both checked
//! before an entry is written), the zstd window. The body's sha256 is computed while it
//! streams and must equal the manifest's id, or nothing extracted is kept.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use crate::{Error, Result};

pub(crate) mod entries;
pub(crate) mod limits;
pub(crate) mod stream;

/// How far the first-run extraction has come, given to the callback set with
/// [`Bundle::on_progress`](crate::Bundle::on_progress).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Bytes of regular files written so far.
    pub bytes_done: u64,
    /// Bytes of regular files in the bundle (from the manifest).
    pub bytes_total: u64,
    /// Archive entries written so far.
    pub entries_done: u64,
    /// Archive entries in the bundle (from the manifest).
    pub entries_total: u64,
}

/// What an extraction wrote.
#[derive(Debug, Default)]
pub(crate) struct Extracted {
    /// Relative paths of the regular files written (hard links included).
    pub files: HashSet<PathBuf>,
    /// Entries written.
    pub entries: u64,
}

/// Extraction settings.
pub(crate) struct Options<'a> {
    /// Totals for progress reports.
    pub bytes_total: u64,
    /// Entries expected (the manifest's file count); a different count is an error, and
    /// one entry more is refused before it is written.
    pub entries_total: u64,
    /// The sha256 (lower-case hex) the decompressed body must have: the manifest's id.
    pub id: &'a str,
    /// Progress callback.
    pub progress: Option<&'a (dyn Fn(Progress) + Send + Sync)>,
    /// `body` is a read-only file-backed mapping (the embedded archive): pages already
    /// decompressed are given back to the kernel, so resident memory does not grow with the
    /// archive. Never set for heap memory, where released pages would read back as zeros.
    pub release_read_pages: bool,
}

/// Extracts the tar stream compressed in `body` (the archive after its manifest frame) into
/// the existing, empty directory `dest`.
pub(crate) fn extract(body: &[u8], dest: &Path, opts: &Options<'_>) -> Result<Extracted> {
    let (result, digest) = stream::decoded(body, true, opts.release_read_pages, |reader| {
        let mut state = State {
            dest,
            opts,
            dirs: HashSet::new(),
            out: Extracted::default(),
            bytes: 0,
            declared: 0,
        };
        let mut buf = vec![0u8; 256 * 1024];
        let mut archive = tar::Archive::new(&mut *reader);
        let mut entries = entries::Entries::new(&mut archive)?;
        while let Some(mut item) = entries.next_item()? {
            state.entry(&mut item, &mut buf)?;
            if let Some(progress) = opts.progress {
                progress(Progress {
                    bytes_done: state.bytes,
                    bytes_total: opts.bytes_total,
                    entries_done: state.out.entries,
                    entries_total: opts.entries_total,
                });
            }
        }
        drop(entries);
        // Drain the end-of-archive blocks (and detect a truncated or corrupt stream past them).
        io::copy(reader, &mut io::sink()).map_err(archive_err)?;
        Ok((state.out, state.bytes))
    });
    let (out, bytes) = result?;
    if out.entries != opts.entries_total {
        return Err(Error::Archive {
            detail: format!(
                "it holds {} entries but its manifest lists {} (truncated or corrupt archive)",
                out.entries, opts.entries_total
            ),
            source: None,
        });
    }
    if bytes != opts.bytes_total {
        return Err(Error::Archive {
            detail: format!(
                "its files hold {bytes} bytes but its manifest says {} (truncated or corrupt \
                 archive)",
                opts.bytes_total
            ),
            source: None,
        });
    }
    let got = digest.map(|d| hex_lower(&d)).unwrap_or_default();
    if got != opts.id {
        return Err(Error::Archive {
            detail: format!(
                "content hash {got} does not match the manifest id {} (a damaged archive, or \
                 one whose manifest was forged)",
                opts.id
            ),
            source: None,
        });
    }
    Ok(out)
}

/// The mode an entry is written with: permission bits only (no setuid, setgid or sticky),
/// never writable by group or others.
pub(crate) fn sanitized_mode(header_mode: Option<u32>) -> u32 {
    header_mode.unwrap_or(0o644) & 0o755
}

struct State<'a> {
    dest: &'a Path,
    opts: &'a Options<'a>,
    /// Relative directories known to be real directories made by this extraction.
    dirs: HashSet<PathBuf>,
    out: Extracted,
    /// Bytes of regular files written so far.
    bytes: u64,
    /// Bytes of regular files announced by the headers seen so far.
    declared: u64,
}

impl State<'_> {
    fn entry<R: Read>(&mut self, item: &mut entries::Item<'_, R>, buf: &mut [u8]) -> Result<()> {
        use tar::EntryType as T;
        let name = item.name();
        let unsafe_entry = |reason: &'static str| Error::UnsafeEntry {
            entry: name.clone(),
            reason,
        };
        let rel = safe_relative(&item.path)
            .ok_or_else(|| unsafe_entry("absolute path or `..` component"))?;
        if rel.starts_with(".pybundle") {
            return Err(unsafe_entry("`.pybundle/` is reserved for the runtime"));
        }
        if self.out.entries >= self.opts.entries_total {
            return Err(Error::ArchiveLimit {
                entry: name,
                limit: format!(
                    "the manifest lists {} entries (file_count) and this is one more",
                    self.opts.entries_total
                ),
            });
        }
        let size = item.entry.size();
        let kind = item.kind;
        if size > 0 && !matches!(kind, T::Regular | T::Continuous) {
            return Err(unsafe_entry("an entry of this kind carries no data"));
        }
        let mode = sanitized_mode(item.entry.header().mode().ok());
        let path = self.dest.join(&rel);
        match kind {
            T::Directory => {
                if rel.as_os_str().is_empty() {
                    // `./` itself: the destination already exists.
                } else {
                    self.dir(&rel, &name)?;
                    set_mode(&path, mode | 0o700)?;
                }
            }
            T::Regular | T::Continuous => self.file(item, buf, rel, &path, mode, name)?,
            T::Symlink => {
                let target = item
                    .link
                    .as_deref()
                    .ok_or_else(|| unsafe_entry("symlink without a target"))?;
                if !symlink_stays_inside(&rel, target) {
                    return Err(unsafe_entry(
                        "symlink target is absolute or leaves the bundle",
                    ));
                }
                self.parent(&rel, &name)?;
                make_symlink(target, &path, &name)?;
            }
            T::Link => self.hard_link(item, rel, &path, &name)?,
            _ => {
                return Err(unsafe_entry(
                    "devices, fifos and other special files are not extracted",
                ))
            }
        }
        self.out.entries += 1;
        Ok(())
    }

    /// A regular file: checked against the declared total, written whole, given its mode.
    fn file<R: Read>(
        &mut self,
        item: &mut entries::Item<'_, R>,
        buf: &mut [u8],
        rel: PathBuf,
        path: &Path,
        mode: u32,
        name: String,
    ) -> Result<()> {
        let size = item.entry.size();
        let declared = self.declared.saturating_add(size);
        if declared > self.opts.bytes_total {
            return Err(Error::ArchiveLimit {
                entry: name,
                limit: format!(
                    "its {size} bytes would take the files past the {} bytes the \
                     manifest declares (unpacked_size)",
                    self.opts.bytes_total
                ),
            });
        }
        self.declared = declared;
        self.parent(&rel, &name)?;
        let mut file = create_new(path, mode, &name)?;
        let mut written = 0u64;
        loop {
            let n = match item.entry.read(buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(archive_err(e)),
            };
            file.write_all(&buf[..n])
                .map_err(|e| Error::io("cannot write", path, e))?;
            written += n as u64;
        }
        if written != size {
            return Err(Error::Archive {
                detail: format!(
                    "entry `{name}` ends after {written} of its {size} bytes (truncated \
                     archive)"
                ),
                source: None,
            });
        }
        self.bytes += written;
        set_file_mode(&file, path, mode)?;
        self.out.files.insert(rel);
        Ok(())
    }

    /// A hard link: its target must be a file this extraction wrote earlier.
    fn hard_link<R: Read>(
        &mut self,
        item: &entries::Item<'_, R>,
        rel: PathBuf,
        path: &Path,
        name: &str,
    ) -> Result<()> {
        let target = item
            .link
            .as_deref()
            .and_then(safe_relative)
            .filter(|t| self.out.files.contains(t))
            .ok_or_else(|| Error::UnsafeEntry {
                entry: name.to_owned(),
                reason: "hard link to something that is not an earlier file",
            })?;
        self.parent(&rel, name)?;
        std::fs::hard_link(self.dest.join(&target), path)
            .map_err(|e| Error::io("cannot create hard link", path, e))?;
        self.out.files.insert(rel);
        Ok(())
    }

    /// Makes sure every ancestor of `rel` is a real directory made by this extraction.
    fn parent(&mut self, rel: &Path, name: &str) -> Result<()> {
        match rel.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => self.dir(parent, name),
            _ => Ok(()),
        }
    }

    /// Makes `rel` and its missing ancestors, top down (a loop, not recursion: the depth is
    /// the archive's to choose, within [`limits::MAX_DEPTH`]).
    fn dir(&mut self, rel: &Path, name: &str) -> Result<()> {
        let missing: Vec<&Path> = rel
            .ancestors()
            .take_while(|p| !p.as_os_str().is_empty() && !self.dirs.contains(*p))
            .collect();
        for rel in missing.into_iter().rev() {
            let path = self.dest.join(rel);
            match std::fs::create_dir(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    // Only this extraction writes here, so an existing non-directory is an
                    // earlier entry (a file or a symlink) that this path would go through.
                    return Err(Error::UnsafeEntry {
                        entry: name.to_owned(),
                        reason: "its path goes through a symlink or file written earlier",
                    });
                }
                Err(e) => return Err(Error::io("cannot create directory", &path, e)),
            }
            self.dirs.insert(rel.to_path_buf());
        }
        Ok(())
    }
}

/// The normal components of an archive path, or `None` if it is absolute or has `..`.
pub(crate) fn safe_relative(raw: &[u8]) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for comp in Path::new(bytes_to_os(raw)?).components() {
        match comp {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            Component::RootDir | Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Whether the symlink at `link` (relative to the root) pointing to `target` stays inside.
///
/// `..` is only allowed before the first normal component: after a normal component that
/// component could itself be a symlink, and lexical normalisation would no longer match what
/// the kernel resolves.
fn symlink_stays_inside(link: &Path, target: &[u8]) -> bool {
    let Some(target) = bytes_to_os(target) else {
        return false;
    };
    let mut depth = link.components().count().saturating_sub(1);
    let mut seen_normal = false;
    for comp in Path::new(target).components() {
        match comp {
            Component::CurDir => {}
            Component::ParentDir if !seen_normal => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            Component::Normal(_) => seen_normal = true,
            _ => return false,
        }
    }
    !Path::new(target).as_os_str().is_empty()
}

fn bytes_to_os(raw: &[u8]) -> Option<&std::ffi::OsStr> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Some(std::ffi::OsStr::from_bytes(raw))
    }
    #[cfg(not(unix))]
    {
        std::str::from_utf8(raw).ok().map(std::ffi::OsStr::new)
    }
}

fn create_new(path: &Path, mode: u32, entry: &str) -> Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode | 0o600).custom_flags(libc::O_NOFOLLOW);
    }
    #[cfg(not(unix))]
    let _ = mode;
    opts.open(path).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => Error::UnsafeEntry {
            entry: entry.to_owned(),
            reason: "duplicate entry",
        },
        _ => Error::io("cannot create", path, e),
    })
}

/// Sets the exact mode on a file we just wrote (the umask may have cleared bits).
fn set_file_mode(file: &File, path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("cannot set permissions of", path, e))?;
    }
    #[cfg(not(unix))]
    let _ = (file, path, mode);
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io("cannot set permissions of", path, e))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

fn make_symlink(target: &[u8], path: &Path, entry: &str) -> Result<()> {
    let target = bytes_to_os(target).unwrap_or_default();
    #[cfg(unix)]
    let res = std::os::unix::fs::symlink(target, path);
    #[cfg(windows)]
    let res = std::os::windows::fs::symlink_file(target, path);
    res.map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => Error::UnsafeEntry {
            entry: entry.to_owned(),
            reason: "duplicate entry",
        },
        _ => Error::io("cannot create symlink", path, e),
    })
}

pub(crate) fn archive_err(e: io::Error) -> Error {
    if let Some(limit) = e
        .get_ref()
        .and_then(|e| e.downcast_ref::<stream::WindowTooLarge>())
    {
        return Error::ArchiveLimit {
            entry: "the compressed body".into(),
            limit: limit.to_string(),
        };
    }
    Error::Archive {
        detail: "truncated or corrupt compressed data".into(),
        source: Some(e),
    }
}

pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(
            safe_relative(b"./env/bin/x"),
            Some(PathBuf::from("env/bin/x"))
        );
        assert_eq!(safe_relative(b"env/../../x"), None);
        assert_eq!(safe_relative(b"/etc/passwd"), None);
        assert_eq!(safe_relative(b"a/./b/"), Some(PathBuf::from("a/b")));
    }

    #[test]
    fn symlink_targets() {
        let link = Path::new("env/bin/python3");
        assert!(symlink_stays_inside(link, b"python3.11"));
        assert!(symlink_stays_inside(link, b"../lib/libpython.so"));
        assert!(symlink_stays_inside(link, b"../../scripts/a.py"));
        assert!(!symlink_stays_inside(link, b"../../../etc/passwd"));
        assert!(!symlink_stays_inside(link, b"/usr/bin/python3"));
        assert!(!symlink_stays_inside(link, b"lib/../../x"));
        assert!(!symlink_stays_inside(link, b""));
        assert!(!symlink_stays_inside(Path::new("top"), b".."));
    }
}
