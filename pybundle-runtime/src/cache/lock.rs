//! Lock files: `<root>/<dir_name>.lock`, shared while a bundle is in use, exclusive while it
//! is extracted, repaired or removed.
//!
//! A lock file is opened relative to the held root, never through a symlink (`O_NOFOLLOW`:
//! a planted link can neither redirect the `O_CREAT` nor be locked), created `0600` (`flock`
//! works on a read-only handle, so a readable lock file would let any user who can open it
//! block every start), and only used when it is a plain file of ours with no other name. An
//! older runtime's `0644` lock file is made `0600`.
//!
//! Every wait is bounded: past the timeout the error names the lock file and, when
//! `/proc/locks` tells, the process holding it.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::dir::{file_meta, is_symlink_error, Dir, Kind, Meta, Open};
use crate::{Error, Result};

/// How to take a lock.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockKind {
    Shared,
    Exclusive,
    /// Exclusive, or give up at once (`Ok(None)`) if anyone holds it.
    TryExclusive,
}

fn lock_name(dir_name: &str) -> OsString {
    OsString::from(format!("{dir_name}.lock"))
}

/// Opens and locks `<root>/<dir_name>.lock`, waiting at most `timeout`.
///
/// Lock files of removed versions are deleted while held exclusively, so after locking we
/// check that the name still leads to the file we locked; if not, someone deleted it in
/// between and we start over on the new file.
pub(crate) fn lock(
    root: &Dir,
    dir_name: &str,
    kind: LockKind,
    timeout: Duration,
) -> Result<Option<File>> {
    let name = lock_name(dir_name);
    let path = root.join(&name);
    let deadline = Instant::now() + timeout;
    loop {
        let (file, meta) = open_lock_file(root, &name)?;
        let wait = match kind {
            LockKind::TryExclusive => None,
            _ => Some(deadline.saturating_duration_since(Instant::now())),
        };
        if !flock_within(&file, kind == LockKind::Shared, &path, &meta, wait)? {
            return Ok(None);
        }
        if root
            .stat(&name)
            .is_ok_and(|now| now.dev == meta.dev && now.ino == meta.ino)
        {
            return Ok(Some(file));
        }
    }
}

/// Takes the lock exclusively, waiting at most `repair_wait` while `keep_waiting()` holds (it
/// is asked between attempts); `Ok(None)` if it was not had in time. When `keep_waiting()`
/// turns false the caller waits like any first run: up to `timeout`.
pub(crate) fn lock_exclusive_within(
    root: &Dir,
    dir_name: &str,
    repair_wait: Duration,
    timeout: Duration,
    keep_waiting: impl Fn() -> bool,
) -> Result<Option<File>> {
    let deadline = Instant::now() + repair_wait;
    loop {
        if let Some(file) = lock(root, dir_name, LockKind::TryExclusive, Duration::ZERO)? {
            return Ok(Some(file));
        }
        if !keep_waiting() {
            return lock(root, dir_name, LockKind::Exclusive, timeout);
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Turns an exclusive lock into a shared one (others may use the bundle from now on).
pub(crate) fn downgrade(file: &File, root: &Dir, dir_name: &str, timeout: Duration) -> Result<()> {
    let path = root.join(lock_name(dir_name));
    let meta = file_meta(file).map_err(|e| Error::io("cannot read metadata of", &path, e))?;
    flock_within(file, true, &path, &meta, Some(timeout)).map(drop)
}

/// Opens (creating it `0600` if needed) a lock file and checks it is ours to use. On a
/// read-only cache (a bundle extracted ahead, then mounted read-only) an existing lock file is
/// opened for reading only: `flock` works on that too, and nothing there can change anyway.
fn open_lock_file(root: &Dir, name: &std::ffi::OsStr) -> Result<(File, Meta)> {
    let path = root.join(name);
    let refuse = |reason: String| Error::Cache {
        path: path.clone(),
        reason,
    };
    let file = match root.open_file(name, Open::ReadWriteCreate) {
        Ok(file) => file,
        Err(e) if is_symlink_error(&e) => {
            return Err(refuse(
                "the lock file is a symlink, which is never followed; remove it".into(),
            ))
        }
        Err(e) if is_unwritable(&e) => root
            .open_file(name, Open::Read)
            .map_err(|_| Error::io("cannot open lock file", &path, e))?,
        Err(e) => return Err(Error::io("cannot open lock file", &path, e)),
    };
    let meta = file_meta(&file).map_err(|e| Error::io("cannot read metadata of", &path, e))?;
    let me = super::current_uid();
    if meta.kind != Kind::File || meta.nlink != 1 {
        return Err(refuse(
            "the lock file is not a plain file with one name; remove it".into(),
        ));
    }
    if cfg!(unix) && meta.uid != me {
        return Err(refuse(format!(
            "the lock file is owned by uid {}, not by you (uid {me}); remove it",
            meta.uid
        )));
    }
    if meta.mode & 0o077 != 0 {
        if let Err(e) = set_private(&file) {
            // A read-only cache: nobody can add a reader to it either.
            tracing::debug!(lock = %path.display(), error = %e, "cannot make the lock file private");
        }
    }
    Ok((file, meta))
}

fn set_private(file: &File) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        Ok(())
    }
}

/// Locks `file`; `None` as `wait` means try once. `Ok(false)` only when trying once failed;
/// a wait that runs out is [`Error::LockTimeout`].
fn flock_within(
    file: &File,
    shared: bool,
    path: &PathBuf,
    meta: &Meta,
    wait: Option<Duration>,
) -> Result<bool> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        let tried = if shared {
            fs4::FileExt::try_lock_shared(file)
        } else {
            fs4::FileExt::try_lock(file)
        };
        match tried {
            Ok(()) => return Ok(true),
            Err(fs4::TryLockError::WouldBlock) => {}
            Err(fs4::TryLockError::Error(e)) => return Err(Error::io("cannot lock", path, e)),
        }
        let Some(wait) = wait else {
            return Ok(false);
        };
        let waited = started.elapsed();
        if waited >= wait {
            return Err(Error::LockTimeout {
                lock: path.clone(),
                waited,
                holder: holder(meta),
            });
        }
        std::thread::sleep(pause.min(wait - waited));
        pause = (pause * 2).min(Duration::from_millis(25));
    }
}

/// The process holding a lock on the file, from `/proc/locks` (Linux): matched by device
/// and inode, or by inode alone when the filesystem reports another device number there
/// (btrfs subvolumes, overlayfs) and only one lock has that inode.
fn holder(meta: &Meta) -> Option<u32> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    holder_in(&text, meta)
}

fn holder_in(text: &str, meta: &Meta) -> Option<u32> {
    let (major, minor) = dev_parts(meta.dev);
    let mut by_inode = Vec::new();
    for line in text.lines() {
        // `1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF`; `1: -> FLOCK ...` is a waiter.
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) == Some(&"->") {
            continue;
        }
        let (Some(pid), Some(id)) = (fields.get(4), fields.get(5)) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let mut id = id.split(':');
        let (Some(maj), Some(min), Some(ino)) = (id.next(), id.next(), id.next()) else {
            continue;
        };
        if ino.parse::<u64>() != Ok(meta.ino) {
            continue;
        }
        if u64::from_str_radix(maj, 16) == Ok(major) && u64::from_str_radix(min, 16) == Ok(minor) {
            return Some(pid);
        }
        by_inode.push(pid);
    }
    by_inode.dedup();
    (by_inode.len() == 1).then(|| by_inode[0])
}

/// Linux's encoding of a device number (what glibc's `major()`/`minor()` decode).
fn dev_parts(dev: u64) -> (u64, u64) {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff);
    (major, minor)
}

fn is_unwritable(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(
            e.raw_os_error(),
            Some(libc::EROFS | libc::EACCES | libc::EPERM)
        )
    }
    #[cfg(not(unix))]
    {
        e.kind() == io::ErrorKind::PermissionDenied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_read_from_proc_locks() {
        let meta = Meta {
            kind: Kind::File,
            uid: 0,
            gid: 0,
            mode: 0o600,
            dev: (0xfd << 8) | 1,
            ino: 1234,
            nlink: 1,
            len: 0,
            ctime: (0, 0),
        };
        let text = "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF\n\
                    1: -> FLOCK  ADVISORY  WRITE 77 fd:01:1234 0 EOF\n\
                    2: POSIX  ADVISORY  READ 99 00:2a:1234 0 EOF\n";
        assert_eq!(holder_in(text, &meta), Some(4242));
        let other_dev = Meta { dev: 5, ..meta };
        assert_eq!(
            holder_in(text, &other_dev),
            None,
            "two locks with that inode"
        );
        let text = "1: FLOCK  ADVISORY  WRITE 4242 00:2d:1234 0 EOF\n";
        assert_eq!(holder_in(text, &other_dev), Some(4242));
    }

    #[test]
    fn a_held_lock_times_out_naming_the_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Dir::open_path(tmp.path()).unwrap();
        let held = lock(&root, "app-1", LockKind::Exclusive, Duration::ZERO)
            .unwrap()
            .unwrap();
        // A lock taken through another open file description conflicts even in-process.
        let started = Instant::now();
        let err = lock(&root, "app-1", LockKind::Shared, Duration::from_millis(200)).unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(200));
        match &err {
            Error::LockTimeout { lock, holder, .. } => {
                assert_eq!(lock, &tmp.path().join("app-1.lock"));
                if cfg!(target_os = "linux") {
                    assert_eq!(*holder, Some(std::process::id()));
                }
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("app-1.lock"), "{err}");
        drop(held);
        assert!(lock(&root, "app-1", LockKind::Shared, Duration::ZERO)
            .unwrap()
            .is_some());
    }

    #[test]
    fn a_symlinked_or_foreign_lock_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Dir::open_path(tmp.path()).unwrap();
        let target = tmp.path().join("victim-file");
        #[cfg(unix)]
        std::os::unix::fs::symlink(&target, tmp.path().join("app-2.lock")).unwrap();
        let err = lock(&root, "app-2", LockKind::Shared, Duration::ZERO).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(!target.exists(), "nothing is created through the link");
        // An older runtime's 0644 lock file is made private.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let p = tmp.path().join("app-3.lock");
            std::fs::write(&p, "").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            lock(&root, "app-3", LockKind::Shared, Duration::ZERO).unwrap();
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
