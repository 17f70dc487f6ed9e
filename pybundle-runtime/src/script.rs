//! One-shot scripts: start the interpreter, run `scripts/<name>.py` as `__main__`, collect its
//! progress messages and its reply, reap it.

use std::ffi::OsString;
use std::io::BufReader;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::child::{self, ChildGuard, StderrSink};
use crate::protocol::{self, Incoming, Kind, PythonError, Violation};
use crate::{Environment, Error, Result};

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

type Callback<'a> = Box<dyn FnMut(serde_json::Value) + 'a>;

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
    env: &'a Environment,
    name: String,
    args: Vec<OsString>,
    input: Result<Option<Vec<u8>>>,
    timeout: Option<Duration>,
    capture: bool,
    max_frame: usize,
    on_message: Option<Callback<'a>>,
    envs: Vec<(OsString, Option<OsString>)>,
}

impl<'a> Script<'a> {
    pub(crate) fn new(env: &'a Environment, name: &str) -> Self {
        Self {
            env,
            name: name.to_owned(),
            args: Vec::new(),
            input: Ok(None),
            timeout: None,
            capture: false,
            max_frame: protocol::DEFAULT_MAX_FRAME,
            on_message: None,
            envs: Vec::new(),
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

    /// The JSON value `pybundle.input()` returns in the script.
    pub fn input<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        let what = self.what();
        self.input = serde_json::to_vec(value)
            .map(Some)
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
    /// through to this process's stderr.
    pub fn capture_output(mut self) -> Self {
        self.capture = true;
        self
    }

    /// The largest frame accepted in either direction (default
    /// [`DEFAULT_MAX_FRAME`](crate::protocol::DEFAULT_MAX_FRAME)).
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = protocol::clamp_max(bytes);
        self
    }

    /// Receives each `pybundle.send(value)` while the script runs, in order, on the thread
    /// that called [`run`](Script::run).
    pub fn on_message(mut self, callback: impl FnMut(serde_json::Value) + 'a) -> Self {
        self.on_message = Some(Box::new(callback));
        self
    }

    /// Runs the script to its end and decodes its reply into `R`.
    ///
    /// Fails with [`Error::Python`] on an uncaught exception, [`Error::ScriptExit`] when it
    /// exits unsuccessfully without replying (killed by a signal such as SIGSEGV included),
    /// [`Error::NoReply`] when it ends successfully without replying, [`Error::Timeout`], and
    /// [`Error::Protocol`] or [`Error::FrameTooLarge`] when it breaks the protocol (the child
    /// is killed).
    pub fn run<R: DeserializeOwned>(mut self) -> Result<ScriptOutput<R>> {
        let what = self.what();
        let input = std::mem::replace(&mut self.input, Ok(None))?;
        let path = self.env.script_path(&self.name)?;
        if !path.is_file() {
            return Err(Error::ScriptNotFound { path });
        }
        let mut frame = b"{\"type\":\"start\",\"input\":".to_vec();
        frame.extend_from_slice(input.as_deref().unwrap_or(b"null"));
        frame.push(b'}');
        drop(input);
        if frame.len() > self.max_frame {
            return Err(Error::FrameTooLarge {
                what,
                len: frame.len(),
                max: self.max_frame,
            });
        }
        let channel_err = |action, source| Error::Channel {
            what: what.clone(),
            action,
            source,
        };

        let mut cmd = self.env.python();
        for (name, value) in &self.envs {
            match value {
                Some(v) => cmd.env(name, v),
                None => cmd.env_remove(name),
            };
        }
        cmd.arg("-c")
            .arg(child::bootstrap("_script"))
            .arg(self.env.lib_dir())
            .arg(self.max_frame.to_string())
            .arg(&path)
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(if self.capture {
                Stdio::piped()
            } else {
                Stdio::inherit()
            });
        let spawned = cmd.spawn().map_err(|source| Error::Spawn {
            interpreter: self.env.interpreter().to_path_buf(),
            source,
        })?;
        let mut guard = ChildGuard::new(spawned);
        let pid = guard.pid();
        tracing::debug!(script = %self.name, pid, "started script");

        let sink = Arc::new(Mutex::new(StderrSink::All(Vec::new())));
        let stderr_thread = match guard.child().stderr.take() {
            Some(stderr) => Some(
                child::drain_stderr(stderr, sink.clone())
                    .map_err(|e| channel_err("cannot start the stderr thread", e))?,
            ),
            None => None,
        };
        let watchdog = match self.timeout {
            Some(after) => Some(
                Watchdog::start(pid, after)
                    .map_err(|e| channel_err("cannot start the timeout thread", e))?,
            ),
            None => None,
        };

        // The runner reads the start frame before any user code runs, so this cannot block
        // on a child that is busy writing. A broken pipe means the child died; its exit
        // status tells why, below.
        if let Some(mut stdin) = guard.child().stdin.take() {
            if let Err(e) = protocol::write_frame(&mut stdin, &frame, self.max_frame) {
                tracing::debug!(script = %self.name, "writing the input failed: {e}");
            }
        }

        let mut reply: Option<Vec<u8>> = None;
        let mut python_error: Option<PythonError> = None;
        let mut broken: Option<Violation> = None;
        if let Some(stdout) = guard.child().stdout.take() {
            let mut stdout = BufReader::with_capacity(64 * 1024, stdout);
            let mut buf = Vec::new();
            loop {
                match protocol::read_frame(&mut stdout, self.max_frame, &mut buf) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        broken = Some(protocol::violation(e, stdout.buffer(), true));
                        break;
                    }
                }
                match self.handle(&buf, &mut reply, &mut python_error) {
                    Ok(()) => {}
                    Err(violation) => {
                        broken = Some(violation);
                        break;
                    }
                }
            }
        }
        if broken.is_some() {
            guard.kill();
        }

        // Wait for the exit without reaping, so the watchdog can still kill by pid; then stop
        // the watchdog and reap.
        child::wait_exited(pid).map_err(|e| channel_err("cannot wait for the script", e))?;
        let timed_out = watchdog.map(Watchdog::stop).unwrap_or(false);
        let status = guard
            .wait()
            .map_err(|e| channel_err("cannot wait for the script", e))?;
        if let Some(drain) = stderr_thread {
            // Not a plain join: a grandchild that inherited the pipe may keep it open.
            drain.finish(Duration::from_millis(500));
        }
        let output = self
            .capture
            .then(|| sink.lock().map(|s| s.text()).unwrap_or_default());
        tracing::debug!(script = %self.name, %status, "script ended");

        if timed_out {
            return Err(Error::Timeout {
                what,
                after: self.timeout.unwrap_or_default(),
            });
        }
        match broken {
            Some(Violation::TooLarge { len, max }) => {
                return Err(Error::FrameTooLarge { what, len, max })
            }
            Some(Violation::Malformed(detail)) => return Err(Error::Protocol { what, detail }),
            None => {}
        }
        if let Some(error) = python_error {
            return Err(Error::Python { what, error });
        }
        match reply {
            Some(bytes) => {
                let reply = serde_json::from_slice(&bytes).map_err(|source| Error::Json {
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

    /// Handles one frame; `Err` describes a protocol violation.
    fn handle(
        &mut self,
        frame: &[u8],
        reply: &mut Option<Vec<u8>>,
        python_error: &mut Option<PythonError>,
    ) -> std::result::Result<(), Violation> {
        let msg: Incoming<'_> =
            serde_json::from_slice(frame).map_err(|e| protocol::malformed(frame, &e))?;
        let malformed = |text: String| Violation::Malformed(text);
        if msg.buffers != 0 {
            return Err(malformed("scripts cannot send binary buffers".into()));
        }
        match msg.kind {
            Kind::Message => {
                if let Some(callback) = self.on_message.as_mut() {
                    let data = msg.data.map(|raw| serde_json::from_str(raw.get()));
                    let value = data
                        .transpose()
                        .map_err(|e| malformed(format!("malformed message: {e}")))?
                        .unwrap_or(serde_json::Value::Null);
                    callback(value);
                }
            }
            Kind::Reply if reply.is_none() => {
                let data = msg.data.map_or("null", |raw| raw.get());
                *reply = Some(data.as_bytes().to_vec());
            }
            Kind::Error => {
                let error = msg
                    .error
                    .ok_or_else(|| malformed("an error message without `error`".into()))?;
                *python_error = Some(error);
            }
            kind => return Err(malformed(format!("unexpected message of type {kind:?}"))),
        }
        Ok(())
    }
}

/// Kills a child by pid when a timeout passes, unless stopped first.
struct Watchdog {
    stop: mpsc::Sender<()>,
    fired: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Watchdog {
    fn start(pid: u32, after: Duration) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let fired = Arc::new(AtomicBool::new(false));
        let flag = fired.clone();
        let thread = std::thread::Builder::new()
            .name("pybundle-timeout".into())
            .spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(after) {
                    flag.store(true, Ordering::SeqCst);
                    child::kill_pid(pid);
                }
            })?;
        Ok(Self {
            stop,
            fired,
            thread,
        })
    }

    /// Stops the watchdog; whether it had fired.
    fn stop(self) -> bool {
        drop(self.stop);
        let _ = self.thread.join();
        self.fired.load(Ordering::SeqCst)
    }
}

impl Environment {
    /// A one-shot run of `scripts/<name>.py` (see [`Script`]).
    pub fn script(&self, name: &str) -> Script<'_> {
        Script::new(self, name)
    }
}
