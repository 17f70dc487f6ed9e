//! A pool of worker processes: the GIL serialises Python code within one process, so CPU-bound
//! calls scale with processes. Each call goes to the process with the fewest calls in flight.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{CallHandle, Request, Worker, WorkerBuilder};
use crate::Result;

/// `n` [`Worker`]s with one configuration, used like one worker. Made by
/// [`WorkerBuilder::pool`]; cheap to share between threads by reference or `Arc`.
pub struct WorkerPool {
    workers: Vec<Worker>,
}

pub(super) fn start(builder: WorkerBuilder, n: usize) -> Result<WorkerPool> {
    // Start the processes side by side: importing modules is most of a start.
    let started: Vec<Result<Worker>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n.max(1))
            .map(|_| {
                let b = builder.config_clone();
                scope.spawn(move || b.start())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let workers = started.into_iter().collect::<Result<Vec<_>>>()?;
    Ok(WorkerPool { workers })
}

impl WorkerPool {
    /// Calls `module.function(args)` on the least busy process and waits for the result.
    pub fn call<R: DeserializeOwned>(
        &self,
        func: &str,
        args: &(impl Serialize + ?Sized),
    ) -> Result<R> {
        self.request(func).args(args).call()
    }

    /// Sends a call to the least busy process; the handle waits for its result.
    pub fn submit<R: DeserializeOwned>(
        &self,
        func: &str,
        args: &(impl Serialize + ?Sized),
    ) -> Result<CallHandle<R>> {
        self.request(func).args(args).submit()
    }

    /// A call with options (timeout, progress messages).
    pub fn request(&self, func: &str) -> Request<'_> {
        Request::for_pool(self, func)
    }

    /// Pings every process; the slowest round trip.
    pub fn ping(&self, timeout: Duration) -> Result<Duration> {
        let mut slowest = Duration::ZERO;
        for worker in &self.workers {
            slowest = slowest.max(worker.ping(timeout)?);
        }
        Ok(slowest)
    }

    /// The workers (one per process).
    pub fn workers(&self) -> &[Worker] {
        &self.workers
    }

    /// The worker with the fewest calls in flight (the first of equals).
    pub(super) fn least_busy(&self) -> &Worker {
        let mut best = &self.workers[0];
        for worker in &self.workers[1..] {
            if worker.in_flight() < best.in_flight() {
                best = worker;
            }
        }
        best
    }
}
