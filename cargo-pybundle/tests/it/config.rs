//! Configuration errors: clear messages, exit code 3, nothing written.

use crate::support::{cargo_pybundle, package, stderr};

fn build_err(metadata: Option<&str>) -> (String, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = package(tmp.path(), "cfgapp", metadata);
    let out = cargo_pybundle()
        .args(["build", "--manifest-path"])
        .arg(&manifest)
        .args(["--pixi", "/nonexistent/pixi"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    (stderr(&out), tmp)
}

#[test]
fn missing_table_shows_a_snippet() {
    let (err, _tmp) = build_err(None);
    assert!(
        err.contains("has no [package.metadata.pybundle] table"),
        "{err}"
    );
    assert!(err.contains("scripts = \"python\""), "{err}");
}

#[test]
fn unknown_key_lists_the_valid_ones() {
    let (err, _tmp) = build_err(Some("script = \"py\""));
    assert!(err.contains("unknown key `script`"), "{err}");
    assert!(
        err.contains("valid keys: manifest, environment, scripts"),
        "{err}"
    );
    assert!(err.contains("Cargo.toml"), "{err}");
}

#[test]
fn wrong_type_names_key_and_type() {
    let (err, _tmp) = build_err(Some("compression-level = \"max\""));
    assert!(
        err.contains("`compression-level` must be an integer from 1 to 22, not a string"),
        "{err}"
    );
}

#[test]
fn bad_mirror_variable_is_a_config_error() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = package(tmp.path(), "mirrorapp", Some(""));
    let out = cargo_pybundle()
        .args(["pack", "--manifest-path"])
        .arg(&manifest)
        .env("PYBUNDLE_CHANNEL_MIRRORS", "conda-forge")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("PYBUNDLE_CHANNEL_MIRRORS entry `conda-forge`"));
}
