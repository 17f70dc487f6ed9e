//! The cache directory: where bundles are extracted, and the locking that makes the first run
//! happen exactly once however many processes start together.
//!
//! Layout of a cache root:
//! ```text
//! <root>/<name>-<id16>/          a trusted bundle: holds .pybundle/complete = full id
//! <root>/<name>-<id16>.lock      its lock file (shared = in use, exclusive = being changed)
//! <root>/.tmp-<name>-<id16>-*    an extraction in progress (or killed): never trusted
//! <root>/.trash-<name>-*         a directory being deleted: never trusted
//! ```
//!
//! A bundle directory is only ever created by a rename of a complete temporary directory and
//! only ever removed by a rename to a trash name, both under the exclusive lock, so a reader
//! holding the shared lock that sees the marker sees a whole bundle.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

mod cleanup;

pub(crate) use cleanup::{discard, remove_other_versions, remove_stale_temps};
#[cfg(test)]
use cleanup::{is_trash_of, is_version_of};

/// Environment variable that overrides every other choice of cache root.
pub(crate) const CACHE_DIR_ENV: &str = "PYBUNDLE_CACHE_DIR";

/// Test hook: when set to a file path, every extraction appends one line to that file, so
/// tests can count extractions across processes instead of assuming them.
pub(crate) const EXTRACT_LOG_ENV: &str = "PYBUNDLE_TEST_EXTRACT_LOG";

/// Picks the cache root: `PYBUNDLE_CACHE_DIR`, else the application's choice, else the
/// platform cache directory + `pybundle`. Always absolute (the path is written into files).
pub(crate) fn resolve_root(app_choice: Option<&Path>) -> Result<PathBuf> {
    let chosen = std::env::var_os(CACHE_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| app_choice.map(Path::to_path_buf))
        .or_else(|| dirs::cache_dir().map(|d| d.join("pybundle")));
    let Some(root) = chosen else {
        return Err(Error::Cache {
            path: PathBuf::from("pybundle"),
            reason: "this platform has no known cache directory".into(),
        });
    };
    std::path::absolute(&root).map_err(|e| Error::io("cannot make absolute", &root, e))
}

/// Creates the root (each missing component 0700) and checks that the current user owns it.
pub(crate) fn prepare_root(root: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut cur = root;
    while std::fs::metadata(cur).is_err() {
        missing.push(cur);
        match cur.parent() {
            Some(p) if !p.as_os_str().is_empty() => cur = p,
            _ => break,
        }
    }
    for dir in missing.into_iter().rev() {
        match std::fs::create_dir(dir) {
            Ok(()) => set_private(dir)?,
            // Another process made it first: it is checked below like any existing dir.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            // The usual cause is a read-only or missing home: say which directory failed, why,
            // and (through the variant's message) how to choose another one.
            Err(e) => {
                return Err(Error::Cache {
                    path: root.to_path_buf(),
                    reason: format!("cannot create `{}`: {e}", dir.display()),
                })
            }
        }
    }
    check_owned(root, false)
}

/// Refuses a directory that is not a directory or is owned by someone else (they could swap
/// its contents under us).
pub(crate) fn check_owned(path: &Path, no_follow: bool) -> Result<()> {
    let meta = if no_follow {
        std::fs::symlink_metadata(path)
    } else {
        std::fs::metadata(path)
    };
    let meta = meta.map_err(|e| Error::io("cannot read metadata of", path, e))?;
    let refuse = |reason: String| Error::Cache {
        path: path.to_path_buf(),
        reason,
    };
    if !meta.is_dir() {
        return Err(refuse("it is not a directory".into()));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = current_uid();
        if meta.uid() != me {
            return Err(refuse(format!(
                "it is owned by uid {}, not by you (uid {me})",
                meta.uid()
            )));
        }
    }
    Ok(())
}

#[cfg(unix)]
fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

pub(crate) fn set_private(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("cannot set permissions of", dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// How to take a lock.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockKind {
    Shared,
    Exclusive,
    /// Exclusive, or give up at once (`Ok(None)`) if anyone holds it.
    TryExclusive,
}

/// Opens and locks `<root>/<dir_name>.lock`.
///
/// Lock files of removed versions are deleted while held exclusively, so after locking we
/// check that the path still names the file we locked; if not, someone deleted it in between
/// and we start over on the new file.
pub(crate) fn lock(root: &Path, dir_name: &str, kind: LockKind) -> Result<Option<File>> {
    let path = root.join(format!("{dir_name}.lock"));
    loop {
        let file = open_lock_file(&path)?;
        let locked = match kind {
            LockKind::Shared => fs4::FileExt::lock_shared(&file).map(|()| true),
            LockKind::Exclusive => fs4::FileExt::lock(&file).map(|()| true),
            LockKind::TryExclusive => match fs4::FileExt::try_lock(&file) {
                Ok(()) => Ok(true),
                Err(fs4::TryLockError::WouldBlock) => Ok(false),
                Err(fs4::TryLockError::Error(e)) => Err(e),
            },
        };
        if !locked.map_err(|e| Error::io("cannot lock", &path, e))? {
            return Ok(None);
        }
        if same_file(&file, &path) {
            return Ok(Some(file));
        }
    }
}

/// Opens (creating it if needed) a lock file. On a read-only cache (a bundle extracted ahead,
/// then mounted read-only) an existing lock file is opened for reading only: `flock` works on
/// that too, and nothing there can be removed anyway.
fn open_lock_file(path: &Path) -> Result<File> {
    let rw = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path);
    match rw {
        Ok(file) => Ok(file),
        Err(e) if is_unwritable(&e) => {
            File::open(path).map_err(|_| Error::io("cannot open lock file", path, e))
        }
        Err(e) => Err(Error::io("cannot open lock file", path, e)),
    }
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

/// Takes the lock exclusively, waiting at most `timeout` while `keep_waiting()` holds (it is
/// asked between attempts); `Ok(None)` if it was not had in time. When `keep_waiting()` turns
/// false the wait is no longer bounded: the caller then waits like any first run.
pub(crate) fn lock_exclusive_within(
    root: &Path,
    dir_name: &str,
    timeout: std::time::Duration,
    keep_waiting: impl Fn() -> bool,
) -> Result<Option<File>> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(file) = lock(root, dir_name, LockKind::TryExclusive)? {
            return Ok(Some(file));
        }
        if !keep_waiting() {
            return lock(root, dir_name, LockKind::Exclusive);
        }
        if std::time::Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Turns an exclusive lock into a shared one (others may use the bundle from now on).
pub(crate) fn downgrade(file: &File, root: &Path, dir_name: &str) -> Result<()> {
    fs4::FileExt::lock_shared(file)
        .map_err(|e| Error::io("cannot lock", root.join(format!("{dir_name}.lock")), e))
}

fn same_file(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        path.exists()
    }
}

/// Whether `dir` holds a complete bundle with this id (the fast path: one small read).
pub(crate) fn is_complete(dir: &Path, id: &str) -> bool {
    match std::fs::read(dir.join(crate::format::MARKER_PATH)) {
        Ok(content) => content.trim_ascii() == id.as_bytes(),
        Err(_) => false,
    }
}

/// What identifies one extraction of `dir`: its marker file's device, inode and change time.
/// A repair replaces the marker, and a new file never matches all of them (an inode number
/// alone can be reused at once by the next file created).
pub(crate) fn identity(dir: &Path) -> Option<(u64, u64, i64, i64)> {
    let meta = std::fs::symlink_metadata(dir.join(crate::format::MARKER_PATH)).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec()))
    }
    #[cfg(not(unix))]
    {
        let modified = meta
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        Some((
            0,
            0,
            modified.as_secs() as i64,
            i64::from(modified.subsec_nanos()),
        ))
    }
}

/// Removes the completion marker (flushed to disk), so that no process trusts the directory
/// any more. Only call with the exclusive lock held.
pub(crate) fn remove_marker(dir: &Path) -> Result<()> {
    let path = dir.join(crate::format::MARKER_PATH);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("cannot remove", &path, e)),
    }
    if let Some(parent) = path.parent() {
        sync_dir(parent);
    }
    Ok(())
}

/// Turns an I/O error caused by the cache's filesystem (full, read-only, not writable) into
/// [`Error::CacheWrite`], which says which directory and what to do. `needed` is the bundle's
/// unpacked size, for the "no space" advice. Other errors pass through.
pub(crate) fn explain(err: Error, root: &Path, needed: u64) -> Error {
    let Error::Io {
        action,
        path,
        source,
    } = err
    else {
        return err;
    };
    let mb = |bytes: u64| bytes.div_ceil(1 << 20);
    let reason = match source.raw_os_error() {
        #[cfg(unix)]
        Some(libc::ENOSPC | libc::EDQUOT) => {
            let free = free_space(root)
                .map(|f| format!(", {} MB free", mb(f)))
                .unwrap_or_default();
            format!(
                "no space left on its filesystem (the bundle needs about {} MB{free}); free some \
                 space there, or set PYBUNDLE_CACHE_DIR to a directory on a filesystem with \
                 room. Nothing half-extracted was kept",
                mb(needed)
            )
        }
        #[cfg(unix)]
        Some(libc::EROFS) => "the filesystem is read-only; set PYBUNDLE_CACHE_DIR to a writable \
                              directory (or run once while this one is writable)"
            .into(),
        #[cfg(unix)]
        Some(libc::EACCES | libc::EPERM) => "permission denied; make the directory writable \
                                             for this user, or set PYBUNDLE_CACHE_DIR to a \
                                             directory you own"
            .into(),
        _ => {
            return Error::Io {
                action,
                path,
                source,
            }
        }
    };
    Error::CacheWrite {
        root: root.to_path_buf(),
        action,
        path,
        reason,
        source,
    }
}

/// Bytes available to this user on the filesystem of `dir`.
fn free_space(dir: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        // SAFETY: statvfs only writes into the struct we pass; the path is NUL-terminated.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return None;
        }
        #[allow(clippy::useless_conversion)] // the field types differ between platforms
        Some(u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize)))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

/// Writes the completion marker and flushes it to disk.
pub(crate) fn write_marker(dir: &Path, id: &str) -> Result<()> {
    let path = dir.join(crate::format::MARKER_PATH);
    let mut file = File::create(&path).map_err(|e| Error::io("cannot create", &path, e))?;
    file.write_all(id.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io("cannot write", &path, e))
}

/// Flushes a directory's entries (after a rename into it).
pub(crate) fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Err(e) = File::open(dir).and_then(|f| f.sync_all()) {
        tracing::debug!(dir = %dir.display(), error = %e, "cannot sync directory");
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Appends a line to the extraction log when the test hook is set.
pub(crate) fn log_extraction(dir_name: &str) {
    let Some(path) = std::env::var_os(EXTRACT_LOG_ENV).filter(|v| !v.is_empty()) else {
        return;
    };
    let line = format!("{dir_name} {}\n", std::process::id());
    let res = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = res {
        tracing::debug!(error = %e, "cannot write the extraction log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_uncreatable_root_names_the_directory_the_reason_and_the_variable() {
        // A file where a directory should be fails even for root (the tests run as root here,
        // so a read-only directory would not).
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("home");
        std::fs::write(&file, "").unwrap();
        let root = file.join(".cache").join("pybundle");
        let err = prepare_root(&root).unwrap_err();
        assert!(
            matches!(err, Error::Cache { ref path, .. } if path == &root),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&format!(
            "cannot create `{}`",
            file.join(".cache").display()
        )));
        assert!(msg.contains("Not a directory"), "{msg}");
        assert!(msg.contains("set PYBUNDLE_CACHE_DIR"), "{msg}");
    }

    #[test]
    fn version_names() {
        assert!(is_version_of("app-0123456789abcdef", "app"));
        assert!(!is_version_of("app-bar-0123456789abcdef", "app"));
        assert!(!is_version_of("app-0123456789abcdeg", "app"));
        assert!(!is_version_of("app-0123456789abcde", "app"));
        assert!(!is_version_of("apps-0123456789abcdef", "app"));
        assert!(is_trash_of(".trash-app-0123456789abcdef-12x0x5", "app"));
        assert!(is_trash_of(
            ".trash-tmp-app-0123456789abcdef-AbC12-1x2x3",
            "app"
        ));
        assert!(is_trash_of(".trash-tmp-0123456789abcdef-1x2x3", "tmp"));
        assert!(!is_trash_of(".trash-other-0123456789abcdef-1x2x3", "app"));
        assert!(!is_trash_of("app-0123456789abcdef", "app"));
    }
}
