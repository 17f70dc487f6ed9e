//! Version skew between the CLI and the program's pybundle-runtime: a runtime that does not
//! read the bundle format this CLI writes is refused at build time (exit 3), before pixi runs,
//! with both versions named and what to change; a matching one passes.
//!
//! The runtimes here are small stand-ins named `pybundle-runtime` that declare other formats
//! in `[package.metadata.pybundle-runtime]`, as an older or newer release would.

use std::path::{Path, PathBuf};

use pybundle_runtime::format::FORMAT_VERSION;

use crate::support::{cargo_pybundle, fixture, stderr, with_toolchain};

const CLI: &str = env!("CARGO_PKG_VERSION");

/// A stand-in `pybundle-runtime` crate at `dir`; `metadata` is the body of its
/// `[package.metadata.pybundle-runtime]` table (`None`: no table).
fn fake_runtime(dir: &Path, version: &str, metadata: Option<&str>) -> PathBuf {
    std::fs::create_dir_all(dir.join("python/pybundle")).unwrap();
    std::fs::write(dir.join("python/pybundle/__init__.py"), "").unwrap();
    std::fs::write(dir.join("lib.rs"), "").unwrap();
    let mut toml = format!(
        "[package]\nname = \"pybundle-runtime\"\nversion = \"{version}\"\nedition = \"2021\"\n\n\
         [lib]\npath = \"lib.rs\"\n\n[features]\ndefault = [\"embed\"]\nembed = []\n"
    );
    if let Some(body) = metadata {
        toml.push_str(&format!("\n[package.metadata.pybundle-runtime]\n{body}\n"));
    }
    std::fs::write(dir.join("Cargo.toml"), toml).unwrap();
    dir.to_path_buf()
}

/// A program depending on the runtime at `runtime` with `spec` added to the dependency
/// (e.g. `default-features = false`); its own workspace, a scripts folder and a pixi.toml
/// (read before pixi is looked for).
fn app(dir: &Path, runtime: Option<(&Path, &str)>) -> PathBuf {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::create_dir_all(dir.join("python")).unwrap();
    std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(
        dir.join("pixi.toml"),
        "[workspace]\nname = \"skewapp\"\nchannels = [\"conda-forge\"]\nplatforms = [\"linux-64\"]\n",
    )
    .unwrap();
    let dep = runtime.map_or(String::new(), |(path, spec)| {
        format!(
            "pybundle-runtime = {{ path = {:?}{spec} }}\n",
            path.to_str().unwrap()
        )
    });
    let manifest = dir.join("Cargo.toml");
    std::fs::write(
        &manifest,
        format!(
            "[package]\nname = \"skewapp\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [workspace]\n\n[dependencies]\n{dep}\n[package.metadata.pybundle]\n"
        ),
    )
    .unwrap();
    manifest
}

/// `cargo pybundle build` of `manifest` with a pixi that does not exist: exit code and stderr.
fn build(manifest: &Path) -> (Option<i32>, String) {
    let out = cargo_pybundle()
        .args(["build", "--manifest-path"])
        .arg(manifest)
        .args(["--pixi", "/nonexistent/pixi"])
        .output()
        .unwrap();
    (out.status.code(), stderr(&out))
}

fn refused(runtime_version: &str, formats: &str) -> (String, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let rt = fake_runtime(
        &tmp.path().join("rt"),
        runtime_version,
        Some(&format!("bundle-formats = {formats}")),
    );
    let manifest = app(&tmp.path().join("app"), Some((&rt, "")));
    let (code, err) = build(&manifest);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("invalid configuration"), "{err}");
    // Refused before pixi: the nonexistent pixi was never looked for.
    assert!(!err.contains("/nonexistent/pixi"), "{err}");
    assert!(
        err.contains(&format!(
            "cargo-pybundle {CLI} writes bundle format {FORMAT_VERSION}, but this program's \
             pybundle-runtime {runtime_version} ({}) reads format",
            rt.join("Cargo.toml").display()
        )),
        "{err}"
    );
    assert!(err.contains("the program would refuse its bundle"), "{err}");
    (err, tmp)
}

#[test]
fn cli_newer_than_the_runtime() {
    let older = FORMAT_VERSION - 1;
    let (err, tmp) = refused("0.0.9", &format!("[{older}]"));
    assert!(err.contains(&format!("reads format {older} only")), "{err}");
    let manifest = tmp.path().join("app/Cargo.toml");
    let want = format!(
        "Update the program's runtime: `pybundle-runtime = \"0.1\"` in {} (then `cargo update -p \
         pybundle-runtime`); or build with the cargo-pybundle of its release: `cargo install \
         cargo-pybundle --version 0.0.9 --locked`",
        manifest.display()
    );
    assert!(err.contains(&want), "{err}");
}

#[test]
fn cli_older_than_the_runtime() {
    let newer = FORMAT_VERSION + 1;
    let (err, _tmp) = refused("0.9.0", &format!("[{newer}]"));
    assert!(err.contains(&format!("reads format {newer} only")), "{err}");
    assert!(
        err.contains(
            "Install the cargo-pybundle of the runtime's release: `cargo install cargo-pybundle \
             --version 0.9.0 --locked`"
        ),
        "{err}"
    );
}

#[test]
fn a_runtime_reading_several_formats_including_ours_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let formats = format!(
        "bundle-formats = [{FORMAT_VERSION}, {}]",
        FORMAT_VERSION + 1
    );
    let rt = fake_runtime(&tmp.path().join("rt"), "0.2.0", Some(&formats));
    let (code, err) = build(&app(&tmp.path().join("app"), Some((&rt, ""))));
    // Past the check, the next step fails: the pixi that does not exist (exit 4).
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("/nonexistent/pixi"), "{err}");
}

#[test]
fn the_workspace_runtime_reads_this_cli_format() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pybundle-runtime");
    let (code, err) = build(&app(tmp.path(), Some((&rt, ""))));
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("/nonexistent/pixi"), "{err}");
}

#[test]
fn a_runtime_declaring_no_formats_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = fake_runtime(&tmp.path().join("rt"), "0.1.0", None);
    let (code, err) = build(&app(&tmp.path().join("app"), Some((&rt, ""))));
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("pybundle-runtime 0.1.0 (")
            && err.contains("does not declare which bundle formats it reads"),
        "{err}"
    );
}

#[test]
fn a_runtime_without_embed_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let formats = format!("bundle-formats = [{FORMAT_VERSION}]");
    let rt = fake_runtime(&tmp.path().join("rt"), "0.1.0", Some(&formats));
    let manifest = app(
        &tmp.path().join("app"),
        Some((&rt, ", default-features = false")),
    );
    let (code, err) = build(&manifest);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("built without its `embed` feature"), "{err}");
    assert!(err.contains(&manifest.display().to_string()), "{err}");
}

#[test]
fn a_program_without_the_runtime_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = app(tmp.path(), None);
    let (code, err) = build(&manifest);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "package `skewapp` does not depend on pybundle-runtime, so the program can neither \
             contain nor run a bundle; add `pybundle-runtime = \"0.1\"` to [dependencies] in {}",
            manifest.display()
        )),
        "{err}"
    );
}

/// The runtime's declaration matches its code: it reads no format newer than the one it
/// defines (its manifest check refuses those at run time) and declares that one.
#[test]
fn the_runtime_declares_the_format_it_defines() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pybundle-runtime/Cargo.toml");
    let doc: toml_edit::DocumentMut = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    let formats: Vec<i64> = doc["package"]["metadata"]["pybundle-runtime"]["bundle-formats"]
        .as_array()
        .expect("bundle-formats is an array")
        .iter()
        .map(|v| v.as_integer().unwrap())
        .collect();
    assert_eq!(
        formats.iter().max(),
        Some(&i64::from(FORMAT_VERSION)),
        "{formats:?}"
    );
}

/// The archive's `lib/pybundle` is the program's runtime's own Python half, not this CLI's
/// copy; a change there repacks. A package without the runtime gets this CLI's copy, said so.
#[test]
fn the_python_half_comes_from_the_programs_runtime() {
    let Some(tc) = testkit::toolchain("the_python_half_comes_from_the_programs_runtime") else {
        return;
    };
    let (tmp, pkg) = fixture("relocs");
    let manifest = pkg.join("Cargo.toml");
    let target = tmp.path().join("target");
    let pack = |says: &str| {
        let out = with_toolchain(&tc)
            .args(["pack", "--manifest-path"])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stderr(&out).contains(says), "{says}: {}", stderr(&out));
        lib_files(&std::fs::read(String::from_utf8(out.stdout).unwrap().trim()).unwrap())
    };

    let own = pack(&format!(
        "Including cargo-pybundle {CLI}'s own copy of the Python half: package `relocs` does not \
         depend on pybundle-runtime"
    ));
    let init = pybundle_runtime::PYTHON_PACKAGE
        .get_file("pybundle/__init__.py")
        .unwrap()
        .contents_utf8()
        .unwrap();
    assert!(
        own.contains(&("lib/pybundle/__init__.py".to_owned(), init.to_owned())),
        "{own:?}"
    );

    let formats = format!("bundle-formats = [{FORMAT_VERSION}]");
    let rt = fake_runtime(&tmp.path().join("rt"), "0.1.7", Some(&formats));
    std::fs::write(rt.join("python/pybundle/__init__.py"), "# runtime 0.1.7\n").unwrap();
    std::fs::create_dir_all(rt.join("python/pybundle/__pycache__")).unwrap();
    std::fs::write(
        rt.join("python/pybundle/__pycache__/x.cpython-311.pyc"),
        "x",
    )
    .unwrap();
    let text = std::fs::read_to_string(&manifest).unwrap();
    let dep = format!(
        "\n[dependencies]\npybundle-runtime = {{ path = {:?} }}\n",
        rt.to_str().unwrap()
    );
    std::fs::write(&manifest, text + &dep).unwrap();
    assert_eq!(
        pack("Packing"),
        [(
            "lib/pybundle/__init__.py".to_owned(),
            "# runtime 0.1.7\n".to_owned()
        )]
    );
    std::fs::write(rt.join("python/pybundle/__init__.py"), "# changed\n").unwrap();
    assert_eq!(
        pack("Packing"),
        [(
            "lib/pybundle/__init__.py".to_owned(),
            "# changed\n".to_owned()
        )]
    );
}

/// The files under `lib/` in an archive, with their text.
fn lib_files(archive: &[u8]) -> Vec<(String, String)> {
    let tar = zstd::decode_all(archive).unwrap();
    let mut out = Vec::new();
    for entry in tar::Archive::new(&tar[..]).entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        if path.starts_with("lib/") && entry.header().entry_type().is_file() {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
            out.push((path, text));
        }
    }
    out
}

#[test]
fn two_runtimes_in_one_program_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let formats = format!("bundle-formats = [{FORMAT_VERSION}]");
    let rt1 = fake_runtime(&tmp.path().join("rt1"), "0.1.0", Some(&formats));
    let rt2 = fake_runtime(&tmp.path().join("rt2"), "0.2.0", Some(&formats));
    // A library of the program that brings the other release.
    let lib = tmp.path().join("helper");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(lib.join("lib.rs"), "").unwrap();
    std::fs::write(
        lib.join("Cargo.toml"),
        format!(
            "[package]\nname = \"helper\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [lib]\npath = \"lib.rs\"\n\n[dependencies]\npybundle-runtime = {{ path = {:?} }}\n",
            rt2.to_str().unwrap()
        ),
    )
    .unwrap();
    let manifest = app(&tmp.path().join("app"), Some((&rt1, "")));
    let text = std::fs::read_to_string(&manifest).unwrap().replace(
        "[dependencies]\n",
        &format!(
            "[dependencies]\nhelper = {{ path = {:?} }}\n",
            lib.to_str().unwrap()
        ),
    );
    std::fs::write(&manifest, text).unwrap();
    let (code, err) = build(&manifest);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("the package builds with more than one pybundle-runtime: 0.1.0 (")
            && err.contains("0.2.0 (")
            && err.contains("`cargo tree -i pybundle-runtime`"),
        "{err}"
    );
}

/// The runtime is looked up in the graph `cargo build` will use: `--locked` after `--` reaches
/// that `cargo metadata` too, so a lock file that would change stops the build (exit 3, the
/// lock file untouched) instead of being rewritten.
#[test]
fn locked_after_the_double_dash_holds_the_lock_file() {
    let tmp = tempfile::tempdir().unwrap();
    let formats = format!("bundle-formats = [{FORMAT_VERSION}]");
    let rt = fake_runtime(&tmp.path().join("rt"), "0.1.0", Some(&formats));
    let manifest = app(&tmp.path().join("app"), Some((&rt, "")));
    let lock = tmp.path().join("app/Cargo.lock");
    let out = cargo_pybundle()
        .args(["build", "--manifest-path"])
        .arg(&manifest)
        .args(["--pixi", "/nonexistent/pixi", "--", "--locked"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("--locked"), "{err}");
    assert!(!lock.exists(), "a lock file was written");
    // Without it the lock file is written, as cargo build writes it, and the build goes on.
    let (code, err) = build(&manifest);
    assert_eq!(code, Some(4), "{err}");
    assert!(lock.is_file());
}
