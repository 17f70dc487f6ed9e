//! What the runtime reads back from a bundle directory: the completion marker
//! (`.pybundle/complete`) and the identity of the program that extracted it
//! (`.pybundle/app`). Both are read only after the directory and the file are checked to be
//! ours, never through a symlink, without blocking on a fifo, and at most [`MAX_META_FILE`]
//! bytes: a marker pointed at `/dev/zero` or a fifo is simply not a marker.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};

use super::dir::{file_meta, is_symlink_error, Dir, Kind, Meta, Open};
use crate::{Error, Result};

/// Largest marker or identity file read.
const MAX_META_FILE: u64 = 4096;

const META_DIR: &str = ".pybundle";
const MARKER: &str = "complete";
const APP: &str = "app";
const MANIFEST: &str = "manifest.json";

/// The bundle directory `dir_name` in `root`: `Ok(None)` when there is none, or when the
/// name is something else than a directory (never trusted; the slow path replaces it).
/// A directory owned by someone else is refused; one others may write to is not trusted.
pub(crate) fn open_bundle(root: &Dir, dir_name: &str) -> Result<Option<(Dir, Meta)>> {
    let dir = match root.open_dir(OsStr::new(dir_name)) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound || is_symlink_error(&e) => return Ok(None),
        Err(e) => return Err(Error::io("cannot open", root.join(dir_name), e)),
    };
    let meta = dir
        .meta()
        .map_err(|e| Error::io("cannot read metadata of", dir.path(), e))?;
    check_ours(&dir, &meta)?;
    if meta.mode & 0o022 != 0 {
        tracing::warn!(dir = %dir.path().display(), "writable by others: not trusted");
        return Ok(None);
    }
    Ok(Some((dir, meta)))
}

/// Refuses a directory owned by another user (they could swap its contents under us).
pub(crate) fn check_ours(dir: &Dir, meta: &Meta) -> Result<()> {
    let me = super::current_uid();
    if cfg!(unix) && meta.uid != me {
        return Err(Error::Cache {
            path: dir.path().to_path_buf(),
            reason: format!("it is owned by uid {}, not by you (uid {me})", meta.uid),
        });
    }
    Ok(())
}

/// The bundle directory if it holds a complete bundle whose marker says `marker` (the fast
/// path: a few opens and one small read).
pub(crate) fn complete(root: &Dir, dir_name: &str, marker: &[u8]) -> Result<Option<(Dir, Meta)>> {
    let Some((dir, meta)) = open_bundle(root, dir_name)? else {
        return Ok(None);
    };
    Ok((read_meta_file(&dir, MARKER).as_deref() == Some(marker)).then_some((dir, meta)))
}

/// The identity file of an extracted bundle: `Some(bytes)`, or `None` when it has none (an
/// older runtime's) or it cannot be read safely.
pub(crate) fn app_of(root: &Dir, dir_name: &str) -> Option<Vec<u8>> {
    let (dir, _) = open_bundle(root, dir_name).ok()??;
    read_meta_file(&dir, APP)
}

/// What identifies one extraction of the bundle: its marker's device, inode and change time
/// (a repair replaces the marker, and a new file never matches all of them).
pub(crate) fn identity(root: &Dir, dir_name: &str) -> Option<(u64, u64, i64, i64)> {
    let (dir, _) = open_bundle(root, dir_name).ok()??;
    let meta = dir
        .open_dir(OsStr::new(META_DIR))
        .ok()?
        .stat(OsStr::new(MARKER))
        .ok()?;
    Some((meta.dev, meta.ino, meta.ctime.0, meta.ctime.1))
}

/// Reads `.pybundle/<name>` of a bundle directory, if it is a small regular file of ours in a
/// directory of ours.
fn read_meta_file(bundle: &Dir, name: &str) -> Option<Vec<u8>> {
    let meta_dir = bundle.open_dir(OsStr::new(META_DIR)).ok()?;
    let me = super::current_uid();
    if cfg!(unix) && meta_dir.meta().ok()?.uid != me {
        return None;
    }
    let file = meta_dir.open_file(OsStr::new(name), Open::Read).ok()?;
    let meta = file_meta(&file).ok()?;
    if meta.kind != Kind::File || (cfg!(unix) && meta.uid != me) || meta.len > MAX_META_FILE {
        return None;
    }
    let mut out = Vec::new();
    file.take(MAX_META_FILE).read_to_end(&mut out).ok()?;
    Some(out)
}

/// Removes the completion marker (flushed to disk), so that no process trusts the directory
/// any more. Only call with the exclusive lock held.
pub(crate) fn remove_marker(root: &Dir, dir_name: &str) -> Result<()> {
    let Some((dir, _)) = open_bundle(root, dir_name)? else {
        return Ok(());
    };
    let meta_dir = match dir.open_dir(OsStr::new(META_DIR)) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("cannot open", dir.join(META_DIR), e)),
    };
    match meta_dir.remove_file(OsStr::new(MARKER)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("cannot remove", meta_dir.join(MARKER), e)),
    }
    meta_dir.sync();
    Ok(())
}

/// Writes `.pybundle/` into a freshly extracted directory: the manifest, the identity of the
/// program and, last and flushed to disk, the marker.
pub(crate) fn write_meta(tmp: &Dir, manifest: &[u8], app: &[u8], marker: &[u8]) -> Result<()> {
    let name = OsStr::new(META_DIR);
    tmp.mkdir(name, 0o700)
        .map_err(|e| Error::io("cannot create directory", tmp.join(META_DIR), e))?;
    let meta_dir = tmp
        .open_dir(name)
        .map_err(|e| Error::io("cannot open", tmp.join(META_DIR), e))?;
    write_new(&meta_dir, MANIFEST, manifest, false)?;
    write_new(&meta_dir, APP, app, false)?;
    write_new(&meta_dir, MARKER, marker, true)
}

fn write_new(dir: &Dir, name: &str, data: &[u8], sync: bool) -> Result<()> {
    let path = dir.join(name);
    let mut file: File = dir
        .open_file(OsStr::new(name), Open::CreateNew)
        .map_err(|e| Error::io("cannot create", &path, e))?;
    file.write_all(data)
        .and_then(|()| if sync { file.sync_all() } else { Ok(()) })
        .map_err(|e| Error::io("cannot write", &path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_that_is_a_link_a_fifo_or_huge_is_no_marker() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Dir::open_path(tmp.path()).unwrap();
        let bundle = tmp.path().join("b");
        std::fs::create_dir_all(bundle.join(".pybundle")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&bundle, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let marker = bundle.join(".pybundle/complete");
        std::fs::write(&marker, "id").unwrap();
        assert!(complete(&root, "b", b"id").unwrap().is_some());
        assert!(complete(&root, "b", b"other").unwrap().is_none());
        #[cfg(unix)]
        {
            std::fs::remove_file(&marker).unwrap();
            std::os::unix::fs::symlink("/dev/zero", &marker).unwrap();
            assert!(complete(&root, "b", b"id").unwrap().is_none());
            std::fs::remove_file(&marker).unwrap();
            let status = std::process::Command::new("mkfifo")
                .arg(&marker)
                .status()
                .unwrap();
            assert!(status.success());
            let started = std::time::Instant::now();
            assert!(complete(&root, "b", b"id").unwrap().is_none());
            assert!(
                started.elapsed() < std::time::Duration::from_secs(1),
                "no wait on a fifo"
            );
            std::fs::remove_file(&marker).unwrap();
        }
        std::fs::write(&marker, vec![b'x'; 1 << 20]).unwrap();
        assert!(complete(&root, "b", &vec![b'x'; 1 << 20])
            .unwrap()
            .is_none());
    }
}
