//! Long-lived workers and pools against real interpreters (host CPython and, when the
//! toolchain is prepared, the test channel's Python installed by pixi).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pybundle_runtime::{Buffer, Environment, Error, Kwargs, Worker, WorkerEvent};
use serde_json::{json, Value};
use testkit::pyenv::pythons;

use crate::script::env_for;

fn each(test: &str, check: impl Fn(&Environment)) {
    for py in pythons(test) {
        eprintln!("{test}: {} python {}", py.label, py.interpreter.display());
        check(&env_for(&py));
    }
}

/// Submits `func` with a message handler and returns once Python said "started": the call is
/// running there (a barrier, not a guess with a sleep).
pub fn submit_running<R: serde::de::DeserializeOwned>(
    w: &Worker,
    func: &str,
    args: &(impl serde::Serialize + ?Sized),
) -> pybundle_runtime::CallHandle<R> {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = w
        .request(func)
        .args(args)
        .on_message(move |m| {
            let _ = tx.send(m);
        })
        .submit()
        .unwrap();
    let said = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{func} never said it started: {e}"));
    assert_eq!(said, "started");
    handle
}

fn worker(env: &Environment) -> Worker {
    worker_with_threads(env, 4)
}

fn worker_with_threads(env: &Environment, threads: usize) -> Worker {
    env.worker(["wmod"])
        .threads(threads)
        .forward_stderr(false)
        .start()
        .unwrap()
}

fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

#[test]
fn a_thousand_concurrent_calls_from_eight_threads() {
    each("a_thousand_concurrent_calls_from_eight_threads", |env| {
        let w = worker(env);
        std::thread::scope(|scope| {
            for t in 0..8i64 {
                let w = &w;
                scope.spawn(move || {
                    // Half submitted in a burst, half called one by one.
                    let handles: Vec<_> = (0..63i64)
                        .map(|i| (i, w.submit::<i64>("wmod.add", &(t * 1000, i)).unwrap()))
                        .collect();
                    for i in 63..125i64 {
                        assert_eq!(
                            w.call::<i64>("wmod.add", &(t * 1000, i)).unwrap(),
                            t * 1000 + i
                        );
                    }
                    for (i, h) in handles {
                        assert_eq!(h.wait().unwrap(), t * 1000 + i);
                    }
                });
            }
        });
        assert_eq!(w.in_flight(), 0);
    });
}

#[test]
fn arguments_results_keywords_and_unicode() {
    each("arguments_results_keywords_and_unicode", |env| {
        let w = worker(env);
        let value = json!({"nested": [1, 2.5, null, {"ü": "日本語 🐍"}]});
        assert_eq!(w.call::<Value>("wmod.echo", &(&value,)).unwrap(), value);
        assert_eq!(
            w.call::<Value>("wmod.keywords", &Kwargs(json!({"a": 1, "c": 9})))
                .unwrap(),
            json!([1, 2, 9])
        );
        let err = w.call::<Value>("wmod.unencodable", &()).unwrap_err();
        let Error::Python { error, .. } = &err else {
            panic!("wrong error: {err}")
        };
        assert!(error.message.contains("set"), "{}", error.message);
        let err = w.call::<Value>("wmod.no_such_function", &()).unwrap_err();
        assert!(matches!(&err, Error::UnknownFunction { .. }), "{err}");
    });
}

#[test]
fn printing_during_a_call_does_not_corrupt_the_channel() {
    each(
        "printing_during_a_call_does_not_corrupt_the_channel",
        |env| {
            let w = worker(env);
            for i in 0..20 {
                assert_eq!(w.call::<i64>("wmod.noisy", &(i,)).unwrap(), i * 2);
            }
            // The output reaches the tail on its own thread: wait (up to 5 s) for all of it.
            let lines = [
                "noisy print 19",
                "noisy sys.stdout.write",
                "noisy os.write fd 1",
            ];
            let deadline = Instant::now() + Duration::from_secs(5);
            while !lines.iter().all(|l| w.stderr_tail().contains(l)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let tail = w.stderr_tail();
            for line in lines {
                assert!(tail.contains(line), "{line:?} missing from {tail:?}");
            }
        },
    );
}

#[test]
fn an_exception_comes_back_with_its_traceback() {
    each(
        "worker: an_exception_comes_back_with_its_traceback",
        |env| {
            let w = worker(env);
            let err = w.call::<Value>("wmod.fail", &("missing-key",)).unwrap_err();
            let Error::Python { error, .. } = &err else {
                panic!("wrong error: {err}")
            };
            assert_eq!(error.type_name, "KeyError");
            assert_eq!(error.message, "'missing-key'");
            for part in [
                "Traceback (most recent call last)",
                "wmod.py",
                "lookup_missing",
                "KeyError",
            ] {
                assert!(
                    error.traceback.contains(part),
                    "{part:?} missing from {}",
                    error.traceback
                );
            }
            assert!(
                !error.traceback.contains("_worker.py"),
                "{}",
                error.traceback
            );
            assert!(
                err.to_string().contains("call `wmod.fail` raised KeyError"),
                "{err}"
            );
            // The worker goes on serving.
            assert_eq!(w.call::<i64>("wmod.add", &(1, 2)).unwrap(), 3);
        },
    );
}

#[test]
fn a_call_times_out_and_the_worker_goes_on() {
    each("a_call_times_out_and_the_worker_goes_on", |env| {
        let w = worker(env);
        let start = Instant::now();
        let err = w
            .request("wmod.sleep")
            .args(&(5,))
            .timeout(Duration::from_millis(300))
            .call::<f64>();
        assert!(matches!(err, Err(Error::Timeout { .. })), "{err:?}");
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(w.call::<i64>("wmod.add", &(2, 2)).unwrap(), 4);
    });
}

#[test]
fn cancel_discards_the_result_and_python_sees_the_flag() {
    each(
        "cancel_discards_the_result_and_python_sees_the_flag",
        |env| {
            let w = worker(env);
            let handle = submit_running::<String>(&w, "wmod.wait_for_cancel", &("t1", 10));
            assert!(!handle.is_done());
            handle.cancel();
            assert!(matches!(handle.wait(), Err(Error::Cancelled { .. })));
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match w.call::<Option<bool>>("wmod.saw_cancel", &("t1",)).unwrap() {
                    Some(seen) => {
                        assert!(seen, "python never saw pybundle.cancelled() turn true");
                        break;
                    }
                    None => assert!(Instant::now() < deadline, "the cancelled call never ended"),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        },
    );
}

#[test]
fn sigkill_mid_call_fails_in_flight_calls_and_the_next_call_restarts() {
    each(
        "sigkill_mid_call_fails_in_flight_calls_and_the_next_call_restarts",
        |env| {
            let events = Arc::new(Mutex::new(Vec::new()));
            let seen = events.clone();
            let w = env
                .worker(["wmod"])
                .forward_stderr(false)
                .on_event(move |e| seen.lock().unwrap().push(e.clone()))
                .start()
                .unwrap();
            let first = w.call::<u32>("wmod.pid", &()).unwrap();
            assert_eq!(w.pid(), Some(first));
            let handles: Vec<_> = (0..3)
                .map(|_| submit_running::<f64>(&w, "wmod.announced_sleep", &(30,)))
                .collect();
            assert_eq!(w.in_flight(), 3);
            // SAFETY: kill(2) on the worker's own pid.
            unsafe { libc::kill(first as i32, libc::SIGKILL) };
            for h in handles {
                let err = h.wait().unwrap_err();
                let Error::WorkerCrashed { status, .. } = &err else {
                    panic!("wrong error: {err}")
                };
                assert!(
                    status.contains("signal: 9") && status.contains("SIGKILL"),
                    "{status}"
                );
            }
            assert!(!process_exists(first), "the killed process was not reaped");
            let second = w.call::<u32>("wmod.pid", &()).unwrap();
            assert_ne!(first, second);
            // Events are delivered by the worker's own thread: the third may follow the call.
            let until = Instant::now() + Duration::from_secs(30);
            while events.lock().unwrap().len() < 3 && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            let events = events.lock().unwrap().clone();
            assert!(events.len() >= 3, "{events:?}");
            assert!(
                matches!(events[0], WorkerEvent::Started { pid } if pid == first),
                "{events:?}"
            );
            assert!(
                matches!(events[1], WorkerEvent::Crashed { pid, .. } if pid == first),
                "{events:?}"
            );
            assert!(
                matches!(events[2], WorkerEvent::Started { pid } if pid == second),
                "{events:?}"
            );
        },
    );
}

#[test]
fn ping_is_answered_even_when_every_thread_is_busy() {
    each("ping_is_answered_even_when_every_thread_is_busy", |env| {
        let w = worker_with_threads(env, 1);
        assert!(w.ping(Duration::from_secs(5)).unwrap() < Duration::from_secs(1));
        let busy = submit_running::<f64>(&w, "wmod.announced_sleep", &(2,));
        let rtt = w.ping(Duration::from_secs(5)).unwrap();
        assert!(rtt < Duration::from_millis(1000), "ping took {rtt:?}");
        assert!(!busy.is_done());
        assert_eq!(busy.wait().unwrap(), 2.0);
    });
}

#[test]
fn progress_messages_per_call_arrive_in_order() {
    each("progress_messages_per_call_arrive_in_order", |env| {
        let w = worker(env);
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        let n: usize = w
            .request("wmod.progress")
            .args(&(20,))
            .on_message(move |m| sink.lock().unwrap().push(m["step"].as_u64().unwrap()))
            .call()
            .unwrap();
        assert_eq!(n, 20);
        assert_eq!(*got.lock().unwrap(), (0..20).collect::<Vec<u64>>());
    });
}

#[test]
fn byte_buffers_travel_as_binary_frames() {
    each("byte_buffers_travel_as_binary_frames", |env| {
        let w = worker(env);
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let info: Value = w
            .call("wmod.buffer_info", &(Buffer::new(data.clone()),))
            .unwrap();
        assert_eq!(
            info,
            json!({"type": "bytes", "len": 1_000_000, "first": 0, "last": data[999_999]})
        );
        #[derive(serde::Deserialize)]
        struct Made {
            payload: Buffer,
            n: usize,
        }
        let made: Made = w.call("wmod.make_bytes", &(1 << 20,)).unwrap();
        assert_eq!(made.n, 1 << 20);
        assert_eq!(made.payload.len(), 1 << 20);
        assert_eq!(&made.payload[..3], &[0, 1, 2]);
    });
}

#[test]
fn a_failing_import_is_a_start_error_with_the_traceback() {
    each(
        "a_failing_import_is_a_start_error_with_the_traceback",
        |env| {
            let err = env
                .worker(["broken_import"])
                .forward_stderr(false)
                .start()
                .err()
                .unwrap();
            let Error::WorkerStart { detail, .. } = &err else {
                panic!("wrong error: {err}")
            };
            assert!(
                detail.contains("broken at import time") && detail.contains("helper"),
                "{detail}"
            );
        },
    );
}

#[test]
fn dropping_the_worker_shuts_the_process_down() {
    each("dropping_the_worker_shuts_the_process_down", |env| {
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        let w = env
            .worker(["wmod"])
            .forward_stderr(false)
            .on_event(move |e| seen.lock().unwrap().push(e.clone()))
            .start()
            .unwrap();
        let pid = w.call::<u32>("wmod.pid", &()).unwrap();
        let start = Instant::now();
        drop(w);
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert!(!process_exists(pid), "worker process {pid} is still there");
        assert!(events
            .lock()
            .unwrap()
            .contains(&WorkerEvent::Stopped { pid }));
    });
}

#[test]
fn a_pool_of_two_runs_cpu_bound_calls_in_two_processes_at_once() {
    // What gives a pool GIL-free parallelism is that CPU-bound calls run in separate processes
    // at the same time. That is checked here from when each call ran; how much faster it is
    // depends on free cores, so the wall-time ratio is measured by the bench_worker example
    // (a table row), not asserted in a timed test on a shared machine.
    let env = env_for(&testkit::pyenv::host_python());
    let pool = env.worker(["wmod"]).forward_stderr(false).pool(2).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            pool.submit::<(u32, f64, f64)>("wmod.burn_timed", &(300_000,))
                .unwrap()
        })
        .collect();
    let runs: Vec<(u32, f64, f64)> = handles.into_iter().map(|h| h.wait().unwrap()).collect();
    let mut pids: Vec<u32> = runs.iter().map(|r| r.0).collect();
    pids.sort();
    pids.dedup();
    assert_eq!(
        pids.len(),
        2,
        "4 calls were not spread over 2 processes: {runs:?}"
    );
    let overlapping = runs
        .iter()
        .any(|a| runs.iter().any(|b| a.0 != b.0 && a.1 < b.2 && b.1 < a.2));
    assert!(
        overlapping,
        "no two calls in different processes ran at the same time: {runs:?}"
    );
    // A clone is a handle on the same processes: it starts none of its own.
    let clone = pool.clone();
    let mut cloned: Vec<u32> = (0..4)
        .map(|_| {
            clone
                .submit::<(u32, f64, f64)>("wmod.burn_timed", &(1_000,))
                .unwrap()
        })
        .map(|h| h.wait().unwrap().0)
        .collect();
    cloned.sort();
    cloned.dedup();
    assert!(
        cloned.iter().all(|pid| pids.contains(pid)),
        "the clone ran calls in other processes: {cloned:?} vs {pids:?}"
    );
}

/// A minimal executor: polls on this thread, parks until woken.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(out) => return out,
            std::task::Poll::Pending => std::thread::park(),
        }
    }
}

#[test]
fn call_handles_are_futures_woken_by_the_reader() {
    each("call_handles_are_futures_woken_by_the_reader", |env| {
        let w = worker(env);
        let slow = w.submit::<f64>("wmod.sleep", &(0.3,)).unwrap();
        let quick: Vec<_> = (0..50)
            .map(|i| w.submit::<i64>("wmod.add", &(i, 1)).unwrap())
            .collect();
        let start = Instant::now();
        assert_eq!(block_on(slow).unwrap(), 0.3);
        assert!(
            start.elapsed() >= Duration::from_millis(150),
            "{:?}",
            start.elapsed()
        );
        for (i, h) in quick.into_iter().enumerate() {
            assert_eq!(block_on(h).unwrap(), i as i64 + 1);
        }
        let err = block_on(w.submit::<Value>("wmod.fail", &("k",)).unwrap()).unwrap_err();
        assert!(matches!(err, Error::Python { .. }), "{err}");
    });
}

const RSS_CHILD_ENV: &str = "PYBUNDLE_IT_RSS_CHILD";

/// Resident set size of a process in KiB, from `/proc/<pid>/status` (shared by the soak and
/// misbehave tests).
pub fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Not a test on its own: the body of [`no_growth_over_200k_calls`], run in a child process
/// (this test binary re-executed) so no other test's allocations move the Rust side's RSS.
#[test]
fn rss_child_process() {
    if std::env::var_os(RSS_CHILD_ENV).is_none() {
        return;
    }
    let env = env_for(&testkit::pyenv::host_python());
    let w = env
        .worker(["wmod"])
        .threads(4)
        .forward_stderr(false)
        .start()
        .unwrap();
    let payload = json!({"values": (0..64).collect::<Vec<i32>>(), "text": "é".repeat(200)});
    let run = |calls: usize| {
        // Pipelined in batches, as a busy service would call.
        for _ in 0..calls / 500 {
            let handles: Vec<_> = (0..500)
                .map(|_| w.submit::<Value>("wmod.echo", &(&payload,)).unwrap())
                .collect();
            for h in handles {
                assert_eq!(h.wait().unwrap(), payload);
            }
        }
    };
    let pid = w.pid().unwrap().to_string();
    run(10_000);
    let (rust_10k, py_10k) = (rss_kib("self"), rss_kib(&pid));
    run(190_000);
    let (rust_200k, py_200k) = (rss_kib("self"), rss_kib(&pid));
    println!("RSS-KIB {rust_10k} {rust_200k} {py_10k} {py_200k}");
}

#[test]
fn no_growth_over_200k_calls() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "worker::rss_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(RSS_CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        // libtest prints the test's name on the same line before the child's output.
        .find_map(|l| l.split("RSS-KIB ").nth(1))
        .unwrap_or_else(|| panic!("no RSS line in the child's output: {stdout}"));
    let kib: Vec<u64> = line.split(' ').map(|v| v.parse().unwrap()).collect();
    let (rust_10k, rust_200k, py_10k, py_200k) = (kib[0], kib[1], kib[2], kib[3]);
    eprintln!(
        "RSS after 10k / 200k calls: Rust {rust_10k} / {rust_200k} KiB, Python {py_10k} / {py_200k} KiB"
    );
    for (side, early, late) in [("Rust", rust_10k, rust_200k), ("Python", py_10k, py_200k)] {
        assert!(
            late as f64 <= early as f64 * 1.10,
            "{side} process grew from {early} KiB after 10k calls to {late} KiB after 200k"
        );
    }
}

/// Write system calls the process made so far (`syscw` of `/proc/<pid>/io`).
fn write_calls(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("syscw:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// Quick calls already waiting in the pipe are answered with one write per batch read, not
/// one each; every answer still arrives, each with its own call's value.
#[test]
fn answers_to_calls_read_together_leave_in_few_writes() {
    each(
        "answers_to_calls_read_together_leave_in_few_writes",
        |env| {
            let w = worker_with_threads(env, 1);
            let pid = w.pid().unwrap();
            let dir = tempfile::tempdir().unwrap();
            // A call is quick when its last one took under half a millisecond of wall time; on a
            // loaded machine a preempted call can miss that and take the hand-off path, whose
            // answers are written one by one. So up to three rounds; one must show the batching.
            let mut rounds = Vec::new();
            for round in 0..3 {
                // Both functions run quickly once: the worker then runs them on its reading thread.
                for i in 0..5i64 {
                    assert_eq!(w.call::<i64>("wmod.echo", &(i,)).unwrap(), i);
                }
                let gate = dir.path().join(format!("gate-{round}"));
                assert!(w
                    .call::<bool>("wmod.wait_for_path", &(dir.path(), 0))
                    .unwrap());
                // The reading thread waits at the gate while 2000 calls fill the pipe behind it.
                let blocker = w
                    .submit::<bool>("wmod.wait_for_path", &(&gate, 120))
                    .unwrap();
                let before = write_calls(pid);
                let handles: Vec<_> = (0..2000i64)
                    .map(|i| (i, w.submit::<i64>("wmod.echo", &(i,)).unwrap()))
                    .collect();
                std::fs::write(&gate, "").unwrap();
                assert!(blocker.wait().unwrap());
                for (i, h) in handles {
                    assert_eq!(h.wait().unwrap(), i);
                }
                rounds.push(write_calls(pid) - before);
                if rounds.last().is_some_and(|&n| n <= 100) {
                    return;
                }
            }
            panic!("2000 answers took {rounds:?} writes in each round (one each would be 2000)");
        },
    );
}

/// Answers are held for a call that turned slow once at most: a function that was quick and
/// turns slow may hold the answers read with it (and before it) for that call; the worker then
/// runs it off the reading thread, and the answers read with it leave at once.
#[test]
fn a_function_that_turns_slow_holds_earlier_answers_once() {
    each(
        "a_function_that_turns_slow_holds_earlier_answers_once",
        |env| {
            let w = worker_with_threads(env, 2);
            for i in 0..5i64 {
                assert_eq!(w.call::<i64>("wmod.echo", &(i,)).unwrap(), i);
            }
            assert_eq!(w.call::<f64>("wmod.sleep", &(0.0,)).unwrap(), 0.0);
            assert_eq!(w.call::<f64>("wmod.pause", &(0.0,)).unwrap(), 0.0);
            // Each round: the reading thread is held up by `sleep` while an echo and a slow
            // `pause` queue up behind it, so both are read in one batch. How long the echo's
            // answer took from the round's start, and the other two still answered.
            let round = || {
                let start = Instant::now();
                let blocker = w.submit::<f64>("wmod.sleep", &(0.2,)).unwrap();
                let echo = w.submit::<i64>("wmod.echo", &(7,)).unwrap();
                let slow = w.submit::<f64>("wmod.pause", &(2.0,)).unwrap();
                assert_eq!(echo.wait().unwrap(), 7);
                let echo_after = start.elapsed();
                assert_eq!(blocker.wait().unwrap(), 0.2);
                assert_eq!(slow.wait().unwrap(), 2.0);
                echo_after
            };
            // `sleep` and `pause` were quick (unless a loaded machine made a warm-up call slow):
            // the blocker runs on the reading thread and the echo's answer waits for `pause`.
            let first = round();
            eprintln!("the first round's echo came back after {first:?}");
            // Both are slow now: the blocker runs on a thread of its own, the reading thread reads
            // on, and `pause` no longer keeps the echo's answer.
            let second = round();
            assert!(
                second < Duration::from_millis(1500),
                "the second round's echo came back after {second:?}: held by the slow call"
            );
        },
    );
}

/// CPU time (user + system) the process `pid` has used so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at its closing parenthesis:
    // state is the 3rd field, utime the 14th, stime the 15th.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Between calls the reading thread polls the pipe a moment before it sleeps (as the Rust side
/// does for answers): the poll ends. A worker left idle after a burst of calls, and one whose
/// only call sleeps on another thread, use next to no CPU; a poll that never ended would use a
/// whole core here.
#[test]
fn an_idle_worker_uses_no_cpu_after_its_calls() {
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    each("an_idle_worker_uses_no_cpu_after_its_calls", |env| {
        let w = worker_with_threads(env, 2);
        for i in 0..500i64 {
            assert_eq!(w.call::<i64>("wmod.add", &(i, 1)).unwrap(), i + 1);
        }
        let pid = w.pid().unwrap();
        let before = cpu_ticks(pid);
        std::thread::sleep(Duration::from_secs(1));
        let idle = cpu_ticks(pid) - before;
        // A call running on another thread (not a quick one: it sleeps for a second).
        let before = cpu_ticks(pid);
        let slept: Value = w.call("wmod.sleep", &(1.0,)).unwrap();
        let busy = cpu_ticks(pid) - before;
        assert!(
            idle * 10 < ticks_per_s && busy * 10 < ticks_per_s,
            "CPU used in a second: idle {idle}, during a sleeping call {busy} ticks of \
             {ticks_per_s}/s ({slept})"
        );
    });
}
