//! The async API under a real tokio runtime: timeouts honoured by the future, dropping a future
//! cancels the call in Python, an axum handler whose HTTP client goes away, and no call
//! blocking a current-thread runtime (its timer keeps firing while a worker restarts).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pybundle_runtime::{Environment, Error, Worker, WorkerPool};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::script::env_for;

fn env() -> Environment {
    env_for(&testkit::pyenv::host_python())
}

async fn worker(modules: &[&str]) -> Worker {
    env()
        .worker(modules.iter().copied())
        .threads(4)
        .forward_stderr(false)
        .start_async()
        .await
        .unwrap()
}

/// Polls `wmod.saw_cancel(tag)` until the function has ended; whether it saw the
/// cancellation.
async fn saw_cancel(call: impl Fn() -> pybundle_runtime::CallHandle<Option<bool>>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(seen) = call().await.unwrap() {
            return seen;
        }
        assert!(Instant::now() < deadline, "the cancelled call never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn process_exists(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_is_honoured_under_await() {
    let w = worker(&["wmod"]).await;
    for ms in [50, 200] {
        let timeout = Duration::from_millis(ms);
        let start = Instant::now();
        let err = w
            .request("wmod.sleep")
            .args(&(5,))
            .timeout(timeout)
            .call_async::<f64>()
            .await
            .unwrap_err();
        let took = start.elapsed();
        assert!(
            matches!(err, Error::Timeout { after, .. } if after == timeout),
            "{err}"
        );
        assert!(
            took < timeout * 2,
            "a {timeout:?} timeout returned after {took:?}"
        );
    }
    assert_eq!(w.call_async::<i64>("wmod.add", &(2, 2)).await.unwrap(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_an_awaited_call_cancels_it_in_python() {
    let w = worker(&["wmod"]).await;
    let pid = w.call_async::<u32>("wmod.pid", &()).await.unwrap();
    let call = w.call_async::<String>("wmod.wait_for_cancel", &("dropped", 30));
    // tokio's own timeout drops the future when it elapses.
    let elapsed = tokio::time::timeout(Duration::from_millis(300), call).await;
    assert!(elapsed.is_err(), "the call finished: {elapsed:?}");
    assert!(saw_cancel(|| w.call_async("wmod.saw_cancel", &("dropped",))).await);
    // The worker is healthy: the same process serves on, nothing is left in flight.
    assert_eq!(w.call_async::<i64>("wmod.add", &(1, 2)).await.unwrap(), 3);
    assert_eq!(w.pid(), Some(pid));
    assert_eq!(w.in_flight(), 0);
}

async fn slow(
    axum::extract::State(pool): axum::extract::State<WorkerPool>,
    axum::extract::Path(tag): axum::extract::Path<String>,
) -> String {
    match pool
        .call_async::<String>("wmod.wait_for_cancel", &(tag, 30))
        .await
    {
        Ok(text) => text,
        Err(err) => err.to_string(),
    }
}

async fn add(axum::extract::State(pool): axum::extract::State<WorkerPool>) -> String {
    pool.call_async::<i64>("wmod.add", &(20, 22))
        .await
        .map_or_else(|e| e.to_string(), |n| n.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_axum_handler_whose_client_goes_away_cancels_its_call() {
    let pool = env()
        .worker(["wmod"])
        .forward_stderr(false)
        .pool_async(2)
        .await
        .unwrap();
    let app = axum::Router::new()
        .route("/slow/{tag}", axum::routing::get(slow))
        .route("/add", axum::routing::get(add))
        .with_state(pool.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /slow/http-gone HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    // The call reached Python before the client leaves.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool.workers().iter().map(Worker::in_flight).sum::<usize>() == 0 {
        assert!(
            Instant::now() < deadline,
            "the handler never called the worker"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let worker = pool.workers().iter().find(|w| w.in_flight() == 1).cloned();
    let worker = worker.expect("one worker has the call");
    drop(client);
    assert!(saw_cancel(|| worker.call_async("wmod.saw_cancel", &("http-gone",))).await);
    assert_eq!(
        pool.workers().iter().map(Worker::in_flight).sum::<usize>(),
        0
    );

    // The server goes on answering.
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /add HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    client.read_to_string(&mut response).await.unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200") && response.ends_with("42"),
        "{response}"
    );
}

#[test]
fn a_current_thread_runtime_keeps_its_timer_while_a_worker_starts_and_restarts() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let ticks = Arc::new(Mutex::new(Vec::new()));
        let seen = ticks.clone();
        let ticker = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(10));
            loop {
                every.tick().await;
                seen.lock().unwrap().push(Instant::now());
            }
        });
        // Both the start and the restart import a module that takes 0.5 s.
        let start = Instant::now();
        let w = worker(&["slow_import"]).await;
        let started = (start, Instant::now());
        let first = w.call_async::<u32>("slow_import.pid", &()).await.unwrap();
        // SAFETY: kill(2) on the worker's own pid.
        unsafe { libc::kill(first as i32, libc::SIGKILL) };
        let restart = Instant::now();
        let second = loop {
            // A call racing the death notice fails as the crash; the next one restarts.
            match w.call_async::<u32>("slow_import.pid", &()).await {
                Ok(pid) => break pid,
                Err(e) if e.is_transient() => {}
                Err(e) => panic!("{e}"),
            }
        };
        let restarted = (restart, Instant::now());
        ticker.abort();
        assert_ne!(first, second);
        assert!(!process_exists(first));
        let ticks = ticks.lock().unwrap().clone();
        for (what, (from, to)) in [("start", started), ("restart", restarted)] {
            assert!(
                to - from >= Duration::from_millis(450),
                "{what} took {:?}",
                to - from
            );
            let during: Vec<Instant> = ticks
                .iter()
                .copied()
                .filter(|t| *t >= from && *t <= to)
                .collect();
            let longest = during
                .windows(2)
                .map(|w| w[1] - w[0])
                .max()
                .unwrap_or_default();
            // 10 ms ticks: a blocked runtime would show one gap as long as the import.
            assert!(
                during.len() >= 20 && longest < Duration::from_millis(150),
                "{what}: {} ticks in {:?}, longest gap {longest:?}",
                during.len(),
                to - from
            );
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_script_future_kills_the_script() {
    let env = env();
    let pids = Arc::new(Mutex::new(Vec::new()));
    let seen = pids.clone();
    let run = env
        .script("misbehave")
        .arg("hang")
        .arg("0")
        .on_message(move |m: Value| seen.lock().unwrap().push(m["pid"].as_u64().unwrap()))
        .run_async::<Value>();
    assert!(tokio::time::timeout(Duration::from_millis(800), run)
        .await
        .is_err());
    let pid = pids.lock().unwrap()[0] as u32;
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_exists(pid) {
        assert!(
            Instant::now() < deadline,
            "the script {pid} outlived its future"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One that is awaited to its end gives what `run` gives.
    let out = env
        .script("echo")
        .input(&7)
        .run_async::<Value>()
        .await
        .unwrap();
    assert_eq!(out.reply["input"], 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_is_made_ready_off_the_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = crate::bundle::build(&crate::bundle::sample("asyncready", "x"));
    let bundle = pybundle_runtime::Bundle::from_bytes(archive)
        .unwrap()
        .cache_dir(tmp.path());
    let env = bundle.ready_async().await.unwrap();
    assert!(env.root().join(".pybundle/complete").is_file());
}

/// On a runtime of one thread, other tasks keep running while a first run extracts (slowed
/// here by a progress callback that sleeps): the extraction is on a thread of its own.
#[tokio::test(flavor = "current_thread")]
async fn the_runtime_thread_keeps_running_while_a_bundle_is_made_ready() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let archive = crate::bundle::build(&crate::bundle::sample("asyncslow", "x"));
    let runtime_thread = std::thread::current().id();
    let off_runtime = Arc::new(AtomicBool::new(true));
    let seen = off_runtime.clone();
    let bundle = pybundle_runtime::Bundle::from_bytes(archive)
        .unwrap()
        .cache_dir(tmp.path())
        .on_progress(move |_| {
            seen.fetch_and(
                std::thread::current().id() != runtime_thread,
                Ordering::Relaxed,
            );
            std::thread::sleep(Duration::from_millis(20));
        });
    let done = AtomicBool::new(false);
    let ticks = AtomicUsize::new(0);
    let ready = async {
        let env = bundle.ready_async().await;
        done.store(true, Ordering::Relaxed);
        env
    };
    let ticker = async {
        while !done.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(5)).await;
            ticks.fetch_add(1, Ordering::Relaxed);
        }
    };
    let (env, ()) = tokio::join!(ready, ticker);
    assert!(env.unwrap().root().join(".pybundle/complete").is_file());
    assert!(
        off_runtime.load(Ordering::Relaxed),
        "progress ran on the runtime's thread"
    );
    let ticks = ticks.load(Ordering::Relaxed);
    assert!(
        ticks >= 10,
        "the runtime ticked {ticks} times while the bundle was made ready"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_calls_in_flight_and_refuses_new_ones() {
    let w = worker(&["wmod"]).await;
    let pid = w.pid().unwrap();
    let slow = w.call_async::<f64>("wmod.sleep", &(0.5,));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = {
        let w = w.clone();
        tokio::spawn(async move { w.shutdown_async(Duration::from_secs(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let refused = w.call_async::<i64>("wmod.add", &(1, 1)).await;
    assert!(
        matches!(refused, Err(Error::WorkerStopped { .. })),
        "{refused:?}"
    );
    // The call in flight completes; the process exits after it.
    assert_eq!(slow.await.unwrap(), 0.5);
    stopping.await.unwrap();
    assert!(!process_exists(pid));
}
