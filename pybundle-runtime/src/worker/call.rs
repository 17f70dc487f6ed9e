//! One call to a worker: building it ([`Request`]) and waiting for, awaiting or cancelling it
//! ([`CallHandle`]).

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::args::Args;
use super::core::Submit;
use super::link;
use super::pool::WorkerPool;
use super::slot::{MessageFn, Slot};
use super::{Handle, Worker};
use crate::buffer::{self, Frame};
use crate::protocol::{Outgoing, Payload};
use crate::{Error, Result};

#[derive(Clone, Copy)]
pub(super) enum Target<'a> {
    Worker(&'a Worker),
    Pool(&'a WorkerPool),
}

/// A call being configured: [`args`](Request::args), [`timeout`](Request::timeout),
/// [`on_message`](Request::on_message), then [`call`](Request::call),
/// [`submit`](Request::submit) or [`call_async`](Request::call_async).
#[must_use = "a request does nothing until `call`, `submit` or `call_async`"]
pub struct Request<'a> {
    target: Target<'a>,
    func: String,
    args: Result<Args>,
    timeout: Option<Duration>,
    on_message: Option<MessageFn>,
}

impl<'a> Request<'a> {
    pub(super) fn new(target: Target<'a>, func: &str) -> Self {
        Request {
            target,
            func: func.to_owned(),
            args: Ok(Args::default()),
            timeout: None,
            on_message: None,
        }
    }

    fn what(&self) -> String {
        format!("call `{}`", self.func)
    }

    /// Adds arguments by their Rust shape: a tuple (or fixed-size array) gives positional
    /// arguments, `&()` none, [`Kwargs`](crate::Kwargs) keyword arguments, and any other value
    /// is **one** positional argument (a `Vec` is one list, a map one dict).
    /// [`Buffer`](crate::Buffer)s inside travel as binary frames.
    pub fn args<'b>(self, args: &'b (impl Serialize + ?Sized)) -> Request<'b>
    where
        'a: 'b,
    {
        self.with(|a| a.add(args), "cannot encode the arguments")
    }

    /// Adds one positional argument (whatever its shape).
    pub fn arg<'b>(self, value: &'b (impl Serialize + ?Sized)) -> Request<'b>
    where
        'a: 'b,
    {
        self.with(|a| a.arg(value), "cannot encode an argument")
    }

    /// Adds the fields of a struct (or the entries of a map) as keyword arguments.
    pub fn kwargs<'b>(self, value: &'b (impl Serialize + ?Sized)) -> Request<'b>
    where
        'a: 'b,
    {
        self.with(|a| a.kwargs(value), "cannot encode the keyword arguments")
    }

    /// Adds one keyword argument: `.arg(&x).kwarg("scale", &2)` calls `f(x, scale=2)`.
    pub fn kwarg<'b>(self, name: &str, value: &'b (impl Serialize + ?Sized)) -> Request<'b>
    where
        'a: 'b,
    {
        self.with(|a| a.kwarg(name, value), "cannot encode a keyword argument")
    }

    fn with(
        mut self,
        add: impl FnOnce(&mut Args) -> serde_json::Result<()>,
        action: &'static str,
    ) -> Self {
        let what = self.what();
        if let Ok(args) = &mut self.args {
            if let Err(source) = add(args) {
                self.args = Err(Error::Json {
                    what,
                    action,
                    source,
                });
            }
        }
        self
    }

    /// Fails the call with [`Error::Timeout`] (and cancels it in the process) if it has not
    /// finished in time; enforced by the worker's thread, so an awaited call times out too.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Receives the call's `pybundle.send(value)` messages, in order, on the thread that reads
    /// the worker's output (a waiting caller's or the worker's own): keep it short, and do not
    /// wait for calls of the same worker from it.
    pub fn on_message(mut self, f: impl FnMut(serde_json::Value) + Send + 'static) -> Self {
        self.on_message = Some(Box::new(f));
        self
    }

    /// Sends the call and waits for its result. [`BufferRef`](crate::BufferRef)s in the
    /// arguments are written from where they are, without a copy.
    pub fn call<R: DeserializeOwned>(self) -> Result<R> {
        let worker = self.worker();
        let lends = self.args.as_ref().is_ok_and(Args::borrows);
        if !lends {
            let submitted = self.send(worker, 0)?;
            return CallHandle::new(worker, Ok(submitted)).wait();
        }
        let ticket = worker.core().ticket();
        // However this ends (an answer, a timeout, a crash, a panic), nothing may point at the
        // borrowed bytes once this function returns.
        struct Lent<'w>(&'w Worker, u64);
        impl Drop for Lent<'_> {
            fn drop(&mut self) {
                self.0.core().unborrow(self.1);
            }
        }
        let _lent = Lent(worker, ticket);
        let submitted = self.send(worker, ticket)?;
        CallHandle::new(worker, Ok(submitted)).wait()
    }

    /// Sends the call; `.await` the handle. A call that cannot be sent resolves to its error.
    /// Borrowed buffers are copied.
    pub fn call_async<R: DeserializeOwned>(self) -> CallHandle<R> {
        let worker = self.worker();
        let submitted = self.owned().send(worker, 0);
        CallHandle::new(worker, submitted)
    }

    /// Sends the call; the handle waits for, polls, awaits or cancels it. Borrowed buffers
    /// are copied.
    pub fn submit<R: DeserializeOwned>(self) -> Result<CallHandle<R>> {
        let worker = self.worker();
        let submitted = self.owned().send(worker, 0)?;
        Ok(CallHandle::new(worker, Ok(submitted)))
    }

    /// The request with borrowed buffers copied, for a call that outlives the borrow.
    fn owned(mut self) -> Self {
        if let Ok(args) = &mut self.args {
            args.own_frames();
        }
        self
    }

    fn worker(&self) -> &'a Worker {
        match self.target {
            Target::Worker(w) => w,
            Target::Pool(p) => p.least_busy(),
        }
    }

    fn send(self, worker: &Worker, ticket: u64) -> Result<(u64, Arc<Slot>)> {
        let what = self.what();
        let args = self.args?;
        worker.core().check_function(&self.func, &what)?;
        let (positional, kwargs, frames) = (args.positional(), args.keywords(), args.frames);
        let core = worker.core();
        let max = core.cfg.max_frame;
        let func = self.func;
        let encode = |id| {
            let head = Outgoing::Call {
                id,
                func: &func,
                args: &positional,
                kwargs: kwargs.as_deref(),
                buffers: frames.len(),
            }
            .encode();
            for len in std::iter::once(head.len()).chain(frames.iter().map(Frame::len)) {
                if len > max {
                    return Err(Error::FrameTooLarge {
                        what: what.clone(),
                        len,
                        max,
                    });
                }
            }
            link::frames(head, frames, max, ticket).map_err(|source| Error::Channel {
                what: what.clone(),
                action: "cannot encode the call",
                source,
            })
        };
        core.submit(
            encode,
            Submit {
                what: format!("call `{func}`"),
                on_message: self.on_message,
                timeout: self.timeout,
                ping: false,
            },
        )
    }
}

/// A call in flight. [`wait`](CallHandle::wait), [`wait_timeout`](CallHandle::wait_timeout),
/// [`try_result`](CallHandle::try_result) or `.await` hand out its result once.
///
/// Dropping a handle whose call has not finished cancels the call: the process is told (the
/// function sees `pybundle.cancelled()` turn true; one still queued there is skipped) and its
/// result is discarded. [`detach`](CallHandle::detach) lets a call run on unobserved instead.
/// A handle keeps its worker running.
pub struct CallHandle<R> {
    worker: Option<Arc<Handle>>,
    slot: Arc<Slot>,
    id: u64,
    /// The result was handed out, or the handle was detached: dropping it cancels nothing.
    settled: bool,
    _result: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> CallHandle<R> {
    pub(super) fn new(worker: &Worker, submitted: Result<(u64, Arc<Slot>)>) -> Self {
        match submitted {
            Ok((id, slot)) => CallHandle {
                worker: Some(worker.handle().clone()),
                slot,
                id,
                settled: false,
                _result: PhantomData,
            },
            Err(error) => {
                let slot = Arc::new(Slot::new(String::new(), None));
                slot.complete(Err(error));
                CallHandle {
                    worker: None,
                    slot,
                    id: 0,
                    settled: false,
                    _result: PhantomData,
                }
            }
        }
    }

    /// Waits for the result (or the call's timeout).
    pub fn wait(mut self) -> Result<R> {
        if let Some(worker) = &self.worker {
            worker.core.wait(&self.slot, None);
        }
        self.take()
            .unwrap_or_else(|| unreachable!("waited without a limit"))
    }

    /// Waits at most `timeout`; `None` if the call is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        if let Some(worker) = &self.worker {
            worker.core.wait(&self.slot, Some(Instant::now() + timeout));
        }
        self.take()
    }

    /// The result if it is there; `None` if the call is still running.
    pub fn try_result(&mut self) -> Option<Result<R>> {
        self.take()
    }

    /// Whether the result has arrived (or the call failed).
    pub fn is_done(&self) -> bool {
        self.slot.is_done()
    }

    /// Cancels the call: its result is discarded and Python code can see
    /// `pybundle.cancelled()` turn true. Waiting afterwards gives [`Error::Cancelled`].
    pub fn cancel(&self) {
        if let Some(worker) = &self.worker {
            worker.core.abandon(self.id, |what| Error::Cancelled {
                what: what.to_owned(),
            });
        }
    }

    /// Lets the call run to its end without anyone waiting: dropping this handle then cancels
    /// nothing, and the result is discarded.
    pub fn detach(mut self) {
        self.settled = true;
    }

    fn take(&mut self) -> Option<Result<R>> {
        let outcome = self.slot.try_take()?;
        self.settled = true;
        Some(self.decode(outcome))
    }

    fn decode(&self, outcome: Result<Payload>) -> Result<R> {
        buffer::from_payload(outcome?).map_err(|source| Error::Json {
            what: self.slot.what.clone(),
            action: "cannot decode the result into the requested type",
            source,
        })
    }
}

impl<R> Drop for CallHandle<R> {
    fn drop(&mut self) {
        if self.settled || self.slot.is_done() {
            return;
        }
        if let Some(worker) = &self.worker {
            worker.core.abandon(self.id, |what| Error::Cancelled {
                what: what.to_owned(),
            });
        }
    }
}

/// Awaiting a handle gives its result, on any async runtime: the worker's thread wakes the
/// task. The call's [`timeout`](Request::timeout) applies; dropping the future cancels the
/// call.
impl<R: DeserializeOwned> Future for CallHandle<R> {
    type Output = Result<R>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<R>> {
        match self.slot.poll_take(cx) {
            Poll::Ready(outcome) => {
                self.settled = true;
                Poll::Ready(self.decode(outcome))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
