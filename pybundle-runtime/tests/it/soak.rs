//! Soak: a million worker calls with random payloads (byte buffers, JSON strings, JSON values,
//! up to 64 KiB) from several threads, each echo checked exactly, RSS of both processes
//! sampled. Ignored by default; `cargo xtask stress` runs it in release:
//!
//! `cargo test -p pybundle-runtime --release --test it -- --ignored --exact
//! soak::a_million_calls_with_random_payloads --nocapture`
//!
//! `PYBUNDLE_SOAK_CALLS` sets the number of calls, `PYBUNDLE_SOAK_SEED` repeats a run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pybundle_runtime::Buffer;
use serde_json::{json, Value};

use crate::script::env_for;
use crate::worker::rss_kib;

const CALLERS: u64 = 4;
const MAX_PAYLOAD: usize = 64 * 1024;
/// Calls at the start that all carry [`MAX_PAYLOAD`] (part of the warm-up).
const SATURATE: u64 = 4_000;

/// splitmix64: small, seedable, good enough to vary payloads.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A size up to [`MAX_PAYLOAD`], log-uniform: as many tiny as huge payloads per octave.
    fn size(&mut self) -> usize {
        let bits = self.below(17) as u32; // 0..=16
        (self.below(1 << bits) as usize).min(MAX_PAYLOAD)
    }

    fn text(&mut self, bytes: usize) -> String {
        const PIECES: &[&str] = &[
            "a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\u{1}", "\u{7f}", "é", "ß", "日",
            "本", "\u{2028}", "🐍", "𝄞",
        ];
        let mut s = String::with_capacity(bytes + 4);
        while s.len() < bytes {
            // Mostly ASCII runs, like real text, with every awkward case in between.
            if self.below(4) == 0 {
                s.push_str(PIECES[self.below(PIECES.len() as u64) as usize]);
            } else {
                s.push(char::from(b'a' + self.below(26) as u8));
            }
        }
        s
    }

    fn leaf(&mut self) -> Value {
        match self.below(6) {
            0 => Value::Null,
            1 => Value::Bool(self.below(2) == 1),
            2 => json!(self.next() as i64),
            // Multiples of 1/8 print and parse exactly on both sides.
            3 => json!((self.below(1 << 21) as f64 - (1 << 20) as f64) / 8.0),
            _ => {
                let n = self.below(24) as usize;
                Value::String(self.text(n))
            }
        }
    }

    /// A nested JSON value of roughly `bytes` bytes when encoded.
    fn value(&mut self, bytes: usize, depth: u32) -> Value {
        if bytes < 16 || depth > 4 {
            return self.leaf();
        }
        let parts = 1 + self.below(8) as usize;
        let each = bytes / parts;
        if self.below(2) == 0 {
            Value::Array((0..parts).map(|_| self.value(each, depth + 1)).collect())
        } else {
            let map = (0..parts)
                .map(|i| (format!("k{i}{}", self.text(3)), self.value(each, depth + 1)))
                .collect();
            Value::Object(map)
        }
    }
}

struct Sample {
    calls: u64,
    elapsed: Duration,
    rust_kib: u64,
    python_kib: u64,
}

/// A table row: the peak RSS of the samples since the previous row, and the call rate.
fn print_row(samples: &[Sample], every: u64) {
    let Some(last) = samples.last() else { return };
    let since = samples
        .iter()
        .rev()
        .find(|s| s.calls + every <= last.calls)
        .map_or((0, Duration::ZERO), |s| (s.calls, s.elapsed));
    let window = samples.iter().filter(|s| s.calls > since.0);
    let (rust, python) = window.fold((0, 0), |(r, p), s| (r.max(s.rust_kib), p.max(s.python_kib)));
    let rate = (last.calls - since.0) as f64 / last.elapsed.saturating_sub(since.1).as_secs_f64();
    println!(
        "{:>9} {:>8.1}s {:>9.0} {:>13.1} {:>15.1}",
        last.calls,
        last.elapsed.as_secs_f64(),
        rate,
        rust as f64 / 1024.0,
        python as f64 / 1024.0
    );
}

/// The random stream of calling thread `t` in a soak run with `seed`.
fn thread_rng(seed: u64, t: u64) -> Rng {
    Rng(seed ^ t.wrapping_mul(0xa076_1d64_78bd_642f))
}

/// What `PYBUNDLE_SOAK_SEED` gives back: each thread's stream of sizes, bytes, strings and JSON
/// values is the same for the same seed (and another for another seed or thread).
#[test]
fn a_seed_gives_each_thread_the_same_payloads_again() {
    let draw = |seed: u64, t: u64| {
        let mut rng = thread_rng(seed, t);
        (0..50)
            .map(|_| {
                let size = rng.size();
                (size, rng.text(size % 512), rng.value(size % 4096, 0))
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(draw(7, 1), draw(7, 1));
    assert_ne!(draw(7, 1), draw(8, 1));
    assert_ne!(draw(7, 1), draw(7, 2));
}

/// One call with a random payload; panics (naming the call) unless the echo is exact.
fn one_call(w: &pybundle_runtime::Worker, rng: &mut Rng, n: u64, seed: u64) -> usize {
    // The first calls carry the largest payloads from every caller at once, so the warm-up
    // holds the worst case of memory in flight (4 callers × 64 KiB × their decoded copies,
    // about 2 MB); otherwise a rare coincidence of large payloads later in the run would look
    // like growth to a peak-against-peak comparison.
    let size = if n < SATURATE {
        MAX_PAYLOAD
    } else {
        rng.size()
    };
    let fail = |e: &dyn std::fmt::Display| -> ! { panic!("call {n} (seed {seed}): {e}") };
    match rng.below(3) {
        0 => {
            let data: Vec<u8> = (0..size).map(|_| rng.next() as u8).collect();
            let back: Buffer = w
                .call("wmod.echo", &(Buffer::new(data.clone()),))
                .unwrap_or_else(|e| fail(&e));
            assert!(
                back[..] == data[..],
                "call {n} (seed {seed}): {size} bytes differ"
            );
        }
        1 => {
            let text = rng.text(size);
            let back: String = w.call("wmod.echo", &(&text,)).unwrap_or_else(|e| fail(&e));
            assert!(back == text, "call {n} (seed {seed}): a string differs");
        }
        _ => {
            let value = rng.value(size, 0);
            let back: Value = w.call("wmod.echo", &(&value,)).unwrap_or_else(|e| fail(&e));
            assert!(
                back == value,
                "call {n} (seed {seed}): a JSON value differs"
            );
        }
    }
    size
}

#[test]
#[ignore = "soak: run by cargo xtask stress"]
fn a_million_calls_with_random_payloads() {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let calls = var("PYBUNDLE_SOAK_CALLS").unwrap_or(1_000_000);
    let seed = var("PYBUNDLE_SOAK_SEED").unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    // RSS is sampled 200 times; a table row every ~50k calls shows the peak since the last.
    let step = (calls / 200).max(1);
    let every = ((calls / 20).clamp(1, 50_000) / step * step).max(step);
    println!(
        "soak: {calls} calls from {CALLERS} threads, payloads up to {MAX_PAYLOAD} bytes, \
         seed {seed} (PYBUNDLE_SOAK_SEED={seed} repeats it)"
    );
    let env = env_for(&testkit::pyenv::host_python());
    let w = env
        .worker(["wmod"])
        .threads(CALLERS as usize)
        .forward_stderr(false)
        .start()
        .unwrap();
    let python = w.pid().unwrap().to_string();
    let claimed = AtomicU64::new(0);
    let completed = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let samples = Mutex::new(Vec::new());
    println!(
        "{:>9} {:>9} {:>9} {:>13} {:>15}",
        "calls", "elapsed", "calls/s", "RSS Rust MiB", "RSS Python MiB"
    );
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..CALLERS {
            let (w, claimed, completed, bytes, samples) =
                (&w, &claimed, &completed, &bytes, &samples);
            let python = python.as_str();
            scope.spawn(move || {
                let mut rng = thread_rng(seed, t);
                loop {
                    let n = claimed.fetch_add(1, Ordering::Relaxed);
                    if n >= calls {
                        break;
                    }
                    let size = one_call(w, &mut rng, n, seed);
                    bytes.fetch_add(size as u64, Ordering::Relaxed);
                    let done = completed.fetch_add(1, Ordering::Relaxed) + 1;
                    if done % step == 0 || done == calls {
                        let sample = Sample {
                            calls: done,
                            elapsed: start.elapsed(),
                            rust_kib: rss_kib("self"),
                            python_kib: rss_kib(python),
                        };
                        let mut samples = samples.lock().unwrap();
                        samples.push(sample);
                        if done % every == 0 || done == calls {
                            print_row(&samples, every);
                        }
                    }
                }
            });
        }
    });
    let elapsed = start.elapsed();
    assert_eq!(w.in_flight(), 0);
    let mut samples = samples.into_inner().unwrap();
    samples.sort_by_key(|s| s.calls);

    let total = bytes.load(Ordering::Relaxed);
    println!(
        "soak: {calls} calls in {:.1} s = {:.0} calls/s, {:.2} GB of payload each way (seed {seed})",
        elapsed.as_secs_f64(),
        calls as f64 / elapsed.as_secs_f64(),
        total as f64 / 1e9
    );

    // Warm-up is the first 10% (at least the saturating calls). RSS moves with the payloads in
    // flight (up to 64 KiB each, and their decoded copies), so peaks are compared with peaks:
    // the highest sample of the warm-up is the reference no later sample may exceed by more
    // than 10%.
    let warm_end = (calls / 10).max(SATURATE.min(calls / 2));
    let (warm, after): (Vec<&Sample>, Vec<&Sample>) =
        samples.iter().partition(|s| s.calls <= warm_end);
    assert!(!warm.is_empty() && !after.is_empty(), "too few samples");
    for (side, value) in [
        ("Rust", (|s: &Sample| s.rust_kib) as fn(&Sample) -> u64),
        ("Python", |s: &Sample| s.python_kib),
    ] {
        let base = warm.iter().map(|s| value(s)).max().unwrap_or(0);
        let min = after.iter().map(|s| value(s)).min().unwrap_or(0);
        let max = after.iter().map(|s| value(s)).max().unwrap_or(0);
        println!(
            "soak: {side} RSS peak in the warm-up ({warm_end} calls) {base} KiB; after it min \
             {min} KiB, max {max} KiB ({:+.1}%)",
            (max as f64 / base as f64 - 1.0) * 100.0
        );
        assert!(
            max as f64 <= base as f64 * 1.10,
            "{side} RSS grew from {base} KiB in the warm-up to {max} KiB (seed {seed})"
        );
    }
}
