//! The ready-made first-run reporter behind [`Bundle::progress_to_stderr`](super::Bundle).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::extract::Progress;

/// The reporter behind [`Bundle::progress_to_stderr`]: silent for quick extractions (under
/// half a second), then a line when it starts to take time and one when it finishes.
pub(super) struct StderrReporter {
    name: String,
    /// When the current [`Bundle::ready`](super::Bundle::ready) started, not when the
    /// reporter was set up: a bundle may be configured long before its first run.
    started: Mutex<Instant>,
    announced: AtomicBool,
}

impl StderrReporter {
    pub(super) fn new(name: String) -> Self {
        Self {
            name,
            started: Mutex::new(Instant::now()),
            announced: AtomicBool::new(false),
        }
    }

    /// Starts the clock of a (possible) first run.
    pub(super) fn start(&self) {
        *self.started.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.announced.store(false, Ordering::Relaxed);
    }

    pub(super) fn report(&self, p: Progress) {
        let done = p.entries_done >= p.entries_total;
        let elapsed = self
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed();
        if !self.announced.load(Ordering::Relaxed) {
            if done || elapsed < Duration::from_millis(500) {
                return;
            }
            self.announced.store(true, Ordering::Relaxed);
            eprintln!(
                "{}: first run, unpacking its Python environment ({} MiB)...",
                self.name,
                p.bytes_total >> 20
            );
        } else if done {
            eprintln!("{}: ready after {:.1} s", self.name, elapsed.as_secs_f64());
        }
    }
}
