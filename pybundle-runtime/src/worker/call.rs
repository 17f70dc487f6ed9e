//! One call to a worker: building it ([`Request`]) and waiting for, polling or cancelling it
//! ([`CallHandle`]).

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::pool::WorkerPool;
use super::process::{Link, MessageFn, Slot};
use super::Worker;
use crate::buffer;
use crate::protocol::{Outgoing, Payload};
use crate::{Error, Result};

#[derive(Clone, Copy)]
pub(super) enum Target<'a> {
    Worker(&'a Worker),
    Pool(&'a WorkerPool),
}

/// A call being configured: [`args`](Request::args), [`timeout`](Request::timeout),
/// [`on_message`](Request::on_message), then [`call`](Request::call) or
/// [`submit`](Request::submit).
#[must_use = "a request does nothing until `call` or `submit`"]
pub struct Request<'a> {
    target: Target<'a>,
    func: String,
    args: Result<(Vec<u8>, Vec<Vec<u8>>)>,
    timeout: Option<Duration>,
    on_message: Option<MessageFn>,
}

impl<'a> Request<'a> {
    pub(super) fn new(target: Target<'a>, func: &str) -> Self {
        Request {
            target,
            func: func.to_owned(),
            args: Ok((b"[]".to_vec(), Vec::new())),
            timeout: None,
            on_message: None,
        }
    }

    pub(crate) fn for_pool(pool: &'a WorkerPool, func: &str) -> Self {
        Self::new(Target::Pool(pool), func)
    }

    fn what(&self) -> String {
        format!("call `{}`", self.func)
    }

    /// The arguments: a tuple or array (positional), a struct or map (keywords), or one other
    /// value (a single positional argument). [`Buffer`](crate::Buffer)s inside travel as binary
    /// frames.
    pub fn args(mut self, args: &(impl Serialize + ?Sized)) -> Self {
        let what = self.what();
        self.args = buffer::to_json_with_buffers(args).map_err(|source| Error::Json {
            what,
            action: "cannot encode the arguments",
            source,
        });
        self
    }

    /// Fails the call with [`Error::Timeout`] (and cancels it) if it has not finished in time.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Receives the call's `pybundle.send(value)` messages, in order, on the worker's reader
    /// thread: keep it short, and do not wait for calls of the same worker from it (their
    /// replies come through that very thread).
    pub fn on_message(mut self, f: impl FnMut(serde_json::Value) + Send + 'static) -> Self {
        self.on_message = Some(Box::new(f));
        self
    }

    /// Sends the call and waits for its result.
    pub fn call<R: DeserializeOwned>(self) -> Result<R> {
        self.submit()?.wait()
    }

    /// Sends the call; the handle waits for, polls or cancels it.
    pub fn submit<R: DeserializeOwned>(self) -> Result<CallHandle<R>> {
        let what = self.what();
        let (args, frames) = self.args?;
        let worker = match self.target {
            Target::Worker(w) => w,
            Target::Pool(p) => p.least_busy(),
        };
        // The value's shape says which arguments it is: an object gives keywords, an array
        // the positional arguments, `()` none, anything else one positional argument.
        let (args, kwargs): (std::borrow::Cow<'_, [u8]>, Option<&[u8]>) = match args.first() {
            Some(b'{') => (b"[]"[..].into(), Some(&args)),
            Some(b'[') => (args[..].into(), None),
            _ if args == b"null" => (b"[]"[..].into(), None),
            _ => ([&b"["[..], &args, b"]"].concat().into(), None),
        };
        let (link, id) = worker.connect()?;
        let head = Outgoing::Call {
            id,
            func: &self.func,
            args: &args,
            kwargs,
            buffers: frames.len(),
        }
        .encode();
        let max = worker.max_frame();
        for len in std::iter::once(head.len()).chain(frames.iter().map(Vec::len)) {
            if len > max {
                return Err(Error::FrameTooLarge { what, len, max });
            }
        }
        let slot = Slot::new(
            what.clone(),
            self.on_message,
            Some(worker.in_flight_counter()),
        );
        if !link.register(id, slot.clone()) {
            slot.complete(Err(worker.dead(&what)));
        } else {
            let mut all: Vec<&[u8]> = Vec::with_capacity(1 + frames.len());
            all.push(&head);
            all.extend(frames.iter().map(Vec::as_slice));
            // A failed write means the process died; its reader fails the slot.
            let _ = link.write(&all);
        }
        Ok(CallHandle {
            slot,
            id,
            link,
            deadline: self.timeout.map(|t| (Instant::now() + t, t)),
            _result: PhantomData,
        })
    }
}

/// A call in flight. [`wait`](CallHandle::wait), [`wait_timeout`](CallHandle::wait_timeout)
/// or [`try_result`](CallHandle::try_result) hand out its result once;
/// [`cancel`](CallHandle::cancel) discards it.
pub struct CallHandle<R> {
    slot: Arc<Slot>,
    id: u64,
    link: Arc<Link>,
    deadline: Option<(Instant, Duration)>,
    _result: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> CallHandle<R> {
    /// Waits for the result (or the call's timeout).
    pub fn wait(self) -> Result<R> {
        match self.slot.take(self.deadline.map(|d| d.0)) {
            Some(outcome) => self.decode(outcome),
            None => Err(self.expire()),
        }
    }

    /// Waits at most `timeout`; `None` if the call is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        let mut until = Instant::now() + timeout;
        if let Some((deadline, _)) = self.deadline {
            until = until.min(deadline);
        }
        match self.slot.take(Some(until)) {
            Some(outcome) => Some(self.decode(outcome)),
            None if self.deadline.is_some_and(|d| Instant::now() >= d.0) => {
                Some(Err(self.expire()))
            }
            None => None,
        }
    }

    /// The result if it is there; `None` if the call is still running.
    pub fn try_result(&mut self) -> Option<Result<R>> {
        self.wait_timeout(Duration::ZERO)
    }

    /// Whether the result has arrived (or the call failed).
    pub fn is_done(&self) -> bool {
        self.slot.is_done()
    }

    /// Cancels the call: its result is discarded and Python code can see
    /// `pybundle.cancelled()` turn true. Waiting afterwards gives [`Error::Cancelled`].
    pub fn cancel(&self) {
        if self.link.forget(self.id) {
            self.slot.complete(Err(Error::Cancelled {
                what: self.slot.what.clone(),
            }));
            let _ = self
                .link
                .write(&[&Outgoing::Cancel { id: self.id }.encode()]);
        }
    }

    fn expire(&self) -> Error {
        self.cancel();
        Error::Timeout {
            what: self.slot.what.clone(),
            after: self.deadline.map(|d| d.1).unwrap_or_default(),
        }
    }

    fn decode(&self, outcome: Result<Payload>) -> Result<R> {
        buffer::from_payload(outcome?).map_err(|source| Error::Json {
            what: self.slot.what.clone(),
            action: "cannot decode the result into the requested type",
            source,
        })
    }
}

/// Awaiting a handle gives its result, on any async runtime (the worker's reader thread wakes
/// the task). The call's [`timeout`](Request::timeout) is enforced by the blocking waits only:
/// with `.await`, use the runtime's own timeout and [`cancel`](CallHandle::cancel).
impl<R: DeserializeOwned> std::future::Future for CallHandle<R> {
    type Output = Result<R>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<R>> {
        match self.slot.poll_take(cx) {
            Some(outcome) => std::task::Poll::Ready(self.decode(outcome)),
            None => std::task::Poll::Pending,
        }
    }
}
