//! The loop developers live in: edit a script, build again (the dev profile with incremental
//! compilation on, as cargo defaults it; and the release profile), run; and plain cargo
//! commands between bundled builds.

use crate::support::{example, package_files, shared_target, stderr, with_toolchain};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn built(out: &Output) -> PathBuf {
    assert!(out.status.success(), "{}", stderr(out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().expect("the binary's path on stdout"))
}

fn pybundle_build(tc: &testkit::Toolchain, manifest: &Path, release: bool) -> PathBuf {
    built(&pybundle_build_output(tc, manifest, release))
}

/// `cargo pybundle build -q` of the package into [`shared_target`], as a developer types it.
fn pybundle_build_output(tc: &testkit::Toolchain, manifest: &Path, release: bool) -> Output {
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
    cmd.output().unwrap()
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

/// A plain `cargo <args>` of the package at `manifest` in the shared target dir, as a developer
/// types it (incremental compilation as cargo defaults it).
fn plain_cargo(manifest: &Path, args: &[&str]) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(&args[..1])
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(shared_target())
        .args(&args[1..])
        .env_remove("CARGO_INCREMENTAL")
        .env_remove("PYBUNDLE_ARCHIVE");
    cmd
}

/// `cargo run --message-format=json`: the units cargo compiled (`fresh: false`) and the lines
/// the program printed.
fn cargo_run(manifest: &Path, name: &str) -> (Vec<String>, Vec<String>) {
    let out = plain_cargo(manifest, &["run", "--message-format=json", "--", name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut compiled = Vec::new();
    let mut printed = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(m) if m.get("reason").is_some() => {
                if m["reason"] == "compiler-artifact" && m["fresh"] == false {
                    compiled.push(m["target"]["name"].as_str().unwrap_or("?").to_owned());
                }
            }
            _ => printed.push(line.to_owned()),
        }
    }
    (compiled, printed)
}

/// Every file cargo-pybundle keeps for `package` in the shared target dir, with its size and
/// modification time, except the Python package development mode writes once.
fn kept_files(package: &str) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64, std::time::SystemTime)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                if entry.file_name() != "dev-lib" {
                    walk(&entry.path(), out);
                }
            } else {
                out.push((entry.path(), meta.len(), meta.modified().unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(&shared_target().join("pybundle").join(package), &mut out);
    out.sort();
    out
}

#[test]
fn cargo_run_and_test_use_the_environment_and_scripts_in_place() {
    let Some(tc) =
        testkit::toolchain("cargo_run_and_test_use_the_environment_and_scripts_in_place")
    else {
        return;
    };
    let (copy, manifest) = example("hello");
    // Before any cargo pybundle command: the error names the one command to run.
    let record = shared_target().join("pybundle/hello/dev.json");
    if record.exists() {
        std::fs::remove_file(&record).unwrap();
    }
    let early = plain_cargo(&manifest, &["run", "-q"]).output().unwrap();
    assert!(!early.status.success());
    let err = stderr(&early);
    assert!(
        err.contains("no development environment is recorded")
            && err.contains("run `cargo pybundle build` once"),
        "{err}"
    );

    let bundled = pybundle_build(&tc, &manifest, false);
    let cache = tempfile::tempdir().unwrap();
    assert_eq!(greeting(&bundled, cache.path()), "hello, loop");

    // Plain cargo run: the program has no bundle and runs the environment in place.
    let (_, printed) = cargo_run(&manifest, "dev");
    assert_eq!(
        printed.first().map(String::as_str),
        Some("hello, dev"),
        "{printed:?}"
    );
    let prefix = manifest.with_file_name(".pixi/envs/default");
    assert!(
        printed[1].contains(&*prefix.to_string_lossy()),
        "not the environment in place: {printed:?}"
    );
    // Plain cargo test: the example's test calls the same API.
    let test = plain_cargo(&manifest, &["test"]).output().unwrap();
    assert!(test.status.success(), "{}", stderr(&test));

    // An edit shows on the next cargo run: nothing compiled, no archive or key written.
    let before = kept_files("hello");
    assert!(
        before
            .iter()
            .any(|(p, ..)| p.ends_with("debug/bundle.tar.zst")),
        "{before:?}"
    );
    for (from, word) in [("hello", "howdy"), ("howdy", "bonjour")] {
        edit_greeting(&manifest, from, word);
        let (compiled, printed) = cargo_run(&manifest, "dev");
        assert_eq!(
            compiled,
            Vec::<String>::new(),
            "cargo run compiled something"
        );
        assert_eq!(printed.first().cloned(), Some(format!("{word}, dev")));
        assert_eq!(
            kept_files("hello"),
            before,
            "cargo run wrote into target/pybundle"
        );
    }

    // The program started directly, elsewhere, without cargo's variables: the same record.
    let plain = shared_target().join("debug/hello");
    let out = Command::new(&plain)
        .arg("elsewhere")
        .current_dir(cache.path())
        .env_remove("CARGO_PKG_NAME")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("bonjour, elsewhere"));

    // The environment gone: the error names the record and the one command to run.
    let envs = manifest.with_file_name(".pixi");
    std::fs::rename(&envs, copy.path().join("moved-pixi")).unwrap();
    let out = Command::new(&plain).output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("dev.json") && err.contains("run `cargo pybundle build` again"),
        "{err}"
    );
    std::fs::rename(copy.path().join("moved-pixi"), &envs).unwrap();
}

#[test]
fn a_plain_release_build_refuses_to_run_without_a_bundle() {
    let Some(_tc) = testkit::toolchain("a_plain_release_build_refuses_to_run_without_a_bundle")
    else {
        return;
    };
    let (_copy, manifest) = example("hello");
    let build = plain_cargo(&manifest, &["build", "--release"])
        .output()
        .unwrap();
    assert!(build.status.success(), "{}", stderr(&build));
    let out = Command::new(shared_target().join("release/hello"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("has no Python bundle") && err.contains("cargo pybundle build --release"),
        "{err}"
    );
}

#[test]
fn python_tests_of_a_script_run_with_the_environments_interpreter() {
    let Some(tc) =
        testkit::toolchain("python_tests_of_a_script_run_with_the_environments_interpreter")
    else {
        return;
    };
    let (_copy, manifest) = example("hello");
    let project = manifest.parent().unwrap();
    // An activation variable of the project's own, beside the ones pixi sets.
    let pixi_toml = project.join("pixi.toml");
    let text = std::fs::read_to_string(&pixi_toml).unwrap();
    std::fs::write(
        &pixi_toml,
        format!("{text}\n[activation.env]\nHELLO_ACTIVATED = \"from pixi.toml\"\n"),
    )
    .unwrap();
    let unittest = |expect_ok: bool| {
        let out = with_toolchain(&tc)
            .args(["python", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(shared_target())
            .args(["--", "-m", "unittest", "discover", "-v", "-s", "tests"])
            .current_dir(project)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.success(), expect_ok, "{err}");
        assert!(err.contains("test_greets_by_name"), "{err}");
        err
    };
    let passed = unittest(true);
    assert!(passed.contains("Ran 2 tests"), "{passed}");
    // The tests read the live script: an edit that breaks the greeting fails them.
    edit_greeting(&manifest, "hello", "howdy");
    let failed = unittest(false);
    assert!(failed.contains("howdy, unittest"), "{failed}");
    // And the command line runner gives the reply as JSON.
    let out = with_toolchain(&tc)
        .args(["python", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(shared_target())
        .args(["--", "-m", "pybundle", "run", "python/hello.py", "--input"])
        .arg(r#"{"name": "cli"}"#)
        .current_dir(project)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["greeting"], "howdy, cli");
    // The interpreter runs with the environment's activation variables.
    let out = with_toolchain(&tc)
        .args(["python", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(shared_target())
        .args(["--", "-c"])
        .arg("import os; print(os.environ['HELLO_ACTIVATED']); print(os.environ['CONDA_PREFIX'])")
        .current_dir(project)
        .env_remove("CONDA_PREFIX")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let prefix = project.join(".pixi/envs/default");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("from pixi.toml\n{}\n", prefix.display())
    );
}

#[test]
fn cargo_pybundle_test_runs_the_tests_against_the_bundle() {
    let Some(tc) = testkit::toolchain("cargo_pybundle_test_runs_the_tests_against_the_bundle")
    else {
        return;
    };
    let (_copy, manifest) = example("hello");
    // `test` as the package's first cargo-pybundle command: it records development mode too.
    let record = shared_target().join("pybundle/hello/dev.json");
    if record.exists() {
        std::fs::remove_file(&record).unwrap();
    }
    let cache = tempfile::tempdir().unwrap();
    let out = with_toolchain(&tc)
        .args(["test", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(shared_target())
        .env("PYBUNDLE_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("the_script_greets_by_name ... ok"), "{text}");
    assert!(text.contains("Testing"), "{text}");
    // The test read the packed archive: it was extracted into the cache, which development
    // mode never writes to.
    assert_eq!(bundle_dirs(cache.path()).len(), 1, "{text}");
    assert!(
        record.is_file(),
        "`cargo pybundle test` recorded no development mode"
    );
}

/// The folders of extracted bundles in the cache directory `cache`.
fn bundle_dirs(cache: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("env").is_dir())
        .collect()
}

/// The package's own files under `project` and their sha256 ([`package_files`]), without
/// Python's bytecode cache beside a script the program ran (README, development loop).
fn own_files(project: &Path) -> Vec<(String, String)> {
    package_files(project)
        .into_iter()
        .filter(|(f, _)| !f.contains("__pycache__/"))
        .collect()
}

#[test]
fn cargo_pybundle_run_first_bundles_each_executable_and_records_development_mode() {
    let Some(tc) = testkit::toolchain(
        "cargo_pybundle_run_first_bundles_each_executable_and_records_development_mode",
    ) else {
        return;
    };
    let (_copy, manifest) = example("hello");
    let project = manifest.parent().unwrap().to_path_buf();
    // A second executable in the package.
    std::fs::create_dir_all(project.join("src/bin")).unwrap();
    std::fs::copy(
        project.join("src/main.rs"),
        project.join("src/bin/hello-again.rs"),
    )
    .unwrap();
    let before = own_files(&project);
    let record = shared_target().join("pybundle/hello/dev.json");
    if record.exists() {
        std::fs::remove_file(&record).unwrap();
    }
    let run = |bin: Option<&str>, cache: &Path| {
        let mut cmd = with_toolchain(&tc);
        cmd.args(["run", "-q", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(shared_target())
            .env("PYBUNDLE_CACHE_DIR", cache)
            .env_remove("CARGO_INCREMENTAL");
        if let Some(bin) = bin {
            cmd.args(["--bin", bin]);
        }
        cmd.args(["--", "first"]).output().unwrap()
    };

    // `cargo pybundle run` as the first command: it runs the bundled program (extracted into
    // the cache) and records development mode for the plain cargo commands.
    let cache = tempfile::tempdir().unwrap();
    let out = run(Some("hello-again"), cache.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("hello, first\n"), "{said}");
    assert_eq!(bundle_dirs(cache.path()).len(), 1);
    assert!(
        record.is_file(),
        "`cargo pybundle run` recorded no development mode"
    );

    // `run --bin` built the one it runs; `build` writes a bundled copy of each executable,
    // prints each path, and each copy runs.
    let out = pybundle_build_output(&tc, &manifest, false);
    assert!(out.status.success(), "{}", stderr(&out));
    let bundled = shared_target().join("debug/bundled");
    let mut printed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    printed.sort();
    assert_eq!(
        printed,
        ["hello", "hello-again"].map(|n| bundled.join(n).display().to_string())
    );
    for name in ["hello", "hello-again"] {
        let cache = tempfile::tempdir().unwrap();
        assert_eq!(greeting(&bundled.join(name), cache.path()), "hello, loop");
    }
    // With two, `run` asks which one.
    let out = run(None, cache.path());
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("the package has several binaries; choose one with --bin")
            && err.contains("hello-again"),
        "{err}"
    );

    // Plain `cargo run`: development mode, from the record `run` wrote; nothing extracted.
    let empty = tempfile::tempdir().unwrap();
    let out = plain_cargo(&manifest, &["run", "-q", "--bin", "hello", "--", "dev"])
        .env("PYBUNDLE_CACHE_DIR", empty.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    let prefix = project.join(".pixi/envs/default");
    assert!(
        said.starts_with("hello, dev\n") && said.contains(&*prefix.to_string_lossy()),
        "{said}"
    );
    assert_eq!(
        crate::support::files_under(empty.path()),
        Vec::<String>::new(),
        "development mode wrote into the cache directory"
    );

    // `PYBUNDLE_ARCHIVE` set by hand: the plain program (no bundle appended) runs that archive.
    let archive = shared_target().join("pybundle/hello/debug/bundle.tar.zst");
    let cache = tempfile::tempdir().unwrap();
    let out = Command::new(shared_target().join("debug/hello"))
        .arg("archive")
        .env("PYBUNDLE_ARCHIVE", &archive)
        .env("PYBUNDLE_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with("hello, archive\n") && said.contains(&*cache.path().to_string_lossy()),
        "not the archive PYBUNDLE_ARCHIVE names: {said}"
    );

    // What cargo-pybundle wrote for the package: only what README lists.
    let kept = shared_target().join("pybundle/hello");
    let mut top: Vec<String> = std::fs::read_dir(&kept)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    let listed = [
        ".lock",
        "debug",
        "dev-lib",
        "dev.json",
        "pixi-config.toml",
        "python",
        "release",
    ];
    assert!(top.iter().all(|f| listed.contains(&f.as_str())), "{top:?}");
    assert_eq!(
        crate::support::files_under(&kept.join("debug")),
        ["bundle.tar.zst", "bundle.tar.zst.key"]
    );
    // And none of the package's own files changed, the pixi manifest with its `conda-forge`
    // channel included (the test channel came in through PYBUNDLE_CHANNEL_MIRRORS).
    assert_eq!(
        own_files(&project),
        before,
        "the package's files were edited"
    );
}

#[test]
fn a_build_reads_the_dependency_graph_once() {
    let Some(tc) = testkit::toolchain("a_build_reads_the_dependency_graph_once") else {
        return;
    };
    let (copy, manifest) = example("hello");
    // cargo-pybundle runs the cargo in `CARGO`: a script that logs each command line first.
    let log = copy.path().join("cargo-calls.log");
    let wrapper = copy.path().join("logging-cargo");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            Path::new(&cargo).display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    for _ in 0..2 {
        let out = with_toolchain(&tc)
            .args(["build", "-q", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(shared_target())
            .env("CARGO", &wrapper)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let calls = std::fs::read_to_string(&log).unwrap();
    let with_deps = calls
        .lines()
        .filter(|l| l.starts_with("metadata") && !l.contains("--no-deps"))
        .count();
    assert_eq!(with_deps, 2, "two builds:\n{calls}");
    assert!(calls.lines().any(|l| l.starts_with("build")), "{calls}");
}
