//! Small wrappers over the system calls the worker's event loop uses on pipes: non-blocking
//! mode, `poll`, `writev`, and a wake-up pipe.

use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Puts a descriptor we own into non-blocking mode.
pub(crate) fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    let fd = fd.as_raw_fd();
    // SAFETY: fcntl(2) on a descriptor we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One entry for [`poll`].
pub(crate) fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// Waits until one of `fds` is ready or `timeout` passes (`None`: no limit); the number of
/// ready entries (0 on timeout or when interrupted by a signal).
pub(crate) fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let ms = match timeout {
        None => -1,
        // Rounded up, so a wait never ends before its deadline and spins.
        Some(t) => i32::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX),
    };
    // SAFETY: poll(2) on a valid array of initialised pollfd structs of the given length.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if rc >= 0 {
        return Ok(rc as usize);
    }
    let err = io::Error::last_os_error();
    if err.kind() == io::ErrorKind::Interrupted {
        return Ok(0);
    }
    Err(err)
}

/// Whether a polled entry reported readiness (or an error or hang-up, which a read or write
/// then reports).
pub(crate) fn ready(fd: &libc::pollfd) -> bool {
    fd.revents != 0
}

/// `writev(2)` of up to 64 slices; retried when interrupted.
pub(crate) fn writev(fd: &impl AsRawFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    let bufs = &bufs[..bufs.len().min(64)];
    loop {
        // SAFETY: IoSlice is ABI-compatible with iovec; the slices outlive the call.
        let n = unsafe {
            libc::writev(
                fd.as_raw_fd(),
                bufs.as_ptr().cast(),
                bufs.len() as libc::c_int,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// A pipe that wakes a thread out of [`poll`]: [`wake`](Wake::wake) writes a byte unless one
/// is already pending; the woken thread [`clear`](Wake::clear)s it.
pub(crate) struct Wake {
    read: File,
    write: File,
    pending: AtomicBool,
}

impl Wake {
    pub(crate) fn new() -> io::Result<Wake> {
        let (read, write) = crate::child::stop_pipe()?;
        set_nonblocking(&read)?;
        set_nonblocking(&write)?;
        Ok(Wake {
            read,
            write,
            pending: AtomicBool::new(false),
        })
    }

    pub(crate) fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            let _ = (&self.write).write(&[1]);
        }
    }

    /// Empties the pipe; wake-ups after this call wake the next [`poll`]. (Drained first,
    /// then re-armed: the other order could swallow the byte of a wake-up that found the flag
    /// clear, leaving the flag set and the pipe empty, so that no later wake-up writes.)
    pub(crate) fn clear(&self) {
        let mut sink = [0u8; 64];
        while matches!((&self.read).read(&mut sink), Ok(n) if n > 0) {}
        self.pending.store(false, Ordering::Release);
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn wake_interrupts_a_poll_once() {
        let wake = Wake::new().unwrap();
        let mut fds = [pollfd(wake.fd(), libc::POLLIN)];
        assert_eq!(poll(&mut fds, Some(Duration::from_millis(1))).unwrap(), 0);
        wake.wake();
        wake.wake();
        let start = Instant::now();
        assert_eq!(poll(&mut fds, Some(Duration::from_secs(5))).unwrap(), 1);
        assert!(ready(&fds[0]) && start.elapsed() < Duration::from_secs(1));
        wake.clear();
        fds[0].revents = 0;
        assert_eq!(poll(&mut fds, Some(Duration::from_millis(1))).unwrap(), 0);
    }
}
