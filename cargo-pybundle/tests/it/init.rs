//! `cargo pybundle init`: the generated project builds with the real toolchain and runs, and
//! init never overwrites files silently.

use crate::support::{build_binary, cargo_pybundle, stderr};
use std::path::{Path, PathBuf};

fn runtime_path() -> PathBuf {
    testkit::workspace_root().join("pybundle-runtime")
}

/// `cargo pybundle init <dir> --runtime-path <this checkout's runtime>`, which must succeed.
fn init_depending_on_the_checkout(dir: &Path) {
    let out = cargo_pybundle()
        .arg("init")
        .arg(dir)
        .arg("--runtime-path")
        .arg(runtime_path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn init_project_builds_and_runs() {
    let Some(tc) = testkit::toolchain("init_project_builds_and_runs") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("word-count");
    init_depending_on_the_checkout(&dir);
    assert!(dir.join("python/word_count.py").is_file());
    let cargo_toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(cargo_toml.contains("name = \"word-count\""), "{cargo_toml}");
    // Inside a temp dir there is no enclosing workspace, but be explicit for safety.
    std::fs::write(
        dir.join("Cargo.toml"),
        format!("{cargo_toml}\n[workspace]\n"),
    )
    .unwrap();

    let binary = build_binary(&tc, &dir.join("Cargo.toml"));

    let cache = tempfile::tempdir().unwrap();
    let run = std::process::Command::new(&binary)
        .args(["three", "little", "words"])
        .env("PYBUNDLE_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{said}\n{}", stderr(&run));
    assert!(
        said.starts_with("3 words, counted by Python 3.11"),
        "{said}"
    );

    // After that one build, plain cargo run and cargo test work (development mode).
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let plain = |verb: &str, args: &[&str]| {
        let out = std::process::Command::new(&cargo)
            .args([verb, "-q", "--manifest-path"])
            .arg(dir.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(crate::support::shared_target())
            .args(args)
            .env_remove("PYBUNDLE_ARCHIVE")
            .output()
            .unwrap();
        assert!(out.status.success(), "cargo {verb}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = plain("run", &["--", "two", "words"]);
    assert!(
        said.starts_with("2 words, counted by Python 3.11"),
        "{said}"
    );
    let tested = plain("test", &[]);
    assert!(tested.contains("1 passed"), "{tested}");

    // The release build README shows: `target/release/bundled/word-count`, one file.
    let release = crate::support::with_toolchain(&tc)
        .args(["build", "-q", "--release", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(crate::support::shared_target())
        .output()
        .unwrap();
    assert!(release.status.success(), "{}", stderr(&release));
    let shipped = crate::support::shared_target().join("release/bundled/word-count");
    assert_eq!(
        String::from_utf8_lossy(&release.stdout).lines().last(),
        Some(&*shipped.to_string_lossy())
    );
    let elsewhere = tempfile::tempdir().unwrap();
    let run = std::process::Command::new(&shipped)
        .args(["shipped", "alone"])
        .current_dir(elsewhere.path())
        .env("PYBUNDLE_CACHE_DIR", elsewhere.path().join("cache"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{said}\n{}", stderr(&run));
    assert!(
        said.starts_with("2 words, counted by Python 3.11"),
        "{said}"
    );

    crate::support::a_failure_prints_the_report(&binary, cache.path(), "word-count");
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("app");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/main.rs"), "// mine\n").unwrap();
    let out = cargo_pybundle().arg("init").arg(&dir).output().unwrap();
    // README's exit codes: 1 for a refused overwrite.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("refusing to overwrite") && err.contains("main.rs"),
        "{err}"
    );
    assert!(err.contains("--force"), "{err}");
    // Nothing was written: not even the files that did not exist.
    assert_eq!(
        std::fs::read_to_string(dir.join("src/main.rs")).unwrap(),
        "// mine\n"
    );
    assert!(!dir.join("Cargo.toml").exists());

    let forced = cargo_pybundle()
        .args(["init", "--force"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(forced.status.success(), "{}", stderr(&forced));
    let main = std::fs::read_to_string(dir.join("src/main.rs")).unwrap();
    assert!(main.contains("Bundle::embedded()"), "{main}");
    let cargo_toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(
        cargo_toml.contains("pybundle-runtime = \"0.1\"")
            && cargo_toml.contains("[package.metadata.pybundle]"),
        "{cargo_toml}"
    );
    let pixi = std::fs::read_to_string(dir.join("pixi.toml")).unwrap();
    assert!(pixi.contains("python = \"3.11.*\""), "{pixi}");
}

/// `--name` chooses the package name instead of the folder's: the package cargo reads from
/// the Cargo.toml, the pixi workspace, and the script `main.rs` runs.
#[test]
fn init_name_chooses_the_package_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("the-folder");
    let out = cargo_pybundle()
        .arg("init")
        .arg(&dir)
        .args(["--name", "other-app", "--runtime-path"])
        .arg(runtime_path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let manifest = dir.join("Cargo.toml");
    let cargo_toml = std::fs::read_to_string(&manifest).unwrap();
    // No enclosing workspace is looked for.
    std::fs::write(&manifest, format!("{cargo_toml}\n[workspace]\n")).unwrap();
    let metadata = cargo_metadata::MetadataCommand::new()
        .manifest_path(&manifest)
        .no_deps()
        .other_options(vec!["--offline".to_owned()])
        .exec()
        .unwrap();
    let names: Vec<String> = metadata
        .packages
        .iter()
        .map(|p| p.name.to_string())
        .collect();
    assert_eq!(names, ["other-app"]);
    let pixi = std::fs::read_to_string(dir.join("pixi.toml")).unwrap();
    assert!(pixi.contains("name = \"other-app\""), "{pixi}");
    assert!(dir.join("python/other_app.py").is_file());
    let main = std::fs::read_to_string(dir.join("src/main.rs")).unwrap();
    assert!(main.contains(".script(\"other_app\")"), "{main}");
    for file in ["Cargo.toml", "pixi.toml", "src/main.rs"] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(
            !text.contains("the-folder") && !text.contains("the_folder"),
            "{text}"
        );
    }
}

/// README's list of what `init` writes, the host's conda platform in pixi.toml and the
/// `--runtime-path` dependency, without building anything.
#[test]
fn init_writes_every_file_of_the_template() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("word-count");
    init_depending_on_the_checkout(&dir);
    assert_eq!(
        crate::support::files_under(&dir),
        [
            ".gitignore",
            "Cargo.toml",
            "pixi.toml",
            "python/word_count.py",
            "src/main.rs"
        ]
    );
    let platform = cargo_pybundle::pixi::host_platform().expect("a known conda platform");
    let pixi = std::fs::read_to_string(dir.join("pixi.toml")).unwrap();
    assert!(
        pixi.contains(&format!("platforms = [\"{platform}\"]")),
        "{pixi}"
    );
    let cargo_toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let dependency = format!(
        "pybundle-runtime = {{ path = \"{}\" }}",
        runtime_path().display()
    );
    assert!(cargo_toml.contains(&dependency), "{cargo_toml}");
}
