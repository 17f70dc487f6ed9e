//! Long-lived workers: a Python process that imports modules from the scripts directory once
//! and serves `module.function(args)` calls concurrently on a pool of Python threads.
//!
//! A [`Worker`] is a cheap handle, shared freely between threads and tasks. Each has its own
//! thread, the supervisor, which starts the process, restarts it (with backoff) when a call
//! needs it after a crash, fires timeouts and runs the shutdown; nothing a caller does waits on
//! the process except waiting for its own answer. A blocking caller reads the process's
//! output itself while it waits (no thread hand-off on the way back); an awaiting task is
//! woken by the supervisor, which reads whenever no caller does.
//!
//! A process that dies fails the calls in flight with [`Error::WorkerCrashed`] (a signal:
//! segfault, SIGKILL) or [`Error::WorkerExited`] (it exited by itself); one that breaks the
//! protocol is killed and fails them with [`Error::Protocol`], [`Error::FrameTooLarge`] or
//! [`Error::MessageTooLarge`]. The next call starts a new process.

mod args;
mod builder;
mod call;
mod core;
mod link;
mod pool;
mod slot;
mod supervisor;

pub use self::args::Kwargs;
pub(crate) use self::builder::DEFAULT_FRAME_TIMEOUT;
pub use self::builder::{OnTimeout, WorkerBuilder};
#[cfg(test)]
pub(crate) use self::builder::{DEFAULT_MAX_IN_FLIGHT, DEFAULT_STDERR_TAIL};
pub use self::call::{CallHandle, Request};
pub use self::pool::WorkerPool;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use self::builder::Config;
use self::core::{Core, Submit};
pub(crate) use self::slot::lock;
use self::slot::Slot;
use crate::protocol::Outgoing;
use crate::{Error, Result};

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

/// A long-lived Python process serving calls; cheap to clone and share between threads and
/// tasks. The process stops when the last clone, and the last [`CallHandle`] of its calls, is
/// dropped (or at [`shutdown`](Worker::shutdown)).
#[derive(Clone)]
pub struct Worker {
    handle: Arc<Handle>,
}

/// Owns the supervisor: dropping the last one shuts the worker down.
pub(crate) struct Handle {
    core: Arc<Core>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Handle {
    /// Asks the process to exit and waits for it: at most the `shutdown_timeout`, after which
    /// it is killed. Nothing is in flight any more (each call holds a handle).
    fn drop(&mut self) {
        self.core.stop(Duration::ZERO);
        if let Some(thread) = lock(&self.thread).take() {
            // From the supervisor itself (a callback dropping the last clone) it just ends.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// A worker being started: [`wait`](Starting::wait) for it, or `.await` it. Dropping it stops
/// the process.
#[must_use = "the worker stops when this is dropped"]
pub struct Starting {
    result: std::result::Result<(Arc<Handle>, Arc<Slot>), Option<Error>>,
}

impl Starting {
    /// Blocks until the process is ready.
    pub fn wait(self) -> Result<Worker> {
        match self.result {
            Ok((handle, slot)) => {
                slot.wait_until(None);
                Self::finish(handle, &slot)
            }
            Err(error) => Err(error.unwrap_or_else(gone)),
        }
    }

    fn finish(handle: Arc<Handle>, slot: &Slot) -> Result<Worker> {
        match slot.try_take() {
            Some(Ok(_)) => Ok(Worker { handle }),
            Some(Err(error)) => Err(error),
            None => unreachable!("waited for"),
        }
    }
}

fn gone() -> Error {
    Error::Cancelled {
        what: "starting the worker (already awaited)".into(),
    }
}

impl Future for Starting {
    type Output = Result<Worker>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Worker>> {
        match &mut self.result {
            Ok((handle, slot)) => match slot.poll_take(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(_)) => Poll::Ready(Ok(Worker {
                    handle: handle.clone(),
                })),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            },
            Err(error) => Poll::Ready(Err(error.take().unwrap_or_else(gone))),
        }
    }
}

impl Worker {
    /// Creates the worker's state and thread and asks for the first process.
    fn launch(cfg: Config) -> Starting {
        let what = cfg.what();
        let start = || -> Result<(Arc<Handle>, Arc<Slot>)> {
            let channel_err = |action, source| Error::Channel {
                what: what.clone(),
                action,
                source,
            };
            let core =
                Core::new(cfg).map_err(|e| channel_err("cannot create its wake-up pipe", e))?;
            let thread = {
                let core = core.clone();
                std::thread::Builder::new()
                    .name("pybundle-worker".into())
                    .spawn(move || supervisor::run(core))
                    .map_err(|e| channel_err("cannot start its thread", e))?
            };
            let slot = core.request_start();
            let handle = Arc::new(Handle {
                core,
                thread: Mutex::new(Some(thread)),
            });
            Ok((handle, slot))
        };
        Starting {
            result: start().map_err(Some),
        }
    }

    pub(crate) fn core(&self) -> &Core {
        &self.handle.core
    }

    pub(crate) fn handle(&self) -> &Arc<Handle> {
        &self.handle
    }

    /// Calls `module.function` and waits for its result. `args` says the arguments by its
    /// Rust shape: a tuple is the positional arguments (`&(x, y)`, `&()` for none),
    /// `&Kwargs(&options)` the keyword arguments, any other value the one positional
    /// argument (`&vec![1.0, 2.5]` calls `f([1.0, 2.5])`). See [`Request`] for both kinds at
    /// once.
    pub fn call<R: DeserializeOwned>(
        &self,
        func: &str,
        args: &(impl Serialize + ?Sized),
    ) -> Result<R> {
        self.request(func).args(args).call()
    }

    /// Sends a call and returns at once with a handle to its result (which is also a
    /// future).
    pub fn submit<R: DeserializeOwned>(
        &self,
        func: &str,
        args: &(impl Serialize + ?Sized),
    ) -> Result<CallHandle<R>> {
        self.request(func).args(args).submit()
    }

    /// Sends a call; `.await` the handle for the result. Dropping it before it completes
    /// cancels the call (see [`CallHandle`]). A call that cannot be sent resolves to its
    /// error.
    pub fn call_async<R: DeserializeOwned>(
        &self,
        func: &str,
        args: &(impl Serialize + ?Sized),
    ) -> CallHandle<R> {
        self.request(func).args(args).call_async()
    }

    /// A call with options (timeout, progress messages).
    pub fn request(&self, func: &str) -> Request<'_> {
        Request::new(call::Target::Worker(self), func)
    }

    /// Round-trips a ping through the process's reading thread (not its call threads); the
    /// time taken.
    pub fn ping(&self, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        let handle: CallHandle<serde::de::IgnoredAny> = self.send_ping(timeout);
        handle.wait().map(|_| start.elapsed())
    }

    /// [`ping`](Worker::ping), awaited.
    pub async fn ping_async(&self, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        let handle: CallHandle<serde::de::IgnoredAny> = self.send_ping(timeout);
        handle.await.map(|_| start.elapsed())
    }

    fn send_ping<R: DeserializeOwned>(&self, timeout: Duration) -> CallHandle<R> {
        let max = self.core().cfg.max_frame;
        let submitted = self.core().submit(
            |id| {
                link::frames(Outgoing::Ping { id }.encode(), Vec::new(), max, 0).map_err(|source| {
                    Error::Channel {
                        what: "ping".into(),
                        action: "cannot encode the ping",
                        source,
                    }
                })
            },
            Submit {
                what: "ping".into(),
                on_message: None,
                timeout: Some(timeout),
                ping: true,
            },
        );
        CallHandle::new(self, submitted)
    }

    /// The functions the worker serves, as `module.function`, sorted: those marked with
    /// `@pybundle.export` in a module that marks any, else those its `__all__` names, else its
    /// public functions. A call to another fails with [`Error::UnknownFunction`].
    pub fn functions(&self) -> Vec<String> {
        self.core().functions()
    }

    /// The current process id, if one is running and ready.
    pub fn pid(&self) -> Option<u32> {
        self.core().pid()
    }

    /// The end of the current (or last) process's stderr, which also holds its stdout.
    pub fn stderr_tail(&self) -> String {
        self.core().stderr_tail()
    }

    /// Calls sent and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.core().in_flight()
    }

    /// Kills the current process and starts a new one (its init call runs again); returns
    /// once the new one is ready. Calls in flight fail with [`Error::WorkerRestarted`]; the
    /// way out of a call stuck in C code.
    pub fn restart(&self) -> Result<()> {
        let slot = self.core().restart(link::Restart {
            reason: "Worker::restart".into(),
            policy: false,
        });
        slot.wait_until(None);
        slot.try_take().map_or(Ok(()), |r| r.map(drop))
    }

    /// [`restart`](Worker::restart), awaited.
    pub async fn restart_async(&self) -> Result<()> {
        let slot = self.core().restart(link::Restart {
            reason: "Worker::restart".into(),
            policy: false,
        });
        SlotFuture(slot).await.map(drop)
    }

    /// Stops the worker for every clone: new calls fail with [`Error::WorkerStopped`], calls in
    /// flight may finish for `grace` (then they fail with the same error), and the process is
    /// asked to exit (killed after the `shutdown_timeout`). Returns once it is gone.
    pub fn shutdown(&self, grace: Duration) {
        let slot = self.core().stop(grace);
        slot.wait_until(None);
    }

    /// [`shutdown`](Worker::shutdown), awaited: no thread is blocked meanwhile.
    pub async fn shutdown_async(&self, grace: Duration) {
        let slot = self.core().stop(grace);
        let _ = SlotFuture(slot).await;
    }
}

/// Awaits a bare slot.
struct SlotFuture(Arc<Slot>);

impl Future for SlotFuture {
    type Output = Result<crate::protocol::Payload>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.poll_take(cx)
    }
}
