//! Async twins of work that has no event to wait on (extracting a bundle, a one-shot script
//! from spawn to exit): the work runs on a thread of its own and the future is woken when it
//! ends, on any async runtime. The awaiting task's thread never blocks.

use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::worker::lock;
use crate::{Bundle, Environment, Error, Result};

struct Shared<T> {
    outcome: Option<std::thread::Result<T>>,
    waker: Option<Waker>,
}

/// The result of a closure running on its own thread. A panic there resumes in the task that
/// awaits it, as with [`std::thread::JoinHandle::join`] then `unwrap`.
#[must_use = "the work runs on regardless; await it for its result"]
pub(crate) struct OffThread<T> {
    shared: Arc<Mutex<Shared<T>>>,
    spawn_error: Option<std::io::Error>,
}

/// Runs `work` on a new thread named `name`.
pub(crate) fn off_thread<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> OffThread<T> {
    let shared = Arc::new(Mutex::new(Shared {
        outcome: None,
        waker: None,
    }));
    let theirs = shared.clone();
    let spawned = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let outcome = panic::catch_unwind(AssertUnwindSafe(work));
            let waker = {
                let mut shared = lock(&theirs);
                shared.outcome = Some(outcome);
                shared.waker.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
        });
    OffThread {
        shared,
        spawn_error: spawned.err(),
    }
}

impl<T> Future for OffThread<T> {
    type Output = std::io::Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(error) = self.spawn_error.take() {
            return Poll::Ready(Err(error));
        }
        let mut shared = lock(&self.shared);
        match shared.outcome.take() {
            Some(Ok(value)) => Poll::Ready(Ok(value)),
            Some(Err(panic)) => {
                drop(shared);
                panic::resume_unwind(panic)
            }
            None => {
                shared.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Bundle {
    /// [`ready`](Bundle::ready) without blocking the calling thread: the check (and a first
    /// run's extraction) runs on a thread of its own; the future resolves when it is done.
    pub async fn ready_async(&self) -> Result<Environment> {
        let bundle = self.clone();
        off_thread("pybundle-ready", move || bundle.ready())
            .await
            .map_err(|source| Error::Channel {
                what: "the bundle".into(),
                action: "cannot start a thread to make it ready",
                source,
            })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;
    use std::time::Duration;

    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        loop {
            if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return out;
            }
            std::thread::park_timeout(Duration::from_secs(1));
        }
    }

    #[test]
    fn the_result_comes_back_and_a_panic_resumes() {
        let value = block_on(off_thread("t", || {
            std::thread::sleep(Duration::from_millis(20));
            42
        }));
        assert_eq!(value.unwrap(), 42);
        let panicked = panic::catch_unwind(|| block_on(off_thread("t", || panic!("inside"))));
        assert!(panicked.is_err());
    }
}
