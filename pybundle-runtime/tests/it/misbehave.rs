//! Children that misbehave: a worker or script that segfaults, hangs (asleep or holding the
//! GIL, during a call or at import), floods stderr with 100 MB, writes garbage or an oversized
//! frame straight to the frame descriptor, or exits mid-call.
//!
//! Each case runs in a child process of this test binary (so no other test's threads disturb
//! `/proc/self/task`) with a watchdog in the parent, so a hang fails the test instead of the
//! suite. Inside, each case asserts the exact error variant, that the Python process is gone
//! and reaped (no `/proc/<pid>`, so no zombie), and that the process is back to the threads it
//! had before.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pybundle_runtime::protocol::DEFAULT_MAX_FRAME;
use pybundle_runtime::{Buffer, Environment, Error, Worker, WorkerEvent};
use serde_json::Value;

use crate::script::env_for;
use crate::worker::rss_kib;

const CASE_ENV: &str = "PYBUNDLE_IT_MISBEHAVE";
/// How long one case may take before the parent kills it and fails.
const WATCHDOG: Duration = Duration::from_secs(240);
const FLOOD: u64 = 100 << 20;

fn env() -> Environment {
    env_for(&testkit::pyenv::host_python())
}

fn threads() -> usize {
    fs::read_dir("/proc/self/task").unwrap().count()
}

/// Waits (briefly) for this process to have `n` threads.
fn expect_threads(n: usize, when: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while threads() != n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(threads(), n, "thread count {when}");
}

/// The process is gone and reaped: a zombie would still have its `/proc` entry.
fn assert_reaped(pid: u32) {
    let proc = format!("/proc/{pid}");
    let state = fs::read_to_string(format!("{proc}/stat")).unwrap_or_default();
    assert!(
        !Path::new(&proc).exists(),
        "process {pid} is still there: {state}"
    );
}

/// A worker of two threads with a frame cap of `max_frame`.
fn worker_capped(env: &Environment, max_frame: usize) -> Worker {
    env.worker(["wbad"])
        .threads(2)
        .max_frame(max_frame)
        .max_message(1 << 20)
        .frame_timeout(Duration::from_secs(2))
        .forward_stderr(false)
        .shutdown_timeout(Duration::from_secs(1))
        .start()
        .unwrap()
}

/// `wbad.big_result(length)` over the worker's frame limit: Python refuses to send it and the
/// call raises, naming the limit.
fn refuses_big_result(w: &Worker, length: usize) {
    let err = w.call::<String>("wbad.big_result", &(length,)).unwrap_err();
    let Error::Python { error, .. } = &err else {
        panic!("wrong error: {err}")
    };
    assert!(error.message.contains("frame limit"), "{}", error.message);
}

fn worker(env: &Environment) -> Worker {
    worker_capped(env, DEFAULT_MAX_FRAME)
}

fn pid(w: &Worker) -> u32 {
    w.call("wbad.pid", &()).unwrap()
}

/// Runs `fault` (a call that kills or breaks the worker) with another call in flight, checks
/// both failed with `check`, that the process is reaped, and that the worker restarts with
/// no threads left over; `times` rounds on one worker.
fn crash_rounds(times: usize, func: &str, args: Value, check: impl Fn(&Error)) -> String {
    crash_rounds_capped(times, func, args, DEFAULT_MAX_FRAME, check)
}

fn crash_rounds_capped(
    times: usize,
    func: &str,
    args: Value,
    max_frame: usize,
    check: impl Fn(&Error),
) -> String {
    let env = env();
    let base = threads();
    let w = worker_capped(&env, max_frame);
    let mut seen = String::new();
    for round in 0..times {
        let old = pid(&w);
        // The reader and stderr threads of the one live process, old ones joined.
        expect_threads(base + 2, &format!("with a live worker, round {round}"));
        let bystander = w.submit::<f64>("wbad.sleep", &(30,)).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        // `args` lists the positional arguments (`null`: none).
        let positional = args.as_array().cloned().unwrap_or_default();
        let err = positional
            .iter()
            .fold(w.request(func), |r, a| r.arg(a))
            .call::<Value>()
            .unwrap_err();
        check(&err);
        let other = bystander.wait().unwrap_err();
        assert_eq!(
            std::mem::discriminant(&other),
            std::mem::discriminant(&err),
            "the call in flight failed differently: {other}"
        );
        assert_reaped(old);
        seen = err.to_string();
        let new = pid(&w);
        assert_ne!(old, new, "the worker did not restart");
    }
    let last = pid(&w);
    drop(w);
    assert_reaped(last);
    expect_threads(base, "after the worker was dropped");
    seen
}

fn case(name: &str) -> String {
    match name {
        "worker-segfault" => crash_rounds(3, "wbad.segfault", Value::Null, |err| {
            let Error::WorkerCrashed { status, stderr, .. } = err else {
                panic!("wrong error: {err}")
            };
            assert!(status.contains("SIGSEGV"), "{status}");
            assert!(stderr.contains("about to read address 0"), "{stderr}");
            // faulthandler's report: where in Python it crashed.
            assert!(stderr.contains("Segmentation fault"), "{stderr}");
            assert!(stderr.contains("wbad.py"), "{stderr}");
        }),
        "worker-exit" => crash_rounds(3, "wbad.exit_now", serde_json::json!([3]), |err| {
            let Error::WorkerExited { code, stderr, .. } = err else {
                panic!("wrong error: {err}")
            };
            assert_eq!(*code, 3);
            assert!(stderr.contains("exiting with 3"), "{stderr}");
        }),
        "worker-garbage" => {
            let mut seen = Vec::new();
            for (kind, expect) in [
                ("text", "not a frame stream"),
                ("not-json", "malformed message"),
                ("unknown-type", "unknown variant `surprise`"),
                ("cut-binary", "before all binary frames"),
            ] {
                let args = serde_json::json!([kind]);
                seen.push(crash_rounds(2, "wbad.garbage", args, |err| {
                    let Error::Protocol { detail, .. } = err else {
                        panic!("{kind}: wrong error: {err}")
                    };
                    assert!(detail.contains(expect), "{kind}: {detail}");
                }));
            }
            seen.join("\n")
        }
        "worker-oversized" => {
            let env = env();
            let base = threads();
            let w = worker_capped(&env, 64 * 1024);
            // Within the protocol: Python refuses to send it, the call raises, the worker lives.
            let first = pid(&w);
            refuses_big_result(&w, 100_000);
            assert_eq!(pid(&w), first);
            drop(w);
            assert_reaped(first);
            // The same for a short string under a small limit (the quick path of a result).
            let small = worker_capped(&env, 2048);
            refuses_big_result(&small, 3000);
            assert_eq!(
                small.call::<String>("wbad.big_result", &(3,)).unwrap(),
                "rrr"
            );
            drop(small);
            expect_threads(base, "after the first two workers");
            let args = serde_json::json!([100_000]);
            crash_rounds_capped(2, "wbad.oversized_frame", args, 64 * 1024, |err| {
                let Error::FrameTooLarge { len, max, .. } = err else {
                    panic!("wrong error: {err}")
                };
                assert_eq!(*max, 64 * 1024);
                assert!(*len > 100_000, "{len}");
            })
        }
        "worker-partial-frame" => {
            let start = Instant::now();
            let seen = crash_rounds(2, "wbad.partial_frame", serde_json::json!([1000]), |err| {
                let Error::Protocol { detail, .. } = err else {
                    panic!("wrong error: {err}")
                };
                assert!(detail.contains("stopped arriving halfway"), "{detail}");
                assert!(detail.contains("500 of 1034 bytes"), "{detail}");
            });
            // Two rounds of a 2 s frame timeout, not the scripts' 60 s sleeps.
            assert!(
                start.elapsed() < Duration::from_secs(40),
                "{:?}",
                start.elapsed()
            );
            seen
        }
        "worker-message-cap" => {
            let before = rss_kib("self");
            // 24 frames of 64 KiB, each under the frame cap, 1.5 MiB together: over 1 MiB.
            // (The message cap is never below the frame cap plus 1 MiB: the frame cap is low.)
            let args = serde_json::json!([24, 65536]);
            let mut seen = crash_rounds_capped(2, "wbad.many_frames", args, 128 << 10, |err| {
                let Error::MessageTooLarge { max, .. } = err else {
                    panic!("wrong error: {err}")
                };
                assert_eq!(*max, (1 << 20) + (128 << 10));
            });
            // 2^25 empty frames: refused at the announcement (it used to cost 783 MB).
            seen += " | ";
            seen += &crash_rounds(
                1,
                "wbad.many_frames",
                serde_json::json!([1 << 25, -1]),
                |err| {
                    assert!(
                        matches!(err, Error::MessageTooLarge { .. }),
                        "wrong error: {err}"
                    );
                },
            );
            let after = rss_kib("self");
            assert!(after < before + 20 * 1024, "RSS {before} -> {after} KiB");
            seen
        }
        "worker-in-flight" => in_flight_case(),
        "worker-hang" => {
            let env = env();
            let base = threads();
            let w = worker(&env);
            let first = pid(&w);
            let err = w
                .request("wbad.hang_sleeping")
                .timeout(Duration::from_secs(1))
                .call::<Value>()
                .unwrap_err();
            assert!(matches!(err, Error::Timeout { .. }), "wrong error: {err}");
            // Still serving: the hung call holds one of two threads.
            assert_eq!(w.call::<i64>("wbad.add", &(2, 3)).unwrap(), 5);
            // Holding the GIL, nothing in the process runs, not even its reader thread.
            let err = w
                .request("wbad.hang_holding_the_gil")
                .timeout(Duration::from_secs(1))
                .call::<Value>()
                .unwrap_err();
            assert!(matches!(err, Error::Timeout { .. }), "wrong error: {err}");
            let err = w
                .request("wbad.add")
                .args(&(1, 1))
                .timeout(Duration::from_secs(1))
                .call::<i64>()
                .unwrap_err();
            assert!(matches!(err, Error::Timeout { .. }), "wrong error: {err}");
            assert_eq!(w.pid(), Some(first));
            // Dropping it cannot wait for a shutdown the process never reads: it is killed.
            drop(w);
            assert_reaped(first);
            expect_threads(base, "after the hung worker was dropped");
            err.to_string()
        }
        "worker-start-hang" => {
            let env = env();
            let base = threads();
            let died = Arc::new(Mutex::new(Vec::new()));
            let seen = died.clone();
            let mut last = String::new();
            for _ in 0..2 {
                let err = env
                    .worker(["hang_import"])
                    .forward_stderr(false)
                    .start_timeout(Duration::from_secs(2))
                    .on_event({
                        let seen = seen.clone();
                        move |e| seen.lock().unwrap().push(e.clone())
                    })
                    .start()
                    .err()
                    .expect("a worker whose import never ends started");
                let Error::Timeout { what, after } = &err else {
                    panic!("wrong error: {err}")
                };
                assert_eq!(*after, Duration::from_secs(2));
                assert!(what.contains("hang_import"), "{what}");
                last = err.to_string();
            }
            let events = died.lock().unwrap().clone();
            assert_eq!(events.len(), 2, "{events:?}");
            for event in events {
                let WorkerEvent::Crashed { pid, .. } = event else {
                    panic!("{event:?}")
                };
                assert_reaped(pid);
            }
            expect_threads(base, "after the start timeouts");
            last
        }
        "worker-grandchild" => {
            // The grandchild keeps the stderr pipe open: the drain thread must not wait for it.
            let grandchildren = Mutex::new(Vec::new());
            let seen = crash_rounds(2, "wbad.spawn_and_exit", serde_json::json!([5]), |err| {
                let Error::WorkerExited {
                    code: 5, stderr, ..
                } = err
                else {
                    panic!("wrong error: {err}")
                };
                let pid = stderr
                    .split("grandchild ")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next()?.parse::<i32>().ok())
                    .unwrap_or_else(|| panic!("no grandchild pid in {stderr:?}"));
                grandchildren.lock().unwrap().push(pid);
            });
            for pid in grandchildren.into_inner().unwrap() {
                // SAFETY: kill(2) on the sleep process the worker started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            seen
        }
        "worker-flood" => {
            let env = env();
            let base = threads();
            let w = worker(&env);
            let first = pid(&w);
            let before = rss_kib("self");
            let written: u64 = w.call("wbad.flood", &(FLOOD,)).unwrap();
            assert!(written >= FLOOD);
            let deadline = Instant::now() + Duration::from_secs(10);
            while !w.stderr_tail().contains("flood done") && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let tail = w.stderr_tail();
            let end = tail
                .get(tail.len().saturating_sub(200)..)
                .unwrap_or_default();
            assert!(tail.ends_with("wbad: flood done\n"), "{end:?}");
            assert!(tail.len() <= 64 * 1024, "tail of {} bytes", tail.len());
            // The flood, then a death: the error carries the bounded tail only.
            let err = w.call::<Value>("wbad.flood", &(FLOOD, 4)).unwrap_err();
            let Error::WorkerExited {
                code: 4, stderr, ..
            } = &err
            else {
                panic!("wrong error: {err}")
            };
            assert!(stderr.len() <= 64 * 1024, "tail of {} bytes", stderr.len());
            assert!(stderr.ends_with("wbad: flood done\n"));
            let after = rss_kib("self");
            assert!(
                after < before + 20 * 1024,
                "RSS grew from {before} KiB to {after} KiB over a 200 MB flood"
            );
            assert_reaped(first);
            let second = pid(&w);
            drop(w);
            assert_reaped(second);
            expect_threads(base, "after the flooding worker was dropped");
            format!("RSS {before} -> {after} KiB")
        }
        "script-segfault"
        | "script-exit"
        | "script-hang"
        | "script-garbage"
        | "script-oversized"
        | "script-flood"
        | "script-grandchild"
        | "script-partial"
        | "script-flood-captured" => script_case(&name["script-".len()..]),
        other => panic!("unknown case {other}"),
    }
}

/// Answers nobody has taken yet, and calls the process cannot read yet, count against
/// `max_in_flight`; past it calls fail, the process lives on.
fn in_flight_case() -> String {
    let env = env();
    let base = threads();
    let w = env
        .worker(["wbad"])
        .threads(4)
        .max_in_flight(7 << 19)
        .forward_stderr(false)
        .start()
        .unwrap();
    let first = pid(&w);
    let handles: Vec<_> = (0..8)
        .map(|_| w.submit::<Buffer>("wbad.big_bytes", &(1 << 20,)).unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while w.in_flight() > 0 {
        assert!(Instant::now() < deadline, "answers never came");
        std::thread::sleep(Duration::from_millis(10));
    }
    let outcomes: Vec<_> = handles.into_iter().map(|h| h.wait()).collect();
    let kept = outcomes.iter().filter(|o| o.is_ok()).count();
    let refused: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(kept, 3, "{refused:?}");
    for err in &refused {
        assert!(
            matches!(err, Error::InFlightLimit { limit, .. } if *limit == 7 << 19),
            "{err}"
        );
    }
    let answer_refused = refused[0].to_string();
    drop(outcomes);
    assert_eq!(pid(&w), first, "the process was harmed");

    // Calls the process cannot read (it holds the GIL) wait in memory, up to the cap.
    let busy = w.submit::<f64>("wbad.hold_gil", &(2.0,)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let data = vec![7u8; 1 << 20];
    let mut queued = Vec::new();
    let refusal = loop {
        match w.submit::<usize>("wbad.length", &(Buffer::new(data.clone()),)) {
            Ok(handle) => queued.push(handle),
            Err(err) => break err,
        }
        assert!(queued.len() < 16, "16 MiB queued under a 3.5 MiB cap");
    };
    assert!(matches!(refusal, Error::InFlightLimit { .. }), "{refusal}");
    assert!(!queued.is_empty());
    assert_eq!(busy.wait().unwrap(), 2.0);
    for handle in queued {
        assert_eq!(handle.wait().unwrap(), 1 << 20);
    }
    assert_eq!(pid(&w), first);
    drop(w);
    assert_reaped(first);
    expect_threads(base, "after the in-flight case");
    format!("{answer_refused} | {refusal}")
}

fn script_case(which: &str) -> String {
    let env = env();
    let base = threads();
    let before = rss_kib("self");
    let messages = Arc::new(Mutex::new(Vec::new()));
    let seen = messages.clone();
    let mut script = env
        .script("misbehave")
        .arg(which)
        .arg(if which == "flood" { FLOOD } else { 100_000 }.to_string())
        .max_frame(64 * 1024)
        .timeout(Duration::from_secs(if which == "hang" { 1 } else { 60 }))
        .on_message(move |m| seen.lock().unwrap().push(m));
    if which == "grandchild" {
        // Captured output is read by a thread, which the grandchild's open pipe must not hold.
        script = script.capture_output();
    }
    if which == "flood-captured" {
        script = env
            .script("misbehave")
            .arg("flood")
            .arg(FLOOD.to_string())
            .capture_output()
            .capture_limit(1 << 20)
            .on_message({
                let seen = messages.clone();
                move |m| seen.lock().unwrap().push(m)
            });
    }
    if which == "partial" {
        script = script.frame_timeout(Duration::from_secs(1));
    }
    let start = Instant::now();
    let run = script.run::<u64>();
    let messages = messages.lock().unwrap().clone();
    let pid = messages[0]["pid"].as_u64().expect("the script sent no pid") as u32;
    assert_reaped(pid);
    expect_threads(base, "after the script");
    let err = match (which, run) {
        ("grandchild", Ok(_)) => {
            let grandchild = messages[1]["grandchild"].as_i64().unwrap() as i32;
            // SAFETY: kill(2) on the sleep process the script started.
            unsafe { libc::kill(grandchild, libc::SIGKILL) };
            // Returned, not stuck until the grandchild's 600 s sleep ends.
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "{:?}",
                start.elapsed()
            );
            return format!("returned in {:?}", start.elapsed());
        }
        ("flood-captured", Ok(out)) => {
            assert!(out.reply >= FLOOD);
            let output = out.output.unwrap();
            assert!(
                output.len() < (1 << 20) + 200,
                "{} bytes kept",
                output.len()
            );
            // All but the last MiB of at least FLOOD bytes.
            let dropped: u64 = output
                .strip_prefix("[pybundle: the first ")
                .and_then(|rest| rest.split(' ').next()?.parse().ok())
                .unwrap_or_else(|| panic!("{:?}", &output[..200]));
            assert!(dropped >= FLOOD - (1 << 20), "{dropped}");
            assert!(output[..200].contains("bytes of output were dropped (capture_limit)"));
            let after = rss_kib("self");
            assert!(after < before + 20 * 1024, "RSS {before} -> {after} KiB");
            return format!("kept {} bytes; RSS {before} -> {after} KiB", output.len());
        }
        ("flood", Ok(out)) => {
            assert!(out.reply >= FLOOD);
            let after = rss_kib("self");
            assert!(after < before + 20 * 1024, "RSS {before} -> {after} KiB");
            return format!("RSS {before} -> {after} KiB");
        }
        (_, Ok(out)) => panic!("{which}: the script succeeded: {:?}", out.reply),
        (_, Err(err)) => err,
    };
    use std::os::unix::process::ExitStatusExt;
    match which {
        "segfault" => {
            let Error::ScriptExit { status, .. } = &err else {
                panic!("wrong error: {err}")
            };
            assert_eq!(status.signal(), Some(libc::SIGSEGV), "{err}");
        }
        "exit" => {
            let Error::ScriptExit { status, .. } = &err else {
                panic!("wrong error: {err}")
            };
            assert_eq!(status.code(), Some(3), "{err}");
        }
        "hang" => assert!(matches!(err, Error::Timeout { .. }), "wrong error: {err}"),
        "garbage" => {
            let Error::Protocol { detail, .. } = &err else {
                panic!("wrong error: {err}")
            };
            assert!(detail.contains("not a frame stream"), "{detail}");
        }
        "partial" => {
            let Error::Protocol { detail, .. } = &err else {
                panic!("wrong error: {err}")
            };
            assert!(detail.contains("stopped arriving halfway"), "{detail}");
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{:?}",
                start.elapsed()
            );
        }
        "oversized" => {
            let Error::FrameTooLarge { max, .. } = &err else {
                panic!("wrong error: {err}")
            };
            assert_eq!(*max, 64 * 1024);
        }
        other => panic!("unknown script case {other}"),
    }
    err.to_string()
}

/// Not a test on its own: runs the case named by the variable in a child process of the
/// tests below.
#[test]
fn case_child_process() {
    let Ok(name) = std::env::var(CASE_ENV) else {
        return;
    };
    let base = threads();
    let seen = case(&name);
    expect_threads(base, "at the end of the case");
    println!("\nMISBEHAVE-OK {name}: {}", seen.replace('\n', " | "));
}

fn tail_of(path: &Path, bytes: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = fs::File::open(path).unwrap();
    let len = file.metadata().unwrap().len();
    file.seek(SeekFrom::Start(len.saturating_sub(bytes)))
        .unwrap();
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).unwrap();
    String::from_utf8_lossy(&tail).into_owned()
}

/// Runs a case in a child process, killing it if it outlives the watchdog.
fn run(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "misbehave::case_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CASE_ENV, name)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WATCHDOG;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = fs::read_to_string(&out).unwrap_or_default();
    // The script flood case passes 100 MB through its stderr: show only the end.
    let stderr = tail_of(&err, 8000);
    let Some(status) = status else {
        panic!("{name}: hung past {WATCHDOG:?}\n{stdout}\n{stderr}")
    };
    let line = stdout.lines().find(|l| l.starts_with("MISBEHAVE-OK"));
    assert!(
        status.success() && line.is_some(),
        "{name}: {status}\n{stdout}\n{stderr}"
    );
    eprintln!("{}", line.unwrap_or_default());
}

#[test]
fn a_worker_that_segfaults_is_a_crash_with_sigsegv_and_its_stderr() {
    run("worker-segfault");
}

#[test]
fn a_worker_that_exits_mid_call_reports_its_exit_status() {
    run("worker-exit");
}

#[test]
fn garbage_on_the_frame_descriptor_is_a_protocol_error() {
    run("worker-garbage");
}

#[test]
fn a_frame_over_the_cap_is_frame_too_large() {
    run("worker-oversized");
}

#[test]
fn hung_calls_time_out_and_a_hung_worker_is_killed_on_drop() {
    run("worker-hang");
}

#[test]
fn a_worker_hung_at_import_is_a_start_timeout() {
    run("worker-start-hang");
}

#[test]
fn a_grandchild_holding_stderr_open_leaks_no_thread() {
    run("worker-grandchild");
}

#[test]
fn a_100_mb_stderr_flood_neither_blocks_nor_grows_memory() {
    run("worker-flood");
}

#[test]
fn a_worker_stuck_halfway_through_a_message_is_replaced() {
    run("worker-partial-frame");
}

#[test]
fn a_message_over_the_message_cap_is_refused_with_bounded_memory() {
    run("worker-message-cap");
}

#[test]
fn answers_and_calls_in_flight_are_capped() {
    run("worker-in-flight");
}

#[test]
fn scripts_that_misbehave() {
    for which in [
        "segfault",
        "exit",
        "hang",
        "garbage",
        "oversized",
        "flood",
        "flood-captured",
        "partial",
        "grandchild",
    ] {
        run(&format!("script-{which}"));
    }
}
