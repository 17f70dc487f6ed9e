//! `cargo xtask bench --quick` end to end, so the harness cannot rot: it builds the outliers
//! app with the real CLI (release), runs every row once and must write `results.json` with every
//! key issue #7 lists, numbers for all of ours, and a report beside it (never over the committed
//! `BENCHMARKS.md`).

use std::path::Path;
use std::process::Command;

/// The keys `results.json` must carry; the peers' are `null` in a quick run.
const OURS: &[&str] = &[
    "bundle_bytes",
    "targz_bytes",
    "targz_same_files_bytes",
    "pack_s",
    "first_run_s",
    "tar_zstd_extract_s",
    "first_run_extract_s",
    "first_run_tar_s",
    "first_run_extract_vs_tar",
    "pixi_frozen_install_s",
    "warm_start_ms",
    "hello_warm_ms",
    "python_same_work_ms",
    "python_bare_start_ms",
    "oneshot_ms",
    "worker_call_p50_us",
    "worker_call_p99_us",
    "worker_calls_per_s",
    "bytes_gb_per_s",
    "json_list_mb_per_s",
    "raw_pipe_p50_us",
    "warm_ready_us",
    "check_location_us",
    "warm_start_process_ms",
    "raw_pipe_p99_us",
    "raw_pipe_messages_per_s",
    "raw_copy_to_python_gb_per_s",
    "fresh_memory_copy_gb_per_s",
    "bytes_from_python_gb_per_s",
    "raw_copy_from_python_gb_per_s",
    "raw_copy_to_python_reused_gb_per_s",
    "raw_copy_from_python_reused_gb_per_s",
    "numpy_to_python_gb_per_s",
    "numpy_from_python_gb_per_s",
    "repeat_build_overhead_s",
    "app_edit_rebuild_s",
    "app_edit_rebuild_plain_s",
    "script_edit_dev_s",
    "script_edit_repack_s",
];
/// Counted with valgrind's callgrind: required where valgrind is installed (under `CI`,
/// `.ci/run` installs it; elsewhere its absence is a listed skip).
const INSTRUCTIONS: &[&str] = &["hello_warm_minstr", "python_bare_minstr"];
const PEERS: &[&str] = &[
    "conda_pack_bytes",
    "pyinstaller_bytes",
    "conda_pack_unpack_s",
    "pyinstaller_cold_s",
    "pyinstaller_warm_ms",
];

#[test]
fn quick_bench_writes_every_key() {
    // The harness prepares pixi and the channel itself (from the dev cache); it needs the same
    // host prerequisites as the rest of the toolchain, so follow testkit's skip/fail rule.
    if testkit::toolchain("xtask bench --quick").is_none() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    // Our own target dir: the `cargo test` running us holds the workspace's build lock.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-target");
    let committed = std::fs::read(root.join("BENCHMARKS.md")).ok();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["bench", "--quick"])
        .current_dir(root)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("cannot start xtask");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "`cargo xtask bench --quick` failed ({}):\n{stderr}",
        out.status
    );
    let json = std::fs::read_to_string(target.join("bench/results.json")).unwrap();
    let results: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&json).unwrap();
    let valgrind = Command::new("valgrind").arg("--version").output().is_ok();
    if !valgrind {
        testkit::skip(
            "quick_bench_writes_every_key (instruction rows)",
            "valgrind is not installed",
        );
    }
    let required = OURS.iter().chain(INSTRUCTIONS.iter().filter(|_| valgrind));
    for key in required {
        let value = results.get(*key).and_then(|v| v.as_f64());
        assert!(
            value.is_some_and(|v| v.is_finite() && v > 0.0),
            "results.json: `{key}` should be a positive number, is {:?}\n{json}",
            results.get(*key)
        );
    }
    // `--quick` runs no peer: their keys are there, empty.
    for key in PEERS {
        assert_eq!(
            results.get(*key),
            Some(&serde_json::Value::Null),
            "results.json: the peer key `{key}` should be there and empty\n{json}"
        );
    }
    let report = std::fs::read_to_string(target.join("bench/BENCHMARKS.md")).unwrap();
    assert!(report.contains("`--quick`"), "{report}");
    // And one run per row (README), but for the one-shot script's five; peers' rows say why
    // they are empty.
    let mut rows = 0;
    let mut runs_column = None;
    for line in report.lines() {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if line.starts_with("| what") {
            runs_column = cells.iter().position(|c| *c == "runs");
        } else if !line.starts_with('|') {
            runs_column = None;
        } else if let Some(i) = runs_column.filter(|_| !line.starts_with("|---")) {
            let expected = if cells[0].starts_with("one-shot script") {
                "5"
            } else if cells[i].starts_with('—') {
                "— (not run (`--quick`))"
            } else {
                "1"
            };
            assert_eq!(cells[i], expected, "runs of `{}`", cells[0]);
            rows += 1;
        }
    }
    assert!(rows >= 10, "only {rows} rows with a runs column:\n{report}");
    assert_eq!(
        std::fs::read(root.join("BENCHMARKS.md")).ok(),
        committed,
        "a quick run must not replace the committed BENCHMARKS.md"
    );
}
