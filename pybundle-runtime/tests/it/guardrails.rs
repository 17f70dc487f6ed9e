//! Misuse of the Python API inside a worker raises at the call site, in that call only: the
//! process and every other call go on.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pybundle_runtime::{Error, Worker};
use serde_json::{json, Value};

use crate::script::env_for;

fn worker() -> Worker {
    env_for(&testkit::pyenv::host_python())
        .worker(["wguard"])
        .threads(4)
        .forward_stderr(false)
        .start()
        .unwrap()
}

/// The Python exception a call failed with.
fn raised(err: &Error) -> (&str, &str) {
    let error = err
        .python_error()
        .unwrap_or_else(|| panic!("not a Python exception: {err}"));
    (&error.type_name, &error.message)
}

#[test]
fn reply_in_a_worker_raises_in_that_call_and_nothing_else_breaks() {
    let w = worker();
    let pid = w.pid();
    let bystander = w.submit::<String>("wguard.sleep", &(0.3,)).unwrap();
    let err = w.call::<Value>("wguard.reply_in_worker", &()).unwrap_err();
    let (kind, message) = raised(&err);
    assert_eq!(kind, "RuntimeError");
    assert!(
        message.contains("pybundle.reply() is for one-shot scripts"),
        "{message}"
    );
    let traceback = &err.python_error().unwrap().traceback;
    assert!(
        traceback.contains("wguard.py") && traceback.contains("reply_in_worker"),
        "{traceback}"
    );
    assert_eq!(bystander.wait().unwrap(), "slept");
    assert_eq!(w.pid(), pid);
}

#[test]
fn send_from_a_bare_thread_raises_and_the_call_handle_reaches_the_call() {
    let w = worker();
    let errors: Vec<String> = w.call("wguard.send_from_a_thread", &()).unwrap();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("current_call()"), "{}", errors[0]);

    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let id: u64 = w
        .request("wguard.send_through_the_handle")
        .args(&(8,))
        .on_message(move |m| sink.lock().unwrap().push(m["thread"].as_u64().unwrap()))
        .call()
        .unwrap();
    assert!(id > 0);
    let mut threads = got.lock().unwrap().clone();
    threads.sort();
    assert_eq!(threads, (0..8).collect::<Vec<u64>>());
    // After the call, its handle refuses to send (a message after the answer would be a
    // message for a call that no longer exists).
    let late: String = w.call("wguard.send_after_the_end", &()).unwrap();
    assert!(late.contains("has finished"), "{late}");

    // asyncio tasks inherit the call.
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let in_task: bool = w
        .request("wguard.send_from_a_task")
        .on_message(move |m| sink.lock().unwrap().push(m))
        .call()
        .unwrap();
    assert!(in_task);
    assert_eq!(*got.lock().unwrap(), [json!("from a task")]);
    // Outside any call (here: the reading thread answering, no call) nothing is current.
    assert_eq!(
        w.call::<Value>("wguard.outside", &()).unwrap(),
        json!([false, false])
    );
}

#[test]
fn a_thread_of_a_call_sees_its_cancellation_through_the_handle() {
    let w = worker();
    let handle = w
        .submit::<Value>("wguard.watch_cancel_in_a_thread", &(10,))
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    handle.cancel();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match w
            .call::<Option<bool>>("wguard.thread_saw_cancel", &())
            .unwrap()
        {
            Some(seen) => {
                assert!(seen);
                break;
            }
            None => assert!(Instant::now() < deadline, "the thread never returned"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_function_cannot_answer_another_callers_call() {
    let w = worker();
    let pid = w.pid();
    let other = w.submit::<String>("wguard.sleep", &(0.5,)).unwrap();
    let err = w
        .call::<Value>("wguard.answer_another_call", &())
        .unwrap_err();
    let (kind, message) = raised(&err);
    assert_eq!(kind, "RuntimeError");
    assert!(
        message.contains("can only be sent by that call"),
        "{message}"
    );
    // The other caller gets its own result, not the forged one.
    assert_eq!(other.wait().unwrap(), "slept");
    assert_eq!(w.pid(), pid);
}
