//! One-shot scripts: start the interpreter, run `scripts/<name>.py` as `__main__`, collect its
//! progress messages and its reply, reap it.

use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{ChildStdout, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::buffer::{self, Frame};
use crate::child::{self, ChildGuard, Drain, StderrSink};
use crate::protocol::{
    self, table, Kind, Limits, Message, Outgoing, Payload, PythonError, Reader, Violation,
};
use crate::{sys, Environment, Error, Result};

/// What a script produced: its reply, how it exited and (if asked) its output.
#[derive(Debug)]
pub struct ScriptOutput<R> {
    /// The value the script passed to `pybundle.reply()`.
    pub reply: R,
    /// The exit status (a script may reply and then `sys.exit(n)`).
    pub status: ExitStatus,
    /// Everything the script wrote to stdout and stderr, when
    /// [`capture_output`](Script::capture_output) was set. The script's stdout is redirected
    /// to its stderr (stdout carries the protocol), so both end up here, in order.
    pub output: Option<String>,
}

/// How much of a script's captured output is kept by default (its end).
pub(crate) const DEFAULT_CAPTURE_LIMIT: usize = 16 << 20;

type Callback<'a> = Box<dyn FnMut(serde_json::Value) + Send + 'a>;

/// A one-shot run of `scripts/<name>.py`, configured with builder methods and started by
/// [`run`](Script::run). Made by [`Environment::script`].
///
/// ```no_run
/// # fn main() -> pybundle_runtime::Result<()> {
/// # let env = pybundle_runtime::Environment::from_parts("env", "env/bin/python3", "scripts", "lib");
/// let out = env
///     .script("outliers")
///     .arg("--threshold")
///     .arg("2")
///     .input(&vec![1.0, 2.0, 97.3])
///     .run::<Vec<usize>>()?;
/// println!("{:?}", out.reply);
/// # Ok(()) }
/// ```
#[must_use = "a script does nothing until `run` is called"]
pub struct Script<'a> {
    env: Environment,
    name: String,
    args: Vec<OsString>,
    /// The input's JSON and its byte buffers.
    input: Result<Option<(Vec<u8>, Vec<buffer::Frame>)>>,
    timeout: Option<Duration>,
    capture: bool,
    max_frame: usize,
    on_message: Option<Callback<'a>>,
    envs: Vec<(OsString, Option<OsString>)>,
    /// Set by [`run_async`](Script::run_async): kills the child when its future is dropped.
    abort: Option<Arc<AbortSwitch>>,
    log_level: Option<u32>,
    max_message: usize,
    frame_timeout: Duration,
    capture_limit: usize,
}

impl<'a> Script<'a> {
    pub(crate) fn new(env: &Environment, name: &str) -> Self {
        Self {
            env: env.clone(),
            name: name.to_owned(),
            args: Vec::new(),
            input: Ok(None),
            timeout: None,
            capture: false,
            max_frame: protocol::DEFAULT_MAX_FRAME,
            on_message: None,
            envs: Vec::new(),
            abort: None,
            log_level: None,
            max_message: protocol::DEFAULT_MAX_MESSAGE,
            frame_timeout: crate::worker::DEFAULT_FRAME_TIMEOUT,
            capture_limit: DEFAULT_CAPTURE_LIMIT,
        }
    }

    fn what(&self) -> String {
        format!("script `{}`", self.name)
    }

    /// Adds a command-line argument (the script's `sys.argv[1:]`, passed unchanged).
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds command-line arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets a variable for this run only, over the environment's (activation) variables.
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((name.into(), Some(value.into())));
        self
    }

    /// Removes a variable for this run only (inherited or set by activation).
    pub fn env_remove(mut self, name: impl Into<OsString>) -> Self {
        self.envs.push((name.into(), None));
        self
    }

    /// The value `pybundle.input()` returns in the script. [`Buffer`](crate::Buffer)s inside
    /// travel as binary frames and arrive as `bytes`.
    pub fn input<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        let what = self.what();
        // Written when the script starts: borrowed bytes are copied now.
        self.input = buffer::to_json_with_buffers(value)
            .map(|(json, frames)| Some((json, frames.into_iter().map(Frame::own).collect())))
            .map_err(|source| Error::Json {
                what,
                action: "cannot encode the input",
                source,
            });
        self
    }

    /// Kills the script if it has not finished after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Captures the script's output into [`ScriptOutput::output`] instead of passing it
    /// through to this process's stderr: at most [`capture_limit`](Script::capture_limit)
    /// bytes, its end.
    pub fn capture_output(mut self) -> Self {
        self.capture = true;
        self
    }

    /// How much captured output is kept (default 16 MiB): past it the earliest output goes,
    /// and [`ScriptOutput::output`] starts with a line saying how many bytes were dropped.
    pub fn capture_limit(mut self, bytes: usize) -> Self {
        self.capture_limit = bytes;
        self
    }

    /// The largest message the script may send, its binary frames included (default
    /// [`DEFAULT_MAX_MESSAGE`](crate::protocol::DEFAULT_MAX_MESSAGE); never less than the
    /// frame limit plus 1 MiB). A script that sends more is killed:
    /// [`Error::MessageTooLarge`].
    pub fn max_message(mut self, bytes: usize) -> Self {
        self.max_message = bytes;
        self
    }

    /// How long a message from the script may take from its first byte to its last (default
    /// 30 s); a script stuck halfway through writing one is killed: [`Error::Protocol`].
    pub fn frame_timeout(mut self, timeout: Duration) -> Self {
        self.frame_timeout = timeout;
        self
    }

    /// The largest frame accepted in either direction (default
    /// [`DEFAULT_MAX_FRAME`](crate::protocol::DEFAULT_MAX_FRAME)).
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = protocol::clamp_max(bytes);
        self
    }

    /// Receives each `pybundle.send(value)` while the script runs, in order, on the thread
    /// that called [`run`](Script::run) (with [`run_async`](Script::run_async): the thread
    /// that runs it).
    pub fn on_message(mut self, callback: impl FnMut(serde_json::Value) + Send + 'a) -> Self {
        self.on_message = Some(Box::new(callback));
        self
    }

    /// Forwards the script's Python `logging` records of `level` and above as `tracing`
    /// events (target `pybundle::python`, the record's level, a `logger` field) in the span
    /// current where it runs. Off by default.
    pub fn forward_logging(mut self, level: tracing::Level) -> Self {
        self.log_level = Some(crate::logs::python_level(level));
        self
    }

    /// Runs the script to its end and decodes its reply into `R`.
    ///
    /// Fails with [`Error::Python`] on an uncaught exception, [`Error::ScriptExit`] when it
    /// exits unsuccessfully without replying (killed by a signal such as SIGSEGV included),
    /// [`Error::NoReply`] when it ends successfully without replying, [`Error::Timeout`], and
    /// [`Error::Protocol`], [`Error::FrameTooLarge`] or [`Error::MessageTooLarge`] when it
    /// breaks the protocol (the child is killed).
    pub fn run<R: DeserializeOwned>(mut self) -> Result<ScriptOutput<R>> {
        let what = self.what();
        let mut running = self.start()?;
        let outcome = running.read(&mut self.on_message);
        let (status, output) = running.finish(outcome.broken.is_some())?;
        tracing::debug!(script = %self.name, %status, "script ended");
        if running.timed_out {
            return Err(Error::Timeout {
                what,
                after: self.timeout.unwrap_or_default(),
            });
        }
        if let Some(violation) = outcome.broken {
            return Err(violation.into_error(what));
        }
        if let Some(error) = outcome.python_error {
            return Err(Error::Python { what, error });
        }
        match outcome.reply {
            Some(payload) => {
                let reply = buffer::from_payload(payload).map_err(|source| Error::Json {
                    what,
                    action: "cannot decode the reply into the requested type",
                    source,
                })?;
                Ok(ScriptOutput {
                    reply,
                    status,
                    output,
                })
            }
            None if status.success() => Err(Error::NoReply { what }),
            None => Err(Error::ScriptExit {
                what,
                status,
                stderr: output.unwrap_or_default(),
            }),
        }
    }

    /// Spawns the child, starts its threads and sends the start message.
    fn start(&mut self) -> Result<Running> {
        let what = self.what();
        let (input, frames) = match std::mem::replace(&mut self.input, Ok(None))? {
            Some((json, frames)) => (Some(json), frames),
            None => (None, Vec::new()),
        };
        let path = self.env.script_path(&self.name)?;
        self.env.check_location()?;
        if !path.is_file() {
            return Err(Error::ScriptNotFound { path });
        }
        let start = Outgoing::Start {
            log_level: self.log_level,
            init: None,
            input: input.as_deref(),
            buffers: frames.len(),
        }
        .encode();
        for len in std::iter::once(start.len()).chain(frames.iter().map(|f| f.len())) {
            if len > self.max_frame {
                return Err(Error::FrameTooLarge {
                    what,
                    len,
                    max: self.max_frame,
                });
            }
        }
        let channel_err = |action, source| Error::Channel {
            what: what.clone(),
            action,
            source,
        };
        let mut guard = self.spawn(&path)?;
        let pid = guard.pid();
        tracing::debug!(script = %self.name, pid, "started script");
        let sink = Arc::new(Mutex::new(StderrSink::Capture {
            buf: std::collections::VecDeque::new(),
            limit: self.capture_limit,
            dropped: 0,
        }));
        let drain = match guard.child().stderr.take() {
            Some(stderr) => Some(
                child::drain_stderr(stderr, sink.clone())
                    .map_err(|e| channel_err("cannot start the stderr thread", e))?,
            ),
            None => None,
        };
        let watchdog = self
            .watchdog(pid)
            .map_err(|e| channel_err("cannot start the timeout thread", e))?;
        self.send_start(&mut guard, &start, &frames);
        let stdout = guard.child().stdout.take();
        Ok(Running {
            guard,
            pid,
            stdout,
            limits: Limits {
                max_frame: self.max_frame,
                max_message: protocol::message_cap(self.max_message, self.max_frame),
            },
            frame_timeout: self.frame_timeout,
            sink,
            drain,
            watchdog,
            capture: self.capture,
            timed_out: false,
            what,
        })
    }

    /// Spawns the runner for the script at `path`, with the environment changes asked for.
    fn spawn(&self, path: &Path) -> Result<ChildGuard> {
        let mut cmd = self.env.python();
        for (name, value) in &self.envs {
            match value {
                Some(v) => cmd.env(name, v),
                None => cmd.env_remove(name),
            };
        }
        let args = protocol::argv(&table::SCRIPT_ARGV, |name| match name {
            "lib" => vec![self.env.lib_dir().into()],
            "max_frame" => vec![self.max_frame.to_string().into()],
            "script" => vec![path.to_path_buf().into()],
            _ => self.args.clone(),
        });
        child::spawn_runner(
            cmd,
            self.env.interpreter(),
            &table::SCRIPT_ARGV,
            args,
            self.capture,
        )
    }

    /// Starts the watchdog thread when a timeout or an abort handle asks for one.
    fn watchdog(&self, pid: u32) -> std::io::Result<Option<Watchdog>> {
        if self.timeout.is_none() && self.abort.is_none() {
            return Ok(None);
        }
        let dog = Watchdog::start(pid, self.timeout)?;
        if let Some(abort) = &self.abort {
            abort.register(dog.signal.clone());
        }
        Ok(Some(dog))
    }

    /// Sends the start message and the input's binary frames to the child's stdin.
    fn send_start(&self, guard: &mut ChildGuard, start: &[u8], frames: &[Frame]) {
        // The runner reads the start message before any user code runs, so this cannot block
        // on a child that is busy writing. A broken pipe means the child died; its exit
        // status tells why.
        if let Some(mut stdin) = guard.child().stdin.take() {
            let written = protocol::write_frame(&mut stdin, start, self.max_frame).and_then(|()| {
                frames
                    .iter()
                    .try_for_each(|f| protocol::write_frame(&mut stdin, f.bytes(), self.max_frame))
            });
            if let Err(e) = written {
                tracing::debug!(script = %self.name, "writing the input failed: {e}");
            }
        }
    }
}

/// What the script sent.
#[derive(Default)]
struct Outcome {
    reply: Option<Payload>,
    python_error: Option<PythonError>,
    broken: Option<Violation>,
}

/// A started script.
struct Running {
    guard: ChildGuard,
    pid: u32,
    stdout: Option<ChildStdout>,
    limits: Limits,
    frame_timeout: Duration,
    sink: Arc<Mutex<StderrSink>>,
    drain: Option<Drain>,
    watchdog: Option<Watchdog>,
    capture: bool,
    timed_out: bool,
    what: String,
}

impl Running {
    /// Reads messages until the output ends or the child breaks the protocol.
    fn read(&mut self, on_message: &mut Option<Callback<'_>>) -> Outcome {
        let mut outcome = Outcome::default();
        let Some(stdout) = self.stdout.take() else {
            return outcome;
        };
        let mut reader = Reader::new(self.limits);
        loop {
            loop {
                match reader.next() {
                    Ok(Some(msg)) => {
                        if let Err(violation) = handle(msg, &mut outcome, on_message) {
                            outcome.broken = Some(violation);
                            return outcome;
                        }
                    }
                    Ok(None) => break,
                    Err(violation) => {
                        outcome.broken = Some(violation);
                        return outcome;
                    }
                }
            }
            // Inside a message, wait for the rest only so long.
            if let Some(since) = reader.started() {
                if !readable_before(&stdout, since + self.frame_timeout) {
                    outcome.broken = Some(reader.stalled(self.frame_timeout));
                    return outcome;
                }
            }
            match reader.read_from(&stdout) {
                Ok(0) => {
                    outcome.broken = reader.at_end();
                    return outcome;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(what = %self.what, "reading the script's output failed: {e}");
                    outcome.broken = reader.at_end();
                    return outcome;
                }
            }
        }
    }

    /// Kills the child if it broke the protocol, waits for it and reaps it; its status and
    /// the captured output.
    fn finish(&mut self, broken: bool) -> Result<(ExitStatus, Option<String>)> {
        let channel_err = |source| Error::Channel {
            what: self.what.clone(),
            action: "cannot wait for the script",
            source,
        };
        if broken {
            self.guard.kill();
        }
        // Wait for the exit without reaping, so the watchdog can still kill by pid; then stop
        // the watchdog and reap.
        child::wait_exited(self.pid).map_err(channel_err)?;
        self.timed_out = self.watchdog.take().is_some_and(Watchdog::stop);
        let status = self.guard.wait().map_err(channel_err)?;
        if let Some(drain) = self.drain.take() {
            // Not a plain join: a grandchild that inherited the pipe may keep it open.
            drain.finish(Duration::from_millis(500));
        }
        let output = self
            .capture
            .then(|| self.sink.lock().map(|s| s.text()).unwrap_or_default());
        Ok((status, output))
    }
}

/// Waits until `stdout` is readable (or closed); `false` once `deadline` passes first.
fn readable_before(stdout: &ChildStdout, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fds = [sys::pollfd(stdout.as_raw_fd(), libc::POLLIN)];
        match sys::poll(&mut fds, Some(left)) {
            Ok(0) => {}
            // Ready, or poll itself failed: the read reports it.
            _ => return true,
        }
    }
}

/// Handles one message; `Err` describes a protocol violation.
fn handle(
    msg: Message,
    outcome: &mut Outcome,
    on_message: &mut Option<Callback<'_>>,
) -> std::result::Result<(), Violation> {
    match msg.kind {
        Kind::Message => {
            if let Some(callback) = on_message.as_mut() {
                let value = buffer::from_payload(msg.into_payload())
                    .map_err(|e| Violation::Malformed(format!("malformed message: {e}")))?;
                callback(value);
            }
        }
        Kind::Reply if outcome.reply.is_none() => outcome.reply = Some(msg.into_payload()),
        Kind::Error => outcome.python_error = msg.error,
        Kind::Log => {
            if let Some(record) = &msg.log {
                crate::logs::emit(&tracing::Span::current(), record);
            }
        }
        kind => {
            return Err(Violation::Malformed(format!(
                "unexpected message `{}` from a script",
                kind.name()
            )))
        }
    }
    Ok(())
}

enum Signal {
    /// The child exited: stand down.
    Stop,
    /// The caller lost interest (its future was dropped): kill the child now.
    Abort,
}

/// Kills a child by pid when a timeout passes or the caller aborts, unless stopped first.
struct Watchdog {
    signal: mpsc::Sender<Signal>,
    fired: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Watchdog {
    fn start(pid: u32, after: Option<Duration>) -> std::io::Result<Self> {
        let (signal, signals) = mpsc::channel::<Signal>();
        let fired = Arc::new(AtomicBool::new(false));
        let flag = fired.clone();
        let thread = std::thread::Builder::new()
            .name("pybundle-timeout".into())
            .spawn(move || {
                let got = match after {
                    Some(after) => signals.recv_timeout(after),
                    None => signals
                        .recv()
                        .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                };
                match got {
                    Ok(Signal::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => {}
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        flag.store(true, Ordering::SeqCst);
                        child::kill_pid(pid);
                    }
                    Ok(Signal::Abort) => child::kill_pid(pid),
                }
            })?;
        Ok(Self {
            signal,
            fired,
            thread,
        })
    }

    /// Stops the watchdog; whether the timeout had fired.
    fn stop(self) -> bool {
        let _ = self.signal.send(Signal::Stop);
        let _ = self.thread.join();
        self.fired.load(Ordering::SeqCst)
    }
}

/// Lets a dropped [`run_async`](Script::run_async) future kill its child.
#[derive(Default)]
struct AbortSwitch {
    /// Whether it was pulled, and the watchdog to tell.
    state: Mutex<(bool, Option<mpsc::Sender<Signal>>)>,
}

impl AbortSwitch {
    fn register(&self, signal: mpsc::Sender<Signal>) {
        let mut state = crate::worker::lock(&self.state);
        if state.0 {
            let _ = signal.send(Signal::Abort);
        }
        state.1 = Some(signal);
    }

    fn pull(&self) {
        let mut state = crate::worker::lock(&self.state);
        state.0 = true;
        if let Some(signal) = &state.1 {
            let _ = signal.send(Signal::Abort);
        }
    }
}

/// The future of [`Script::run_async`].
struct ScriptRun<R> {
    work: crate::blocking::OffThread<Result<ScriptOutput<R>>>,
    switch: Arc<AbortSwitch>,
    done: bool,
}

impl<R> std::future::Future for ScriptRun<R> {
    type Output = Result<ScriptOutput<R>>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let polled = std::pin::Pin::new(&mut self.work).poll(cx);
        let std::task::Poll::Ready(outcome) = polled else {
            return std::task::Poll::Pending;
        };
        self.done = true;
        std::task::Poll::Ready(outcome.map_err(|source| Error::Channel {
            what: "a script".into(),
            action: "cannot start a thread to run it",
            source,
        })?)
    }
}

impl<R> Drop for ScriptRun<R> {
    fn drop(&mut self) {
        if !self.done {
            self.switch.pull();
        }
    }
}

impl Script<'static> {
    /// [`run`](Script::run) without blocking the calling thread: the script is started,
    /// read and reaped on a thread of its own, and the future resolves with what `run` would
    /// return. Dropping the future before it resolves kills the script.
    pub fn run_async<R: DeserializeOwned + Send + 'static>(
        mut self,
    ) -> impl std::future::Future<Output = Result<ScriptOutput<R>>> + Send + 'static {
        let switch = Arc::new(AbortSwitch::default());
        self.abort = Some(switch.clone());
        // The run's log records belong where it was started.
        let span = tracing::Span::current();
        ScriptRun {
            work: crate::blocking::off_thread("pybundle-script", move || {
                span.in_scope(|| self.run())
            }),
            switch,
            done: false,
        }
    }
}

impl Environment {
    /// A one-shot run of `scripts/<name>.py` (see [`Script`]).
    pub fn script(&self, name: &str) -> Script<'static> {
        Script::new(self, name)
    }
}
