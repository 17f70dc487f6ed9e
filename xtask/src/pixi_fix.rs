//! Our fix to pixi 0.15.2's sources, applied before building it.
//!
//! pixi 0.15.2 sometimes hangs for good right after solving (`pixi install` then uses no CPU and
//! never returns; seen in about 1 of 10 runs on a loaded 2-core machine, and in several of our
//! e2e tests at once). The cause is `BarrierCell::wait` in `src/utils/barrier_cell.rs`: it awaits
//! `Notify::notified()` without first checking whether the value was already set, and
//! `notify_waiters` wakes only waiters that exist at that moment, so a `set` that lands before
//! the `wait` loses the wakeup. The fix checks the state after registering for the notification.

use std::path::Path;

use anyhow::{bail, Result};
use fs_err as fs;

/// File beside the binary naming the fixes it was built with; a binary without it is rebuilt.
const STAMP: &str = "pixi.fixes";

/// The fixes this module applies, as recorded in [`STAMP`].
const FIXES: &str = "barrier-cell-lost-wakeup\n";

const FILE: &str = "src/utils/barrier_cell.rs";

const ORIGINAL: &str = "    pub async fn wait(&self) -> &T {
        self.notify.notified().await;
        unsafe { (*self.value.get()).assume_init_ref() }
    }";

// `notified()` is created before the check, so a `set` between the check and the await still
// wakes it (tokio guarantees that for `notify_waiters`).
const FIXED: &str = "    pub async fn wait(&self) -> &T {
        let notified = self.notify.notified();
        if self.state.load(Ordering::Acquire) != BarrierCellState::Initialized as u8 {
            notified.await;
        }
        unsafe { (*self.value.get()).assume_init_ref() }
    }";

/// Patch the unpacked pixi sources at `root`.
pub fn apply(root: &Path) -> Result<()> {
    let path = root.join(FILE);
    let source = fs::read_to_string(&path)?;
    if !source.contains(ORIGINAL) {
        bail!(
            "{} does not hold the BarrierCell::wait this fix expects",
            path.display()
        );
    }
    fs::write(&path, source.replace(ORIGINAL, FIXED))?;
    Ok(())
}

/// Whether the pixi in `dir` was built with the current fixes.
pub fn is_current(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(STAMP)).is_ok_and(|s| s == FIXES)
}

/// Record that the pixi just placed in `dir` carries the fixes.
pub fn write_stamp(dir: &Path) -> Result<()> {
    fs::write(dir.join(STAMP), FIXES)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_wait_and_refuses_unexpected_sources() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("src/utils")).unwrap();
        let file = dir.path().join(FILE);
        fs::write(
            &file,
            format!("impl<T> BarrierCell<T> {{\n{ORIGINAL}\n}}\n"),
        )
        .unwrap();
        apply(dir.path()).unwrap();
        let patched = fs::read_to_string(&file).unwrap();
        assert!(patched.contains("if self.state.load(Ordering::Acquire)"));
        assert!(!patched.contains(ORIGINAL));
        // Applying twice finds no original: the build would stop rather than guess.
        assert!(apply(dir.path()).is_err());
    }

    #[test]
    fn a_binary_without_the_stamp_is_not_current() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_current(dir.path()));
        write_stamp(dir.path()).unwrap();
        assert!(is_current(dir.path()));
    }
}
