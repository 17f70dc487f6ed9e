//! examples/annotate: a PyPI package (click, via pixi's `[pypi-dependencies]`) in the bundle,
//! and a parameter map passed as `--key value` options, values with spaces and quotes intact.

use crate::support::{build_binary, stderr};

#[test]
fn annotate_passes_parameters_to_click() {
    let Some(tc) = testkit::toolchain("annotate_passes_parameters_to_click") else {
        return;
    };
    let (_copy, manifest) = crate::support::example("annotate");
    let binary = build_binary(&tc, &manifest);

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
