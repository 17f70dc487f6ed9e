//! Long-lived workers: a Python process that imports modules from the scripts directory once
//! and serves `module.function(args)` calls concurrently on a pool of Python threads.
//!
//! Calls carry ids; one reader thread per process hands each reply to its caller, so a
//! [`Worker`] is shared freely between Rust threads. A process that dies fails the calls in
//! flight with [`Error::WorkerCrashed`] (a signal: segfault, SIGKILL) or
//! [`Error::WorkerExited`] (it exited by itself); one that breaks the protocol is killed and
//! fails them with [`Error::Protocol`] or [`Error::FrameTooLarge`]. Either way it is started
//! again, with backoff, by the next call. Dropping the last handle shuts the process down
//! within a bounded time.

mod call;
mod pool;
mod process;

use self::call::Target;
pub use self::call::{CallHandle, Request};
pub use self::pool::WorkerPool;

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use self::process::{lock, Link, Proc, Slot};
use crate::protocol::{self, Outgoing, DEFAULT_MAX_FRAME};
use crate::{Environment, Error, Result};

/// A change in a worker's process, reported to [`WorkerBuilder::on_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WorkerEvent {
    /// A process started and imported its modules.
    Started {
        /// Its process id.
        pid: u32,
    },
    /// A process died unexpectedly (the next call starts a new one).
    Crashed {
        /// Its process id.
        pid: u32,
        /// How it ended, e.g. "signal: 9 (SIGKILL)".
        status: String,
    },
    /// A process exited after a shutdown request.
    Stopped {
        /// Its process id.
        pid: u32,
    },
}

type EventFn = Arc<dyn Fn(&WorkerEvent) + Send + Sync>;

pub(crate) struct Config {
    env: Environment,
    modules: Vec<String>,
    threads: usize,
    max_frame: usize,
    start_timeout: Duration,
    shutdown_timeout: Duration,
    stderr_tail: usize,
    forward_stderr: bool,
    on_event: Option<EventFn>,
    /// Consecutive crashes (reset by any successful reply): drives the restart backoff.
    crashes: AtomicU32,
}

impl Config {
    fn emit(&self, event: &WorkerEvent) {
        if let Some(f) = &self.on_event {
            f(event);
        }
    }
}

/// Configures a [`Worker`] or [`WorkerPool`]; made by [`Environment::worker`].
#[must_use = "a builder does nothing until `start` or `pool` is called"]
pub struct WorkerBuilder {
    cfg: Config,
}

impl Environment {
    /// A worker that imports `modules` (from the scripts directory) once and serves calls.
    ///
    /// ```no_run
    /// # fn main() -> pybundle_runtime::Result<()> {
    /// # let env = pybundle_runtime::Environment::from_parts("env", "env/bin/python3", "scripts", "lib");
    /// let worker = env.worker(["model"]).threads(4).start()?;
    /// let total: f64 = worker.call("model.total", &(vec![1.0, 2.5],))?;
    /// # Ok(()) }
    /// ```
    pub fn worker<I, S>(&self, modules: I) -> WorkerBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        WorkerBuilder {
            cfg: Config {
                env: self.clone(),
                modules: modules.into_iter().map(Into::into).collect(),
                threads: 4,
                max_frame: DEFAULT_MAX_FRAME,
                start_timeout: Duration::from_secs(120),
                shutdown_timeout: Duration::from_secs(5),
                stderr_tail: 64 * 1024,
                forward_stderr: true,
                on_event: None,
                crashes: AtomicU32::new(0),
            },
        }
    }
}

impl WorkerBuilder {
    /// Python threads serving calls in each process (default 4). The GIL lets only one run
    /// Python code at a time; use a [`WorkerPool`](crate::WorkerPool) for CPU-bound work.
    pub fn threads(mut self, n: usize) -> Self {
        self.cfg.threads = n.max(1);
        self
    }

    /// The largest frame accepted in either direction (default 64 MiB).
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.cfg.max_frame = protocol::clamp_max(bytes);
        self
    }

    /// How long importing the modules may take (default 120 s); past it the process is
    /// killed and starting fails with [`Error::Timeout`].
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.cfg.start_timeout = timeout;
        self
    }

    /// How long a process may take to exit after a shutdown request before it is killed
    /// (default 5 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.cfg.shutdown_timeout = timeout;
        self
    }

    /// How many bytes of the process's stderr to keep for error messages (default 64 KiB).
    pub fn stderr_tail(mut self, bytes: usize) -> Self {
        self.cfg.stderr_tail = bytes;
        self
    }

    /// Whether the process's output (its stdout is redirected to its stderr) is copied to
    /// this process's stderr (default true). The tail is kept either way.
    pub fn forward_stderr(mut self, yes: bool) -> Self {
        self.cfg.forward_stderr = yes;
        self
    }

    /// Called when a process starts, crashes or stops (on the thread that started it, or on
    /// the process's reader thread).
    pub fn on_event(mut self, f: impl Fn(&WorkerEvent) + Send + Sync + 'static) -> Self {
        self.cfg.on_event = Some(Arc::new(f));
        self
    }

    /// Starts the process and waits until its modules are imported.
    pub fn start(self) -> Result<Worker> {
        let cfg = Arc::new(self.cfg);
        let proc = Proc::spawn(&cfg)?;
        Ok(Worker {
            inner: Arc::new(Inner {
                cfg,
                state: Mutex::new(Some(proc)),
                next_id: AtomicU64::new(1),
                in_flight: Arc::new(AtomicUsize::new(0)),
            }),
        })
    }

    /// Starts `n` processes with this configuration (see [`WorkerPool`](crate::WorkerPool)).
    pub fn pool(self, n: usize) -> Result<WorkerPool> {
        pool::start(self, n)
    }

    fn config_clone(&self) -> Self {
        let c = &self.cfg;
        WorkerBuilder {
            cfg: Config {
                env: c.env.clone(),
                modules: c.modules.clone(),
                threads: c.threads,
                max_frame: c.max_frame,
                start_timeout: c.start_timeout,
                shutdown_timeout: c.shutdown_timeout,
                stderr_tail: c.stderr_tail,
                forward_stderr: c.forward_stderr,
                on_event: c.on_event.clone(),
                crashes: AtomicU32::new(0),
            },
        }
    }
}

/// A long-lived Python process serving calls; cheap to clone and share between threads (the
/// process stops when the last clone is dropped).
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Arc<Config>,
    state: Mutex<Option<Proc>>,
    next_id: AtomicU64,
    in_flight: Arc<AtomicUsize>,
}

impl Worker {
    /// Calls `module.function(*args)` and waits for its result. `args` is a tuple or array
    /// (positional arguments) or a struct/map (keyword arguments).
    pub fn call<R: DeserializeOwned>(
        &self,
        func: &str,
        args: &(impl Serialize + ?Sized),
    ) -> Result<R> {
        self.request(func).args(args).call()
    }

    /// Sends a call and returns at once with a handle to its result.
    pub fn submit<R: DeserializeOwned>(
        &self,
        func: &str,
        args: &(impl Serialize + ?Sized),
    ) -> Result<CallHandle<R>> {
        self.request(func).args(args).submit()
    }

    /// A call with options (timeout, progress messages).
    pub fn request(&self, func: &str) -> Request<'_> {
        Request::new(Target::Worker(self), func)
    }

    /// Round-trips a ping through the process's reader (not its call threads); the time taken.
    pub fn ping(&self, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        let link = self.link()?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Slot::new("ping".into(), None, None);
        if !link.register(id, slot.clone()) {
            return Err(self.dead("ping"));
        }
        let _ = link.write(&[&Outgoing::Ping { id }.encode()]);
        match slot.take(Some(start + timeout)) {
            Some(outcome) => outcome.map(|_| start.elapsed()),
            None => {
                link.forget(id);
                Err(Error::Timeout {
                    what: "ping".into(),
                    after: timeout,
                })
            }
        }
    }

    /// The current process id, if one is running.
    pub fn pid(&self) -> Option<u32> {
        lock(&self.inner.state)
            .as_ref()
            .filter(|p| p.link.is_alive())
            .map(|p| p.link.pid)
    }

    /// The end of the current (or last) process's stderr, which also holds its stdout.
    pub fn stderr_tail(&self) -> String {
        lock(&self.inner.state)
            .as_ref()
            .map(|p| p.link.stderr_tail())
            .unwrap_or_default()
    }

    /// Calls sent and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Relaxed)
    }

    /// The running process (started again if it died) and a fresh call id.
    fn connect(&self) -> Result<(Arc<Link>, u64)> {
        let link = self.link()?;
        Ok((link, self.inner.next_id.fetch_add(1, Ordering::Relaxed)))
    }

    fn max_frame(&self) -> usize {
        self.inner.cfg.max_frame
    }

    fn in_flight_counter(&self) -> Arc<AtomicUsize> {
        self.inner.in_flight.clone()
    }

    fn dead(&self, what: &str) -> Error {
        Error::WorkerCrashed {
            what: what.into(),
            status: "exited".into(),
            stderr: String::new(),
        }
    }

    /// The running process, started again (with backoff after crashes) if it died.
    fn link(&self) -> Result<Arc<Link>> {
        let mut state = lock(&self.inner.state);
        if let Some(proc) = state.as_ref() {
            if proc.link.is_alive() {
                return Ok(proc.link.clone());
            }
        }
        let died_at = state.as_ref().and_then(|p| *lock(&p.link.died_at));
        if let Some(old) = state.take() {
            old.join();
        }
        let crashes = self.inner.cfg.crashes.load(Ordering::Relaxed);
        if crashes > 1 {
            // 50 ms, 100 ms, ... up to 5 s after repeated crashes, counted from the crash.
            let backoff =
                Duration::from_millis(50u64 << (crashes - 1).min(7)).min(Duration::from_secs(5));
            let waited = died_at.map(|t| t.elapsed()).unwrap_or_default();
            std::thread::sleep(backoff.saturating_sub(waited));
        }
        let proc = Proc::spawn(&self.inner.cfg)?;
        let link = proc.link.clone();
        *state = Some(proc);
        Ok(link)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(proc) = lock(&self.state).take() {
            proc.shutdown(self.cfg.shutdown_timeout);
        }
    }
}
