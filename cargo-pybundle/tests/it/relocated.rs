//! First run end to end (issue 4): bundles built by the real CLI from the test channel,
//! extracted by the runtime into cache paths shorter and much longer than the build prefix.
//! Afterwards no file names the build prefix or a placeholder, the interpreter's RUNPATH
//! names the cache, the channel's compiled program prints the cache path and the entry point
//! runs by its own shebang.

use crate::support::{build_binary, fixture, stderr, with_toolchain};
use pybundle_runtime::Bundle;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A cache root whose bundle prefix (`<root>/<name>-<id16>/env`) is about `len` bytes long.
fn cache_root(base: &Path, len: usize) -> PathBuf {
    let mut root = base.to_path_buf();
    while root.as_os_str().len() + "/relocs-0123456789abcdef/env".len() < len {
        root.push("deeper-cache-directory");
    }
    root
}

/// Every regular file of the extracted bundle at `dir` that contains `needle`; the runtime's
/// own `.pybundle/` (the manifest records the build prefix and placeholders on purpose) aside.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let walk = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| e.file_name() != ".pybundle");
    for entry in walk {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let data = std::fs::read(entry.path()).unwrap();
            if memchr::memmem::find(&data, needle).is_some() {
                hits.push(entry.path().to_path_buf());
            }
        }
    }
    hits
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn relocated_to_short_and_long_cache_paths() {
    let Some(tc) = testkit::toolchain("relocated_to_short_and_long_cache_paths") else {
        return;
    };
    let (tmp, pkg) = fixture("relocs");
    // The project deep enough that its environment's prefix is longer than the short cache path.
    let deep = tmp
        .path()
        .join("a-project-folder-deep-enough-for-a-long-build-prefix/relocs");
    std::fs::create_dir_all(deep.parent().unwrap()).unwrap();
    std::fs::rename(&pkg, &deep).unwrap();
    let pkg = deep;
    let out = with_toolchain(&tc)
        .args(["pack", "--manifest-path"])
        .arg(pkg.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(tmp.path().join("target"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let archive = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let manifest = pybundle_runtime::manifest_of(&std::fs::read(&archive).unwrap()).unwrap();
    let build_prefix = manifest.build_prefix.clone();
    let placeholders: std::collections::BTreeSet<&str> = manifest
        .relocations
        .iter()
        .map(|r| r.placeholder.as_str())
        .collect();
    assert!(
        placeholders.iter().any(|p| p.len() == 255),
        "{placeholders:?}"
    );

    let caches = tempfile::tempdir().unwrap();
    for (label, len) in [("short", 0), ("long", 200)] {
        let root = cache_root(&caches.path().join(label), len);
        let env = Bundle::from_file(&archive)
            .unwrap()
            .cache_dir(&root)
            .ready()
            .unwrap();
        let prefix = env.prefix().to_str().unwrap().to_owned();
        eprintln!(
            "{label}: prefix {} bytes (build prefix {} bytes)",
            prefix.len(),
            build_prefix.len()
        );
        if label == "short" {
            assert!(prefix.len() < build_prefix.len(), "{prefix}");
        } else {
            assert!(prefix.len() > build_prefix.len() + 100, "{prefix}");
        }

        // Nothing names the build machine's prefix or a placeholder any more.
        let mut stale = files_holding(env.root(), build_prefix.as_bytes());
        for placeholder in &placeholders {
            // pixi ≥ 0.70 records each file's `prefix_placeholder` in conda-meta: metadata
            // about the package, not a path anything opens.
            let holding = files_holding(env.root(), placeholder.as_bytes());
            stale.extend(holding.into_iter().filter(|f| {
                !(f.parent().is_some_and(|d| d.ends_with("conda-meta"))
                    && f.extension().is_some_and(|e| e == "json"))
            }));
        }
        assert!(
            stale.is_empty(),
            "{label}: files still naming the build: {stale:?}"
        );

        // The interpreter finds its libpython through a RUNPATH naming the cache.
        let python = env.interpreter().to_path_buf();
        let dynamic = run(Command::new("readelf").arg("-d").arg(&python));
        let runpath = dynamic
            .lines()
            .find(|l| l.contains("RUNPATH") || l.contains("RPATH"))
            .unwrap_or_else(|| panic!("no RUNPATH in {dynamic}"));
        assert!(
            runpath.contains(&format!("{prefix}/lib")),
            "{label}: {runpath}"
        );
        let said = run(env
            .python()
            .args(["-c", "import sys, ssl, sqlite3; print(sys.prefix)"]));
        assert_eq!(said.trim(), prefix, "{label}");

        // The channel's compiled program holds the prefix in a C string.
        let said = run(&mut Command::new(
            env.prefix().join("bin/pybundle-reloc-test"),
        ));
        assert!(
            said.contains(&format!("PREFIX={prefix}")),
            "{label}: {said}"
        );

        // The entry point runs by its own shebang (a /bin/sh trampoline past 127 bytes).
        let entry = env.prefix().join("bin/pybundle-hello");
        let first_line = std::fs::read_to_string(&entry).unwrap();
        let first_line = first_line.lines().next().unwrap_or_default().to_owned();
        if label == "long" {
            assert_eq!(first_line, "#!/bin/sh", "{label}");
        } else {
            assert_eq!(first_line, format!("#!{prefix}/bin/python3.11"), "{label}");
        }
        let said = run(&mut Command::new(&entry));
        assert!(said.contains(&prefix), "{label}: {said}");
    }
}

#[test]
fn hello_runs_from_short_and_long_cache_dirs() {
    let Some(tc) = testkit::toolchain("hello_runs_from_short_and_long_cache_dirs") else {
        return;
    };
    let (_copy, manifest) = crate::support::example("hello");
    let binary = build_binary(&tc, &manifest);
    let caches = tempfile::tempdir().unwrap();
    for (label, len) in [("short", 0), ("long", 220)] {
        let root = cache_root(&caches.path().join(label), len);
        let said = run(Command::new(&binary)
            .arg(label)
            .env("PYBUNDLE_CACHE_DIR", &root));
        assert!(said.contains(&format!("hello, {label}")), "{said}");
        assert!(said.contains(root.to_str().unwrap()), "{label}: {said}");
    }
}
