//! `cargo xtask deps`: every dependency a package declares is used by it. A normal dependency
//! must be named in the package's own code (`src/`, `build.rs`, fuzz targets); a dev-dependency
//! in its tests, benches, examples or `src/` (unit tests). "Named" means `lib::`, `use lib` or
//! `extern crate lib` outside comments and string literals, where `lib` is the dependency's
//! library name (`md-5` is `md5`, a renamed dependency its key) as `cargo metadata` reports it.
//! Part of `cargo xtask test`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use fs_err as fs;
use serde_json::Value;

use crate::tools;

/// Checks every package; fails naming each unused dependency and its Cargo.toml.
pub fn run() -> Result<()> {
    let root = tools::workspace_root();
    let mut unused = Vec::new();
    let mut packages = 0;
    for manifest in [root.join("Cargo.toml"), root.join("fuzz/Cargo.toml")] {
        let metadata = metadata(&manifest)?;
        let lib_names = lib_names(&metadata);
        for package in metadata["packages"].as_array().into_iter().flatten() {
            let Some(path) = package["manifest_path"].as_str().map(PathBuf::from) else {
                continue;
            };
            if !path.starts_with(&root) || path.starts_with(root.join("target")) {
                continue;
            }
            packages += 1;
            unused.extend(unused_in(package, &path, &lib_names)?);
        }
    }
    if unused.is_empty() {
        eprintln!("xtask: deps: every dependency of {packages} packages is used");
        return Ok(());
    }
    bail!(
        "unused dependencies (remove them from the Cargo.toml named):\n{}",
        unused.join("\n")
    )
}

fn metadata(manifest: &Path) -> Result<Value> {
    let out = Command::new(tools::cargo())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(manifest)
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        // --no-deps lists only the workspace; dependency names come from the lock below.
        bail!(
            "cargo metadata --manifest-path {} failed: {}",
            manifest.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut value: Value = serde_json::from_slice(&out.stdout)?;
    // The library names of every package in the lock file, for dependencies whose library is
    // not called like the package (`md-5` → `md5`). Not `--offline`: cargo reads every locked
    // package's manifest, other platforms' too, which a fresh machine's builds never fetched;
    // without them every such dependency would read as unused, so a failure here is an error.
    let full = Command::new(tools::cargo())
        .args(["metadata", "--format-version", "1"])
        .arg("--manifest-path")
        .arg(manifest)
        .output()
        .context("running cargo metadata")?;
    if !full.status.success() {
        bail!(
            "cargo metadata --manifest-path {} (for the dependencies' library names) failed; it \
             needs every locked package once (crates.io or a vendored source): {}",
            manifest.display(),
            String::from_utf8_lossy(&full.stderr)
        );
    }
    let full: Value = serde_json::from_slice(&full.stdout)?;
    value["all_packages"] = full["packages"].clone();
    Ok(value)
}

/// Package name → library name, from every package cargo knows.
fn lib_names(metadata: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for package in metadata["all_packages"].as_array().into_iter().flatten() {
        let lib = package["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| {
                t["kind"].as_array().is_some_and(|k| {
                    k.iter()
                        .any(|k| k == "lib" || k == "proc-macro" || k == "rlib")
                })
            });
        if let (Some(name), Some(lib)) = (package["name"].as_str(), lib) {
            if let Some(lib) = lib["name"].as_str() {
                out.insert(name.to_owned(), lib.replace('-', "_"));
            }
        }
    }
    out
}

/// `<Cargo.toml>: [<kind>] <name>` for each dependency of `package` its code never names.
fn unused_in(
    package: &Value,
    manifest: &Path,
    lib_names: &BTreeMap<String, String>,
) -> Result<Vec<String>> {
    let dir = manifest.parent().context("a Cargo.toml has a folder")?;
    let own = code(&[
        dir.join("src"),
        dir.join("build.rs"),
        dir.join("fuzz_targets"),
    ])?;
    let all = own.clone() + &code(&[dir.join("tests"), dir.join("benches"), dir.join("examples")])?;
    let mut out = Vec::new();
    for dep in package["dependencies"].as_array().into_iter().flatten() {
        let name = dep["name"].as_str().unwrap_or_default();
        let lib = match dep["rename"].as_str() {
            Some(rename) => rename.replace('-', "_"),
            None => lib_names
                .get(name)
                .cloned()
                .unwrap_or_else(|| name.replace('-', "_")),
        };
        let (kind, used) = match dep["kind"].as_str() {
            Some("dev") => ("dev-dependencies", names(&all, &lib)),
            Some("build") => ("build-dependencies", names(&own, &lib)),
            _ => ("dependencies", names(&own, &lib)),
        };
        if !used {
            out.push(format!("{}: [{kind}] {name}", manifest.display()));
        }
    }
    Ok(out)
}

/// All Rust source under `paths`, with comments and string literals blanked out.
fn code(paths: &[PathBuf]) -> Result<String> {
    let mut text = String::new();
    for path in paths {
        let files: Vec<PathBuf> = if path.is_file() {
            vec![path.clone()]
        } else if path.is_dir() {
            walkdir::WalkDir::new(path)
                .into_iter()
                .filter_map(|e| e.ok())
                .map(|e| e.into_path())
                .filter(|p| p.extension().is_some_and(|e| e == "rs"))
                .collect()
        } else {
            Vec::new()
        };
        for file in files {
            text.push_str(&strip(&fs::read_to_string(&file)?));
            text.push('\n');
        }
    }
    Ok(text)
}

/// `source` with comments and the contents of string literals replaced by spaces.
fn strip(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < chars.len() {
        let next = chars.get(i + 1).copied();
        match (chars[i], next) {
            ('/', Some('/')) => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            ('/', Some('*')) => {
                i += 2;
                while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                    i += 1;
                }
                i += 2;
            }
            ('\'', Some('"')) if chars.get(i + 2) == Some(&'\'') => i += 3,
            ('r', Some('#' | '"'))
                if !chars[..i]
                    .last()
                    .is_some_and(|c| c.is_alphanumeric() || *c == '_') =>
            {
                let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
                if chars.get(i + 1 + hashes) != Some(&'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                i += 2 + hashes;
                while i < chars.len() {
                    let closes = chars[i] == '"'
                        && chars[i + 1..]
                            .iter()
                            .take(hashes)
                            .filter(|c| **c == '#')
                            .count()
                            == hashes;
                    i += 1;
                    if closes {
                        i += hashes;
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            ('"', _) => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Whether `code` names the crate `lib`.
fn names(code: &str, lib: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    code.match_indices(lib).any(|(at, _)| {
        if code[..at].chars().next_back().is_some_and(is_ident) {
            return false;
        }
        let after = &code[at + lib.len()..];
        if after.starts_with("::") {
            return true;
        }
        let before = code[..at].trim_end();
        (before.ends_with("use") || before.ends_with("extern crate"))
            && !after.starts_with(is_ident)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crate_is_named_by_path_use_or_extern() {
        assert!(names("let x = fs_err::read(p);", "fs_err"));
        assert!(names("use serde::Deserialize;", "serde"));
        assert!(names("use memchr;", "memchr"));
        assert!(names("extern crate libc;", "libc"));
        assert!(!names("let my_serde = 1;", "serde"));
        assert!(!names("use serde_json::Value;", "serde"));
        assert!(!names("foo_hex::x()", "hex"));
    }

    #[test]
    fn comments_and_strings_do_not_count() {
        let code = strip(
            "// serde::x\nlet a = \"use serde::y\"; /* serde:: */ let b = r#\"serde::z\"#; let c = '\"';\nhex::encode(a)",
        );
        assert!(!names(&code, "serde"), "{code}");
        assert!(names(&code, "hex"), "{code}");
    }
}
