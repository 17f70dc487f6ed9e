//! Collecting the archive's entries: sorted walks of the prefix and the scripts folder with
//! the exclude globs applied, plus the embedded `pybundle` Python package.

use anyhow::{Context as _, Result};
use globset::{Glob, GlobSet, GlobSetBuilder};
use pybundle_runtime::format::PYTHON_PKG_DIR;
use std::path::{Path, PathBuf};
use walkdir::WalkDir;

/// What one tar entry is made from.
pub enum Source {
    /// A directory.
    Dir,
    /// A file on disk.
    File(PathBuf),
    /// A symlink with this target.
    Symlink(PathBuf),
    /// Bytes compiled into cargo-pybundle.
    Embedded(&'static [u8]),
    /// Bytes made while packing (a rewritten `.pth` file).
    Bytes(Vec<u8>),
}

/// One tar entry to write.
pub struct Entry {
    /// Path inside the archive.
    pub path: String,
    /// Unix mode bits.
    pub mode: u32,
    /// Where the content comes from.
    pub source: Source,
    /// Owning package (index into the package list) for per-package sizes.
    pub owner: Option<usize>,
}

impl Entry {
    /// Size of the content, for the progress bar.
    pub fn size(&self) -> Option<u64> {
        match &self.source {
            Source::File(p) => fs_err::metadata(p).ok().map(|m| m.len()),
            Source::Embedded(b) => Some(b.len() as u64),
            Source::Bytes(b) => Some(b.len() as u64),
            _ => None,
        }
    }
}

/// A directory entry with mode 0755.
pub fn dir_entry(path: &str) -> Entry {
    Entry {
        path: path.to_owned(),
        mode: 0o755,
        source: Source::Dir,
        owner: None,
    }
}

/// Compiles the `exclude` patterns.
pub fn globs(patterns: &[String]) -> Result<GlobSet> {
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        let glob = Glob::new(p).with_context(|| {
            format!("`exclude` pattern `{p}` in [package.metadata.pybundle] is not a valid glob")
        })?;
        set.add(glob);
    }
    Ok(set.build()?)
}

/// Adds `root`'s contents under `into/`, sorted, skipping excluded paths (an excluded folder
/// is skipped whole). Returns what it left out for being no file, folder or symlink (a FIFO,
/// a socket, a device), for the caller to tell the user.
pub fn walk(
    root: &Path,
    into: &str,
    exclude: &GlobSet,
    out: &mut Vec<Entry>,
) -> Result<Vec<PathBuf>> {
    let mut special = Vec::new();
    let excluded = |rel: &str, is_dir: bool| {
        exclude.is_match(rel) || (is_dir && exclude.is_match(format!("{rel}/x")))
    };
    let walker = WalkDir::new(root)
        .min_depth(1)
        .sort_by_file_name()
        .follow_links(false);
    let mut it = walker.into_iter();
    while let Some(entry) = it.next() {
        let entry = entry.with_context(|| format!("reading {}", root.display()))?;
        let rel_path = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let rel = rel_path
            .to_str()
            .with_context(|| format!("{} is not a UTF-8 path", entry.path().display()))?
            .replace(std::path::MAIN_SEPARATOR, "/");
        let ft = entry.file_type();
        if excluded(&rel, ft.is_dir()) {
            if ft.is_dir() {
                it.skip_current_dir();
            }
            continue;
        }
        let meta = entry.path().symlink_metadata()?;
        let source = if ft.is_symlink() {
            Source::Symlink(fs_err::read_link(entry.path())?)
        } else if ft.is_dir() {
            Source::Dir
        } else if ft.is_file() {
            Source::File(entry.path().to_path_buf())
        } else {
            special.push(entry.path().to_path_buf());
            continue;
        };
        out.push(Entry {
            path: format!("{into}/{rel}"),
            mode: mode(&meta),
            source,
            owner: None,
        });
    }
    Ok(special)
}

#[cfg(unix)]
fn mode(meta: &std::fs::Metadata) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777
}

#[cfg(not(unix))]
fn mode(meta: &std::fs::Metadata) -> u32 {
    if meta.is_dir() {
        0o755
    } else {
        0o644
    }
}

/// The embedded `pybundle` Python package, under `lib/`, sorted.
pub fn embedded(dir: &'static include_dir::Dir<'static>, out: &mut Vec<Entry>) {
    let mut children: Vec<&'static include_dir::DirEntry<'static>> = dir.entries().iter().collect();
    children.sort_by_key(|e| e.path());
    for child in children {
        let path = format!(
            "{PYTHON_PKG_DIR}/{}",
            child.path().to_string_lossy().replace('\\', "/")
        );
        match child {
            // Bytecode a developer's run left in the source tree is not part of the package.
            include_dir::DirEntry::Dir(d) if d.path().ends_with("__pycache__") => {}
            include_dir::DirEntry::Dir(d) => {
                out.push(Entry {
                    path,
                    mode: 0o755,
                    source: Source::Dir,
                    owner: None,
                });
                embedded(d, out);
            }
            include_dir::DirEntry::File(f) => {
                if f.path().extension().is_some_and(|e| e == "pyc") {
                    continue;
                }
                out.push(Entry {
                    path,
                    mode: 0o644,
                    source: Source::Embedded(f.contents()),
                    owner: None,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A package tree as a developer's checkout may hold it: with a `__pycache__`.
    static WITH_BYTECODE: include_dir::Dir<'static> =
        include_dir::include_dir!("$CARGO_MANIFEST_DIR/src/pack/testdata");

    #[test]
    fn embedded_package_leaves_bytecode_out() {
        let mut out = Vec::new();
        embedded(&WITH_BYTECODE, &mut out);
        let paths: Vec<&str> = out.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                format!("{PYTHON_PKG_DIR}/pkg"),
                format!("{PYTHON_PKG_DIR}/pkg/mod.py")
            ]
        );
    }

    #[test]
    fn excluded_folders_are_skipped_whole() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/__pycache__")).unwrap();
        std::fs::write(root.join("a/__pycache__/m.cpython-311.pyc"), "x").unwrap();
        std::fs::write(root.join("a/m.py"), "x").unwrap();
        std::fs::write(root.join("b.pyc"), "x").unwrap();
        let set = globs(
            &crate::metadata::DEFAULT_EXCLUDE
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let mut out = Vec::new();
        walk(root, "env", &set, &mut out).unwrap();
        let paths: Vec<&str> = out.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["env/a", "env/a/m.py"]);

        // A user's list instead of the default: bytecode stays, and the patterns are relative
        // to the folder walked (`a/**`, not `env/a/**`).
        let users = globs(&["a/**".to_owned()]).unwrap();
        let mut out = Vec::new();
        walk(root, "env", &users, &mut out).unwrap();
        let paths: Vec<&str> = out.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["env/b.pyc"]);
    }

    #[test]
    fn a_socket_is_left_out_and_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.py"), "x").unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(dir.path().join("s.sock")).unwrap();
        let mut out = Vec::new();
        let special = walk(dir.path(), "scripts", &globs(&[]).unwrap(), &mut out).unwrap();
        let paths: Vec<&str> = out.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["scripts/a.py"]);
        assert_eq!(special, [dir.path().join("s.sock")]);
    }

    #[test]
    fn bad_glob_names_the_pattern() {
        let e = globs(&["a/[".to_owned()]).unwrap_err().to_string();
        assert!(e.contains("`a/[`"), "{e}");
    }
}
