//! Configuring a worker: [`WorkerBuilder`] (made by [`Environment::worker`]) and the
//! configuration a running worker keeps.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::args::Args;
use super::{Worker, WorkerEvent, WorkerPool};
use crate::protocol::{self, DEFAULT_MAX_FRAME, DEFAULT_MAX_MESSAGE};
use crate::{Environment, Error, Result};

type EventFn = Arc<dyn Fn(&WorkerEvent) + Send + Sync>;

/// How long a message may take from its first byte to its last by default (workers and
/// scripts).
pub(crate) const DEFAULT_FRAME_TIMEOUT: Duration = Duration::from_secs(30);

/// The most memory a worker's calls may hold at once by default.
pub(crate) const DEFAULT_MAX_IN_FLIGHT: usize = 1 << 30;

/// How many bytes of a worker process's stderr are kept for error messages by default.
pub(crate) const DEFAULT_STDERR_TAIL: usize = 64 * 1024;

/// What every process of a worker is started with.
#[derive(Clone)]
pub(crate) struct Config {
    pub env: Environment,
    pub modules: Vec<String>,
    pub threads: usize,
    pub max_frame: usize,
    pub max_message: usize,
    pub start_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub stderr_tail: usize,
    pub forward_stderr: bool,
    pub on_event: Option<EventFn>,
    /// Variables set (or, `None`, removed) for each process.
    pub envs: Vec<(OsString, Option<OsString>)>,
    pub current_dir: Option<PathBuf>,
    /// Run in each process after the imports, before it says `ready`.
    pub init: Option<Arc<InitCall>>,
    pub on_timeout: OnTimeout,
    /// Forward Python `logging` records from this (Python) level up.
    pub log_level: Option<u32>,
    /// How long a message may take from its first byte to its last.
    pub frame_timeout: Duration,
    /// Bytes held for callers (answers not yet taken) plus bytes waiting to be written.
    pub max_in_flight: usize,
}

/// The init call, encoded once.
pub(crate) struct InitCall {
    pub func: String,
    pub args: Args,
}

impl InitCall {
    /// Its binary frames, for one more start message.
    pub(crate) fn frames(&self) -> Vec<crate::buffer::Frame> {
        self.args
            .frames
            .iter()
            .map(crate::buffer::Frame::again)
            .collect()
    }
}

/// What happens to the process when a call's timeout passes. The call fails with
/// [`Error::Timeout`](crate::Error::Timeout) either way and the process is told to cancel it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnTimeout {
    /// Nothing more: the function can see `pybundle.cancelled()` and stop; until it returns
    /// it keeps one of the process's threads (the default).
    #[default]
    Cancel,
    /// If the function has not ended `grace` after the timeout (stuck in C code, holding the
    /// GIL, deaf to `cancelled()`), the process is killed and a new one started: calls in
    /// flight then fail with [`Error::WorkerRestarted`](crate::Error::WorkerRestarted).
    Restart {
        /// How long the cancelled function may take to return.
        grace: Duration,
    },
}

impl Config {
    /// Names the worker in errors: "worker for [\"model\"]".
    pub(crate) fn what(&self) -> String {
        format!("worker for {:?}", self.modules)
    }

    pub(crate) fn emit(&self, event: &WorkerEvent) {
        if let Some(f) = &self.on_event {
            f(event);
        }
    }
}

/// Configures a [`Worker`] or [`WorkerPool`]; made by [`Environment::worker`].
#[must_use = "a builder does nothing until `start` or `pool` is called"]
#[derive(Clone)]
pub struct WorkerBuilder {
    pub(super) cfg: Config,
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
                max_message: DEFAULT_MAX_MESSAGE,
                start_timeout: Duration::from_secs(120),
                shutdown_timeout: Duration::from_secs(5),
                stderr_tail: DEFAULT_STDERR_TAIL,
                forward_stderr: true,
                on_event: None,
                envs: Vec::new(),
                current_dir: None,
                init: None,
                on_timeout: OnTimeout::Cancel,
                log_level: None,
                frame_timeout: DEFAULT_FRAME_TIMEOUT,
                max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            },
        }
    }
}

impl WorkerBuilder {
    /// Python threads serving calls in each process (default 4). The GIL lets only one run
    /// Python code at a time; use a [`WorkerPool`] for CPU-bound work.
    pub fn threads(mut self, n: usize) -> Self {
        self.cfg.threads = n.max(1);
        self
    }

    /// The largest frame accepted in either direction (default
    /// [`DEFAULT_MAX_FRAME`](crate::protocol::DEFAULT_MAX_FRAME), 64 MiB).
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.cfg.max_frame = protocol::clamp_max(bytes);
        self
    }

    /// The largest message the process may send, its binary frames included (default
    /// [`DEFAULT_MAX_MESSAGE`](crate::protocol::DEFAULT_MAX_MESSAGE), 256 MiB; never less than
    /// the frame limit plus 1 MiB). A process that sends more is killed and its calls fail with
    /// [`Error::MessageTooLarge`](crate::Error::MessageTooLarge).
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.cfg.max_message = bytes;
        self
    }

    /// How long a message from the process may take from its first byte to its last
    /// (default 30 s). A process stuck halfway through writing one is killed, its calls fail
    /// with [`Error::Protocol`](crate::Error::Protocol), and the next call starts a new one.
    pub fn frame_timeout(mut self, timeout: Duration) -> Self {
        self.cfg.frame_timeout = timeout;
        self
    }

    /// The most memory calls may hold at once (default 1 GiB): answers received and not yet
    /// taken by their callers, plus calls not yet written to the process. An answer past it
    /// fails its call, and a call past it fails at once, with
    /// [`Error::InFlightLimit`](crate::Error::InFlightLimit); the process is not harmed.
    pub fn max_in_flight(mut self, bytes: usize) -> Self {
        self.cfg.max_in_flight = bytes;
        self
    }

    /// How long importing the modules may take (default 120 s); past it the process is
    /// killed and starting fails with [`Error::Timeout`](crate::Error::Timeout).
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

    /// Called when a process starts, crashes or stops, on the worker's own threads: keep it
    /// short.
    pub fn on_event(mut self, f: impl Fn(&WorkerEvent) + Send + Sync + 'static) -> Self {
        self.cfg.on_event = Some(Arc::new(f));
        self
    }

    /// Sets a variable for the worker's processes, over the environment's (activation)
    /// variables.
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.cfg.envs.push((name.into(), Some(value.into())));
        self
    }

    /// Removes a variable for the worker's processes (inherited or set by activation).
    pub fn env_remove(mut self, name: impl Into<OsString>) -> Self {
        self.cfg.envs.push((name.into(), None));
        self
    }

    /// The working directory of the worker's processes (default: this process's). The
    /// modules are imported from the scripts directory either way.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cfg.current_dir = Some(dir.into());
        self
    }

    /// A function each process calls after importing its modules and before it serves: state
    /// it sets up (a model loaded, a connection opened) is there again after every restart.
    /// `func` is `module.function` in one of the worker's modules (it need not be one it
    /// serves); `args` as for [`Worker::call`]. An exception fails the start with
    /// [`Error::WorkerStart`](crate::Error::WorkerStart) and its traceback.
    pub fn init(mut self, func: &str, args: &(impl Serialize + ?Sized)) -> Result<Self> {
        let mut encoded = Args::default();
        encoded.add(args).map_err(|source| Error::Json {
            what: format!("init call `{func}`"),
            action: "cannot encode the arguments",
            source,
        })?;
        // Kept for every start: borrowed bytes are copied now.
        encoded.own_frames();
        self.cfg.init = Some(Arc::new(InitCall {
            func: func.to_owned(),
            args: encoded,
        }));
        Ok(self)
    }

    /// What a call's timeout does to the process (default [`OnTimeout::Cancel`]).
    pub fn on_timeout(mut self, policy: OnTimeout) -> Self {
        self.cfg.on_timeout = policy;
        self
    }

    /// Forwards Python `logging` records of `level` and above as `tracing` events (target
    /// `pybundle::python`, the record's level, a `logger` field) inside the span that was
    /// current where each call was made; records outside a call go to the span current at
    /// start. Off by default: the records then go where Python's logging sends them (stderr,
    /// for warnings and errors). Sets the root logger's level to `level` when it is higher.
    pub fn forward_logging(mut self, level: tracing::Level) -> Self {
        self.cfg.log_level = Some(crate::logs::python_level(level));
        self
    }

    /// Starts the process and waits until its modules are imported.
    pub fn start(self) -> Result<Worker> {
        Worker::launch(self.cfg).wait()
    }

    /// Starts the process; the future resolves once its modules are imported. Nothing blocks
    /// the calling thread: the process is started and awaited by the worker's own thread.
    pub fn start_async(self) -> super::Starting {
        Worker::launch(self.cfg)
    }

    /// Starts `n` processes with this configuration side by side and waits for all (see
    /// [`WorkerPool`]).
    pub fn pool(self, n: usize) -> Result<WorkerPool> {
        WorkerPool::start(self, n)
    }

    /// Starts `n` processes side by side; the future resolves once all are ready.
    pub async fn pool_async(self, n: usize) -> Result<WorkerPool> {
        WorkerPool::start_async(self, n).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_init_call_shares_its_buffers_at_every_start() {
        let buffer = crate::Buffer::new(vec![1u8; 4096]);
        let mut args = Args::default();
        args.arg(&(1, &buffer)).unwrap();
        let init = InitCall {
            func: "model.load".into(),
            args,
        };
        // Each start (the first and every restart) sends the caller's bytes, not a copy.
        for _ in 0..2 {
            let frames = init.frames();
            assert_eq!(frames.len(), 1);
            assert_eq!(frames[0].bytes().as_ptr(), buffer.as_slice().as_ptr());
        }
    }
}
