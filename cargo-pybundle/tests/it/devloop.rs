//! The loop developers live in: edit a script, build again (the dev profile with incremental
//! compilation on, as cargo defaults it; and the release profile), run; and plain cargo
//! commands between bundled builds.

use crate::support::{example, shared_target, stderr, with_toolchain};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn built(out: &Output) -> PathBuf {
    assert!(out.status.success(), "{}", stderr(out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().expect("the binary's path on stdout"))
}

fn pybundle_build(tc: &testkit::Toolchain, manifest: &Path, release: bool) -> PathBuf {
    let mut cmd = with_toolchain(tc);
    cmd.args(["build", "-q", "--manifest-path"])
        .arg(manifest)
        .arg("--target-dir")
        .arg(shared_target())
        // cargo's defaults: a test runner may have switched incremental compilation off.
        .env_remove("CARGO_INCREMENTAL");
    if release {
        cmd.arg("--release");
    }
    built(&cmd.output().unwrap())
}

/// The first line the hello example prints for `name`.
fn greeting(binary: &Path, cache: &Path) -> String {
    let out = Command::new(binary)
        .arg("loop")
        .env("PYBUNDLE_CACHE_DIR", cache)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn edit_greeting(manifest: &Path, from: &str, word: &str) {
    let script = manifest.with_file_name("python/hello.py");
    let text = std::fs::read_to_string(&script).unwrap();
    let edited = text.replace(
        &format!("f\"{from}, {{name}}\""),
        &format!("f\"{word}, {{name}}\""),
    );
    assert_ne!(text, edited, "hello.py changed shape");
    std::fs::write(&script, edited).unwrap();
}

fn script_edits_reach_the_next_build(test: &str, release: bool) {
    let Some(tc) = testkit::toolchain(test) else {
        return;
    };
    let (_copy, manifest) = example("hello");
    let cache = tempfile::tempdir().unwrap();
    let binary = pybundle_build(&tc, &manifest, release);
    assert_eq!(greeting(&binary, cache.path()), "hello, loop");
    for (from, word) in [("hello", "howdy"), ("howdy", "bonjour")] {
        edit_greeting(&manifest, from, word);
        let again = pybundle_build(&tc, &manifest, release);
        assert_eq!(again, binary);
        assert_eq!(greeting(&again, cache.path()), format!("{word}, loop"));
    }
}

#[test]
fn a_script_edit_reaches_the_next_dev_build() {
    script_edits_reach_the_next_build("a_script_edit_reaches_the_next_dev_build", false);
}

#[test]
fn a_script_edit_reaches_the_next_release_build() {
    script_edits_reach_the_next_build("a_script_edit_reaches_the_next_release_build", true);
}

/// `cargo <verb> --message-format=json` on the package: the names of the units cargo had to
/// compile (`fresh: false`).
fn compiled_units(manifest: &Path, verb: &str) -> Vec<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([verb, "--message-format=json", "--manifest-path"])
        .arg(manifest)
        .arg("--target-dir")
        .arg(shared_target())
        .env_remove("CARGO_INCREMENTAL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["fresh"] == false)
        .map(|m| m["target"]["name"].as_str().unwrap_or("?").to_owned())
        .collect()
}

#[test]
fn plain_cargo_commands_and_bundled_builds_share_everything() {
    let Some(tc) = testkit::toolchain("plain_cargo_commands_and_bundled_builds_share_everything")
    else {
        return;
    };
    let (_copy, manifest) = example("hello");
    let bundled = pybundle_build(&tc, &manifest, false);
    // Alternating plain commands and bundled builds compiles nothing (`cargo check` makes its
    // own metadata-only artifacts once, like it does in any project).
    assert_eq!(compiled_units(&manifest, "build"), Vec::<String>::new());
    compiled_units(&manifest, "check");
    for _ in 0..2 {
        assert_eq!(pybundle_build(&tc, &manifest, false), bundled);
        assert_eq!(compiled_units(&manifest, "check"), Vec::<String>::new());
        assert_eq!(compiled_units(&manifest, "build"), Vec::<String>::new());
    }
    // cargo's own binary is the plain program; the bundled one is where `build` said.
    let plain = bundled.parent().unwrap().parent().unwrap().join("hello");
    assert!(plain.is_file() && bundled.is_file());
    assert_ne!(
        std::fs::metadata(&plain).unwrap().len(),
        std::fs::metadata(&bundled).unwrap().len()
    );
    let cache = tempfile::tempdir().unwrap();
    assert_eq!(greeting(&bundled, cache.path()), "hello, loop");
}
