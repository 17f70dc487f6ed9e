//! The channel's `python` package, made from the machine's own CPython the way conda-build makes
//! one: copy the prefix (no site-packages contents, test suites, bytecode or static libraries),
//! put the 255-character placeholder where the original prefix was in text files, and point the
//! ELF RUNPATHs at `<placeholder>/lib` so the interpreter is a binary-prefix file.

use std::path::{Component, Path};
use std::process::Command;

use anyhow::{Context, Result};
use fs_err as fs;

use super::package::{self, Package, Record};
use super::placeholder;
use crate::tools::{self, HostPython};

/// Stage the host CPython under `work/python` and package it into `channel`.
pub fn build(
    host: &HostPython,
    patchelf: &Path,
    work: &Path,
    channel: &Path,
    build: &str,
) -> Result<Record> {
    let stage = work.join("python");
    copy_prefix(host, &stage)?;
    let prefix = host
        .prefix
        .to_str()
        .context("the CPython prefix is not valid UTF-8")?;
    let texts = relocate_text(&stage, prefix)?;
    let elves = relocate_elf(&stage, prefix, patchelf)?;
    eprintln!("xtask:   python: placeholder in {texts} text files and {elves} ELF RUNPATHs");
    let pkg = Package {
        name: "python",
        version: &host.version,
        build,
        subdir: "linux-64",
        depends: Vec::new(),
        noarch_python: None,
    };
    package::write(&pkg, &stage, channel)
}

/// Whether a path of the prefix (relative) belongs in the package.
fn keep(rel: &Path, short: &str) -> bool {
    let parts: Vec<&str> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    if parts.contains(&"__pycache__") || parts.last().is_some_and(|p| p.ends_with(".a")) {
        return false;
    }
    let stdlib = format!("python{short}");
    match parts.as_slice() {
        // Only CPython's own launchers: the rest of bin/ are scripts of site-packages.
        ["bin", name] => ["python", "pydoc", "idle", "2to3"]
            .iter()
            .any(|p| name.starts_with(p)),
        ["lib", lib, "site-packages", rest @ ..] if *lib == stdlib => {
            rest.is_empty() || rest == ["README.txt"]
        }
        ["lib", lib, rest @ ..] if *lib == stdlib => !matches!(
            rest,
            ["test", ..]
                | ["idlelib", "idle_test", ..]
                | ["tkinter", "test", ..]
                | ["lib2to3", "tests", ..]
                | ["unittest", "test", ..]
        ),
        _ => true,
    }
}

fn copy_prefix(host: &HostPython, stage: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let walk = walkdir::WalkDir::new(&host.prefix).sort_by_file_name();
    let prefix = &host.prefix;
    for item in walk.into_iter().filter_entry(|e| {
        e.path()
            .strip_prefix(prefix)
            .is_ok_and(|rel| keep(rel, &host.short))
    }) {
        let item = item.with_context(|| format!("reading {}", prefix.display()))?;
        let rel = item.path().strip_prefix(prefix)?;
        let dest = stage.join(rel);
        if item.file_type().is_dir() {
            fs::create_dir_all(&dest)?;
        } else if item.path_is_symlink() {
            fs::os::unix::fs::symlink(fs::read_link(item.path())?, &dest)?;
        } else {
            fs::copy(item.path(), &dest)?;
            // Writable, so relocation can rewrite it even when not running as root.
            let mode = fs::metadata(&dest)?.permissions().mode();
            fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode | 0o200))?;
        }
    }
    // CPython ships site-packages/README.txt; make sure the directory survives packaging.
    let site = stage
        .join("lib")
        .join(format!("python{}", host.short))
        .join("site-packages");
    fs::create_dir_all(&site)?;
    if !site.join("README.txt").exists() {
        fs::write(
            site.join("README.txt"),
            "This directory exists so that 3rd party packages can be installed here.\n",
        )?;
    }
    drop_dangling_links(stage)
}

/// Symlinks whose target was left out (or is a directory) cannot be described in paths.json.
fn drop_dangling_links(stage: &Path) -> Result<()> {
    for item in walkdir::WalkDir::new(stage) {
        let item = item?;
        if item.path_is_symlink() && !std::fs::metadata(item.path()).is_ok_and(|m| m.is_file()) {
            fs::remove_file(item.path())?;
        }
    }
    Ok(())
}

/// Replace the prefix with the placeholder in every text (NUL-free) file; returns the count.
fn relocate_text(stage: &Path, prefix: &str) -> Result<usize> {
    let finder = memchr::memmem::Finder::new(prefix.as_bytes());
    let placeholder = placeholder();
    let mut count = 0;
    for item in walkdir::WalkDir::new(stage) {
        let item = item?;
        if !item.file_type().is_file() {
            continue;
        }
        let bytes = fs::read(item.path())?;
        if memchr::memchr(0, &bytes).is_some() || finder.find(&bytes).is_none() {
            continue;
        }
        let mut out = Vec::with_capacity(bytes.len() + 256);
        let mut rest = &bytes[..];
        while let Some(at) = finder.find(rest) {
            out.extend_from_slice(&rest[..at]);
            out.extend_from_slice(placeholder.as_bytes());
            rest = &rest[at + prefix.len()..];
        }
        out.extend_from_slice(rest);
        fs::write(item.path(), out)?;
        count += 1;
    }
    Ok(count)
}

/// Point every ELF RUNPATH that names the prefix at the placeholder instead; returns the count.
///
/// Other copies of the prefix inside ELF files (libpython's compiled-in PREFIX) are shorter than
/// the placeholder, so they cannot become placeholders; CPython finds its home from the
/// executable's location, so they are left as they are.
fn relocate_elf(stage: &Path, prefix: &str, patchelf: &Path) -> Result<usize> {
    let placeholder = placeholder();
    let mut count = 0;
    for item in walkdir::WalkDir::new(stage).sort_by_file_name() {
        let item = item?;
        if !item.file_type().is_file() || !is_elf(item.path())? {
            continue;
        }
        let rpath = tools::output(
            Command::new(patchelf).arg("--print-rpath").arg(item.path()),
            "reading an ELF RUNPATH with patchelf",
        )?;
        if !rpath.contains(prefix) {
            continue;
        }
        // --set-rpath writes DT_RUNPATH (not DT_RPATH), which is what conda packages carry.
        let new = rpath.replace(prefix, &placeholder);
        tools::run(
            Command::new(patchelf)
                .arg("--set-rpath")
                .arg(&new)
                .arg(item.path()),
            "setting an ELF RUNPATH with patchelf",
        )?;
        count += 1;
    }
    Ok(count)
}

/// Whether a file is an ELF executable or shared object (object files have no RUNPATH).
fn is_elf(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut head = [0u8; 18];
    let mut file = fs::File::open(path)?;
    let read = file.read(&mut head)?;
    // e_type (little-endian, x86_64): 2 = ET_EXEC, 3 = ET_DYN.
    Ok(
        read == head.len()
            && head[..4] == *b"\x7fELF"
            && matches!(head[16], 2 | 3)
            && head[17] == 0,
    )
}

#[cfg(test)]
mod tests {
    use super::keep;
    use std::path::Path;

    #[test]
    fn keeps_the_stdlib_and_drops_tests_site_packages_and_foreign_scripts() {
        let k = |p: &str| keep(Path::new(p), "3.11");
        assert!(k("bin/python3.11"));
        assert!(k("bin/python3"));
        assert!(!k("bin/pip3.11"));
        assert!(!k("bin/aws"));
        assert!(k("lib/python3.11/json/__init__.py"));
        assert!(!k("lib/python3.11/json/__pycache__"));
        assert!(!k("lib/python3.11/test"));
        assert!(!k("lib/python3.11/unittest/test/test_case.py"));
        assert!(k("lib/python3.11/unittest/case.py"));
        assert!(k("lib/python3.11/site-packages"));
        assert!(k("lib/python3.11/site-packages/README.txt"));
        assert!(!k("lib/python3.11/site-packages/pip"));
        assert!(!k(
            "lib/python3.11/config-3.11-x86_64-linux-gnu/libpython3.11.a"
        ));
        assert!(k("lib/libpython3.11.so.1.0"));
    }
}
