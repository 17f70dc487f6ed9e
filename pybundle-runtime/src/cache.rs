//! The cache directory: where bundles are extracted, and the locking that makes the first run
//! happen exactly once however many processes start together.
//!
//! Layout of a cache root:
//! ```text
//! <root>/<name>-<id16>/          a trusted bundle: holds .pybundle/complete = id + manifest hash
//! <root>/<name>-<id16>.lock      its lock file (shared = in use, exclusive = being changed)
//! <root>/.tmp-<name>-<id16>-*    an extraction in progress (or killed): never trusted
//! <root>/.trash-<name>-*         a directory being deleted: never trusted
//! ```
//!
//! A bundle directory is only ever created by a rename of a complete temporary directory and
//! only ever removed by a rename to a trash name, both under the exclusive lock, so a reader
//! holding the shared lock that sees the marker sees a whole bundle.
//!
//! The root is checked and opened once ([`trust`]); every later operation on it (locks,
//! markers, temporary directories, renames, deletes) is relative to that open directory
//! ([`dir`]). What runs from the bundle afterwards runs by path, which the checks of
//! [`trust`] make safe from other users.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

mod cleanup;
pub(crate) mod dir;
mod lock;
mod marker;
mod trust;

pub(crate) use cleanup::{discard, remove_other_versions, remove_stale_temps};
#[cfg(test)]
use cleanup::{is_trash_of, is_version_of};
pub(crate) use dir::Dir;
pub(crate) use lock::{downgrade, lock, lock_exclusive_within, LockKind};
pub(crate) use marker::{complete, identity, remove_marker, write_meta};
pub(crate) use trust::open_root;

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

pub(crate) fn current_uid() -> u32 {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    }
    #[cfg(not(unix))]
    {
        0
    }
}

/// Creates a fresh private temporary directory `.tmp-<dir_name>-<unique>` in the root and
/// returns its name.
pub(crate) fn make_temp(root: &Dir, dir_name: &str) -> Result<String> {
    loop {
        let name = format!(".tmp-{dir_name}-{}", cleanup::unique());
        match root.mkdir(std::ffi::OsStr::new(&name), 0o700) {
            Ok(()) => return Ok(name),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(Error::io(
                    "cannot create a temporary directory in",
                    root.path(),
                    e,
                ))
            }
        }
    }
}

/// Checks, before something is started from a ready bundle, that `<root>/<dir_name>` is still
/// the directory (`dev`, `ino`) that was made ready, on a path that still passes the trust
/// checks.
pub(crate) fn check_location(root: &Path, dir_name: &str, dev: u64, ino: u64) -> Result<()> {
    let path = root.join(dir_name);
    let moved = |reason: String| Error::Moved {
        path: path.clone(),
        reason,
    };
    let root = open_root(root, false).map_err(|e| moved(e.to_string()))?;
    let meta = root
        .stat(std::ffi::OsStr::new(dir_name))
        .map_err(|e| moved(format!("it cannot be found: {e}")))?;
    if (meta.dev, meta.ino) != (dev, ino) {
        return Err(moved("another directory is there now".into()));
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
                .map(|f| format!(", {} MiB free", mb(f)))
                .unwrap_or_default();
            format!(
                "no space left on its filesystem (the bundle needs about {} MiB{free}); free some \
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

/// Appends a line to the extraction log when the test hook is set.
pub(crate) fn log_extraction(dir_name: &str) {
    let Some(path) = std::env::var_os(EXTRACT_LOG_ENV).filter(|v| !v.is_empty()) else {
        return;
    };
    let line = format!("{dir_name} {}\n", std::process::id());
    let res = std::fs::OpenOptions::new()
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
        let err = open_root(&root, true).unwrap_err();
        assert!(
            matches!(err, Error::Cache { ref path, .. } if path == &root),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("`{}` is not a directory", file.display())),
            "{msg}"
        );
        assert!(msg.contains("set PYBUNDLE_CACHE_DIR"), "{msg}");
    }

    #[test]
    fn a_first_runs_temporary_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let root = open_root(&tmp.path().join("cache"), true).unwrap();
        let name = make_temp(&root, "app-0123456789abcdef").unwrap();
        assert!(name.starts_with(".tmp-app-0123456789abcdef-"), "{name}");
        let meta = std::fs::metadata(tmp.path().join("cache").join(&name)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o700);
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
