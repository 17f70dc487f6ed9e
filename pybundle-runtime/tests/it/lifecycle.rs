//! A worker's lifecycle: variables and working directory, an init call that runs in every
//! process (again after a SIGKILL), `restart()`, the timeout policy that replaces a process
//! stuck in C code, graceful shutdown, a cancelled call still queued in Python never
//! running, and a detached call running to its end.

use std::time::{Duration, Instant};

use pybundle_runtime::{Environment, Error, OnTimeout, WorkerEvent};
use serde_json::{json, Value};

use crate::script::env_for;

fn env() -> Environment {
    env_for(&testkit::pyenv::host_python())
}

fn process_exists(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// Calls until the answer comes from a live process (a call racing a death fails as the
/// crash, which `is_transient` says to retry).
fn retry<R: serde::de::DeserializeOwned>(w: &pybundle_runtime::Worker, func: &str) -> R {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match w.call(func, &()) {
            Ok(value) => return value,
            Err(e) if e.is_transient() && Instant::now() < deadline => {}
            Err(e) => panic!("{func}: {e}"),
        }
    }
}

#[test]
fn env_current_dir_and_init_apply_to_every_process_again_after_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = events.clone();
    let w = env()
        .worker(["winit"])
        .env("PYBUNDLE_TEST_VALUE", "from the builder")
        .env("HOME", "/nonexistent-home")
        .env_remove("HOME")
        .current_dir(dir.path())
        .init("winit._setup", &(42,))
        .unwrap()
        .forward_stderr(false)
        .on_event(move |e| seen.lock().unwrap().push(e.clone()))
        .start()
        .unwrap();
    let cwd = std::fs::canonicalize(dir.path()).unwrap();
    let first: Value = w.call("winit.state", &()).unwrap();
    assert_eq!(first["value"], 42);
    assert_eq!(first["cwd"], json!(cwd));
    assert_eq!(
        w.call::<String>("winit.env", &("PYBUNDLE_TEST_VALUE",))
            .unwrap(),
        "from the builder"
    );
    assert_eq!(
        w.call::<Option<String>>("winit.env", &("HOME",)).unwrap(),
        None
    );
    // The init function is not served (it is private), but runs.
    assert!(!w.functions().contains(&"winit._setup".to_owned()));

    let pid = first["pid"].as_u64().unwrap() as u32;
    // SAFETY: kill(2) on the worker's own process.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let second: Value = retry(&w, "winit.state");
    assert_ne!(second["pid"], first["pid"]);
    assert_eq!(
        (&second["value"], &second["cwd"]),
        (&json!(42), &json!(cwd))
    );
    assert_eq!(
        w.call::<String>("winit.env", &("PYBUNDLE_TEST_VALUE",))
            .unwrap(),
        "from the builder"
    );
    let events = events.lock().unwrap().clone();
    assert!(
        matches!(
            events[..],
            [
                WorkerEvent::Started { .. },
                WorkerEvent::Crashed { .. },
                WorkerEvent::Started { .. }
            ]
        ),
        "{events:?}"
    );
}

#[test]
fn an_init_that_raises_fails_the_start_with_its_traceback() {
    let err = env()
        .worker(["winit"])
        .init("winit._setup", &("fail",))
        .unwrap()
        .forward_stderr(false)
        .start()
        .err()
        .unwrap();
    let Error::WorkerStart { detail, .. } = &err else {
        panic!("wrong error: {err}")
    };
    assert!(
        detail.contains("init refused 'fail'") && detail.contains("winit.py"),
        "{detail}"
    );
    let err = env()
        .worker(["winit"])
        .init("os.system", &("true",))
        .unwrap()
        .forward_stderr(false)
        .start()
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("not in the worker's modules"),
        "{err}"
    );
}

#[test]
fn restart_replaces_the_process_and_fails_its_calls_in_flight() {
    let w = env()
        .worker(["winit"])
        .init(
            "winit._setup",
            &pybundle_runtime::Kwargs(json!({"value": 7, "unit": "s"})),
        )
        .unwrap()
        .forward_stderr(false)
        .start()
        .unwrap();
    let first = w.call::<u32>("winit.pid", &()).unwrap();
    let busy = w.submit::<f64>("winit.sleep", &(30,)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    w.restart().unwrap();
    let err = busy.wait().unwrap_err();
    assert!(
        matches!(&err, Error::WorkerRestarted { reason, .. } if reason.contains("Worker::restart")),
        "{err}"
    );
    assert!(err.is_transient());
    let second = w.call::<u32>("winit.pid", &()).unwrap();
    assert_ne!(first, second);
    assert!(!process_exists(first));
    let state: Value = w.call("winit.state", &()).unwrap();
    assert_eq!((&state["value"], &state["unit"]), (&json!(7), &json!("s")));
}

#[test]
fn a_worker_keeps_the_code_it_imported_until_it_is_restarted() {
    let py = testkit::pyenv::host_python();
    let scripts = tempfile::tempdir().unwrap();
    let module = scripts.path().join("live.py");
    std::fs::write(&module, "def version():\n    return 'old'\n").unwrap();
    let env = Environment::from_parts(
        &py.prefix,
        &py.interpreter,
        scripts.path(),
        crate::script::lib_dir(),
    );
    let w = env.worker(["live"]).forward_stderr(false).start().unwrap();
    assert_eq!(w.call::<String>("live.version", &()).unwrap(), "old");
    // Another length, so a bytecode cache of the old file can never pass for the new one.
    std::fs::write(&module, "def version():\n    return 'new code'\n").unwrap();
    for _ in 0..3 {
        assert_eq!(w.call::<String>("live.version", &()).unwrap(), "old");
    }
    w.restart().unwrap();
    assert_eq!(w.call::<String>("live.version", &()).unwrap(), "new code");
}

#[test]
fn the_restart_policy_recovers_a_call_hung_in_c_code() {
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = events.clone();
    let w = env()
        .worker(["winit"])
        .init("winit._setup", &("warm",))
        .unwrap()
        .on_timeout(OnTimeout::Restart {
            grace: Duration::from_millis(500),
        })
        .forward_stderr(false)
        .on_event(move |e| seen.lock().unwrap().push(e.clone()))
        .start()
        .unwrap();
    let first = w.call::<u32>("winit.pid", &()).unwrap();
    // A bystander in flight when the policy strikes.
    let bystander = w.submit::<f64>("winit.sleep", &(30,)).unwrap();
    let start = Instant::now();
    let err = w
        .request("winit.hang_in_c")
        .timeout(Duration::from_millis(500))
        .call::<Value>()
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let err = bystander.wait().unwrap_err();
    let Error::WorkerRestarted { reason, .. } = &err else {
        panic!("wrong error: {err}")
    };
    assert!(
        reason.contains("call `winit.hang_in_c` did not end within 500ms"),
        "{reason}"
    );
    // The new process is up and set up again without any call asking for it.
    let state: Value = retry(&w, "winit.state");
    assert_ne!(state["pid"], json!(first));
    assert_eq!(state["value"], "warm");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert!(!process_exists(first));
    let events = events.lock().unwrap().clone();
    assert!(
        events.iter().any(|e| matches!(e, WorkerEvent::Crashed { pid, status } if *pid == first && status.contains("did not end"))),
        "{events:?}"
    );

    // Without the policy the hung call keeps its process (and one of its threads).
    let w = env()
        .worker(["winit"])
        .threads(2)
        .forward_stderr(false)
        .start()
        .unwrap();
    let pid = w.call::<u32>("winit.pid", &()).unwrap();
    let err = w
        .request("winit.sleep")
        .args(&(3,))
        .timeout(Duration::from_millis(200))
        .call::<Value>()
        .unwrap_err();
    assert!(err.is_timeout());
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(w.call::<u32>("winit.pid", &()).unwrap(), pid);
}

#[test]
fn graceful_shutdown_completes_calls_in_flight_then_refuses() {
    let w = env()
        .worker(["wmod"])
        .forward_stderr(false)
        .start()
        .unwrap();
    let pid = w.pid().unwrap();
    let calls: Vec<_> = (0..3)
        .map(|i| {
            w.submit::<f64>("wmod.sleep", &(0.3 + f64::from(i) * 0.1,))
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    w.shutdown(Duration::from_secs(10));
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "did not wait: {:?}",
        start.elapsed()
    );
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.wait().unwrap(), 0.3 + i as f64 * 0.1);
    }
    assert!(!process_exists(pid));
    let err = w.call::<i64>("wmod.add", &(1, 1)).unwrap_err();
    assert!(matches!(err, Error::WorkerStopped { .. }), "{err}");
    assert!(matches!(w.restart(), Err(Error::WorkerStopped { .. })));
    // A grace that ends first fails what is still running.
    let w = env()
        .worker(["wmod"])
        .forward_stderr(false)
        .start()
        .unwrap();
    let slow = w.submit::<f64>("wmod.sleep", &(30,)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    w.shutdown(Duration::from_millis(100));
    assert!(matches!(slow.wait(), Err(Error::WorkerStopped { .. })));
}

#[test]
fn a_call_cancelled_while_queued_in_python_never_runs() {
    let w = env()
        .worker(["wmod"])
        .threads(1)
        .forward_stderr(false)
        .start()
        .unwrap();
    // The one thread is busy; the second call waits in Python's queue.
    let busy = w.submit::<f64>("wmod.sleep", &(0.5,)).unwrap();
    let queued = w.submit::<Value>("wmod.mark", &("queued",)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    queued.cancel();
    assert!(matches!(queued.wait(), Err(Error::Cancelled { .. })));
    assert_eq!(busy.wait().unwrap(), 0.5);
    let ran = w.call::<Vec<String>>("wmod.marks", &()).unwrap();
    assert!(ran.is_empty(), "the cancelled call ran: {ran:?}");
    // A call that is not cancelled does run.
    w.call::<Value>("wmod.mark", &("kept",)).unwrap();
    assert_eq!(w.call::<Vec<String>>("wmod.marks", &()).unwrap(), ["kept"]);
}

/// `CallHandle::detach` opts out of cancel-on-drop: a detached call runs to its end in Python
/// after its handle is gone, where a dropped one is cancelled (the control).
#[test]
fn a_detached_call_runs_to_its_end_after_its_handle_is_gone() {
    let w = env()
        .worker(["wmod"])
        .threads(2)
        .forward_stderr(false)
        .start()
        .unwrap();
    let running =
        |tag: &str| crate::worker::submit_running::<String>(&w, "wmod.wait_for_cancel", &(tag, 1));
    drop(running("dropped"));
    running("detached").detach();
    // What each call recorded once it ended: whether it saw its cancellation.
    let ended = |tag: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(seen) = w.call::<Option<bool>>("wmod.saw_cancel", &(tag,)).unwrap() {
                return seen;
            }
            assert!(Instant::now() < deadline, "{tag}: the call never ended");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    assert!(ended("dropped"), "dropping the handle cancels the call");
    assert!(
        !ended("detached"),
        "the detached call was cancelled instead of running to its end"
    );
    // Its reply may still be on its way: then it is taken and dropped, nothing kept.
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.in_flight() != 0 {
        assert!(
            Instant::now() < deadline,
            "the detached call stays in flight"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn ctrl_c_to_the_process_group_leaves_the_worker_to_its_owner() {
    // A terminal's Ctrl-C reaches every process of the foreground group, workers included;
    // the Rust side decides when they stop (e.g. a graceful shutdown after the server's).
    let w = env()
        .worker(["wmod"])
        .forward_stderr(false)
        .start()
        .unwrap();
    let pid = w.call::<u32>("wmod.pid", &()).unwrap();
    let busy = w.submit::<f64>("wmod.sleep", &(0.3,)).unwrap();
    // SAFETY: kill(2) on the worker's own process.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    assert_eq!(busy.wait().unwrap(), 0.3);
    assert_eq!(w.call::<u32>("wmod.pid", &()).unwrap(), pid);
    assert!(
        !w.stderr_tail().contains("KeyboardInterrupt"),
        "{}",
        w.stderr_tail()
    );
}
