//! Running the test pixi so that its known hang cannot stall a test run.
//!
//! pixi 0.15.2 sometimes stops for good right after solving ("resolved conda environment …",
//! then nothing): every thread parked, no CPU used, no lock file written. Seen here in about 1 of
//! 10 `pixi install` runs on a loaded 2-core machine. A hung run is recognised by using no CPU
//! for [`IDLE_LIMIT`]; it is killed and the command run again, up to [`ATTEMPTS`] times. (The
//! test pixi that `cargo xtask pixi` builds carries a fix for that hang; this guard stays for
//! pixis built elsewhere.) A run killed by SIGBUS is retried too.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A run that uses no CPU time for this long is taken as hung.
pub const IDLE_LIMIT: Duration = Duration::from_secs(20);

/// How many times a hung command is started in all.
pub const ATTEMPTS: usize = 3;

/// Run the command that `make` builds (normally `pixi …`) and return its output, retrying a run
/// that hangs. Stdout and stderr are captured.
///
/// # Panics
/// When the command cannot be started, or hangs on every attempt.
pub fn output(make: impl Fn() -> Command) -> Output {
    output_with(make, IDLE_LIMIT)
}

fn output_with(make: impl Fn() -> Command, idle_limit: Duration) -> Output {
    use std::os::unix::process::ExitStatusExt;
    for attempt in 1..=ATTEMPTS {
        let mut cmd = make();
        match run_watched(&mut cmd, idle_limit) {
            // SIGBUS: rattler maps cache files that a concurrent pixi may be rewriting (seen in 3
            // of 40 runs of two `pixi install` at once). Another try reads the finished file.
            Some(out) if out.status.signal() == Some(SIGBUS) && attempt < ATTEMPTS => {
                eprintln!("testkit: {cmd:?} died of SIGBUS (attempt {attempt} of {ATTEMPTS})")
            }
            Some(out) => return out,
            None => eprintln!(
                "testkit: {cmd:?} used no CPU for {}s (the pixi 0.15.2 hang after solving); \
                 killed it (attempt {attempt} of {ATTEMPTS})",
                idle_limit.as_secs()
            ),
        }
    }
    panic!("{:?} hung on all {ATTEMPTS} attempts", make());
}

/// Linux's SIGBUS.
const SIGBUS: i32 = 7;

/// Run to completion, or `None` after killing a run that went idle.
fn run_watched(cmd: &mut Command, idle_limit: Duration) -> Option<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    // Drain both pipes on their own threads so a chatty child can never block on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );

    let pid = child.id();
    let mut last_ticks = cpu_ticks(pid);
    let mut last_change = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            break Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
        let ticks = cpu_ticks(pid);
        if ticks != last_ticks {
            last_ticks = ticks;
            last_change = Instant::now();
        } else if last_change.elapsed() > idle_limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    status.map(|status| Output {
        status,
        stdout,
        stderr,
    })
}

/// utime + stime of a process and its waited-for children, from /proc (None once it is gone).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime, stime, cutime, cstime are fields 14..=17 of the line, 12..=15 after the name.
    fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_that_finishes_is_returned() {
        let out = output(|| {
            let mut c = Command::new("sh");
            c.args(["-c", "echo out; echo err >&2; exit 3"]);
            c
        });
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    #[should_panic(expected = "hung on all 3 attempts")]
    fn a_command_that_stays_idle_is_killed_and_retried() {
        output_with(
            || {
                let mut c = Command::new("sleep");
                c.arg("30");
                c
            },
            Duration::from_millis(300),
        );
    }

    #[test]
    fn a_run_killed_by_sigbus_is_retried() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran-once");
        let script = format!(
            "if [ -e {m} ]; then echo second; else touch {m}; kill -BUS $$; fi",
            m = marker.display()
        );
        let out = output(|| {
            let mut c = Command::new("sh");
            c.args(["-c", &script]);
            c
        });
        assert!(out.status.success());
        assert_eq!(out.stdout, b"second\n");
    }

    #[test]
    fn cpu_time_of_this_process_is_readable() {
        assert!(cpu_ticks(std::process::id()).is_some());
    }
}
