//! One generation of a worker process: spawning it, the reader thread that demultiplexes its
//! replies by call id, crash detection, and shutdown.

use std::collections::{HashMap, VecDeque};
use std::process::{ChildStdin, ChildStdout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::child::{self, ChildGuard, Drain, StderrSink};
use crate::protocol::{self, table, Kind, Limits, Outgoing, Payload, Reader, Violation};
use crate::worker::{Config, WorkerEvent};
use crate::{Error, Result};

pub(crate) type MessageFn = Box<dyn FnMut(serde_json::Value) + Send>;

/// Where the outcome of one call (or ping, or the startup handshake) lands.
pub(crate) struct Slot {
    pub what: String,
    done: Mutex<Option<Result<Payload>>>,
    /// Set with `done`, read without the lock by a waiter that spins (see [`SPIN`]).
    completed: AtomicBool,
    cond: Condvar,
    /// The task awaiting this slot, when a handle is polled as a future.
    waker: Mutex<Option<std::task::Waker>>,
    on_message: Option<Mutex<MessageFn>>,
    on_done: Option<Arc<std::sync::atomic::AtomicUsize>>,
}

impl Slot {
    pub(crate) fn new(
        what: String,
        on_message: Option<MessageFn>,
        in_flight: Option<Arc<std::sync::atomic::AtomicUsize>>,
    ) -> Arc<Self> {
        if let Some(counter) = &in_flight {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        Arc::new(Self {
            what,
            done: Mutex::new(None),
            completed: AtomicBool::new(false),
            cond: Condvar::new(),
            on_message: on_message.map(Mutex::new),
            on_done: in_flight,
            waker: Mutex::new(None),
        })
    }

    /// Records the outcome (the first one wins) and wakes waiters.
    pub(crate) fn complete(&self, outcome: Result<Payload>) {
        let mut done = lock(&self.done);
        if done.is_none() {
            *done = Some(outcome);
            self.completed.store(true, Ordering::Release);
            if let Some(counter) = &self.on_done {
                counter.fetch_sub(1, Ordering::Relaxed);
            }
            self.cond.notify_all();
            drop(done);
            if let Some(waker) = lock(&self.waker).take() {
                waker.wake();
            }
        }
    }

    /// For `Future::poll`: the outcome if there is one, else registers the waker.
    pub(crate) fn poll_take(&self, cx: &mut std::task::Context<'_>) -> Option<Result<Payload>> {
        // The waker is stored before checking, so a completion in between still wakes it.
        *lock(&self.waker) = Some(cx.waker().clone());
        let mut done = lock(&self.done);
        let outcome = done.take()?;
        *done = Some(Err(Error::Cancelled {
            what: format!("{} (result already taken)", self.what),
        }));
        Some(outcome)
    }

    /// Waits until completed or `deadline`; takes the outcome if there is one.
    pub(crate) fn take(&self, deadline: Option<Instant>) -> Option<Result<Payload>> {
        self.spin(deadline);
        let mut done = lock(&self.done);
        loop {
            if let Some(outcome) = done.take() {
                // Leave a marker so later calls see it was taken rather than pending.
                *done = Some(Err(Error::Cancelled {
                    what: format!("{} (result already taken)", self.what),
                }));
                return Some(outcome);
            }
            match deadline {
                None => done = self.cond.wait(done).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return None;
                    }
                    done = self
                        .cond
                        .wait_timeout(done, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        lock(&self.done).is_some()
    }

    /// Waits up to [`SPIN`] (never past `deadline`) for the outcome without sleeping.
    fn spin(&self, deadline: Option<Instant>) {
        if self.completed.load(Ordering::Acquire) {
            return;
        }
        let start = Instant::now();
        let until = deadline.map_or(start + SPIN, |d| d.min(start + SPIN));
        while !self.completed.load(Ordering::Acquire) && Instant::now() < until {
            // Yield rather than spin: the thread that must run next (the reader, or Python
            // itself) may have been queued on this very core.
            std::thread::yield_now();
        }
    }
}

/// How long a caller waits for a reply without sleeping before it blocks. A warm call takes
/// 15-20 µs, and a caller that blocks at once adds the wake-up of its core when that core
/// went idle meanwhile (tens of µs on a VM). Measured with `bench_worker` (20k calls, shared
/// 2-core VM, three runs each): p50 17.1-17.2 µs with the spin vs 17.3-36.3 µs without, p99
/// 23-34 µs vs 34-75 µs. A waiting caller costs at most this much CPU per wait; an idle
/// worker costs nothing.
const SPIN: Duration = Duration::from_micros(50);

/// What callers, handles and the reader thread share about one running process.
pub(crate) struct Link {
    pub pid: u32,
    pub max_frame: usize,
    stdin: Mutex<Option<ChildStdin>>,
    pending: Mutex<Pending>,
    guard: Mutex<ChildGuard>,
    stderr: Arc<Mutex<StderrSink>>,
    shutting_down: AtomicBool,
    pub died_at: Mutex<Option<Instant>>,
}

struct Pending {
    alive: bool,
    slots: HashMap<u64, Arc<Slot>>,
}

impl Link {
    pub(crate) fn is_alive(&self) -> bool {
        lock(&self.pending).alive
    }

    /// Registers a slot; `false` if the process is already dead.
    pub(crate) fn register(&self, id: u64, slot: Arc<Slot>) -> bool {
        let mut pending = lock(&self.pending);
        if pending.alive {
            pending.slots.insert(id, slot);
        }
        pending.alive
    }

    /// Removes a slot; whether it was still pending.
    pub(crate) fn forget(&self, id: u64) -> bool {
        lock(&self.pending).slots.remove(&id).is_some()
    }

    /// Writes frames back to back (other writers wait), so a message and its binary frames
    /// stay together.
    pub(crate) fn write(&self, frames: &[&[u8]]) -> std::io::Result<()> {
        let mut stdin = lock(&self.stdin);
        let stdin = stdin.as_mut().ok_or(std::io::ErrorKind::BrokenPipe)?;
        for frame in frames {
            protocol::write_frame(stdin, frame, self.max_frame)?;
        }
        Ok(())
    }

    pub(crate) fn stderr_tail(&self) -> String {
        lock(&self.stderr).text()
    }
}

/// A running process: its link and its threads.
pub(crate) struct Proc {
    pub link: Arc<Link>,
    reader: Option<JoinHandle<()>>,
}

impl Proc {
    /// Starts the interpreter, waits for `ready` (or the import error).
    pub(crate) fn spawn(cfg: &Arc<Config>) -> Result<Proc> {
        let env = &cfg.env;
        let args = protocol::argv(&table::WORKER_ARGV, |name| match name {
            "lib" => vec![env.lib_dir().into()],
            "max_frame" => vec![cfg.max_frame.to_string().into()],
            "threads" => vec![cfg.threads.to_string().into()],
            "scripts" => vec![env.scripts_dir().into()],
            _ => cfg.modules.iter().map(Into::into).collect(),
        });
        let mut guard = child::spawn_runner(
            env.python(),
            env.interpreter(),
            &table::WORKER_ARGV,
            args,
            true,
        )?;
        let pid = guard.pid();
        let what = format!("worker for {:?}", cfg.modules);
        let channel_err = |action, source| Error::Channel {
            what: what.clone(),
            action,
            source,
        };
        let (stdin, stdout, stderr) = {
            let child = guard.child();
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        };
        let (Some(stdin), Some(stdout), Some(stderr)) = (stdin, stdout, stderr) else {
            unreachable!("all three pipes were requested")
        };
        child::grow_pipe(&stdin);
        child::grow_pipe(&stdout);
        let sink = Arc::new(Mutex::new(StderrSink::Tail {
            buf: VecDeque::new(),
            limit: cfg.stderr_tail,
            forward: cfg.forward_stderr,
        }));
        let stderr_thread = child::drain_stderr(stderr, sink.clone())
            .map_err(|e| channel_err("cannot start the stderr thread", e))?;
        let startup = Slot::new(what.clone(), None, None);
        let link = Arc::new(Link {
            pid,
            max_frame: cfg.max_frame,
            stdin: Mutex::new(Some(stdin)),
            pending: Mutex::new(Pending {
                alive: true,
                slots: HashMap::from([(0, startup.clone())]),
            }),
            guard: Mutex::new(guard),
            stderr: sink,
            shutting_down: AtomicBool::new(false),
            died_at: Mutex::new(None),
        });
        let reader = {
            let (link, cfg) = (link.clone(), cfg.clone());
            std::thread::Builder::new()
                .name(format!("pybundle-worker-{pid}"))
                .spawn(move || read_loop(&link, &cfg, stdout, stderr_thread))
                .map_err(|e| channel_err("cannot start the reader thread", e))?
        };
        let mut proc = Proc {
            link,
            reader: Some(reader),
        };
        // Nothing of the worker's runs before it has read this.
        let _ = proc.link.write(&[&Outgoing::Start {
            input: None,
            buffers: 0,
        }
        .encode()]);
        match startup.take(Some(Instant::now() + cfg.start_timeout)) {
            Some(Ok(_)) => {
                tracing::debug!(pid, modules = ?cfg.modules, "worker ready");
                cfg.emit(&WorkerEvent::Started { pid });
                Ok(proc)
            }
            None => {
                proc.kill();
                tracing::debug!(pid, tail = %proc.link.stderr_tail(), "worker start timed out");
                Err(Error::Timeout {
                    what: format!("starting the worker for modules {:?}", cfg.modules),
                    after: cfg.start_timeout,
                })
            }
            Some(Err(error)) => {
                proc.kill();
                let detail = match error {
                    Error::WorkerStart { detail, .. } => detail,
                    other => other.to_string(),
                };
                let tail = proc.link.stderr_tail();
                let detail = if tail.trim().is_empty() || detail.contains(tail.trim()) {
                    detail
                } else {
                    format!("{detail}\nstderr:\n{}", tail.trim_end())
                };
                Err(Error::WorkerStart {
                    modules: cfg.modules.clone(),
                    detail,
                })
            }
        }
    }

    fn kill(&mut self) {
        lock(&self.link.guard).kill();
        if let Some(reader) = self.reader.take() {
            if reader.thread().id() != std::thread::current().id() {
                let _ = reader.join();
            }
        }
    }

    /// Asks the process to exit, closes its input, and kills it if it is not gone in time.
    pub(crate) fn shutdown(mut self, timeout: Duration) {
        let link = &self.link;
        link.shutting_down.store(true, Ordering::SeqCst);
        let _ = link.write(&[&Outgoing::Shutdown.encode()]);
        lock(&link.stdin).take();
        let deadline = Instant::now() + timeout;
        while self.reader.as_ref().is_some_and(|r| !r.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        self.kill();
    }

    /// Reaps a process whose reader has ended (after a crash). From the reader thread itself
    /// (an `on_event` callback that calls the worker) there is nothing to wait for.
    pub(crate) fn join(mut self) {
        if let Some(reader) = self.reader.take() {
            if reader.thread().id() != std::thread::current().id() {
                let _ = reader.join();
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.reader.is_some() {
            self.kill();
        }
    }
}

/// The reader thread: delivers replies by id until the process's output ends, then reaps it
/// and fails whatever was still in flight.
fn read_loop(link: &Arc<Link>, cfg: &Config, stdout: ChildStdout, stderr_thread: Drain) {
    let mut reader = Reader::new(Limits {
        max_frame: link.max_frame,
        max_message: protocol::message_cap(protocol::DEFAULT_MAX_MESSAGE, link.max_frame),
    });
    let broken = 'read: loop {
        loop {
            let msg = match reader.next() {
                Ok(Some(msg)) => msg,
                Ok(None) => break,
                Err(violation) => break 'read Some(violation),
            };
            if let Err(violation) = deliver(link, cfg, msg) {
                break 'read Some(violation);
            }
        }
        match reader.read_from(&stdout) {
            Ok(0) => break reader.at_end(),
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(pid = link.pid, "reading the worker's output failed: {e}");
                break reader.at_end();
            }
        }
    };
    finish(link, cfg, broken, stderr_thread);
}

/// Hands one message to the call (or ping, or startup) it belongs to.
fn deliver(
    link: &Link,
    cfg: &Config,
    msg: protocol::Message,
) -> std::result::Result<(), Violation> {
    let id = msg.id.unwrap_or(0);
    let take = || lock(&link.pending).slots.remove(&id);
    match msg.kind {
        Kind::Ready if msg.pid != Some(link.pid) => {
            // A launcher that starts Python as its own child, not by exec: fine, but worth a note.
            tracing::debug!(pid = link.pid, reported = ?msg.pid, "the worker reports another pid");
            if let Some(slot) = take() {
                slot.complete(Ok(msg.into_payload()));
            }
        }
        Kind::Result | Kind::Pong | Kind::Ready => {
            if let Some(slot) = take() {
                cfg.crashes.store(0, Ordering::Relaxed);
                slot.complete(Ok(msg.into_payload()));
            }
        }
        Kind::Error | Kind::Fatal => {
            let kind = msg.kind;
            let Some(error) = msg.error else {
                return Err(Violation::Malformed(
                    "an error message without `error`".into(),
                ));
            };
            if let Some(slot) = take() {
                slot.complete(Err(if kind == Kind::Fatal {
                    Error::WorkerStart {
                        modules: cfg.modules.clone(),
                        detail: error.traceback,
                    }
                } else {
                    Error::Python {
                        what: slot.what.clone(),
                        error,
                    }
                }));
            }
        }
        Kind::Message => {
            let slot = lock(&link.pending).slots.get(&id).cloned();
            if let Some(on_message) = slot.as_ref().and_then(|s| s.on_message.as_ref()) {
                let value = crate::buffer::from_payload(msg.into_payload())
                    .unwrap_or(serde_json::Value::Null);
                (lock(on_message))(value);
            }
        }
        Kind::Reply => {
            return Err(Violation::Malformed(
                "a worker sent a script's `reply`".into(),
            ))
        }
    }
    Ok(())
}

fn finish(link: &Arc<Link>, cfg: &Config, broken: Option<Violation>, stderr_thread: Drain) {
    let slots = {
        let mut pending = lock(&link.pending);
        pending.alive = false;
        std::mem::take(&mut pending.slots)
    };
    *lock(&link.died_at) = Some(Instant::now());
    lock(&link.stdin).take();
    if broken.is_some() {
        lock(&link.guard).kill();
    }
    // The output ended, so the process is exiting: give it a moment, then make sure.
    let deadline = Instant::now() + Duration::from_millis(500);
    let status = loop {
        let mut guard = lock(&link.guard);
        match guard.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() < deadline => {}
            Ok(None) => {
                guard.kill();
                break guard.wait();
            }
            Err(e) => break Err(e),
        }
        drop(guard);
        std::thread::sleep(Duration::from_millis(1));
    };
    // The tail is complete once the pipe has closed, which it does with the process unless a
    // grandchild inherited it: then wait briefly and go on without the rest.
    stderr_thread.finish(Duration::from_millis(500));
    let text = match (&status, &broken) {
        (Ok(status), None) => status.to_string(),
        (Ok(status), Some(reason)) => {
            format!("{status}, killed after it broke the protocol: {reason}")
        }
        (Err(e), _) => format!("cannot wait for it: {e}"),
    };
    let stderr = link.stderr_tail();
    let failure = |what: &str| match (&broken, &status) {
        (Some(Violation::Malformed(detail)), _) => Error::Protocol {
            what: what.to_owned(),
            detail: format!("{detail} (the worker was killed)"),
        },
        (Some(violation), _) => violation.clone().into_error(what.to_owned()),
        (None, Ok(status)) if status.code().is_some() => Error::WorkerExited {
            what: what.to_owned(),
            code: status.code().unwrap_or_default(),
            stderr: stderr.clone(),
        },
        (None, _) => Error::WorkerCrashed {
            what: what.to_owned(),
            status: text.clone(),
            stderr: stderr.clone(),
        },
    };
    let shutting_down = link.shutting_down.load(Ordering::SeqCst);
    for (_, slot) in slots {
        slot.complete(Err(failure(&slot.what)));
    }
    if shutting_down {
        cfg.emit(&WorkerEvent::Stopped { pid: link.pid });
    } else {
        cfg.crashes.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(pid = link.pid, status = %text, "worker process died");
        cfg.emit(&WorkerEvent::Crashed {
            pid: link.pid,
            status: text,
        });
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere (a user callback) must not wedge the worker: the data stays usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
