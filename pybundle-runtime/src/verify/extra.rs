//! Files in the extracted bundle that its archive does not name, and which of them change
//! what Python runs. Adding a file is the easy way around a check that only compares the
//! files the archive has: a `.pth` line or a `sitecustomize` module runs at every start, a
//! module placed earlier on `sys.path` shadows the real one, and bytecode marked "unchecked"
//! is run without a look at its verified source.
//!
//! Flagged, wherever they are:
//! - `*.pth` files and anything named `sitecustomize.*` or `usercustomize.*`;
//! - outside `__pycache__`: Python sources and bytecode (`.py`, `.pyc`, `.pyo`), extension
//!   modules and shared libraries (`.so`, `.so.<version>`, `.pyd`, `.dylib`, `.dll`);
//! - inside `__pycache__`: bytecode of a source the archive ships whose header says Python
//!   must not check it against that source (PEP 552 "unchecked hash").
//!
//! Allowed: everything else, which is what programs legitimately leave there, foremost the
//! timestamp-checked bytecode Python itself writes into `__pycache__`. Only a directory walk
//! and, for bytecode in `__pycache__`, a 16-byte header read are spent per file.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Appends `<path> (<why>)` for each file under `dir` that the archive does not name (in
/// `named`) and that changes what Python runs.
pub(super) fn unnamed(dir: &Path, named: &HashSet<PathBuf>, damaged: &mut Vec<String>) {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(read) = std::fs::read_dir(dir.join(&rel)) else {
            continue;
        };
        let mut found = Vec::new();
        for entry in read.flatten() {
            let child = rel.join(entry.file_name());
            // The runtime's own directory; never from the archive, never on `sys.path`.
            if rel.as_os_str().is_empty() && entry.file_name() == ".pybundle" {
                continue;
            }
            // `file_type` does not follow symlinks: a planted link is judged by its name.
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if !named.contains(&child) {
                if let Some(why) = why_flagged(dir, &child, is_dir, named) {
                    found.push(format!("{} ({why})", child.display()));
                }
            }
            if is_dir {
                stack.push(child);
            }
        }
        found.sort();
        damaged.extend(found);
    }
}

/// Why an unnamed path changes what Python runs, or `None` when it does not.
fn why_flagged(
    dir: &Path,
    rel: &Path,
    is_dir: bool,
    named: &HashSet<PathBuf>,
) -> Option<&'static str> {
    let name = rel.file_name()?.to_string_lossy();
    let stem = name.split('.').next().unwrap_or_default();
    if matches!(stem, "sitecustomize" | "usercustomize") {
        return Some("not in the archive; Python imports it at every start");
    }
    if is_dir {
        return None;
    }
    if name.ends_with(".pth") {
        return Some("not in the archive; Python runs .pth files at every start");
    }
    let in_pycache = rel
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|p| p == "__pycache__");
    let ext = rel.extension().and_then(OsStr::to_str).unwrap_or_default();
    if in_pycache {
        if ext != "pyc" {
            return None;
        }
        let source = rel.parent()?.parent()?.join(format!("{stem}.py"));
        return (named.contains(&source) && unchecked_bytecode(&dir.join(rel))).then_some(
            "bytecode Python runs without checking it against its source, which the archive ships",
        );
    }
    let code = matches!(ext, "py" | "pyc" | "pyo" | "pyd" | "so" | "dylib" | "dll")
        || name.contains(".so.");
    code.then_some("not in the archive; a module or library Python or the loader may pick up")
}

/// Whether a `.pyc` file's header (PEP 552) marks it hash-based and not to be checked.
fn unchecked_bytecode(path: &Path) -> bool {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let Ok(file) = opts.open(path) else {
        // A planted symlink or fifo in `__pycache__` is nothing Python would have written.
        return true;
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return true;
    }
    let mut header = [0u8; 8];
    if file.take(8).read_exact(&mut header).is_err() {
        return false; // too short to be loaded: Python recompiles it
    }
    let flags = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    flags & 0b01 != 0 && flags & 0b10 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_flagged() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let named: HashSet<PathBuf> = ["scripts", "scripts/hello.py", "env", "env/lib"]
            .iter()
            .map(PathBuf::from)
            .collect();
        std::fs::create_dir_all(d.join("scripts/__pycache__")).unwrap();
        std::fs::create_dir_all(d.join("env/lib/site")).unwrap();
        std::fs::create_dir_all(d.join(".pybundle")).unwrap();
        let write = |p: &str, b: &[u8]| std::fs::write(d.join(p), b).unwrap();
        let pyc =
            |flags: u32| [&[0xa7, 0x0d, 0x0d, 0x0a][..], &flags.to_le_bytes(), &[0; 8]].concat();
        write("scripts/__pycache__/hello.cpython-311.pyc", &pyc(0)); // Python's own: allowed
        write("scripts/__pycache__/other.cpython-311.pyc", &pyc(1)); // no source: ignored
        write("env/lib/site/evil.pth", b"import os");
        write("env/lib/sitecustomize.py", b"");
        write("scripts/json.py", b"");
        write("env/lib/libssl.so.3", b"");
        write("env/lib/data.json", b"{}"); // data: allowed
        write(".pybundle/anything.py", b""); // the runtime's own
        let mut found = Vec::new();
        unnamed(d, &named, &mut found);
        found.sort();
        let paths: Vec<_> = found.iter().map(|f| f.split(' ').next().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "env/lib/libssl.so.3",
                "env/lib/site/evil.pth",
                "env/lib/sitecustomize.py",
                "scripts/json.py"
            ]
        );
        write("scripts/__pycache__/hello.cpython-311.pyc", &pyc(1));
        let mut found = Vec::new();
        unnamed(d, &named, &mut found);
        assert!(found
            .iter()
            .any(|f| f.starts_with("scripts/__pycache__/hello.cpython-311.pyc (bytecode")));
        // Checked hash-based bytecode is verified against the source by Python itself.
        write("scripts/__pycache__/hello.cpython-311.pyc", &pyc(3));
        let mut found = Vec::new();
        unnamed(d, &named, &mut found);
        assert_eq!(found.len(), 4, "{found:?}");
    }
}
