//! Removing what is no longer trusted or used from a cache root: temporaries of killed
//! extractions, other versions nobody holds a lock on, and trash. Everything goes through a
//! rename to a trash name first, so a half-deleted directory never looks like a bundle.

use std::ffi::OsStr;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::dir::Dir;
use super::lock::{lock, LockKind};
use super::marker;

/// Removes leftovers of killed extractions of `dir_name` (`.tmp-<dir_name>-*`). Only call
/// with the exclusive lock of `dir_name` held: then none of them is in use.
pub(crate) fn remove_stale_temps(root: &Dir, dir_name: &str) {
    let prefix = format!(".tmp-{dir_name}-");
    for name in list(root) {
        if name.starts_with(&prefix) {
            discard(root, &name);
        }
    }
}

/// Renames `<root>/<name>` to a trash name, then deletes it, all relative to the held root.
/// A directory half-deleted by a crash is therefore never mistaken for a bundle. Errors are
/// logged, not returned: leftover trash costs disk space, never correctness.
pub(crate) fn discard(root: &Dir, name: &str) {
    let trash = format!(".trash-{}-{}", name.trim_start_matches('.'), unique());
    match root.rename(OsStr::new(name), OsStr::new(&trash)) {
        Ok(()) => remove_tree(root, &trash),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::debug!(dir = %root.join(name).display(), error = %e, "cannot move to trash");
        }
    }
}

fn remove_tree(root: &Dir, name: &str) {
    if let Err(e) = root.remove_tree(OsStr::new(name)) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::debug!(dir = %root.join(name).display(), error = %e, "cannot delete");
        }
    }
}

/// Removes the other versions of application `name` that nobody uses: `<name>-<16 hex>`
/// directories (and their lock files, temps) whose lock can be taken exclusively at once and
/// that the same program extracted (their `.pybundle/app` is `app`; a version without one,
/// from an older runtime, counts as the same program's). Another program that shares the
/// name keeps its cache. Returns the directories removed.
pub(crate) fn remove_other_versions(
    root: &Dir,
    name: &str,
    keep: &str,
    app: &[u8],
) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for entry in list(root) {
        let base = entry.strip_suffix(".lock").unwrap_or(&entry);
        if base != keep && is_version_of(base, name) {
            seen.insert(base.to_owned());
        } else if is_trash_of(&entry, name) {
            // A crash in the middle of a delete; nobody ever uses a trash directory.
            remove_tree(root, &entry);
        }
    }
    for other in seen {
        let lock = match lock(root, &other, LockKind::TryExclusive, Duration::ZERO) {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                tracing::debug!(bundle = %other, "in use; not removed");
                continue;
            }
            Err(e) => {
                tracing::debug!(bundle = %other, error = %e, "cannot lock; not removed");
                continue;
            }
        };
        match marker::open_bundle(root, &other) {
            Err(e) => {
                tracing::debug!(bundle = %other, error = %e, "not ours; not removed");
                continue;
            }
            Ok(Some(_)) => {
                if marker::app_of(root, &other).is_some_and(|a| a != app) {
                    tracing::debug!(bundle = %other, "another program's; not removed");
                    continue;
                }
                discard(root, &other);
                removed.push(root.join(&other));
            }
            // Nothing or something that is not a directory: cleaned up with the lock file.
            Ok(None) => discard(root, &other),
        }
        remove_stale_temps(root, &other);
        // Deleted while held: a process that opened it before sees the inode change and
        // retries on a fresh file (see `lock`).
        let _ = root.remove_file(OsStr::new(&format!("{other}.lock")));
        drop(lock);
    }
    removed
}

/// `<name>-<16 lowercase hex>`: the directory name of one version of `name`.
pub(super) fn is_version_of(base: &str, name: &str) -> bool {
    base.strip_prefix(name)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|id| {
            id.len() == 16 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
}

/// Whether `entry` is the trash of a version of `name`: `.trash-<name>-<id16>-<unique>` or
/// (a discarded temp) `.trash-tmp-<name>-<id16>-<tempfile suffix>-<unique>`.
pub(super) fn is_trash_of(entry: &str, name: &str) -> bool {
    let Some((base, _)) = entry
        .strip_prefix(".trash-")
        .and_then(|r| r.rsplit_once('-'))
    else {
        return false;
    };
    is_version_of(base, name)
        || base
            .strip_prefix("tmp-")
            .and_then(|t| t.rsplit_once('-'))
            .is_some_and(|(b, _)| is_version_of(b, name))
}

fn list(root: &Dir) -> Vec<String> {
    match root.list() {
        Ok(names) => names
            .into_iter()
            .filter_map(|n| n.into_string().ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A name part unique to this process and moment (for trash and temporary names).
pub(crate) fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{}x{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}
