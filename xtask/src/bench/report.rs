//! Writing the results: the flat results.json object and BENCHMARKS.md (machine, one table per
//! topic, the goals and whether each is met), all from the measured rows.

use std::fmt::Write as _;
use std::process::Command;

use serde_json::{Map, Value};

use super::{Row, Setup, Stat, Topic};

/// `/proc/loadavg`'s first three fields.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// One key per keyed row: its median, in the key's unit (bytes for `_bytes`).
pub fn results_json(topics: &[Topic]) -> Map<String, Value> {
    let mut map = Map::new();
    for row in topics.iter().flat_map(|t| &t.rows) {
        if let Some(key) = row.key {
            let value = row.stat.map_or(Value::Null, |s| {
                serde_json::Number::from_f64(s.med).map_or(Value::Null, Value::Number)
            });
            map.insert(key.to_string(), value);
        }
    }
    map
}

fn fmt(value: f64, unit: &str) -> String {
    match unit {
        "B" => format!("{:.1} MB", value / 1e6),
        "s" => format!("{value:.3} s"),
        "ms" | "µs" | "MB/s" => format!("{value:.1} {unit}"),
        "calls/s" | "msg/s" => format!("{value:.0} {unit}"),
        "×" => format!("{value:.2}×"),
        _ => format!("{value:.2} {unit}"),
    }
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".to_string(), |(_, m)| m.trim().to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or("unknown".to_string(), |kb| {
            format!("{:.1} GiB", kb / 1048576.0)
        });
    let cmd = |prog: &str, args: &[&str]| {
        Command::new(prog)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|_| "unknown".into())
    };
    format!(
        "- CPUs (nproc): {}\n- model: {model}\n- memory: {mem}\n- kernel: {}\n",
        cmd("nproc", &[]),
        cmd("uname", &["-sr"])
    )
}

fn table(out: &mut String, topic: &Topic) {
    let _ = writeln!(out, "## {}\n\n{}\n", topic.title, topic.about);
    let first = topic.rows.first().and_then(|r| r.stat);
    if topic.compare {
        out.push_str(
            "| what | median | min | max | runs | ours ÷ this |\n|---|---|---|---|---|---|\n",
        );
    } else {
        out.push_str("| what | median | min | max | runs |\n|---|---|---|---|---|\n");
    }
    for (i, row) in topic.rows.iter().enumerate() {
        let Row {
            what,
            unit,
            stat,
            note,
            ..
        } = row;
        let cells = match stat {
            Some(s) => format!(
                "{} | {} | {} | {}",
                fmt(s.med, unit),
                fmt(s.min, unit),
                fmt(s.max, unit),
                s.n
            ),
            None => format!("— | — | — | — ({note})"),
        };
        // A difference that came out negative: the noise is larger than what it measures.
        let what = match stat {
            Some(s) if s.min < 0.0 => {
                format!("{what} ⚠ negative runs: the noise exceeds the difference")
            }
            _ => what.clone(),
        };
        let _ = write!(out, "| {what} | {cells} |");
        if topic.compare {
            let ratio = match (i, first, stat) {
                (0, _, _) => "—".to_string(),
                (_, Some(f), Some(s)) if s.med > 0.0 => format!("{:.2}", f.med / s.med),
                _ => String::new(),
            };
            let _ = write!(out, " {ratio} |");
        }
        out.push('\n');
    }
    out.push('\n');
}

/// A measured quantity for a goal: the median and the range the runs allow.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Span {
    med: f64,
    lo: f64,
    hi: f64,
}

impl Span {
    fn of(s: &Stat) -> Span {
        Span {
            med: s.med,
            lo: s.min,
            hi: s.max,
        }
    }

    /// `self / other`, the range from the extremes of both.
    fn ratio(self, other: Span) -> Option<Span> {
        (other.lo > 0.0).then(|| Span {
            med: self.med / other.med,
            lo: self.lo / other.hi,
            hi: self.hi / other.lo,
        })
    }

    /// `self × k + c`.
    fn scale(self, k: f64, c: f64) -> Span {
        Span {
            med: self.med * k + c,
            lo: self.lo * k + c,
            hi: self.hi * k + c,
        }
    }
}

/// The verdict of "`value` ≤ `limit`" (or ≥ with `at_least`), with the noise: met or missed
/// when every run agrees, "within the noise" when the range straddles the limit.
fn verdict(value: Span, limit: f64, at_least: bool) -> String {
    let (ok_all, ok_none, ok_med) = if at_least {
        (value.lo >= limit, value.hi < limit, value.med >= limit)
    } else {
        (value.hi <= limit, value.lo > limit, value.med <= limit)
    };
    if ok_all {
        "**met**".into()
    } else if ok_none {
        "**missed**".into()
    } else if ok_med {
        "met by the median, within the noise".into()
    } else {
        "missed by the median, within the noise".into()
    }
}

/// One goal row: words, the measured span shown as `median (min–max)` with `show`, and the
/// verdict against `limit`.
fn goal_row(
    out: &mut String,
    words: &str,
    value: Option<Span>,
    limit: f64,
    at_least: bool,
    show: impl Fn(f64) -> String,
) {
    let (detail, verdict) = match value {
        Some(v) if v.lo == v.hi => (show(v.med), verdict(v, limit, at_least)),
        Some(v) => (
            format!("{} ({}–{})", show(v.med), show(v.lo), show(v.hi)),
            verdict(v, limit, at_least),
        ),
        None => ("—".into(), "not measured".into()),
    };
    let _ = writeln!(out, "| {words} | {detail} | {verdict} |");
}

/// The goals table (issues 7, 18 and 21 set the values).
fn goals(out: &mut String, topics: &[Topic]) {
    let stats: std::collections::HashMap<&str, Span> = topics
        .iter()
        .flat_map(|t| &t.rows)
        .filter_map(|r| Some((r.key?, Span::of(r.stat.as_ref()?))))
        .collect();
    let get = |k: &str| stats.get(k).copied();
    let ratio = |a: &str, b: &str| get(a)?.ratio(get(b)?);
    let times = |x: f64| format!("{x:.2}×");
    out.push_str(
        "## Goals\n\nEach goal is judged on every run: **met** or **missed** when all runs agree; \
         when the runs straddle the limit, the verdict says \"within the noise\" and what the \
         median did. Measured values show the median and, in brackets, the range the runs allow \
         (for a ratio: the extremes of both sides).\n\n| goal | measured | verdict |\n|---|---|---|\n",
    );
    for (peer, name) in [
        ("targz_bytes", "`tar czf` of the prefix"),
        ("conda_pack_bytes", "conda-pack"),
        (
            "targz_same_files_bytes",
            "gzip of the same files as packed (the compression alone)",
        ),
    ] {
        goal_row(
            out,
            &format!("bundle ≤ 0.6 × {name}"),
            ratio("bundle_bytes", peer),
            0.6,
            false,
            times,
        );
    }
    for limit in [1.0, 0.7] {
        goal_row(
            out,
            &format!(
                "first run, extract + relocate ≤ {limit:.1} × `tar --zstd -xf` (paired runs; \
                 the script's run is in the warm start)"
            ),
            get("first_run_extract_vs_tar"),
            limit,
            false,
            times,
        );
    }
    goal_row(
        out,
        "the whole first run of the app ≤ 1.0 × `tar --zstd -xf` (it also runs the numpy script)",
        ratio("first_run_s", "tar_zstd_extract_s"),
        1.0,
        false,
        times,
    );
    let ms = |x: f64| format!("{x:.1} ms");
    // hello warm − bare start ≤ 2 ms.
    let hello_over = get("hello_warm_ms")
        .zip(get("python_bare_start_ms"))
        .map(|(h, b)| Span {
            med: h.med - b.med,
            lo: h.lo - b.hi,
            hi: h.hi - b.lo,
        });
    goal_row(
        out,
        "warm start (hello) ≤ a bare `python -I -c pass` + 2 ms",
        hello_over,
        2.0,
        false,
        ms,
    );
    let same = get("python_same_work_ms").map(|b| b.scale(1.2, 5.0));
    goal_row(
        out,
        "warm start (outliers) ≤ 1.2 × bare python doing the same work + 5 ms (shown: the margin, ours − limit)",
        get("warm_start_ms").zip(same).map(|(w, l)| Span {
            med: w.med - l.med,
            lo: w.lo - l.hi,
            hi: w.hi - l.lo,
        }),
        0.0,
        false,
        |x| format!("{x:+.1} ms"),
    );
    goal_row(
        out,
        "warm start far below PyInstaller's warm run (taken as ≤ 0.5×)",
        ratio("warm_start_ms", "pyinstaller_warm_ms"),
        0.5,
        false,
        times,
    );
    let us = |x: f64| format!("{x:.1} µs");
    goal_row(
        out,
        "worker call p50 ≤ 15 µs",
        get("worker_call_p50_us"),
        15.0,
        false,
        us,
    );
    goal_row(
        out,
        "≥ 150 000 pipelined calls/s",
        get("worker_calls_per_s"),
        150_000.0,
        true,
        |x| format!("{x:.0} calls/s"),
    );
    for (words, key) in [
        ("256 MB bytes Rust → Python ≥ 2 GB/s", "bytes_gb_per_s"),
        (
            "256 MB bytes Python → Rust ≥ 2 GB/s",
            "bytes_from_python_gb_per_s",
        ),
        (
            "256 MB numpy float32 Rust → Python ≥ 2 GB/s",
            "numpy_to_python_gb_per_s",
        ),
        (
            "256 MB numpy float32 Python → Rust ≥ 2 GB/s",
            "numpy_from_python_gb_per_s",
        ),
    ] {
        goal_row(out, words, get(key), 2.0, true, |x| format!("{x:.2} GB/s"));
    }
    let secs = |x: f64| format!("{x:.2} s");
    goal_row(
        out,
        "repeat build ≤ 2 s over plain cargo build",
        get("repeat_build_overhead_s"),
        2.0,
        false,
        secs,
    );
    goal_row(
        out,
        "app-edit rebuild ≤ 1.5 × without a bundle",
        ratio("app_edit_rebuild_s", "app_edit_rebuild_plain_s"),
        1.5,
        false,
        times,
    );
}

/// BENCHMARKS.md.
pub fn markdown(
    s: &Setup,
    topics: &[Topic],
    notes: &[String],
    load_before: &str,
    load_after: &str,
) -> String {
    let mut out = String::new();
    out.push_str(
        "# Benchmarks\n\nWritten by `cargo xtask bench` (xtask/src/bench/); every number below \
         comes from that run, nothing is typed by hand. The application is examples/outliers \
         (1000 values to a numpy script, which answers with the outliers' indices), built with \
         the real `cargo pybundle build --release` against the local test channel; the peers \
         work on the very prefix pixi installed for it. Raw medians: \
         `target/bench/results.json`. Units: MB and GB are 10^6 and 10^9 bytes (sizes, rates); \
         times are wall-clock.\n\n## Machine\n\n",
    );
    out.push_str(&machine());
    let _ = writeln!(
        out,
        "- load average (1, 5, 15 min) at the start: {load_before}; at the end: {load_after} \
         (a shared machine: other jobs ran alongside)\n- runs per row: {} for builds and \
         extractions, {} for process starts{}\n",
        s.slow_runs,
        s.fast_runs,
        if s.quick { " (`--quick`)" } else { "" }
    );
    for t in topics {
        table(&mut out, t);
    }
    goals(&mut out, topics);
    out.push_str(
        "\nThe warm-start goal is written against a bare interpreter start: the hello example \
         (whose script imports only the standard library) is held to it; the outliers app also \
         imports numpy and computes, so it is held against bare python doing the same work. \
         PyInstaller `--onefile` unpacks itself into a temporary directory \
         on every run, so its first and later runs differ only by the page cache.\n",
    );
    if !notes.is_empty() {
        out.push_str("\n## Notes\n\n");
        for n in notes {
            let _ = writeln!(out, "- {}", n.replace('\n', " "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(med: f64, lo: f64, hi: f64) -> Span {
        Span { med, lo, hi }
    }

    #[test]
    fn verdicts_say_when_the_runs_straddle_the_limit() {
        assert_eq!(verdict(span(1.0, 0.9, 1.1), 2.0, false), "**met**");
        assert_eq!(verdict(span(3.0, 2.5, 3.5), 2.0, false), "**missed**");
        assert_eq!(
            verdict(span(1.9, 1.5, 2.5), 2.0, false),
            "met by the median, within the noise"
        );
        assert_eq!(
            verdict(span(2.1, 1.5, 2.5), 2.0, false),
            "missed by the median, within the noise"
        );
        // "At least" goals.
        assert_eq!(verdict(span(3.0, 2.5, 3.5), 2.0, true), "**met**");
        assert_eq!(verdict(span(1.0, 0.9, 1.1), 2.0, true), "**missed**");
    }

    #[test]
    fn a_ratio_spans_the_extremes_of_both_sides() {
        let r = span(2.0, 1.0, 3.0).ratio(span(1.0, 0.5, 2.0)).unwrap();
        assert_eq!(r, span(2.0, 0.5, 6.0));
        assert!(span(1.0, 1.0, 1.0).ratio(span(0.0, 0.0, 1.0)).is_none());
    }
}
