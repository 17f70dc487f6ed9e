//! Where the outcome of one call (or ping, or a process start) lands: waited for by a blocking
//! caller, polled by a future, completed by whichever thread read the reply, timed out by the
//! supervisor. The first outcome wins.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::protocol::Payload;
use crate::{Error, Result};

/// Receives a call's progress messages.
pub(crate) type MessageFn = Box<dyn FnMut(serde_json::Value) + Send>;

enum State {
    Pending(Option<Waker>),
    Done(Result<Payload>),
    Taken,
}

/// One outcome, awaited (see the module docs).
pub(crate) struct Slot {
    /// The call, for errors: "call `m.f`".
    pub what: String,
    /// When the worker's thread times it out: a caller reading for it stops waiting for the
    /// process then.
    pub deadline: Option<Instant>,
    /// Where its Python log records go (when the worker forwards them).
    pub span: Option<tracing::Span>,
    state: Mutex<State>,
    /// Set with the outcome; read without the lock by a waiter that spins.
    done: AtomicBool,
    cond: Condvar,
    /// Threads blocked on `cond` (the completion skips the wake-up system call when none).
    sleepers: AtomicUsize,
    pub on_message: Option<Mutex<MessageFn>>,
    /// The bytes its outcome holds against the worker's in-flight cap, and that count.
    held: AtomicUsize,
    counter: Option<Arc<AtomicUsize>>,
}

impl Slot {
    pub(crate) fn new(what: String, on_message: Option<MessageFn>) -> Self {
        Slot {
            what,
            deadline: None,
            span: None,
            state: Mutex::new(State::Pending(None)),
            done: AtomicBool::new(false),
            cond: Condvar::new(),
            sleepers: AtomicUsize::new(0),
            on_message: on_message.map(Mutex::new),
            held: AtomicUsize::new(0),
            counter: None,
        }
    }

    /// The slot of a call whose answer counts against `counter` until it is taken.
    pub(crate) fn with_counter(mut self, counter: Arc<AtomicUsize>) -> Self {
        self.counter = Some(counter);
        self
    }

    /// Counts `bytes` of its outcome as held (call it in [`complete_then`](Slot::complete_then)).
    pub(crate) fn hold(&self, bytes: usize) {
        if let Some(counter) = &self.counter {
            self.held.store(bytes, Ordering::Relaxed);
            counter.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    fn release(&self) {
        if let Some(counter) = &self.counter {
            counter.fetch_sub(self.held.swap(0, Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// The slot of a call whose log records go to `span`.
    pub(crate) fn with_span(mut self, span: Option<tracing::Span>) -> Self {
        self.span = span;
        self
    }

    /// The slot of a call that times out at `deadline`.
    pub(crate) fn with_deadline(mut self, deadline: Option<Instant>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Records the outcome unless there is one; whether this one was recorded.
    pub(crate) fn complete(&self, outcome: Result<Payload>) -> bool {
        self.complete_then(outcome, || {})
    }

    /// [`complete`](Slot::complete), running `first` (when this outcome is the one recorded)
    /// before any waiter can see it, so that bookkeeping it does is visible to them.
    pub(crate) fn complete_then(&self, outcome: Result<Payload>, first: impl FnOnce()) -> bool {
        let mut state = lock(&self.state);
        let State::Pending(waker) = &mut *state else {
            return false;
        };
        first();
        let waker = waker.take();
        *state = State::Done(outcome);
        self.done.store(true, Ordering::Release);
        // Read under the lock: a sleeper registers under it before it waits.
        let sleepers = self.sleepers.load(Ordering::Relaxed);
        drop(state);
        if sleepers > 0 {
            self.cond.notify_all();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    /// Whether an outcome is there (or was taken).
    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Takes the outcome if there is one.
    pub(crate) fn try_take(&self) -> Option<Result<Payload>> {
        let mut state = lock(&self.state);
        match std::mem::replace(&mut *state, State::Taken) {
            State::Done(outcome) => {
                self.release();
                Some(outcome)
            }
            State::Taken => Some(Err(Error::Cancelled {
                what: format!("{} (result already taken)", self.what),
            })),
            pending => {
                *state = pending;
                None
            }
        }
    }

    /// For `Future::poll`: the outcome, or `Pending` with the task's waker stored.
    pub(crate) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Result<Payload>> {
        let mut state = lock(&self.state);
        match &mut *state {
            State::Pending(waker) => {
                match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            _ => {
                drop(state);
                Poll::Ready(
                    self.try_take()
                        .unwrap_or_else(|| unreachable!("done above")),
                )
            }
        }
    }

    /// Blocks until there is an outcome or `deadline` passes (then `false`).
    pub(crate) fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let mut state = lock(&self.state);
        loop {
            if !matches!(*state, State::Pending(_)) {
                return true;
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return false;
            }
            self.sleepers.fetch_add(1, Ordering::Relaxed);
            state = match deadline {
                None => self.cond.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    self.cond
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            self.sleepers.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.release();
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere (a user callback) must not wedge the worker: the data stays usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(std::sync::atomic::AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_first_outcome_wins_and_wakes_the_task() {
        let slot = Slot::new("call `m.f`".into(), None);
        let count = Arc::new(Count(0.into()));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(slot.poll_take(&mut cx).is_pending());
        assert!(!slot.wait_until(Some(Instant::now())));
        assert!(slot.complete(Ok(Payload::default())));
        assert!(!slot.complete(Err(Error::Cancelled { what: "x".into() })));
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(slot.is_done() && slot.wait_until(None));
        assert!(matches!(slot.poll_take(&mut cx), Poll::Ready(Ok(_))));
        assert!(matches!(
            slot.try_take(),
            Some(Err(Error::Cancelled { .. }))
        ));
    }
}
