//! A directory held open, and the file operations the cache does relative to it (`openat`,
//! `mkdirat`, `renameat`, `unlinkat`, `fstatat`): once the cache root is open, a later rename
//! of one of its ancestors cannot redirect a lock, a marker read, a rename or a delete.
//!
//! Every open refuses a symlink in the last component (`O_NOFOLLOW`) and names are single
//! components, so nothing below the held directory is reached through a link either.
//!
//! Built on rustix on Unix (already compiled into this crate for `fs4`, and it keeps these
//! calls free of `unsafe`); elsewhere the same operations go by path.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// What the cache needs to know about a file: `fstat`/`fstatat` without following links.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    pub kind: Kind,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits, with setuid, setgid and sticky.
    pub mode: u32,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub len: u64,
    /// Change time, seconds and nanoseconds.
    pub ctime: (i64, i64),
}

/// The kinds of file the cache tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
    Symlink,
    Other,
}

/// An open directory and the path it was opened by (for messages and for what is run by
/// path later).
#[derive(Debug)]
pub(crate) struct Dir {
    #[cfg(unix)]
    fd: std::os::fd::OwnedFd,
    path: PathBuf,
}

/// How [`Dir::open_file`] opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Open {
    /// Read only; never blocks on a fifo.
    Read,
    /// Read and write; created with mode 0600 when missing.
    ReadWriteCreate,
    /// Write; the file must not exist yet; mode 0600.
    CreateNew,
}

#[cfg(unix)]
mod imp {
    use super::*;
    use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
    use std::os::fd::OwnedFd;

    fn meta(st: &rfs::Stat) -> Meta {
        #[allow(clippy::unnecessary_cast, clippy::useless_conversion)] // types differ by platform
        Meta {
            kind: match FileType::from_raw_mode(st.st_mode as _) {
                FileType::Directory => Kind::Dir,
                FileType::RegularFile => Kind::File,
                FileType::Symlink => Kind::Symlink,
                _ => Kind::Other,
            },
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            mode: (st.st_mode as u32) & 0o7777,
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            nlink: st.st_nlink as u64,
            len: st.st_size as u64,
            ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
        }
    }

    /// `fstat` of an open file.
    pub(crate) fn file_meta(file: &File) -> io::Result<Meta> {
        Ok(meta(&rfs::fstat(file)?))
    }

    impl Dir {
        /// Opens an absolute directory path, following symlinks (only `/`, where the trust
        /// walk starts, is opened this way).
        pub(crate) fn open_path(path: &Path) -> io::Result<Dir> {
            let fd = rfs::open(
                path,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            Ok(Dir {
                fd,
                path: path.to_path_buf(),
            })
        }

        /// Opens the directory `name` inside this one, refusing a symlink (`ELOOP` or
        /// `ENOTDIR`).
        pub(crate) fn open_dir(&self, name: &OsStr) -> io::Result<Dir> {
            let fd = rfs::openat(
                &self.fd,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            Ok(Dir {
                fd,
                path: self.path.join(name),
            })
        }

        pub(crate) fn open_file(&self, name: &OsStr, how: Open) -> io::Result<File> {
            let flags = OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let flags = match how {
                Open::Read => flags | OFlags::RDONLY | OFlags::NONBLOCK,
                Open::ReadWriteCreate => flags | OFlags::RDWR | OFlags::CREATE,
                Open::CreateNew => flags | OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
            };
            // O_NONBLOCK only matters for what is not a regular file: a fifo planted where a
            // file should be opens at once (and the caller's fstat then refuses it).
            let fd: OwnedFd = rfs::openat(&self.fd, name, flags, Mode::from_raw_mode(0o600))?;
            Ok(File::from(fd))
        }

        pub(crate) fn meta(&self) -> io::Result<Meta> {
            Ok(meta(&rfs::fstat(&self.fd)?))
        }

        /// `fstatat` without following a symlink.
        pub(crate) fn stat(&self, name: &OsStr) -> io::Result<Meta> {
            Ok(meta(&rfs::statat(
                &self.fd,
                name,
                AtFlags::SYMLINK_NOFOLLOW,
            )?))
        }

        pub(crate) fn read_link(&self, name: &OsStr) -> io::Result<PathBuf> {
            use std::os::unix::ffi::OsStringExt;
            let target = rfs::readlinkat(&self.fd, name, Vec::new())?;
            Ok(PathBuf::from(OsString::from_vec(target.into_bytes())))
        }

        pub(crate) fn mkdir(&self, name: &OsStr, mode: u32) -> io::Result<()> {
            Ok(rfs::mkdirat(
                &self.fd,
                name,
                Mode::from_raw_mode(mode as _),
            )?)
        }

        /// Renames `from` to `to`, both inside this directory.
        pub(crate) fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
            Ok(rfs::renameat(&self.fd, from, &self.fd, to)?)
        }

        pub(crate) fn remove_file(&self, name: &OsStr) -> io::Result<()> {
            Ok(rfs::unlinkat(&self.fd, name, AtFlags::empty())?)
        }

        pub(crate) fn remove_dir(&self, name: &OsStr) -> io::Result<()> {
            Ok(rfs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR)?)
        }

        /// Sets this directory's permission bits.
        pub(crate) fn set_mode(&self, mode: u32) -> io::Result<()> {
            Ok(rfs::fchmod(&self.fd, Mode::from_raw_mode(mode as _))?)
        }

        /// The names in this directory (without `.` and `..`).
        pub(crate) fn list(&self) -> io::Result<Vec<OsString>> {
            use std::os::unix::ffi::OsStrExt;
            let mut out = Vec::new();
            for entry in rfs::Dir::read_from(&self.fd)? {
                let entry = entry?;
                let name = entry.file_name().to_bytes();
                if name != b"." && name != b".." {
                    out.push(OsStr::from_bytes(name).to_os_string());
                }
            }
            Ok(out)
        }

        /// Flushes the directory's entries (after a rename into it).
        pub(crate) fn sync(&self) {
            if let Err(e) = rfs::fsync(&self.fd) {
                tracing::debug!(dir = %self.path.display(), error = %e, "cannot sync directory");
            }
        }
    }
}

#[cfg(not(unix))]
mod imp {
    use super::*;

    fn meta(m: &std::fs::Metadata) -> Meta {
        let kind = if m.is_symlink() {
            Kind::Symlink
        } else if m.is_dir() {
            Kind::Dir
        } else if m.is_file() {
            Kind::File
        } else {
            Kind::Other
        };
        Meta {
            kind,
            uid: 0,
            gid: 0,
            mode: if m.permissions().readonly() {
                0o500
            } else {
                0o700
            },
            dev: 0,
            ino: 0,
            nlink: 1,
            len: m.len(),
            ctime: m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or((0, 0), |d| {
                    (d.as_secs() as i64, i64::from(d.subsec_nanos()))
                }),
        }
    }

    pub(crate) fn file_meta(file: &File) -> io::Result<Meta> {
        Ok(meta(&file.metadata()?))
    }

    impl Dir {
        pub(crate) fn open_path(path: &Path) -> io::Result<Dir> {
            if !std::fs::metadata(path)?.is_dir() {
                return Err(io::Error::other("not a directory"));
            }
            Ok(Dir {
                path: path.to_path_buf(),
            })
        }

        pub(crate) fn open_dir(&self, name: &OsStr) -> io::Result<Dir> {
            let path = self.path.join(name);
            if !std::fs::symlink_metadata(&path)?.is_dir() {
                return Err(io::Error::other("not a directory"));
            }
            Ok(Dir { path })
        }

        pub(crate) fn open_file(&self, name: &OsStr, how: Open) -> io::Result<File> {
            let mut opts = std::fs::OpenOptions::new();
            match how {
                Open::Read => opts.read(true),
                Open::ReadWriteCreate => opts.read(true).write(true).create(true),
                Open::CreateNew => opts.write(true).create_new(true),
            };
            opts.open(self.path.join(name))
        }

        pub(crate) fn meta(&self) -> io::Result<Meta> {
            Ok(meta(&std::fs::symlink_metadata(&self.path)?))
        }

        pub(crate) fn stat(&self, name: &OsStr) -> io::Result<Meta> {
            Ok(meta(&std::fs::symlink_metadata(self.path.join(name))?))
        }

        pub(crate) fn read_link(&self, name: &OsStr) -> io::Result<PathBuf> {
            std::fs::read_link(self.path.join(name))
        }

        pub(crate) fn mkdir(&self, name: &OsStr, _mode: u32) -> io::Result<()> {
            std::fs::create_dir(self.path.join(name))
        }

        pub(crate) fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
            std::fs::rename(self.path.join(from), self.path.join(to))
        }

        pub(crate) fn remove_file(&self, name: &OsStr) -> io::Result<()> {
            std::fs::remove_file(self.path.join(name))
        }

        pub(crate) fn remove_dir(&self, name: &OsStr) -> io::Result<()> {
            std::fs::remove_dir(self.path.join(name))
        }

        pub(crate) fn set_mode(&self, _mode: u32) -> io::Result<()> {
            Ok(())
        }

        pub(crate) fn list(&self) -> io::Result<Vec<OsString>> {
            Ok(std::fs::read_dir(&self.path)?
                .flatten()
                .map(|e| e.file_name())
                .collect())
        }

        pub(crate) fn sync(&self) {}
    }
}

impl Dir {
    /// The same directory, known by another path that leads to it.
    pub(crate) fn known_as(mut self, path: PathBuf) -> Dir {
        self.path = path;
        self
    }

    /// The path this directory was opened by.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` inside this directory.
    pub(crate) fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// Deletes `name` and everything below it, relative to this directory and never through
    /// a symlink; directories are made writable on the way (a normal user cannot empty a
    /// 0555 directory otherwise). A loop with one open directory per level, not recursion.
    pub(crate) fn remove_tree(&self, name: &OsStr) -> io::Result<()> {
        match self.stat(name)?.kind {
            Kind::Dir => {}
            _ => return self.remove_file(name),
        }
        let mut stack: Vec<(Dir, OsString)> = vec![(self.open_dir(name)?, name.to_os_string())];
        while let Some((dir, _)) = stack.last() {
            let _ = dir.set_mode(0o700);
            let mut descend = None;
            for entry in dir.list()? {
                match dir.stat(&entry) {
                    Ok(m) if m.kind == Kind::Dir => {
                        descend = Some(entry);
                        break;
                    }
                    Ok(_) => dir.remove_file(&entry)?,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            match descend {
                Some(sub) => {
                    let opened = dir.open_dir(&sub)?;
                    stack.push((opened, sub));
                }
                None => {
                    let (_, done) = stack.pop().unwrap_or_else(|| unreachable!("not empty"));
                    let parent = stack.last().map_or(self, |(d, _)| d);
                    parent.remove_dir(&done)?;
                }
            }
        }
        Ok(())
    }
}

pub(crate) use imp::file_meta;

/// `ELOOP` or `ENOTDIR`: what opening a symlink with `O_NOFOLLOW | O_DIRECTORY` gives.
pub(crate) fn is_symlink_error(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR))
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_tree_empties_read_only_directories_and_never_follows_links() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        let t = tmp.path().join("t");
        std::fs::create_dir_all(t.join("a/b/c")).unwrap();
        std::fs::write(t.join("a/b/c/f"), "x").unwrap();
        std::fs::write(t.join("a/g"), "x").unwrap();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&outside, t.join("a/link")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            for d in ["a/b/c", "a/b", "a"] {
                std::fs::set_permissions(t.join(d), std::fs::Permissions::from_mode(0o555))
                    .unwrap();
            }
        }
        let dir = Dir::open_path(tmp.path()).unwrap();
        dir.remove_tree(OsStr::new("t")).unwrap();
        assert!(!t.exists());
        assert!(outside.join("keep").exists());
    }
}
