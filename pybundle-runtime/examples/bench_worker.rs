//! Worker call latency and throughput, side by side with a one-shot script doing the same.
//!
//! `cargo run --release -p pybundle-runtime --example bench_worker -- [PYTHON] [CALLS]`
//!
//! Prints a table: warm call round trip p50/p99 (goal p50 ≤ 30 µs), pipelined throughput
//! (goal ≥ 50k calls/s), the same call as a one-shot script, and byte-buffer throughput
//! (binary frames) against the same bytes as a JSON list of numbers.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pybundle_runtime::{Buffer, Environment};

const MODULE: &str = r#"
def echo(x):
    return x

def length(data):
    return len(data)

def burn(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total
"#;

const SCRIPT: &str = "import pybundle\npybundle.reply(pybundle.input())\n";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let python = match args.next().filter(|a| !a.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => testkit::pyenv::host_python().interpreter,
    };
    let calls: usize = args
        .next()
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(20_000);

    let dir = tempfile::tempdir()?;
    let (scripts, lib) = (dir.path().join("scripts"), dir.path().join("lib"));
    fs_err::create_dir_all(&scripts)?;
    fs_err::create_dir_all(&lib)?;
    pybundle_runtime::PYTHON_PACKAGE.extract(&lib)?;
    fs_err::write(scripts.join("benchmod.py"), MODULE)?;
    fs_err::write(scripts.join("echo_once.py"), SCRIPT)?;
    let prefix = python
        .parent()
        .and_then(|p| p.parent())
        .unwrap_or(&python)
        .to_path_buf();
    let env = Environment::from_parts(prefix, &python, &scripts, &lib);
    let worker = env
        .worker(["benchmod"])
        .threads(1)
        .max_frame(600 << 20)
        .start()?;

    println!("interpreter {}", python.display());
    println!("| what | result | goal |");
    println!("|---|---|---|");

    // Warm call round trip.
    for i in 0..1000 {
        worker.call::<i64>("benchmod.echo", &(i,))?;
    }
    let mut times = Vec::with_capacity(calls);
    for i in 0..calls {
        let start = Instant::now();
        let back: i64 = worker.call("benchmod.echo", &(i,))?;
        times.push(start.elapsed());
        assert_eq!(back, i as i64);
    }
    times.sort();
    let p50 = times[times.len() / 2];
    let p99 = times[times.len() * 99 / 100];
    println!(
        "| warm call round trip, {calls} calls | p50 {} / p99 {} | p50 ≤ 30 µs |",
        us(p50),
        us(p99)
    );

    let mut pings: Vec<Duration> = (0..calls.min(5000))
        .map(|_| worker.ping(Duration::from_secs(5)))
        .collect::<Result<_, _>>()?;
    pings.sort();
    println!(
        "| ping round trip (no Python call thread) | p50 {} | |",
        us(pings[pings.len() / 2])
    );

    // Pipelined: many calls in flight from one thread, in windows.
    let total = calls.max(50_000);
    let window = 512;
    let start = Instant::now();
    let mut sent = 0;
    while sent < total {
        let n = window.min(total - sent);
        let handles = (0..n)
            .map(|i| worker.submit::<i64>("benchmod.echo", &(sent + i,)))
            .collect::<Result<Vec<_>, _>>()?;
        for h in handles {
            h.wait()?;
        }
        sent += n;
    }
    let rate = total as f64 / start.elapsed().as_secs_f64();
    println!(
        "| pipelined throughput ({window} in flight) | {:.0} calls/s | ≥ 50000 |",
        rate
    );

    // The same call as a one-shot script.
    let mut once = Vec::new();
    for i in 0..20 {
        let start = Instant::now();
        env.script("echo_once").input(&i).run::<i64>()?;
        once.push(start.elapsed());
    }
    once.sort();
    println!(
        "| same call as a one-shot script | median {} | |",
        ms(once[once.len() / 2])
    );

    // A pool of 2 processes against 1 for 4 CPU-bound (GIL-holding) calls.
    let mut pool_times = Vec::new();
    for processes in [1usize, 2] {
        let pool = env
            .worker(["benchmod"])
            .forward_stderr(false)
            .pool(processes)?;
        let t = best_of(3, || {
            let handles = (0..4)
                .map(|_| pool.submit::<i64>("benchmod.burn", &(2_000_000,)))
                .collect::<Result<Vec<_>, _>>()?;
            for h in handles {
                h.wait()?;
            }
            Ok(())
        })?;
        pool_times.push(t);
    }
    println!(
        "| 4 CPU-bound calls: pool of 2 vs pool of 1 | {} vs {} (ratio {:.2}) | about 0.5 |",
        ms(pool_times[1]),
        ms(pool_times[0]),
        pool_times[1].as_secs_f64() / pool_times[0].as_secs_f64()
    );

    // Byte buffers as binary frames vs the same bytes as a JSON list.
    for mb in [1usize, 256] {
        let bytes: Vec<u8> = (0..mb << 20).map(|i| i as u8).collect();
        let arg = (Buffer::new(bytes.clone()),);
        let t = best_of(3, || {
            let n: usize = worker.call("benchmod.length", &arg)?;
            assert_eq!(n, bytes.len());
            Ok(())
        })?;
        println!(
            "| {mb} MB as a binary frame | {} ({:.0} MB/s) | |",
            ms(t),
            mb as f64 / t.as_secs_f64()
        );
        // A 256 MB list would be ~1 GB of JSON and ~9 GB of Python ints: lists stop at 16 MB.
        let list_mb = mb.min(16);
        let list: Vec<u8> = bytes[..list_mb << 20].to_vec();
        let t = best_of(3, || {
            let n: usize = worker.call("benchmod.length", &(&list,))?;
            assert_eq!(n, list.len());
            Ok(())
        })?;
        println!(
            "| {list_mb} MB as a JSON list | {} ({:.1} MB/s) | |",
            ms(t),
            list_mb as f64 / t.as_secs_f64()
        );
    }
    Ok(())
}

fn best_of(
    n: usize,
    mut f: impl FnMut() -> Result<(), Box<dyn std::error::Error>>,
) -> Result<Duration, Box<dyn std::error::Error>> {
    let mut best = Duration::MAX;
    for _ in 0..n {
        let start = Instant::now();
        f()?;
        best = best.min(start.elapsed());
    }
    Ok(best)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
