//! Removing what is no longer trusted or used from a cache root: temporaries of killed
//! extractions, other versions nobody holds a lock on, and trash. Everything goes through a
//! rename to a trash name first, so a half-deleted directory never looks like a bundle.

use std::io;
use std::path::{Path, PathBuf};

use super::{lock, set_private, LockKind};

/// Removes leftovers of killed extractions of `dir_name` (`.tmp-<dir_name>-*`). Only call
/// with the exclusive lock of `dir_name` held: then none of them is in use.
pub(crate) fn remove_stale_temps(root: &Path, dir_name: &str) {
    let prefix = format!(".tmp-{dir_name}-");
    for name in list(root) {
        if name.starts_with(&prefix) {
            discard(root, &name);
        }
    }
}

/// Renames `<root>/<name>` to a trash name, then deletes it. A directory half-deleted by a
/// crash is therefore never mistaken for a bundle. Errors are logged, not returned: leftover
/// trash costs disk space, never correctness.
pub(crate) fn discard(root: &Path, name: &str) {
    let from = root.join(name);
    let trash = root.join(format!(
        ".trash-{}-{}",
        name.trim_start_matches('.'),
        unique()
    ));
    let target = match std::fs::rename(&from, &trash) {
        Ok(()) => trash,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::debug!(dir = %from.display(), error = %e, "cannot move to trash");
            return;
        }
    };
    remove_tree(&target);
}

/// Deletes a tree, making read-only directories writable on the way (`remove_dir_all` alone
/// cannot empty a 0555 directory as a normal user).
fn remove_tree(path: &Path) {
    if std::fs::remove_dir_all(path).is_ok() {
        return;
    }
    #[cfg(unix)]
    for entry in walk_dirs(path) {
        let _ = set_private(&entry);
    }
    if let Err(e) = std::fs::remove_dir_all(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::debug!(dir = %path.display(), error = %e, "cannot delete");
        }
    }
}

#[cfg(unix)]
fn walk_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let _ = set_private(&out[i]);
        if let Ok(rd) = std::fs::read_dir(&out[i]) {
            let subdirs: Vec<PathBuf> = rd
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect();
            out.extend(subdirs);
        }
        i += 1;
    }
    out
}

/// Removes the other versions of application `name` that nobody uses: `<name>-<16 hex>`
/// directories (and their lock files, temps) whose lock can be taken exclusively at once.
/// Returns the directories removed.
pub(crate) fn remove_other_versions(root: &Path, name: &str, keep: &str) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for entry in list(root) {
        let base = entry.strip_suffix(".lock").unwrap_or(&entry);
        if base != keep && is_version_of(base, name) {
            seen.insert(base.to_owned());
        } else if is_trash_of(&entry, name) {
            // A crash in the middle of a delete; nobody ever uses a trash directory.
            remove_tree(&root.join(&entry));
        }
    }
    for other in seen {
        let lock = match lock(root, &other, LockKind::TryExclusive) {
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
        if root.join(&other).exists() {
            discard(root, &other);
            removed.push(root.join(&other));
        }
        remove_stale_temps(root, &other);
        // Deleted while held: a process that opened it before sees the inode change and
        // retries on a fresh file (see `lock`).
        let _ = std::fs::remove_file(root.join(format!("{other}.lock")));
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

fn list(root: &Path) -> Vec<String> {
    match std::fs::read_dir(root) {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// A name part unique to this process and moment (for trash names).
fn unique() -> String {
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
