//! The runtime's one error type. Every variant names the file, entry or script involved; the
//! message never repeats its source (the error chain prints it).
//!
//! Shared by every module: add variants with small edits, keep them grouped by module.

use std::path::PathBuf;

/// A result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- bundle / cache / extract / relocate ---
    /// The program has no bundle appended, `PYBUNDLE_ARCHIVE` is not set, and it is either a
    /// release build (which never falls back) or a debug build for which no development
    /// environment was found. `hint` says which, and the command to run.
    #[error("this program has no Python bundle: {hint}")]
    NotBundled {
        /// What was looked for, and what to do.
        hint: String,
    },

    /// `PYBUNDLE_ARCHIVE` names a file that is not a usable bundle.
    #[error(
        "PYBUNDLE_ARCHIVE names `{}`, which is not a usable bundle (point it at an archive \
         from `cargo pybundle pack` or a bundled program, or unset it)",
        path.display()
    )]
    ArchiveVar {
        /// The file named.
        path: PathBuf,
        /// Why it cannot be used.
        #[source]
        source: Box<Error>,
    },

    /// An I/O operation on a path failed.
    #[error("{action} `{}`", path.display())]
    Io {
        /// What was being done, e.g. "cannot create directory".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The archive could not be read (corrupt, truncated, not a bundle).
    #[error("the bundle archive is unreadable: {detail}")]
    Archive {
        /// What was wrong.
        detail: String,
        /// The underlying error, if any.
        #[source]
        source: Option<std::io::Error>,
    },

    /// The archive's manifest is missing, malformed or of an unsupported format version.
    #[error("the bundle manifest is invalid: {0}")]
    Manifest(String),

    /// An archive entry would be written outside the target directory, or is of a kind that
    /// is never extracted (device, fifo).
    #[error("refusing archive entry `{entry}`: {reason}")]
    UnsafeEntry {
        /// The entry's path as written in the archive.
        entry: String,
        /// Why it is refused.
        reason: &'static str,
    },

    /// The cache directory is unusable (owned by another user, not a directory, ...).
    #[error("cache directory `{}` cannot be used: {reason}; set PYBUNDLE_CACHE_DIR to a directory you own", path.display())]
    Cache {
        /// The cache directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// A relocation could not be applied.
    #[error("cannot relocate `{}`: {reason}", path.display())]
    Relocate {
        /// The file being relocated.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// An extracted bundle no longer matches its archive ([`Bundle::verify`](crate::Bundle::verify))
    /// and could not be repaired now.
    #[error("the bundle in `{}` is damaged: {}; {reason}", dir.display(), crate::verify::summary(damaged))]
    Damaged {
        /// The bundle directory.
        dir: PathBuf,
        /// Each damaged entry: `<path inside the bundle> (<what is wrong>)`.
        damaged: Vec<String>,
        /// Why it was not repaired, and what to do.
        reason: String,
    },

    /// The cache's filesystem refused a write: it is full, read-only, or not writable by us.
    /// Nothing half-written is left behind.
    #[error("{action} `{}` in the cache directory `{}`: {reason}", path.display(), root.display())]
    CacheWrite {
        /// The cache root.
        root: PathBuf,
        /// What was being done, e.g. "cannot write".
        action: &'static str,
        /// The path being written.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The archive goes past one of the limits that bound what a hostile archive can cost
    /// (path length or depth, entry count, unpacked size, zstd window, relocation growth).
    #[error("the bundle archive exceeds a limit at `{entry}`: {limit}")]
    ArchiveLimit {
        /// The entry (or relocated file) involved, as written in the archive.
        entry: String,
        /// Which limit, with the numbers.
        limit: String,
    },

    /// A lock on the cache could not be had in time: another process holds it.
    #[error(
        "gave up after {waited:?} waiting for the lock `{}`, held by {}; if that process is \
         stuck, end it, or set PYBUNDLE_CACHE_DIR to another directory",
        lock.display(),
        holder.map_or_else(|| "another process".to_owned(), |pid| format!("process {pid}"))
    )]
    LockTimeout {
        /// The lock file.
        lock: PathBuf,
        /// How long this process waited.
        waited: std::time::Duration,
        /// The process holding it, when `/proc/locks` tells.
        holder: Option<u32>,
    },

    /// The directory an [`Environment`](crate::Environment) was made ready in is no longer
    /// the one checked by [`Bundle::ready`](crate::Bundle::ready) (replaced, moved or made
    /// writable by others since): nothing is started from it.
    #[error("the bundle directory `{}` changed after it was made ready: {reason}; run the program again", path.display())]
    Moved {
        /// The bundle directory.
        path: PathBuf,
        /// What changed.
        reason: String,
    },

    /// A script name that is not one relative path inside the scripts folder.
    #[error("script name `{name}` is not allowed: {reason}; name a file inside the bundle's scripts folder, e.g. `report` or `tools/report`")]
    ScriptName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    // --- protocol / script / worker ---
    /// The script to run does not exist.
    #[error("no script `{}`; scripts live in the bundle's scripts directory", path.display())]
    ScriptNotFound {
        /// Where it was looked for.
        path: PathBuf,
    },

    /// The interpreter could not be started.
    #[error("cannot start the Python interpreter `{}`", interpreter.display())]
    Spawn {
        /// The interpreter.
        interpreter: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Talking to a Python child failed (a pipe broke, a thread could not start).
    #[error("{what}: {action}")]
    Channel {
        /// The script or worker, e.g. "script `outliers`".
        what: String,
        /// What was being done.
        action: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Python code raised an exception that nothing caught.
    #[error("{what} raised {}: {}\n{}", error.type_name, error.message, error.traceback.trim_end())]
    Python {
        /// The script or call, e.g. "script `outliers`" or "call `model.fit`".
        what: String,
        /// Type, message and traceback.
        error: crate::protocol::PythonError,
    },

    /// A script ended (exit status other than success) without replying.
    #[error("{what} exited with {status} without replying{}", tail_suffix(stderr))]
    ScriptExit {
        /// The script.
        what: String,
        /// How it ended.
        status: std::process::ExitStatus,
        /// The end of its captured stderr (empty when not captured).
        stderr: String,
    },

    /// A script finished successfully but never called `pybundle.reply()`.
    #[error("{what} finished without calling pybundle.reply()")]
    NoReply {
        /// The script.
        what: String,
    },

    /// A Python child broke the protocol (malformed or oversized frame); it was killed.
    #[error("{what} broke the protocol: {detail}")]
    Protocol {
        /// The script or worker.
        what: String,
        /// What was wrong.
        detail: String,
    },

    /// A message to send, or a frame a child sent, is larger than the frame cap (a child that
    /// sends one is killed).
    #[error("{what}: a message of {len} bytes exceeds the frame limit of {max} bytes; raise it with `max_frame`")]
    FrameTooLarge {
        /// The script or call.
        what: String,
        /// The message's size.
        len: usize,
        /// The cap.
        max: usize,
    },

    /// A message from a Python child, with its binary frames, is larger than the message cap
    /// (the child is killed).
    #[error("{what}: a message of at least {len} bytes (with its binary frames) exceeds the message limit of {max} bytes; raise it with `max_message`")]
    MessageTooLarge {
        /// The script or worker.
        what: String,
        /// The size reached when it was refused.
        len: usize,
        /// The cap.
        max: usize,
    },

    /// A value could not be converted to or from JSON.
    #[error("{what}: {action}")]
    Json {
        /// The script or call.
        what: String,
        /// What was being converted, e.g. "cannot decode the reply".
        action: &'static str,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },

    /// An [`NdArray`](crate::NdArray) was made or read in a way its dtype, shape or data do
    /// not allow.
    #[error("array: {detail}")]
    Array {
        /// What was wrong.
        detail: String,
    },

    /// A script or call ran past its timeout; a script is killed, a call cancelled.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// The script or call.
        what: String,
        /// The timeout.
        after: std::time::Duration,
    },

    /// A worker process died of a signal (a segfault, SIGKILL) while calls were in flight
    /// (they fail with this error; the worker restarts on the next call).
    #[error("{what}: the worker process died ({status}){}", tail_suffix(stderr))]
    WorkerCrashed {
        /// The call or worker.
        what: String,
        /// How it ended, e.g. "signal 9".
        status: String,
        /// The end of the worker's stderr.
        stderr: String,
    },

    /// A worker process exited by itself (`os._exit(3)`, a C library calling `exit`) while
    /// calls were in flight (they fail with this error; the worker restarts on the next call).
    #[error("{what}: the worker exited with status {code}{}", tail_suffix(stderr))]
    WorkerExited {
        /// The call.
        what: String,
        /// Its exit status.
        code: i32,
        /// The end of the worker's stderr.
        stderr: String,
    },

    /// The call was cancelled before it finished.
    #[error("{what} was cancelled")]
    Cancelled {
        /// The call.
        what: String,
    },

    /// The worker process was killed to start a new one ([`Worker::restart`](crate::Worker::restart),
    /// or the [`OnTimeout::Restart`](crate::OnTimeout::Restart) policy) while the call was in
    /// flight; the next call goes to the new process.
    #[error("{what}: the worker process was restarted ({reason})")]
    WorkerRestarted {
        /// The call.
        what: String,
        /// Why, e.g. "call `m.f` did not end within 1s of its timeout".
        reason: String,
    },

    /// A call or its answer would take the memory held by a worker's calls past its cap
    /// ([`WorkerBuilder::max_in_flight`](crate::WorkerBuilder::max_in_flight)); the process
    /// was not harmed.
    #[error("{what}: {len} more bytes would exceed the {limit} bytes calls may hold at once (answers not yet taken, calls not yet written); raise `max_in_flight`, or take results sooner")]
    InFlightLimit {
        /// The call.
        what: String,
        /// The size of the answer or call refused.
        len: usize,
        /// The cap.
        limit: usize,
    },

    /// A call named a function the worker does not serve ([`Worker::functions`](crate::Worker::functions)).
    #[error("{what}: the worker has no such function; it serves: {}", if available.is_empty() { "nothing (no public functions in its modules)".to_owned() } else { available.join(", ") })]
    UnknownFunction {
        /// The call, e.g. "call `model.fti`".
        what: String,
        /// What it serves.
        available: Vec<String>,
    },

    /// The worker was shut down ([`Worker::shutdown`](crate::Worker::shutdown), or its last
    /// handle dropped) before the call finished, or the call came after.
    #[error("{what}: the worker was shut down")]
    WorkerStopped {
        /// The call.
        what: String,
    },

    /// A worker could not start: its modules failed to import, or it broke the handshake.
    #[error("worker for modules {modules:?} failed to start: {detail}")]
    WorkerStart {
        /// The modules it was to import.
        modules: Vec<String>,
        /// What happened (the Python traceback when an import raised).
        detail: String,
    },
}

/// `": <tail>"` for a non-empty stderr tail, for error messages.
fn tail_suffix(stderr: &str) -> String {
    let tail = stderr.trim_end();
    if tail.is_empty() {
        String::new()
    } else {
        format!("; its stderr ended with:\n{tail}")
    }
}

/// An error with its causes, as [`Error::report`] gives it.
#[derive(Debug)]
pub struct Report<'a>(&'a Error);

impl std::fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = std::error::Error::source(self.0);
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl Error {
    /// The message followed by each underlying cause, `: `-separated — `cannot create
    /// directory `/cache/x`: Permission denied (os error 13)` where `Display` alone stops
    /// before the cause. What a program prints when it gives up.
    ///
    /// ```
    /// let err = pybundle_runtime::Bundle::from_file("/nonexistent/bundle.tar.zst").unwrap_err();
    /// assert!(err.report().to_string().ends_with("No such file or directory (os error 2)"));
    /// ```
    pub fn report(&self) -> Report<'_> {
        Report(self)
    }

    /// Whether a timeout ended it ([`Error::Timeout`]: a call's, a script's, a start's).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// Whether the call was cancelled ([`Error::Cancelled`]).
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Cancelled { .. })
    }

    /// Whether the same call may succeed if made again: the process serving it died, was
    /// replaced or broke the protocol (the next call gets a new one), or it timed out. A
    /// Python exception, bad arguments, a size limit, a failed start or a stopped worker are
    /// not transient.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::WorkerCrashed { .. }
                | Error::WorkerExited { .. }
                | Error::WorkerRestarted { .. }
                | Error::Protocol { .. }
                | Error::Timeout { .. }
        )
    }

    /// The Python exception, when Python code raised one ([`Error::Python`]).
    pub fn python_error(&self) -> Option<&crate::protocol::PythonError> {
        match self {
            Error::Python { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Builds [`Error::Io`].
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
