//! A pool of worker processes: the GIL serialises Python code within one process, so CPU-bound
//! calls scale with processes. Each call goes to the process with the fewest calls in flight.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{CallHandle, Request, Worker, WorkerBuilder};
use crate::Result;

/// `n` [`Worker`]s with one configuration, used like one worker. Made by
/// [`WorkerBuilder::pool`]; cheap to clone and share between threads and tasks.
#[derive(Clone)]
pub struct WorkerPool {
    workers: Arc<[Worker]>,
}

impl WorkerPool {
    /// Starts the processes side by side (importing modules is most of a start) and waits
    /// for all of them.
    pub(super) fn start(builder: WorkerBuilder, n: usize) -> Result<WorkerPool> {
        let starting: Vec<_> = (0..n.max(1))
            .map(|_| Worker::launch(builder.cfg.clone()))
            .collect();
        let workers = starting
            .into_iter()
            .map(|s| s.wait())
            .collect::<Result<Vec<_>>>()?;
        Ok(WorkerPool {
            workers: workers.into(),
        })
    }

    pub(super) async fn start_async(builder: WorkerBuilder, n: usize) -> Result<WorkerPool> {
        let starting: Vec<_> = (0..n.max(1))
            .map(|_| Worker::launch(builder.cfg.clone()))
            .collect();
        let mut workers = Vec::with_capacity(starting.len());
        for s in starting {
            workers.push(s.await?);
        }
        Ok(WorkerPool {
            workers: workers.into(),
        })
    }

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

    /// Sends a call to the least busy process; `.await` the handle (see
    /// [`Worker::call_async`]).
    pub fn call_async<R: DeserializeOwned>(
        &self,
        func: &str,
        args: &(impl Serialize + ?Sized),
    ) -> CallHandle<R> {
        self.request(func).args(args).call_async()
    }

    /// A call with options (timeout, progress messages).
    pub fn request(&self, func: &str) -> Request<'_> {
        Request::new(super::call::Target::Pool(self), func)
    }

    /// Pings every process; the slowest round trip.
    pub fn ping(&self, timeout: Duration) -> Result<Duration> {
        let mut slowest = Duration::ZERO;
        for worker in self.workers.iter() {
            slowest = slowest.max(worker.ping(timeout)?);
        }
        Ok(slowest)
    }

    /// [`ping`](WorkerPool::ping), awaited.
    pub async fn ping_async(&self, timeout: Duration) -> Result<Duration> {
        let mut slowest = Duration::ZERO;
        for worker in self.workers.iter() {
            slowest = slowest.max(worker.ping_async(timeout).await?);
        }
        Ok(slowest)
    }

    /// Shuts every process down (see [`Worker::shutdown`]).
    pub fn shutdown(&self, grace: Duration) {
        for worker in self.workers.iter() {
            worker.core().stop(grace);
        }
        for worker in self.workers.iter() {
            worker.shutdown(grace);
        }
    }

    /// [`shutdown`](WorkerPool::shutdown), awaited.
    pub async fn shutdown_async(&self, grace: Duration) {
        for worker in self.workers.iter() {
            worker.core().stop(grace);
        }
        for worker in self.workers.iter() {
            worker.shutdown_async(grace).await;
        }
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
