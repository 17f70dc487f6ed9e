//! Owning a Python child process: reaped on drop (no zombies), killed by pid from a watchdog
//! thread without racing the reaper, stderr drained on its own thread (no pipe deadlocks).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::protocol::{self, table::Argv};

/// Starts a runner: `cmd` (the environment's interpreter, from [`Environment::python`], with
/// any per-run variables) gets `-c <bootstrap> <args>` for `layout`, and the three pipes
/// (stderr inherited instead when `stderr_piped` is false). Every child of the runtime is
/// started here.
///
/// [`Environment::python`]: crate::Environment::python
pub(crate) fn spawn_runner(
    mut cmd: Command,
    interpreter: &Path,
    layout: &Argv,
    args: Vec<OsString>,
    stderr_piped: bool,
) -> crate::Result<ChildGuard> {
    cmd.arg("-c")
        .arg(protocol::bootstrap(layout))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(if stderr_piped {
            Stdio::piped()
        } else {
            Stdio::inherit()
        });
    let child = cmd.spawn().map_err(|source| crate::Error::Spawn {
        interpreter: interpreter.to_path_buf(),
        source,
    })?;
    Ok(ChildGuard::new(child))
}

/// A child that is killed and reaped when dropped unless it was waited for.
pub(crate) struct ChildGuard {
    child: Child,
    reaped: bool,
}

impl ChildGuard {
    pub(crate) fn new(child: Child) -> Self {
        Self {
            child,
            reaped: false,
        }
    }

    pub(crate) fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGKILL (ignoring a child that already exited).
    pub(crate) fn kill(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
        }
    }

    /// Waits for the child and reaps it.
    pub(crate) fn wait(&mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait()?;
        self.reaped = true;
        Ok(status)
    }

    /// Reaps the child if it has exited.
    pub(crate) fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        let status = self.child.try_wait()?;
        self.reaped |= status.is_some();
        Ok(status)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Grows a pipe's kernel buffer (Linux: 64 KiB by default) so large frames cross in fewer
/// wake-ups; measured on the worker's 256 MB buffer round trip. Best effort: a refusal (e.g.
/// over `/proc/sys/fs/pipe-max-size` for an unprivileged user) keeps the default.
pub(crate) fn grow_pipe(fd: &impl std::os::fd::AsRawFd) {
    #[cfg(target_os = "linux")]
    // SAFETY: fcntl on a file descriptor we own, with an integer argument; no memory is passed.
    unsafe {
        libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = fd;
}

/// Sends SIGKILL to `pid`. Only call it while the process is known not to be reaped yet (see
/// [`wait_exited`]), so the pid cannot have been reused.
pub(crate) fn kill_pid(pid: u32) {
    #[cfg(unix)]
    {
        if let Ok(pid) = libc::pid_t::try_from(pid) {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
    #[cfg(not(unix))]
    {
        tracing::warn!(pid, "killing a child by pid is only implemented on unix");
    }
}

/// Blocks until the child has exited WITHOUT reaping it (`waitid` with `WNOWAIT`), so another
/// thread may still signal its pid safely until the caller reaps it.
pub(crate) fn wait_exited(pid: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        let id = libc::id_t::from(pid);
        loop {
            // SAFETY: siginfo_t is plain data, zero is a valid bit pattern; waitid writes it.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: a valid pointer to a siginfo_t we own.
            let rc =
                unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WEXITED | libc::WNOWAIT) };
            if rc == 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        Ok(())
    }
}

/// Where a child's stderr goes.
pub(crate) enum StderrSink {
    /// A script's captured output: the last `limit` bytes, and how many came before them.
    Capture {
        buf: VecDeque<u8>,
        limit: usize,
        dropped: u64,
    },
    /// Keep the last `limit` bytes; copy everything to our own stderr when `forward`.
    Tail {
        buf: VecDeque<u8>,
        limit: usize,
        forward: bool,
    },
}

impl StderrSink {
    fn push(&mut self, chunk: &[u8]) {
        match self {
            StderrSink::Capture {
                buf,
                limit,
                dropped,
            } => {
                let keep = chunk.len().min(*limit);
                *dropped += (chunk.len() - keep) as u64;
                buf.extend(&chunk[chunk.len() - keep..]);
                let excess = buf.len().saturating_sub(*limit);
                *dropped += excess as u64;
                buf.drain(..excess);
            }
            StderrSink::Tail {
                buf,
                limit,
                forward,
            } => {
                if *forward {
                    // The child's own output, passed through as if it were inherited.
                    let _ = io::stderr().write_all(chunk);
                }
                let keep = chunk.len().min(*limit);
                buf.extend(&chunk[chunk.len() - keep..]);
                let excess = buf.len().saturating_sub(*limit);
                buf.drain(..excess);
            }
        }
    }

    /// The collected bytes as text.
    pub(crate) fn text(&self) -> String {
        match self {
            StderrSink::Capture { buf, dropped, .. } => {
                let text = lossy(buf);
                if *dropped == 0 {
                    text
                } else {
                    format!(
                        "[pybundle: the first {dropped} bytes of output were dropped \
                         (capture_limit)]\n{text}"
                    )
                }
            }
            StderrSink::Tail { buf, .. } => lossy(buf),
        }
    }
}

fn lossy(buf: &VecDeque<u8>) -> String {
    let (a, b) = buf.as_slices();
    let mut bytes = a.to_vec();
    bytes.extend_from_slice(b);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The thread draining a child's stderr (see [`drain_stderr`]).
pub(crate) struct Drain {
    thread: JoinHandle<()>,
    /// Closing it wakes the thread out of its wait: it stops reading.
    stop: Option<std::fs::File>,
}

impl Drain {
    /// Whether the pipe has closed and the thread ended (every byte was read).
    pub(crate) fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Stops reading now and joins the thread.
    pub(crate) fn stop(mut self) {
        drop(self.stop.take());
        let _ = self.thread.join();
    }

    /// Waits up to `grace` for the pipe to close (every byte read), then stops reading and
    /// joins the thread. A grandchild that inherited the pipe may hold it open for hours; the
    /// output it writes after that is lost rather than a thread (or the caller) left waiting.
    pub(crate) fn finish(mut self, grace: std::time::Duration) {
        let deadline = std::time::Instant::now() + grace;
        while !self.thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        drop(self.stop.take());
        let _ = self.thread.join();
    }
}

/// A pipe whose read end turns readable (end of file) when the write end is dropped. Both
/// ends are close-on-exec from their creation (`pipe2`), so a child spawned by another thread
/// at that moment never inherits them.
#[cfg(unix)]
pub(crate) fn stop_pipe() -> io::Result<(std::fs::File, std::fs::File)> {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    // SAFETY: pipe2(2) writes two descriptors into an array of two.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    // macOS has no pipe2: the flag follows at once (a fork from another thread in between
    // would inherit the descriptors until it execs).
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    // SAFETY: pipe(2) writes two descriptors into an array of two; fcntl on them.
    let rc = unsafe {
        let rc = libc::pipe(fds.as_mut_ptr());
        if rc == 0 {
            for fd in fds {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        rc
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are open and owned by nothing else.
    Ok(unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    })
}

/// Waits until `fd` is readable (or closed); `false` if `stop` turned readable first.
#[cfg(unix)]
fn wait_readable(fd: &impl std::os::fd::AsRawFd, stop: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    let mut fds = [
        libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: stop.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: poll(2) on an array of two initialized pollfd structs, no timeout.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if rc >= 0 {
            return fds[1].revents == 0;
        }
        if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            // Fall back to a plain blocking read.
            return true;
        }
    }
}

/// Drains `stderr` into `sink` on its own thread until the pipe closes or the [`Drain`] is
/// finished.
pub(crate) fn drain_stderr(
    mut stderr: ChildStderr,
    sink: Arc<Mutex<StderrSink>>,
) -> io::Result<Drain> {
    #[cfg(unix)]
    let (stop_read, stop) = stop_pipe()?;
    #[cfg(not(unix))]
    let stop = None::<std::fs::File>;
    let thread = std::thread::Builder::new()
        .name("pybundle-stderr".into())
        .spawn(move || {
            let mut chunk = vec![0u8; 16 * 1024];
            loop {
                #[cfg(unix)]
                if !wait_readable(&stderr, &stop_read) {
                    break;
                }
                match stderr.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => {
                        if let Ok(mut sink) = sink.lock() {
                            sink.push(&chunk[..n]);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        })?;
    #[cfg(unix)]
    let stop = Some(stop);
    Ok(Drain { thread, stop })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_only_the_last_bytes() {
        let mut sink = StderrSink::Tail {
            buf: VecDeque::new(),
            limit: 5,
            forward: false,
        };
        sink.push(b"hello ");
        sink.push(b"world");
        assert_eq!(sink.text(), "world");
        sink.push(b"0123456789");
        assert_eq!(sink.text(), "56789");
        let mut capture = StderrSink::Capture {
            buf: VecDeque::new(),
            limit: 4,
            dropped: 0,
        };
        capture.push(b"ab");
        assert_eq!(capture.text(), "ab");
        capture.push(b"cdefgh");
        assert_eq!(
            capture.text(),
            "[pybundle: the first 4 bytes of output were dropped (capture_limit)]\nefgh"
        );
    }
}
