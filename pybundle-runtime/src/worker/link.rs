//! One generation of a worker process: spawning it, its input queue (written without ever
//! blocking: what the pipe does not take now waits here for the supervisor), the read token
//! over its output, and what is left to do when it dies.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};
use std::process::{ChildStdin, ChildStdout, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::builder::Config;
use super::slot::lock;
use crate::buffer::Frame;
use crate::child::{self, ChildGuard, Drain, StderrSink};
use crate::protocol::{self, table, Init, Limits, Outgoing, Reader, Violation};
use crate::{sys, Error, Result};

/// Bytes to write: a frame header or a payload. A payload borrowed from a waiting caller
/// carries that caller's ticket (see [`Link::unborrow`]).
pub(crate) enum Chunk {
    Header([u8; 4]),
    Payload(Frame, u64),
}

impl Chunk {
    pub(crate) fn len(&self) -> usize {
        self.bytes().len()
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Header(h) => h,
            Chunk::Payload(frame, _) => frame.bytes(),
        }
    }
}

/// The frames of one message (its JSON, then its binary frames) as chunks to write; borrowed
/// binary frames are marked with `ticket`.
pub(crate) fn frames(
    json: Vec<u8>,
    binary: Vec<Frame>,
    max: usize,
    ticket: u64,
) -> io::Result<Vec<Chunk>> {
    let mut out = Vec::with_capacity(2 + 2 * binary.len());
    for payload in std::iter::once(Frame::Owned(json)).chain(binary) {
        out.push(Chunk::Header(protocol::header(payload.len(), max)?));
        out.push(Chunk::Payload(payload, ticket));
    }
    Ok(out)
}

/// Makes every borrowed payload of `ticket` in `chunks` owned (copying what is still to be
/// written); `offset` is how much of the first chunk was written already.
pub(crate) fn unborrow(chunks: &mut VecDeque<Chunk>, offset: &mut usize, ticket: u64) {
    for (i, chunk) in chunks.iter_mut().enumerate() {
        if let Chunk::Payload(frame, t) = chunk {
            if *t == ticket && frame.is_borrowed() {
                let from = if i == 0 { std::mem::take(offset) } else { 0 };
                *frame = Frame::Owned(frame.bytes()[from..].to_vec());
            }
        }
    }
}

struct Outbox {
    stdin: Option<ChildStdin>,
    queue: VecDeque<Chunk>,
    /// Bytes of the front chunk already written.
    offset: usize,
    /// Close the input once everything queued is written (a shutdown).
    close_when_empty: bool,
}

/// A process killed on purpose to start a new one.
#[derive(Clone, Debug)]
pub(crate) struct Restart {
    pub reason: String,
    /// The timeout policy killed it (counts as a crash, for the backoff and the event); else
    /// [`Worker::restart`](crate::Worker::restart) did.
    pub policy: bool,
}

/// The output side, held by whichever thread reads it (the read token).
pub(crate) struct ReadSide {
    pub reader: Reader,
    pub stdout: ChildStdout,
}

/// One process (see the module docs).
pub(crate) struct Link {
    pub gen: u64,
    pub pid: u32,
    guard: Mutex<ChildGuard>,
    outbox: Mutex<Outbox>,
    /// The read token.
    pub read: Mutex<ReadSide>,
    pub stdout_fd: RawFd,
    /// A caller thread holds the read token and reads for itself.
    pub leading: AtomicBool,
    /// It said `ready`.
    pub ready: AtomicBool,
    /// It was asked to exit: its end is a stop, not a crash.
    pub expected_exit: AtomicBool,
    /// When the message being read started to arrive, if it has not fully arrived (updated
    /// by whichever thread reads, each time it runs out of input).
    pub partial: Mutex<Option<std::time::Instant>>,
    /// Why it was killed on purpose (a restart): its calls fail with that.
    pub restarted: Mutex<Option<Restart>>,
    stderr: Arc<Mutex<StderrSink>>,
    drain: Mutex<Option<Drain>>,
    dead: AtomicBool,
    /// Why the output ended, when it broke the protocol.
    violation: Mutex<Option<Violation>>,
}

impl Link {
    /// Starts a process and queues its start message; does not wait for anything.
    pub(crate) fn spawn(cfg: &Config, gen: u64) -> Result<Link> {
        let mut guard = spawn_process(cfg)?;
        let pid = guard.pid();
        let what = cfg.what();
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
            unreachable!("spawn_runner asks for all three pipes")
        };
        child::grow_pipe(&stdin);
        child::grow_pipe(&stdout);
        sys::set_nonblocking(&stdin)
            .and_then(|()| sys::set_nonblocking(&stdout))
            .map_err(|e| channel_err("cannot make its pipes non-blocking", e))?;
        let sink = Arc::new(Mutex::new(StderrSink::Tail {
            buf: VecDeque::new(),
            limit: cfg.stderr_tail,
            forward: cfg.forward_stderr,
        }));
        let drain = child::drain_stderr(stderr, sink.clone())
            .map_err(|e| channel_err("cannot start the stderr thread", e))?;
        let stdout_fd = stdout.as_raw_fd();
        let link = Link {
            gen,
            pid,
            guard: Mutex::new(guard),
            outbox: Mutex::new(Outbox {
                stdin: Some(stdin),
                queue: VecDeque::new(),
                offset: 0,
                close_when_empty: false,
            }),
            read: Mutex::new(ReadSide {
                reader: Reader::new(Limits {
                    max_frame: cfg.max_frame,
                    max_message: protocol::message_cap(cfg.max_message, cfg.max_frame),
                }),
                stdout,
            }),
            stdout_fd,
            leading: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            expected_exit: AtomicBool::new(false),
            restarted: Mutex::new(None),
            partial: Mutex::new(None),
            stderr: sink,
            drain: Mutex::new(Some(drain)),
            dead: AtomicBool::new(false),
            violation: Mutex::new(None),
        };
        let chunks =
            start_message(cfg).map_err(|e| channel_err("cannot encode the start message", e))?;
        // The runner reads this before anything else, so the empty pipe takes it whole.
        link.send(chunks);
        tracing::debug!(pid, modules = ?cfg.modules, "worker process started");
        Ok(link)
    }

    /// Queues a message, writing what the pipe takes at once; `true` when some of it waits
    /// for the supervisor (which then must watch the pipe). Never blocks. A closed pipe (the
    /// process died) drops it: the reader reports the death.
    pub(crate) fn send(&self, chunks: Vec<Chunk>) -> bool {
        let mut out = lock(&self.outbox);
        if out.stdin.is_none() {
            return false;
        }
        out.queue.extend(chunks);
        flush(&mut out)
    }

    /// Makes the borrowed payloads of `ticket` still queued owned (copied), so the caller who
    /// lent them may go: once this returns, nothing here points at the caller's memory.
    pub(crate) fn unborrow(&self, ticket: u64) {
        let mut out = lock(&self.outbox);
        let out = &mut *out;
        unborrow(&mut out.queue, &mut out.offset, ticket);
    }

    /// Writes what the pipe takes of the queue; whether some still waits.
    pub(crate) fn flush(&self) -> bool {
        flush(&mut lock(&self.outbox))
    }

    /// Bytes queued and not yet written.
    pub(crate) fn queued_bytes(&self) -> usize {
        let out = lock(&self.outbox);
        out.queue.iter().map(Chunk::len).sum::<usize>() - out.offset
    }

    /// The input descriptor, when something waits to be written.
    pub(crate) fn pending_write_fd(&self) -> Option<RawFd> {
        let out = lock(&self.outbox);
        match &out.stdin {
            Some(stdin) if !out.queue.is_empty() => Some(stdin.as_raw_fd()),
            _ => None,
        }
    }

    /// Closes the input once what is queued has been written.
    pub(crate) fn close_input(&self) {
        let mut out = lock(&self.outbox);
        out.close_when_empty = true;
        flush(&mut out);
    }

    /// Records that the output ended (with the violation, if it broke the protocol; the
    /// process is then killed).
    pub(crate) fn mark_dead(&self, violation: Option<Violation>) {
        if let Some(v) = violation {
            tracing::debug!(pid = self.pid, "worker broke the protocol: {v}");
            lock(&self.violation).get_or_insert(v);
            self.kill();
        }
        self.dead.store(true, Ordering::Release);
        let mut out = lock(&self.outbox);
        out.stdin = None;
        out.queue.clear();
    }

    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    pub(crate) fn violation(&self) -> Option<Violation> {
        lock(&self.violation).clone()
    }

    /// SIGKILL (ignored once reaped).
    pub(crate) fn kill(&self) {
        lock(&self.guard).kill();
    }

    /// Reaps the process if it has exited.
    pub(crate) fn try_reap(&self) -> io::Result<Option<ExitStatus>> {
        lock(&self.guard).try_wait()
    }

    /// Whether the stderr thread has read to the end; `stop` ends it regardless.
    pub(crate) fn stderr_done(&self, stop: bool) -> bool {
        let mut drain = lock(&self.drain);
        match drain.take() {
            None => true,
            Some(d) if d.is_finished() || stop => {
                d.stop();
                true
            }
            Some(d) => {
                *drain = Some(d);
                false
            }
        }
    }

    pub(crate) fn stderr_sink(&self) -> Arc<Mutex<StderrSink>> {
        self.stderr.clone()
    }

    pub(crate) fn stderr_tail(&self) -> String {
        lock(&self.stderr).text()
    }
}

/// Spawns a worker process for `cfg`: its argv, environment changes and directory, once the
/// bundle is checked to be still where it was made ready.
fn spawn_process(cfg: &Config) -> Result<ChildGuard> {
    let env = &cfg.env;
    env.check_location()?;
    let args = protocol::argv(&table::WORKER_ARGV, |name| match name {
        "lib" => vec![env.lib_dir().into()],
        "max_frame" => vec![cfg.max_frame.to_string().into()],
        "threads" => vec![cfg.threads.to_string().into()],
        "scripts" => vec![env.scripts_dir().into()],
        _ => cfg.modules.iter().map(Into::into).collect(),
    });
    let mut cmd = env.python();
    for (name, value) in &cfg.envs {
        match value {
            Some(v) => cmd.env(name, v),
            None => cmd.env_remove(name),
        };
    }
    if let Some(dir) = &cfg.current_dir {
        cmd.current_dir(dir);
    }
    child::spawn_runner(cmd, env.interpreter(), &table::WORKER_ARGV, args, true)
}

/// The start message (with the init call, when there is one) as chunks to send.
fn start_message(cfg: &Config) -> io::Result<Vec<Chunk>> {
    let init = cfg.init.as_deref();
    let (positional, keywords) = match init {
        Some(call) => (call.args.positional(), call.args.keywords()),
        None => (Vec::new(), None),
    };
    let start = Outgoing::Start {
        log_level: cfg.log_level,
        input: None,
        init: init.map(|call| Init {
            func: &call.func,
            args: &positional,
            kwargs: keywords.as_deref(),
        }),
        buffers: init.map_or(0, |call| call.args.frames.len()),
    }
    .encode();
    let binary = init.map(|call| call.frames()).unwrap_or_default();
    frames(start, binary, cfg.max_frame, 0)
}

/// Writes what the pipe takes; whether something is still queued.
fn flush(out: &mut Outbox) -> bool {
    while !out.queue.is_empty() {
        let Some(stdin) = out.stdin.as_ref() else {
            out.queue.clear();
            return false;
        };
        let mut slices = Vec::with_capacity(out.queue.len().min(64));
        for (i, chunk) in out.queue.iter().take(64).enumerate() {
            let bytes = chunk.bytes();
            slices.push(IoSlice::new(if i == 0 {
                &bytes[out.offset..]
            } else {
                bytes
            }));
        }
        match sys::writev(stdin, &slices) {
            Ok(mut n) => {
                while n > 0 {
                    let Some(front) = out.queue.front() else {
                        break;
                    };
                    let left = front.bytes().len() - out.offset;
                    if n >= left {
                        n -= left;
                        out.queue.pop_front();
                        out.offset = 0;
                    } else {
                        out.offset += n;
                        n = 0;
                    }
                }
                // Empty chunks (a zero-length binary frame) are done as soon as reached.
                while out
                    .queue
                    .front()
                    .is_some_and(|c| c.bytes().len() == out.offset)
                {
                    out.queue.pop_front();
                    out.offset = 0;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => {
                // The process is gone (EPIPE): its reader reports why.
                out.stdin = None;
                out.queue.clear();
                return false;
            }
        }
    }
    if out.close_when_empty {
        out.stdin = None;
    }
    false
}
