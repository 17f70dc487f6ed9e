//! The ready-made first-run reporter behind [`Bundle::progress_to_stderr`](super::Bundle).

use crate::extract::Progress;

/// The reporter behind [`Bundle::progress_to_stderr`]: silent for quick extractions (under
/// half a second), then a line when it starts to take time and one when it finishes.
pub(super) struct StderrReporter {
    name: String,
    started: std::time::Instant,
    announced: std::sync::atomic::AtomicBool,
}

impl StderrReporter {
    pub(super) fn new(name: String) -> Self {
        Self {
            name,
            started: std::time::Instant::now(),
            announced: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub(super) fn report(&self, p: Progress) {
        use std::sync::atomic::Ordering;
        let done = p.entries_done >= p.entries_total;
        let elapsed = self.started.elapsed();
        if !self.announced.load(Ordering::Relaxed) {
            if done || elapsed < std::time::Duration::from_millis(500) {
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
