//! One-shot script latency against a bare interpreter start, side by side.
//!
//! `cargo run --release -p pybundle-runtime --example bench_script -- [PYTHON] [RUNS]`
//!
//! Each round runs, in turn: `python -I -c pass` (spawn → exit) and a one-shot script that
//! replies `{"ok": true}` through the protocol (spawn → reply → exit), with the same
//! interpreter. Prints median/min/max of each and the ratio of medians; the goal is
//! `script ≤ 1.2 × bare + 5 ms`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pybundle_runtime::Environment;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let python = match args.next() {
        Some(p) => PathBuf::from(p),
        None => testkit::pyenv::host_python().interpreter,
    };
    let runs: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(40);

    let dir = tempfile::tempdir()?;
    let scripts = dir.path().join("scripts");
    let lib = dir.path().join("lib");
    fs_err::create_dir_all(&scripts)?;
    fs_err::create_dir_all(&lib)?;
    pybundle_runtime::PYTHON_PACKAGE.extract(&lib)?;
    fs_err::write(
        scripts.join("noop.py"),
        "import pybundle\npybundle.reply({'ok': True})\n",
    )?;
    let prefix = python
        .parent()
        .and_then(|p| p.parent())
        .unwrap_or(&python)
        .to_path_buf();
    let env = Environment::from_parts(prefix, &python, &scripts, &lib);

    // Warm the page cache and write the package's bytecode once, as a bundle's first run does.
    for _ in 0..3 {
        bare(&python)?;
        env.script("noop").run::<serde_json::Value>()?;
    }
    let mut bare_times = Vec::with_capacity(runs);
    let mut script_times = Vec::with_capacity(runs);
    for _ in 0..runs {
        bare_times.push(bare(&python)?);
        let start = Instant::now();
        let out = env.script("noop").run::<serde_json::Value>()?;
        script_times.push(start.elapsed());
        assert_eq!(out.reply["ok"], true);
    }
    let (b, s) = (stats(&mut bare_times), stats(&mut script_times));
    println!(
        "one-shot latency, {} runs, interpreter {}",
        runs,
        python.display()
    );
    println!("| what | median | min | max |");
    println!("|---|---|---|---|");
    println!(
        "| `python -I -c pass` | {} | {} | {} |",
        ms(b.0),
        ms(b.1),
        ms(b.2)
    );
    println!(
        "| one-shot script (spawn → reply → exit) | {} | {} | {} |",
        ms(s.0),
        ms(s.1),
        ms(s.2)
    );
    let goal = b.0.mul_f64(1.2) + Duration::from_millis(5);
    println!(
        "ratio of medians {:.2}x, overhead {}; goal ≤ {} ({})",
        s.0.as_secs_f64() / b.0.as_secs_f64(),
        ms(s.0.saturating_sub(b.0)),
        ms(goal),
        if s.0 <= goal { "met" } else { "MISSED" }
    );
    Ok(())
}

fn bare(python: &PathBuf) -> std::io::Result<Duration> {
    let start = Instant::now();
    let status = Command::new(python)
        .args(["-I", "-c", "pass"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()?;
    assert!(status.success());
    Ok(start.elapsed())
}

/// (median, min, max)
fn stats(times: &mut [Duration]) -> (Duration, Duration, Duration) {
    times.sort();
    (times[times.len() / 2], times[0], times[times.len() - 1])
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
