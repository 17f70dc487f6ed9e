//! Worker call latency, throughput and bulk data, each beside the same thing done over a raw
//! pipe between this process and a bare Python loop (the floor), measured in the same run.
//!
//! `cargo run --release -p pybundle-runtime --example bench_worker -- [PYTHON] [CALLS]`
//!
//! Prints a markdown table (`| what | result | goal |`); `cargo xtask bench` reads its rows:
//!
//! - `raw pipe ping-pong (floor)` / `warm call round trip`: p50 / p99 of one small message
//!   there and back (goal for the call: p50 ≤ 15 µs);
//! - `raw pipe pipelined (floor)` / `pipelined throughput`: many in flight (goal ≥ 150000/s);
//! - `raw pipe copy Rust → Python` / `Python → Rust`: 256 MB through the pipe, read into
//!   fresh memory at the other end, and `… into reused memory`: into memory the receiver
//!   keeps from one copy to the next; beside the same as bytes (`256 MB as a binary frame`,
//!   `256 MB bytes Python → Rust`) and as a numpy float32 array (`256 MB numpy float32 …`,
//!   when the interpreter has numpy) through a worker (goal ≥ 2000 MB/s), and a plain copy of
//!   256 MB into fresh memory within this process (`memory copy into fresh memory`: the
//!   ceiling of any transport whose receiver writes into fresh memory). What is sent is made
//!   once (on the Python side by an untimed first call for the worker rows, in the first of the
//!   3 raw copies for the floor). Each is the best of 3 in a row; a
//!   receiver that reuses memory (the worker rows: see `Channel.recycle` and
//!   `buffer::receive_memory`) reads into the previous frame's memory.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pybundle_runtime::{Buffer, BufferRef, Environment, NdArray};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const MODULE: &str = r#"
def echo(x):
    return x

def length(data):
    return len(data)

# What `make` and `make_array` send, made once (as the Rust rows make theirs before timing):
# the rows time the transfer, not the making of 256 MB.
_made = {}

def make(n):
    if ("bytes", n) not in _made:
        _made["bytes", n] = bytes(range(256)) * (n // 256) + bytes(n % 256)
    return _made["bytes", n]

def burn(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total

def array_len(a):
    return int(a.size)

def make_array(n):
    if ("array", n) not in _made:
        import numpy
        _made["array", n] = numpy.arange(n, dtype=numpy.float32)
    return _made["array", n]

def has_numpy():
    try:
        import numpy
        return True
    except ImportError:
        return False
"#;

const SCRIPT: &str = "import pybundle\npybundle.reply(pybundle.input())\n";

/// The floor: a bare Python loop on plain pipes (grown to the worker's 1 MiB), 4-byte length
/// frames, nothing else.
const RAW: &str = r#"
import os, sys
r, w = sys.stdin.fileno(), sys.stdout.fileno()
inp = os.fdopen(r, "rb", buffering=1 << 16)
def read_exact(n):
    data = inp.read(n)
    if len(data) < n:
        sys.exit(0)
    return data
kept, sent = {}, {}
while True:
    head = read_exact(4)
    mode = head[0]
    n = int.from_bytes(head[1:], "big")
    if mode == 0:    # echo a small message
        os.write(w, head + read_exact(n))
    elif mode in (1, 3):  # receive n MB into fresh (1) or kept (3) memory, answer 4 bytes
        buf = kept.get(n) if mode == 3 else None
        if buf is None:
            buf = bytearray(n << 20)
            if mode == 3:
                kept[n] = buf
        view = memoryview(buf)
        got = 0
        while got < len(buf):
            got += inp.readinto(view[got:])
        os.write(w, b"\0\0\0\0")
    elif mode == 2:  # send n MB, made once
        if n not in sent:
            sent[n] = bytes(range(256)) * (n << 12)
        data = memoryview(sent[n])
        while data:
            data = data[os.write(w, data):]
"#;

fn main() -> Res<()> {
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
        .max_message(600 << 20)
        .start()?;
    let mut raw = Raw::start(&python)?;

    println!("interpreter {}", python.display());
    println!("| what | result | goal |");
    println!("|---|---|---|");

    // Round trips: the floor, then the worker (warmed up first, both). CPU time of each side
    // (all threads) per round trip says where the time goes.
    let cpu = Cpu::start(raw.child.id());
    let floor = percentiles(&mut raw.ping_pong(calls)?);
    let floor_cpu = cpu.per(calls);
    row(
        &format!("raw pipe ping-pong (floor), {calls} round trips"),
        &floor.show(),
        "",
    );
    for i in 0..1000 {
        worker.call::<i64>("benchmod.echo", &(i,))?;
    }
    let cpu = Cpu::start(worker.pid().unwrap_or_default());
    let mut times = Vec::with_capacity(calls);
    for i in 0..calls {
        let start = Instant::now();
        let back: i64 = worker.call("benchmod.echo", &(i,))?;
        times.push(start.elapsed());
        assert_eq!(back, i as i64);
    }
    let call_cpu = cpu.per(calls);
    let call = percentiles(&mut times);
    row(
        &format!("warm call round trip, {calls} calls"),
        &call.show(),
        "p50 ≤ 15 µs",
    );
    row(
        "CPU per round trip, Rust / Python (floor; call)",
        &format!(
            "{} / {}; {} / {}",
            us(floor_cpu.0),
            us(floor_cpu.1),
            us(call_cpu.0),
            us(call_cpu.1)
        ),
        "",
    );
    let mut pings: Vec<Duration> = (0..calls.min(5000))
        .map(|_| worker.ping(Duration::from_secs(5)))
        .collect::<Result<_, _>>()?;
    row(
        "ping round trip (no Python call thread)",
        &percentiles(&mut pings).show(),
        "",
    );

    // Pipelined.
    let window = 512;
    let total = calls.max(50_000);
    let raw_rate = raw.pipelined(total, window)?;
    row(
        &format!("raw pipe pipelined (floor, {window} in flight)"),
        &format!("{raw_rate:.0} messages/s"),
        "",
    );
    let cpu = Cpu::start(worker.pid().unwrap_or_default());
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
    let pipelined_cpu = cpu.per(total);
    row(
        &format!("pipelined throughput ({window} in flight)"),
        &format!("{rate:.0} calls/s"),
        "≥ 150000",
    );
    row(
        "CPU per pipelined call, Rust / Python",
        &format!("{} / {}", us(pipelined_cpu.0), us(pipelined_cpu.1)),
        "",
    );

    // The same call as a one-shot script.
    let mut once = Vec::new();
    for i in 0..20 {
        let start = Instant::now();
        env.script("echo_once").input(&i).run::<i64>()?;
        once.push(start.elapsed());
    }
    once.sort();
    row(
        "same call as a one-shot script",
        &format!("median {}", ms(once[once.len() / 2])),
        "",
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
    row(
        "4 CPU-bound calls: pool of 2 vs pool of 1",
        &format!(
            "{} vs {} (ratio {:.2})",
            ms(pool_times[1]),
            ms(pool_times[0]),
            pool_times[1].as_secs_f64() / pool_times[0].as_secs_f64()
        ),
        "about 0.5",
    );

    // Bulk data: 256 MB each way, raw pipe first. Whatever receives it writes it into fresh
    // memory, whose first touch costs a page fault per page: the same copy within this
    // process is the ceiling any transport that lands in fresh memory works under.
    let mb = 256usize;
    let goal = "≥ 2000 MB/s";
    let source = vec![7u8; mb << 20];
    let t = best_of(3, || {
        let mut fresh = Vec::with_capacity(source.len());
        fresh.extend_from_slice(&source);
        std::hint::black_box(&fresh);
        Ok(())
    })?;
    drop(source);
    row(
        &format!("memory copy into fresh memory, {mb} MB, in process (floor)"),
        &rate_cell(mb, t),
        "",
    );
    let data = vec![7u8; mb << 20];
    let t = best_of(3, || raw.copy_to_python(&data, false))?;
    row(
        &format!("raw pipe copy Rust → Python, {mb} MB (floor)"),
        &rate_cell(mb, t),
        "",
    );
    let t = best_of(3, || raw.copy_to_python(&data, true))?;
    row(
        &format!("raw pipe copy Rust → Python into reused memory, {mb} MB (floor)"),
        &rate_cell(mb, t),
        "",
    );
    drop(data);
    let t = best_of(3, || raw.copy_from_python(&mut vec![0u8; mb << 20]))?;
    row(
        &format!("raw pipe copy Python → Rust, {mb} MB (floor)"),
        &rate_cell(mb, t),
        "",
    );
    let mut kept = vec![0u8; mb << 20];
    let t = best_of(3, || raw.copy_from_python(&mut kept))?;
    drop(kept);
    row(
        &format!("raw pipe copy Python → Rust into reused memory, {mb} MB (floor)"),
        &rate_cell(mb, t),
        "",
    );
    let bytes: Vec<u8> = (0..mb << 20).map(|i| i as u8).collect();
    let t = best_of(3, || {
        let n: usize = worker.call("benchmod.length", &(BufferRef(&bytes),))?;
        assert_eq!(n, bytes.len());
        Ok(())
    })?;
    row(
        &format!("{mb} MB as a binary frame"),
        &rate_cell(mb, t),
        goal,
    );
    drop(worker.call::<Buffer>("benchmod.make", &(mb << 20,))?);
    let t = best_of(3, || {
        let back: Buffer = worker.call("benchmod.make", &(mb << 20,))?;
        assert_eq!(back.len(), mb << 20);
        Ok(())
    })?;
    row(
        &format!("{mb} MB bytes Python → Rust"),
        &rate_cell(mb, t),
        goal,
    );
    if worker.call::<bool>("benchmod.has_numpy", &())? {
        let floats = mb << 18;
        let array = NdArray::from_vec(vec![1.0f32; floats], vec![floats])?;
        let t = best_of(3, || {
            let n: usize = worker.call("benchmod.array_len", &(&array,))?;
            assert_eq!(n, floats);
            Ok(())
        })?;
        row(
            &format!("{mb} MB numpy float32 Rust → Python"),
            &rate_cell(mb, t),
            goal,
        );
        drop(worker.call::<NdArray>("benchmod.make_array", &(floats,))?);
        let t = best_of(3, || {
            let back: NdArray = worker.call("benchmod.make_array", &(floats,))?;
            assert_eq!(back.len(), floats);
            Ok(())
        })?;
        row(
            &format!("{mb} MB numpy float32 Python → Rust"),
            &rate_cell(mb, t),
            goal,
        );
    } else {
        row(
            "numpy float32 rows",
            "skipped: no numpy in this interpreter",
            "",
        );
    }
    // A 256 MB list would be ~1 GB of JSON and ~9 GB of Python ints: lists stop at 16 MB.
    let list: Vec<u8> = bytes[..16 << 20].to_vec();
    let t = best_of(1, || {
        let n: usize = worker.call("benchmod.length", &(&list,))?;
        assert_eq!(n, list.len());
        Ok(())
    })?;
    row("16 MB as a JSON list", &rate_cell(16, t), "");
    Ok(())
}

/// CPU time (all threads) of this process and of a child, from `/proc/*/task/*/schedstat`.
struct Cpu {
    pid: u32,
    ours: u64,
    theirs: u64,
}

fn cpu_ns(pid: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

impl Cpu {
    fn start(pid: u32) -> Cpu {
        Cpu {
            pid,
            ours: cpu_ns("self"),
            theirs: cpu_ns(&pid.to_string()),
        }
    }

    /// (this process, the child) per operation, for `n` operations since `start`.
    fn per(&self, n: usize) -> (Duration, Duration) {
        let ours = cpu_ns("self").saturating_sub(self.ours);
        let theirs = cpu_ns(&self.pid.to_string()).saturating_sub(self.theirs);
        (
            Duration::from_nanos(ours / n as u64),
            Duration::from_nanos(theirs / n as u64),
        )
    }
}

fn row(what: &str, result: &str, goal: &str) {
    println!("| {what} | {result} | {goal} |");
}

struct Percentiles(Duration, Duration);

impl Percentiles {
    fn show(&self) -> String {
        format!("p50 {} / p99 {}", us(self.0), us(self.1))
    }
}

fn percentiles(times: &mut [Duration]) -> Percentiles {
    times.sort();
    Percentiles(times[times.len() / 2], times[times.len() * 99 / 100])
}

/// The floor's Python process.
struct Raw {
    child: Child,
}

impl Raw {
    fn start(python: &Path) -> Res<Raw> {
        let child = Command::new(python)
            .args(["-I", "-c", RAW])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        // The pipe size the worker's pipes get (pybundle-runtime's `child::grow_pipe`).
        for fd in [
            child.stdin.as_ref().map(|p| p.as_raw_fd()),
            child.stdout.as_ref().map(|p| p.as_raw_fd()),
        ]
        .into_iter()
        .flatten()
        {
            // SAFETY: fcntl on a descriptor this process owns, with an integer argument.
            unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, 1 << 20) };
        }
        Ok(Raw { child })
    }

    fn io(
        &mut self,
    ) -> (
        &mut std::process::ChildStdin,
        &mut std::process::ChildStdout,
    ) {
        let child = &mut self.child;
        match (child.stdin.as_mut(), child.stdout.as_mut()) {
            (Some(i), Some(o)) => (i, o),
            _ => unreachable!("both pipes were asked for"),
        }
    }

    /// Small messages there and back, one at a time (the same 8-byte payload each time).
    fn ping_pong(&mut self, n: usize) -> Res<Vec<Duration>> {
        let (input, output) = self.io();
        let msg = [0u8, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        let mut back = [0u8; 12];
        for _ in 0..1000 {
            input.write_all(&msg)?;
            output.read_exact(&mut back)?;
        }
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let start = Instant::now();
            input.write_all(&msg)?;
            output.read_exact(&mut back)?;
            times.push(start.elapsed());
        }
        Ok(times)
    }

    fn pipelined(&mut self, total: usize, window: usize) -> Res<f64> {
        let (input, output) = self.io();
        let msg = [0u8, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        let batch: Vec<u8> = msg
            .iter()
            .copied()
            .cycle()
            .take(msg.len() * window)
            .collect();
        let mut back = vec![0u8; batch.len()];
        let start = Instant::now();
        let mut done = 0;
        while done < total {
            input.write_all(&batch)?;
            output.read_exact(&mut back)?;
            done += window;
        }
        Ok(done as f64 / start.elapsed().as_secs_f64())
    }

    /// Sends `data` (whole MBs); Python reads it into fresh memory, or into memory it keeps
    /// from one copy to the next when `reuse`.
    fn copy_to_python(&mut self, data: &[u8], reuse: bool) -> Res<()> {
        let mb = data.len() >> 20;
        let (input, output) = self.io();
        input.write_all(&[if reuse { 3 } else { 1 }, 0, (mb >> 8) as u8, mb as u8])?;
        input.write_all(data)?;
        output.read_exact(&mut [0u8; 4])?;
        Ok(())
    }

    /// Has Python send `into.len()` bytes (whole MBs), read into `into`.
    fn copy_from_python(&mut self, into: &mut [u8]) -> Res<()> {
        let mb = into.len() >> 20;
        let (input, output) = self.io();
        input.write_all(&[2, 0, (mb >> 8) as u8, mb as u8])?;
        output.read_exact(into)?;
        Ok(())
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn best_of(n: usize, mut f: impl FnMut() -> Res<()>) -> Res<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..n {
        let start = Instant::now();
        f()?;
        best = best.min(start.elapsed());
    }
    Ok(best)
}

fn rate_cell(mb: usize, t: Duration) -> String {
    format!("{} ({:.0} MB/s)", ms(t), mb as f64 / t.as_secs_f64())
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
