//! Activation parity: the bundled script sees the variables `pixi run` sets on the build
//! machine (activate.d of `pybundle-reloc-test`, the manifest's `[activation] scripts`), with
//! the build prefix and the project root replaced by the cache paths; nothing names the build
//! machine; a variable set for one call reaches that call only. The fixture app is built once.

use crate::support::{build_binary, copy_tree, stderr};
use serde_json::{Map, Value};
use std::path::Path;
use std::sync::OnceLock;

/// What one build and run gave.
struct Outcome {
    /// `pixi run` on the build machine: the variables of interest.
    expected: Map<String, Value>,
    /// The project dir (the pixi project root) and the build prefix.
    build_paths: [String; 2],
    /// The environments of the three calls (plain, `PER_CALL=1`, plain).
    runs: Vec<Map<String, Value>>,
    /// The extracted prefix and bundle root.
    prefix: String,
    root: String,
}

const VARS: &[&str] = &[
    "PYBUNDLE_TEST_DATA",
    "PYBUNDLE_APP_HOME",
    "PYBUNDLE_APP_ROOT",
    "PYBUNDLE_APP_PLAIN",
    "CONDA_PREFIX",
    "PIXI_PROJECT_NAME",
];

fn outcome(test: &str) -> Option<&'static Outcome> {
    static ONCE: OnceLock<Option<Outcome>> = OnceLock::new();
    ONCE.get_or_init(|| build_and_run(test)).as_ref()
}

fn build_and_run(test: &str) -> Option<Outcome> {
    let tc = testkit::toolchain(test)?;
    let tmp = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let app = tmp.path().join("activation");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/activation"),
        &app,
    );
    let runtime = testkit::workspace_root().join("pybundle-runtime");
    let cargo_toml = app.join("Cargo.toml");
    let text = std::fs::read_to_string(&cargo_toml).unwrap();
    std::fs::write(
        &cargo_toml,
        text.replace("@RUNTIME@", runtime.to_str().unwrap()),
    )
    .unwrap();
    let binary = build_binary(&tc, &cargo_toml);

    // What `pixi run` gives on the build machine, in the project pixi installed.
    let pixi_run = std::process::Command::new(&tc.pixi)
        .args(["run", "--frozen", "--manifest-path"])
        .arg(app.join("pixi.toml"))
        .args([
            "python",
            "-c",
            "import json,os;print('@@'+json.dumps(dict(os.environ)))",
        ])
        .output()
        .unwrap();
    assert!(pixi_run.status.success(), "{}", stderr(&pixi_run));
    let text = String::from_utf8(pixi_run.stdout).unwrap();
    let all: Map<String, Value> =
        serde_json::from_str(text.split_once("@@").unwrap().1.trim()).unwrap();
    let build_prefix = all["CONDA_PREFIX"].as_str().unwrap().to_owned();
    let expected = VARS
        .iter()
        .map(|k| (k.to_string(), all.get(*k).cloned().unwrap_or(Value::Null)))
        .collect();

    let cache = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let run = std::process::Command::new(&binary)
        .env("PYBUNDLE_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", stderr(&run));
    let runs: Vec<Map<String, Value>> =
        serde_json::from_slice(&run.stdout).expect("three environments as JSON");
    let prefix = runs[0]["CONDA_PREFIX"].as_str().unwrap().to_owned();
    assert!(
        prefix.starts_with(cache.path().to_str().unwrap()),
        "CONDA_PREFIX {prefix} is not in the cache {}",
        cache.path().display()
    );
    let root = Path::new(&prefix)
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    Some(Outcome {
        expected,
        build_paths: [app.to_str().unwrap().to_owned(), build_prefix],
        runs,
        prefix,
        root,
    })
}

#[test]
fn bundled_process_sees_what_pixi_run_sets_relocated() {
    let Some(o) = outcome("bundled_process_sees_what_pixi_run_sets_relocated") else {
        return;
    };
    let [project, build_prefix] = &o.build_paths;
    for var in VARS {
        let want = o.expected[*var]
            .as_str()
            .unwrap_or_else(|| panic!("`pixi run` does not set {var}"))
            .replace(build_prefix.as_str(), &o.prefix)
            .replace(project.as_str(), &o.root);
        assert_eq!(o.runs[0][*var], want, "{var}");
    }
    assert_eq!(
        o.runs[0]["PYBUNDLE_TEST_DATA"],
        format!("{}/share/pybundle-reloc-test", o.prefix)
    );
    // PATH: the prefix's bin in front of this machine's PATH, nothing from the build.
    let path = std::env::var("PATH").unwrap();
    assert_eq!(o.runs[0]["PATH"], format!("{}/bin:{path}", o.prefix));
}

#[test]
fn no_build_machine_path_reaches_the_bundled_process() {
    let Some(o) = outcome("no_build_machine_path_reaches_the_bundled_process") else {
        return;
    };
    for (i, env) in o.runs.iter().enumerate() {
        for (k, v) in env {
            for path in &o.build_paths {
                assert!(
                    !v.as_str().unwrap_or("").contains(path.as_str()),
                    "call {i}: {k}={v} names the build path {path}"
                );
            }
        }
        assert!(!env.contains_key("PIXI_PROJECT_MANIFEST"), "call {i}");
    }
}

#[test]
fn a_variable_set_for_one_call_reaches_that_call_only() {
    let Some(o) = outcome("a_variable_set_for_one_call_reaches_that_call_only") else {
        return;
    };
    assert_eq!(o.runs[1]["PER_CALL"], "1");
    assert!(!o.runs[0].contains_key("PER_CALL"));
    assert!(!o.runs[2].contains_key("PER_CALL"));
    assert_eq!(o.runs[1]["PYBUNDLE_APP_PLAIN"], "plain value");
}
