//! The protocol rows: the runtime's own bench programs (`bench_script`, `bench_worker`),
//! run as subprocesses with the bundle's extracted interpreter, their markdown tables parsed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::measure::{row, warm_cache};
use super::{Setup, Stat, Topic};
use crate::tools;

/// The protocol benchmarks: the runtime's `bench_script` and `bench_worker` examples, run
/// with the bundle's extracted interpreter, their tables parsed.
pub fn run(s: &Setup) -> Result<Topic> {
    let cache = warm_cache(s)?;
    let python = extracted_python(&cache)?;
    let example = |name: &str, args: &[&str]| -> Result<String> {
        let mut argv = vec![python.as_os_str()];
        argv.extend(args.iter().map(std::ffi::OsStr::new));
        runtime_example(s, name, &argv)
    };
    let script_runs = if s.quick { "5" } else { "40" };
    let out = example("bench_script", &[script_runs])?;
    let cells = table_row(&out, "| one-shot script")?;
    let oneshot: Vec<f64> = cells[1..4]
        .iter()
        .map(|c| number(c))
        .collect::<Result<_>>()?;
    let mut oneshot_row = row(
        "one-shot script (spawn → reply → exit)",
        Some("oneshot_ms"),
        "ms",
        &[],
    );
    oneshot_row.stat = Some(Stat {
        med: oneshot[0],
        min: oneshot[1],
        max: oneshot[2],
        n: script_runs.parse()?,
    });
    let bare = number(&table_row(&out, "| `python -I -c pass`")?[1])?;

    let (mut p50, mut p99, mut rate, mut bytes, mut list) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // The raw-pipe floors bench_worker measures in the same run, and the other directions.
    let (mut floor50, mut floor99, mut floor_rate) = (Vec::new(), Vec::new(), Vec::new());
    let mut gbs: Vec<Vec<f64>> = vec![Vec::new(); GB_ROWS.len()];
    let calls = if s.quick { "2000" } else { "20000" };
    for _ in 0..if s.quick { 1 } else { 3 } {
        let out = example("bench_worker", &[calls])?;
        let trip = &table_row(&out, "| warm call round trip")?[1];
        let (a, b) = trip
            .split_once('/')
            .context("no p50 / p99 in bench_worker's row")?;
        p50.push(number(a)?);
        p99.push(number(b)?);
        let floor = &table_row(&out, "| raw pipe ping-pong (floor)")?[1];
        let (a, b) = floor
            .split_once('/')
            .context("no p50 / p99 in bench_worker's floor row")?;
        floor50.push(number(a)?);
        floor99.push(number(b)?);
        floor_rate.push(number(&table_row(&out, "| raw pipe pipelined (floor")?[1])?);
        for ((start, ..), samples) in GB_ROWS.iter().zip(&mut gbs) {
            samples.push(rate_in_parens(&table_row(&out, start)?[1])? / 1e3);
        }
        rate.push(number(&table_row(&out, "| pipelined throughput")?[1])?);
        bytes.push(rate_in_parens(&table_row(&out, "| 256 MB as a binary frame")?[1])? / 1e3);
        list.push(rate_in_parens(
            &table_row(&out, "| 16 MB as a JSON list")?[1],
        )?);
    }
    let mut bare_row = row(
        "`python -I -c pass` (same interpreter)",
        None,
        "ms",
        &[bare],
    );
    bare_row.note = "median reported by bench_script".into();
    Ok(Topic {
        title: "Protocol".into(),
        compare: false,
        about: format!(
            "The runtime's own bench programs (`bench_script`, `bench_worker` in \
             pybundle-runtime/examples), run with the bundle's extracted interpreter; \
             bench_worker {} time(s) with {calls} timed calls each (medians over the runs). \
             Each worker row sits beside the raw-pipe floor bench_worker measures in the same \
             run (a Rust and a Python process passing the same bytes over a pipe, no protocol). \
             The fresh-memory row copies 256 MB into newly allocated memory within one \
             process: the ceiling of any receiver that writes into fresh memory (each page's \
             first touch is a page fault); the raw pipe copies run both into fresh memory and \
             into memory the receiver reuses. What is sent is made once: before the timing on \
             the Rust side, by an untimed first call for the worker rows' Python side, in the \
             first of the 3 raw copies for the floor's Python side. Each 256 MB row is \
             the best of 3 in a row: the worker rows read into the memory of the previous \
             transfer's frame, which nothing held any more. The JSON list row sends 16 MB as \
             a list of numbers.",
            p50.len()
        ),
        rows: [
            oneshot_row,
            bare_row,
            row(
                "worker call round trip p50",
                Some("worker_call_p50_us"),
                "µs",
                &p50,
            ),
            row(
                "raw pipe ping-pong p50 (floor)",
                Some("raw_pipe_p50_us"),
                "µs",
                &floor50,
            ),
            row(
                "worker call round trip p99",
                Some("worker_call_p99_us"),
                "µs",
                &p99,
            ),
            row(
                "raw pipe ping-pong p99 (floor)",
                Some("raw_pipe_p99_us"),
                "µs",
                &floor99,
            ),
            row(
                "pipelined calls (512 in flight)",
                Some("worker_calls_per_s"),
                "calls/s",
                &rate,
            ),
            row(
                "raw pipe pipelined messages (floor)",
                Some("raw_pipe_messages_per_s"),
                "msg/s",
                &floor_rate,
            ),
            row(
                "256 MB bytes Rust → Python, binary frame",
                Some("bytes_gb_per_s"),
                "GB/s",
                &bytes,
            ),
        ]
        .into_iter()
        .chain(
            GB_ROWS
                .iter()
                .zip(&gbs)
                .map(|((_, what, key), samples)| row(what, Some(key), "GB/s", samples)),
        )
        .chain([row(
            "16 MB as a JSON list",
            Some("json_list_mb_per_s"),
            "MB/s",
            &list,
        )])
        .collect(),
    })
}

/// The runtime's start costs from its `first_run` example on the outliers archive: a first
/// run's extraction + relocation against `tar --zstd -xf` (paired per run), the warm
/// `ready()` in process (marker, lock and trust walk), `Environment::check_location()` (the
/// identity re-check before each start) and a whole warm start in a fresh process.
pub fn start_costs(s: &Setup) -> Result<Topic> {
    let runs = if s.quick { 1 } else { s.slow_runs };
    let (mut ready, mut check, mut process, mut bare) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut extract, mut tar, mut paired) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let out = runtime_example(s, "first_run", &[s.archive.as_os_str(), "1".as_ref()])?;
        let p50 = |start: &str| -> Result<f64> {
            let cell = &table_row(&out, start)?[1];
            duration_us(cell.split('/').next().unwrap_or(cell))
        };
        // One extraction by `Bundle::ready` and one `tar --zstd -xf`, back to back.
        let ours = p50("| first run: Bundle::ready")? / 1e6;
        let theirs = p50("| `tar --zstd -xf` of the same archive")? / 1e6;
        extract.push(ours);
        tar.push(theirs);
        paired.push(ours / theirs);
        ready.push(p50("| warm ready(), in process")?);
        check.push(p50("| Environment::check_location()")?);
        process.push(p50("| warm start: process + mmap + ready()")? / 1e3);
        bare.push(p50("| bare `true` process")? / 1e3);
    }
    Ok(Topic {
        title: "Runtime start costs".into(),
        compare: false,
        about: format!(
            "pybundle-runtime's `first_run` example on the outliers archive, {runs} time(s): \
             a first run's extraction and relocation alone (`Bundle::ready` into an empty cache, \
             in its own process; the script's run is the warm-start rows) and `tar --zstd -xf` \
             of the same archive, back to back after a `sync`, and their ratio per run; \
             p50 of 2000 warm `ready()` calls in one process (completion marker, shared lock, \
             the cache's ownership walk), of 2000 `Environment::check_location()` calls (the \
             re-check before each process start), and of 20 fresh processes that map the \
             archive and call `ready()`, beside 20 runs of `true`."
        ),
        rows: vec![
            row(
                "first run, extract + relocate only (`Bundle::ready`)",
                Some("first_run_extract_s"),
                "s",
                &extract,
            ),
            row(
                "`tar --zstd -xf` of the same archive, same runs",
                Some("first_run_tar_s"),
                "s",
                &tar,
            ),
            row(
                "ratio ours ÷ tar, per run",
                Some("first_run_extract_vs_tar"),
                "×",
                &paired,
            ),
            row(
                "warm `ready()`, in process (p50)",
                Some("warm_ready_us"),
                "µs",
                &ready,
            ),
            row(
                "`check_location()` (p50)",
                Some("check_location_us"),
                "µs",
                &check,
            ),
            row(
                "warm start: process + map + `ready()` (p50)",
                Some("warm_start_process_ms"),
                "ms",
                &process,
            ),
            row("bare `true` process (p50)", None, "ms", &bare),
        ],
    })
}

/// `cargo run --release -p pybundle-runtime --example <name> -- <args>`; its stdout.
fn runtime_example(s: &Setup, name: &str, args: &[&std::ffi::OsStr]) -> Result<String> {
    tools::output(
        Command::new(tools::cargo())
            .args([
                "run",
                "--release",
                "-q",
                "-p",
                "pybundle-runtime",
                "--example",
                name,
            ])
            .arg("--")
            .args(args)
            .current_dir(&s.root),
        &format!("running the {name} example"),
    )
}

/// A Debug-printed duration ("19.5µs", "1.20ms", "850ns", "1.5s") in µs.
fn duration_us(cell: &str) -> Result<f64> {
    let cell = cell.trim();
    let split = cell
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .with_context(|| format!("no unit in {cell:?}"))?;
    let (value, unit) = cell.split_at(split);
    let value: f64 = value
        .parse()
        .with_context(|| format!("no number in {cell:?}"))?;
    Ok(value
        * match unit.trim() {
            "ns" => 1e-3,
            "µs" | "us" => 1.0,
            "ms" => 1e3,
            "s" => 1e6,
            other => bail!("unknown unit {other:?} in {cell:?}"),
        })
}

/// bench_worker's rows read as GB/s: (row start, what, results.json key).
const GB_ROWS: &[(&str, &str, &str)] = &[
    (
        "| memory copy into fresh memory",
        "memory copy into fresh memory, 256 MB, in process (floor)",
        "fresh_memory_copy_gb_per_s",
    ),
    (
        "| raw pipe copy Rust → Python, ",
        "raw pipe copy Rust → Python, 256 MB (floor)",
        "raw_copy_to_python_gb_per_s",
    ),
    (
        "| raw pipe copy Rust → Python into reused memory",
        "raw pipe copy Rust → Python into reused memory, 256 MB (floor)",
        "raw_copy_to_python_reused_gb_per_s",
    ),
    (
        "| 256 MB bytes Python → Rust",
        "256 MB bytes Python → Rust",
        "bytes_from_python_gb_per_s",
    ),
    (
        "| raw pipe copy Python → Rust, ",
        "raw pipe copy Python → Rust, 256 MB (floor)",
        "raw_copy_from_python_gb_per_s",
    ),
    (
        "| raw pipe copy Python → Rust into reused memory",
        "raw pipe copy Python → Rust into reused memory, 256 MB (floor)",
        "raw_copy_from_python_reused_gb_per_s",
    ),
    (
        "| 256 MB numpy float32 Rust → Python",
        "256 MB numpy float32 array Rust → Python",
        "numpy_to_python_gb_per_s",
    ),
    (
        "| 256 MB numpy float32 Python → Rust",
        "256 MB numpy float32 array Python → Rust",
        "numpy_from_python_gb_per_s",
    ),
];

/// `<cache>/outliers-<id16>/env/bin/python3.11` (the cache also holds hello's bundle, which
/// has no numpy).
fn extracted_python(cache: &Path) -> Result<PathBuf> {
    for entry in fs_err::read_dir(cache)? {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().starts_with("outliers-") {
            continue;
        }
        let python = entry.path().join("env/bin/python3.11");
        if python.is_file() {
            return Ok(python);
        }
    }
    bail!(
        "no extracted outliers bundle with env/bin/python3.11 in {}",
        cache.display()
    )
}

/// The cells of the first markdown row of `out` starting with `start`.
fn table_row(out: &str, start: &str) -> Result<Vec<String>> {
    let line = out
        .lines()
        .find(|l| l.starts_with(start))
        .with_context(|| format!("no row starting {start:?} in:\n{out}"))?;
    Ok(line
        .trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_string())
        .collect())
}

/// The first word of `cell` that is a number ("p50 17.2 µs" → 17.2, not the 50 of "p50").
fn number(cell: &str) -> Result<f64> {
    cell.split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .find_map(|w| w.parse().ok())
        .with_context(|| format!("no number in {cell:?}"))
}

/// "12.3 ms (2080 MB/s)" → 2080.
fn rate_in_parens(cell: &str) -> Result<f64> {
    number(cell.split_once('(').map_or("", |(_, r)| r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_from_whole_words() {
        assert_eq!(number("p50 17.2 µs ").unwrap(), 17.2);
        assert_eq!(number(" p99 37.6 µs").unwrap(), 37.6);
        assert_eq!(number("76648 calls/s").unwrap(), 76648.0);
        assert_eq!(rate_in_parens("310.2 ms (825.3 MB/s)").unwrap(), 825.3);
        assert!(number("p50 µs").is_err());
        assert_eq!(duration_us("19.5µs ").unwrap(), 19.5);
        assert_eq!(duration_us("1.20ms").unwrap(), 1200.0);
        assert_eq!(duration_us("850ns").unwrap(), 0.85);
        assert!(duration_us("12").is_err());
    }
}
