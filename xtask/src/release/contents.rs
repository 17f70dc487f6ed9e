//! What the two `.crate` files hold: the file list with sizes (printed), and the checks that
//! they hold what a user's build needs and nothing that is only ours (tests, fixtures, large
//! files).

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// No single file in a package may be larger than this (the largest today is README.md).
const MAX_FILE: u64 = 256 * 1024;
/// Path parts that mark what a package must not carry.
const FORBIDDEN: &[&str] = &[
    "tests/",
    "benches/",
    "examples/",
    "fuzz/",
    "fixtures/",
    "testdata/",
    "__pycache__",
    ".pyc",
    "target/",
];

/// One file inside a `.crate`, path relative to the package root.
pub struct Entry {
    pub path: String,
    pub size: u64,
    pub data: Vec<u8>,
}

/// The files of a `.crate` (a gzipped tar whose entries sit under `<name>-<version>/`).
pub fn read(krate: &Path) -> Result<Vec<Entry>> {
    let file = fs_err::File::open(krate)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = Vec::new();
    for entry in archive
        .entries()
        .with_context(|| format!("reading {}", krate.display()))?
    {
        let mut entry = entry.with_context(|| format!("reading {}", krate.display()))?;
        if !entry.header().entry_type().is_file() {
            bail!(
                "{}: `{}` is not a regular file (a package holds files only)",
                krate.display(),
                entry.path()?.display()
            );
        }
        let full = entry.path()?.to_string_lossy().into_owned();
        let path = full
            .split_once('/')
            .map_or(full.as_str(), |(_, p)| p)
            .to_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        out.push(Entry {
            path,
            size: data.len() as u64,
            data,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Prints `cargo package --list` of the package with each file's size.
pub fn print(name: &str, krate: &Path, entries: &[Entry]) -> Result<()> {
    let packed = fs_err::metadata(krate)?.len();
    let total: u64 = entries.iter().map(|e| e.size).sum();
    eprintln!(
        "xtask: {name}: {} files, {:.1} KiB unpacked, {:.1} KiB as .crate",
        entries.len(),
        total as f64 / 1024.0,
        packed as f64 / 1024.0
    );
    for e in entries {
        eprintln!("  {:>8}  {}", e.size, e.path);
    }
    Ok(())
}

/// Checks one package: the files every package needs, the folder it must carry whole and
/// byte-identical (`carried`: path in the package → its source folder), nothing forbidden or
/// large.
pub fn check(name: &str, entries: &[Entry], root: &Path, carried: (&str, &Path)) -> Result<()> {
    let find = |path: &str| entries.iter().find(|e| e.path == path);
    let mut problems = Vec::new();
    for (path, source) in [
        ("Cargo.toml", None),
        ("Cargo.lock", None),
        ("README.md", Some(root.join("README.md"))),
        ("LICENSE-MIT", Some(root.join("LICENSE-MIT"))),
        ("LICENSE-APACHE", Some(root.join("LICENSE-APACHE"))),
        ("src/lib.rs", None),
    ] {
        match (find(path), source) {
            (None, _) => problems.push(format!("`{path}` is missing")),
            (Some(e), Some(source)) if e.data != fs_err::read(&source)? => {
                problems.push(format!("`{path}` differs from {}", source.display()))
            }
            _ => {}
        }
    }
    let (prefix, dir) = carried;
    let wanted = source_files(dir)?;
    if wanted.is_empty() {
        problems.push(format!("{} holds no files", dir.display()));
    }
    for rel in &wanted {
        let path = format!("{prefix}/{rel}");
        match find(&path) {
            None => problems.push(format!("`{path}` is missing")),
            Some(e) if e.data != fs_err::read(dir.join(rel))? => {
                problems.push(format!("`{path}` differs from {}", dir.join(rel).display()))
            }
            Some(_) => {}
        }
    }
    for e in entries {
        if let Some(bad) = FORBIDDEN.iter().find(|f| e.path.contains(*f)) {
            problems.push(format!("`{}` is packaged ({bad} is ours only)", e.path));
        }
        if e.size > MAX_FILE {
            problems.push(format!(
                "`{}` is {} KiB (over {} KiB)",
                e.path,
                e.size / 1024,
                MAX_FILE / 1024
            ));
        }
    }
    if !problems.is_empty() {
        bail!(
            "the {name} package is not what users need:\n  {}\n(its `include` list in \
             {name}/Cargo.toml decides what is packaged)",
            problems.join("\n  ")
        );
    }
    eprintln!(
        "xtask: {name}: licenses, README and all {} files of {} inside, nothing of ours",
        wanted.len(),
        dir.strip_prefix(root).unwrap_or(dir).display()
    );
    Ok(())
}

/// Files under `dir` (links followed, bytecode left out), `/`-separated relative paths.
fn source_files(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
    {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let rel: PathBuf = entry.path().strip_prefix(dir)?.to_path_buf();
        let rel = rel.to_string_lossy().replace('\\', "/");
        if entry.file_type().is_file() && !rel.contains("__pycache__") && !rel.ends_with(".pyc") {
            out.push(rel);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, data: &[u8]) -> Entry {
        Entry {
            path: path.into(),
            size: data.len() as u64,
            data: data.to_vec(),
        }
    }

    /// A workspace with the files every package carries and a two-file Python package.
    fn workspace() -> (tempfile::TempDir, Vec<Entry>) {
        let root = tempfile::tempdir().unwrap();
        let mut entries = vec![
            entry("Cargo.toml", b"[package]"),
            entry("Cargo.lock", b"# lock"),
            entry("src/lib.rs", b""),
        ];
        for (name, text) in [
            ("README.md", "readme"),
            ("LICENSE-MIT", "mit"),
            ("LICENSE-APACHE", "apache"),
        ] {
            std::fs::write(root.path().join(name), text).unwrap();
            entries.push(entry(name, text.as_bytes()));
        }
        std::fs::create_dir_all(root.path().join("rt/python/pkg/__pycache__")).unwrap();
        std::fs::write(
            root.path()
                .join("rt/python/pkg/__pycache__/a.cpython-311.pyc"),
            "x",
        )
        .unwrap();
        for (name, text) in [("a.py", "a"), ("b.py", "b")] {
            std::fs::write(root.path().join("rt/python/pkg").join(name), text).unwrap();
            entries.push(entry(&format!("python/pkg/{name}"), text.as_bytes()));
        }
        (root, entries)
    }

    fn check_in(root: &Path, entries: &[Entry]) -> Result<()> {
        check("rt", entries, root, ("python", &root.join("rt/python")))
    }

    #[test]
    fn a_complete_package_passes() {
        let (root, entries) = workspace();
        check_in(root.path(), &entries).unwrap();
    }

    #[test]
    fn missing_changed_forbidden_and_large_files_are_named() {
        let (root, mut entries) = workspace();
        entries.retain(|e| e.path != "python/pkg/b.py" && e.path != "LICENSE-MIT");
        entries
            .iter_mut()
            .find(|e| e.path == "python/pkg/a.py")
            .unwrap()
            .data = b"old".to_vec();
        entries.push(entry("tests/it/main.rs", b""));
        entries.push(entry("src/pack/testdata/x.pyc", b""));
        entries.push(entry("assets/big.bin", &vec![0; 300 * 1024]));
        let err = format!("{:#}", check_in(root.path(), &entries).unwrap_err());
        for want in [
            "`LICENSE-MIT` is missing",
            "`python/pkg/b.py` is missing",
            "`python/pkg/a.py` differs from",
            "`tests/it/main.rs` is packaged (tests/ is ours only)",
            "`src/pack/testdata/x.pyc` is packaged",
            "`assets/big.bin` is 300 KiB (over 256 KiB)",
            "its `include` list in rt/Cargo.toml",
        ] {
            assert!(err.contains(want), "{want}: {err}");
        }
    }
}
