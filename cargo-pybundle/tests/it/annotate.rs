//! examples/annotate: a PyPI package (click, via pixi's `[pypi-dependencies]`) in the bundle,
//! and a parameter map passed as `--key value` options, values with spaces and quotes intact.

use crate::support::{cargo_pybundle, stderr};
use std::path::{Path, PathBuf};

#[test]
fn annotate_passes_parameters_to_click() {
    let Some(tc) = testkit::toolchain("annotate_passes_parameters_to_click") else {
        return;
    };
    let manifest = testkit::workspace_root().join("examples/annotate/Cargo.toml");
    let built = cargo_pybundle()
        .env("PYBUNDLE_PIXI", &tc.pixi)
        .env("PYBUNDLE_CHANNEL_MIRRORS", tc.mirrors())
        .args(["build", "-q", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-target"))
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", stderr(&built));
    let stdout = String::from_utf8(built.stdout).unwrap();
    let binary = PathBuf::from(stdout.lines().last().expect("the binary's path on stdout"));

    let cache = tempfile::tempdir().unwrap();
    let run = std::process::Command::new(&binary)
        .args(["text=one two  three \"four\"", "label=it's --not an option"])
        .env("PYBUNDLE_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{said}\n{}", stderr(&run));
    assert_eq!(
        said,
        "label: it's --not an option\nlang: en\ntext: one two  three \"four\"\n\
         words: 4 (click 8.1.7)\n"
    );

    // An option the script does not know: click's usage error reaches the caller.
    let bad = std::process::Command::new(&binary)
        .arg("colour=red")
        .env("PYBUNDLE_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("No such option"), "{}", stderr(&bad));
}
