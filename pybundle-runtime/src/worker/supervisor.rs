//! The worker's own thread: starts processes (lazily, with backoff after crashes), reaps the
//! dead ones and fails their calls, fires timeouts, writes what callers' non-blocking writes
//! left queued, reads the output whenever no caller does, and runs the shutdown. It waits in
//! one `poll` on a wake-up pipe, the process's output and (when something is queued) its
//! input, so nothing it does ever waits on a caller or a caller on it.

use std::cmp::Reverse;
use std::process::ExitStatus;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use super::builder::OnTimeout;
use super::core::{Core, State};
use super::link::{self, Link, Restart};
use super::slot::{lock, Slot};
use super::WorkerEvent;
use crate::protocol::{Outgoing, Violation};
use crate::{sys, Error};

/// How long a dead process may take to be reaped, and its stderr to close, before it is
/// killed and its stderr abandoned (a grandchild may hold the pipe for hours).
const REAP_GRACE: Duration = Duration::from_millis(500);
/// How often a supervisor that leaves the output to a reading caller looks again.
const RECHECK: Duration = Duration::from_millis(50);

/// A shutdown in progress.
pub(crate) struct Stop {
    /// In-flight calls may finish until then.
    grace: Instant,
    waiters: Vec<Arc<Slot>>,
    /// When the shutdown message went out.
    sent: Option<Instant>,
}

struct Plan {
    link: Option<Arc<Link>>,
    watch: bool,
    write_fd: Option<std::os::fd::RawFd>,
    timeout: Option<Duration>,
}

/// The thread's loop; returns once a shutdown is complete.
pub(crate) fn run(core: Arc<Core>) {
    loop {
        let plan = tick(&core);
        core.emit_events();
        let Some(plan) = plan else { return };
        let mut fds = vec![sys::pollfd(core.wake.fd(), libc::POLLIN)];
        let link = plan.link.filter(|_| plan.watch || plan.write_fd.is_some());
        if let Some(link) = link.as_ref().filter(|_| plan.watch) {
            fds.push(sys::pollfd(link.stdout_fd, libc::POLLIN));
        }
        if let Some(fd) = plan.write_fd {
            fds.push(sys::pollfd(fd, libc::POLLOUT));
        }
        if let Err(e) = sys::poll(&mut fds, plan.timeout) {
            tracing::warn!("the worker's poll failed: {e}");
            std::thread::sleep(Duration::from_millis(10));
        }
        if sys::ready(&fds[0]) {
            core.wake.clear();
        }
        let Some(link) = link else { continue };
        let mut rest = fds[1..].iter();
        if plan.watch && rest.next().is_some_and(sys::ready) {
            core.read_available(&link);
        }
        if plan.write_fd.is_some() && rest.next().is_some_and(sys::ready) {
            link.flush();
        }
    }
}

/// The earliest moment the supervisor must look again, gathered while it ticks.
#[derive(Default)]
struct Soonest(Option<Instant>);

impl Soonest {
    /// Wants a look at `t` at the latest.
    fn at(&mut self, t: Instant) {
        self.0 = Some(self.0.map_or(t, |n| n.min(t)));
    }
}

/// The worker's state, locked.
type Locked<'a> = MutexGuard<'a, State>;

/// Advances the worker's state; the next wait, or `None` when the shutdown is complete.
fn tick(core: &Core) -> Option<Plan> {
    let now = Instant::now();
    reap(core, now);
    let mut state = lock(&core.state);
    let mut soon = Soonest::default();
    note_death(core, &mut state, now, &mut soon);
    state = check_start_deadline(core, state, now, &mut soon);
    check_stalled_message(core, &state, now, &mut soon);
    state = start_if_wanted(core, state, now, &mut soon);
    state = fire_timeouts(core, state, now, &mut soon);
    state = restart_if_hung(core, state, now, &mut soon);
    let state = shutdown_step(core, state, now, &mut soon)?;
    Some(plan(state, now, soon))
}

/// The current process's output ended: it is dying.
fn note_death(core: &Core, state: &mut State, now: Instant, soon: &mut Soonest) {
    if let Some(link) = state.link.clone().filter(|l| l.is_dead()) {
        state.link = None;
        state.last_stderr = Some(link.stderr_sink());
        state.died_at = Some(now);
        let explicit = lock(&link.restarted).as_ref().is_some_and(|r| !r.policy);
        if !link.expected_exit.load(Ordering::Acquire) && !explicit {
            core.crashes.fetch_add(1, Ordering::Relaxed);
        }
        state.dying.push((link, now));
    }
    if !state.dying.is_empty() {
        soon.at(now + Duration::from_millis(2));
    }
}

/// A start that outlived its timeout: the process is killed and the waiting calls fail.
fn check_start_deadline<'a>(
    core: &'a Core,
    mut state: Locked<'a>,
    now: Instant,
    soon: &mut Soonest,
) -> Locked<'a> {
    let Some(deadline) = state.start_deadline else {
        return state;
    };
    if now < deadline {
        soon.at(deadline);
        return state;
    }
    // Killed and dying at once, so nothing (a shutdown) mistakes it for a live one.
    if let Some(link) = state.link.take() {
        tracing::debug!(pid = link.pid, tail = %link.stderr_tail(), "worker start timed out");
        link.kill();
        link.mark_dead(None);
        state.last_stderr = Some(link.stderr_sink());
        state.died_at = Some(now);
        core.crashes.fetch_add(1, Ordering::Relaxed);
        state.dying.push((link, now));
    }
    drop(state);
    let after = core.cfg.start_timeout;
    let what = format!("starting the worker for modules {:?}", core.cfg.modules);
    core.fail_start(|_| Error::Timeout {
        what: what.clone(),
        after,
    });
    lock(&core.state)
}

/// A message that stopped arriving halfway: the process is stuck inside a write.
fn check_stalled_message(core: &Core, state: &State, now: Instant, soon: &mut Soonest) {
    let Some(link) = state.link.clone().filter(|l| !l.is_dead()) else {
        return;
    };
    let partial = *lock(&link.partial);
    let Some(since) = partial else { return };
    let deadline = since + core.cfg.frame_timeout;
    // A caller reading for itself times it too (and can say exactly where): it gets
    // a moment before this thread, which cannot look into a reader it does not hold.
    let violation = match link.read.try_lock() {
        Ok(side) if now >= deadline => Some(side.reader.stalled(core.cfg.frame_timeout)),
        Err(_) if now >= deadline + RECHECK => Some(Violation::Malformed(format!(
            "a message stopped arriving halfway (for {:?}); the child is stuck inside \
             a write",
            core.cfg.frame_timeout
        ))),
        Err(_) if now >= deadline => {
            soon.at(deadline + RECHECK);
            None
        }
        _ => {
            soon.at(deadline);
            None
        }
    };
    if let Some(violation) = violation {
        link.mark_dead(Some(violation));
        core.wake.wake();
    }
}

/// Starts a process when one is wanted, after the backoff that repeated crashes earn.
fn start_if_wanted<'a>(
    core: &'a Core,
    mut state: Locked<'a>,
    now: Instant,
    soon: &mut Soonest,
) -> Locked<'a> {
    let wanted = state.want_start || !state.waiting.is_empty();
    if state.link.is_some() || state.stop.is_some() || !wanted {
        return state;
    }
    let crashes = core.crashes.load(Ordering::Relaxed);
    let backoff = if crashes > 1 {
        // 50 ms, 100 ms, ... up to 5 s after repeated crashes, counted from the crash.
        Duration::from_millis(50u64 << (crashes - 1).min(7)).min(Duration::from_secs(5))
    } else {
        Duration::ZERO
    };
    let at = state.died_at.map_or(now, |d| d + backoff);
    if now < at {
        soon.at(at);
        return state;
    }
    let gen = state.next_gen;
    state.next_gen += 1;
    state.want_start = false;
    match Link::spawn(&core.cfg, gen) {
        Ok(link) => {
            let deadline = now + core.cfg.start_timeout;
            state.start_deadline = Some(deadline);
            soon.at(deadline);
            state.link = Some(Arc::new(link));
            state
        }
        Err(error) => {
            core.crashes.fetch_add(1, Ordering::Relaxed);
            state.died_at = Some(now);
            drop(state);
            let text = error.to_string();
            tracing::warn!("cannot start a worker process: {text}");
            core.fail_start(|_| Error::WorkerStart {
                modules: core.cfg.modules.clone(),
                detail: text.clone(),
            });
            lock(&core.state)
        }
    }
}

/// Timeouts that came due: their calls fail, and the restart policy starts watching them.
fn fire_timeouts<'a>(
    core: &'a Core,
    mut state: Locked<'a>,
    now: Instant,
    soon: &mut Soonest,
) -> Locked<'a> {
    while let Some(Reverse((deadline, id, after))) = state.timers.peek().copied() {
        if deadline > now {
            soon.at(deadline);
            break;
        }
        state.timers.pop();
        if let OnTimeout::Restart { grace } = core.cfg.on_timeout {
            if let Some((gen, what)) = state.sent_call(id) {
                state.hung.push(Reverse((now + grace, id, gen, what)));
            }
        }
        core.abandon_locked(&mut state, id, |what| Error::Timeout {
            what: what.to_owned(),
            after,
        });
    }
    state
}

/// The restart policy's watch: a process still holding a timed-out call after the grace is
/// restarted.
fn restart_if_hung<'a>(
    core: &'a Core,
    mut state: Locked<'a>,
    now: Instant,
    soon: &mut Soonest,
) -> Locked<'a> {
    while let Some(Reverse((deadline, id, gen, _))) = state.hung.peek() {
        if *deadline > now {
            soon.at(*deadline);
            break;
        }
        let (id, gen) = (*id, *gen);
        let Some(Reverse((_, _, _, what))) = state.hung.pop() else {
            break;
        };
        // Still not acknowledged by the process that has it: it is stuck.
        let stuck = state.calls.contains_key(&id)
            && state
                .link
                .as_ref()
                .is_some_and(|l| l.gen == gen && !l.is_dead());
        if stuck {
            let OnTimeout::Restart { grace } = core.cfg.on_timeout else {
                continue;
            };
            drop(state);
            core.restart(Restart {
                reason: format!("{what} did not end within {grace:?} of its timeout"),
                policy: true,
            });
            state = lock(&core.state);
        }
    }
    state
}

/// The shutdown's next step: the message once the calls are done or the grace is over, a
/// kill after the shutdown timeout; `None` once it is complete (the waiters are told).
fn shutdown_step<'a>(
    core: &'a Core,
    mut state: Locked<'a>,
    now: Instant,
    soon: &mut Soonest,
) -> Option<Locked<'a>> {
    let Some(stop) = state.stop.as_mut() else {
        return Some(state);
    };
    if stop.sent.is_none() {
        if core.in_flight() == 0 || now >= stop.grace {
            stop.sent = Some(now);
            drop(state);
            stop_now(core);
            state = lock(&core.state);
        } else {
            let grace = stop.grace;
            soon.at(grace);
        }
    }
    let sent = state.stop.as_ref().and_then(|s| s.sent);
    if let Some(sent) = sent {
        let kill_at = sent + core.cfg.shutdown_timeout;
        match &state.link {
            Some(link) if now >= kill_at => link.kill(),
            Some(_) => soon.at(kill_at),
            None if state.dying.is_empty() => {
                // `stop` stays set: every later call and start is refused.
                let waiters = state
                    .stop
                    .as_mut()
                    .map(|s| std::mem::take(&mut s.waiters))
                    .unwrap_or_default();
                drop(state);
                for waiter in waiters {
                    waiter.complete(Ok(Default::default()));
                }
                return None;
            }
            None => {}
        }
    }
    Some(state)
}

/// What the thread waits on next: the live process's output (unless a caller reads it), its
/// input (when something is queued) and the soonest deadline.
fn plan(mut state: Locked<'_>, now: Instant, mut soon: Soonest) -> Plan {
    let link = state.link.clone().filter(|l| !l.is_dead());
    let watch = link
        .as_ref()
        .is_some_and(|l| !l.leading.load(Ordering::Acquire));
    if link.is_some() && !watch {
        soon.at(now + RECHECK);
    }
    let write_fd = link.as_ref().and_then(|l| l.pending_write_fd());
    let next = soon.0;
    state.next_tick = next;
    Plan {
        link,
        watch,
        write_fd,
        timeout: next.map(|n| n.saturating_duration_since(now)),
    }
}

/// Fails every call still in flight, tells the process to exit and closes its input.
fn stop_now(core: &Core) {
    let mut state = lock(&core.state);
    let ids: Vec<u64> = state.calls.keys().copied().collect();
    for id in ids {
        core.abandon_locked(&mut state, id, |what| Error::WorkerStopped {
            what: what.to_owned(),
        });
    }
    let link = state.link.clone();
    drop(state);
    core.fail_start(|what| Error::WorkerStopped {
        what: what.to_owned(),
    });
    if let Some(link) = link {
        link.expected_exit.store(true, Ordering::Release);
        if let Ok(chunks) = link::frames(
            Outgoing::Shutdown.encode(),
            Vec::new(),
            core.cfg.max_frame,
            0,
        ) {
            link.send(chunks);
        }
        link.close_input();
    }
}

/// Reaps dying processes; each one reaped has its calls failed and its event sent.
fn reap(core: &Core, now: Instant) {
    let mut done = Vec::new();
    lock(&core.state).dying.retain(|(link, since)| {
        let late = now >= *since + REAP_GRACE;
        match link.try_reap() {
            Ok(Some(status)) => {
                if link.stderr_done(late) {
                    done.push((link.clone(), Ok(status)));
                    return false;
                }
                true
            }
            Ok(None) => {
                if late {
                    // The output ended, so the process is exiting: past the grace, make sure.
                    link.kill();
                }
                true
            }
            Err(e) => {
                link.stderr_done(true);
                done.push((link.clone(), Err(e)));
                false
            }
        }
    });
    for (link, status) in done {
        finish(core, &link, status);
    }
}

/// A reaped process: the error its calls get, the event.
fn finish(core: &Core, link: &Link, status: std::io::Result<ExitStatus>) {
    let violation = link.violation();
    let text = match (&status, &violation) {
        (Ok(status), None) => status.to_string(),
        (Ok(status), Some(reason)) => {
            format!("{status}, killed after it broke the protocol: {reason}")
        }
        (Err(e), _) => format!("cannot wait for it: {e}"),
    };
    let stderr = link.stderr_tail();
    let code = status.as_ref().ok().and_then(ExitStatus::code);
    let restarted = lock(&link.restarted).clone();
    let failure = |what: &str| match (&restarted, &violation) {
        (Some(restart), _) => Error::WorkerRestarted {
            what: what.to_owned(),
            reason: restart.reason.clone(),
        },
        (None, violation) => match violation {
            Some(Violation::Malformed(detail)) => Error::Protocol {
                what: what.to_owned(),
                detail: format!("{detail} (the worker was killed)"),
            },
            Some(v) => v.clone().into_error(what.to_owned()),
            None => match code {
                Some(code) => Error::WorkerExited {
                    what: what.to_owned(),
                    code,
                    stderr: stderr.clone(),
                },
                None => Error::WorkerCrashed {
                    what: what.to_owned(),
                    status: text.clone(),
                    stderr: stderr.clone(),
                },
            },
        },
    };
    if !link.ready.load(Ordering::Acquire) {
        let detail = if stderr.trim().is_empty() {
            format!("the process ended before it was ready ({text})")
        } else {
            format!(
                "the process ended before it was ready ({text})\nstderr:\n{}",
                stderr.trim_end()
            )
        };
        core.fail_start(|_| Error::WorkerStart {
            modules: core.cfg.modules.clone(),
            detail: detail.clone(),
        });
    }
    core.fail_gen(link.gen, failure);
    let explicit = restarted.as_ref().is_some_and(|r| !r.policy);
    if link.expected_exit.load(Ordering::Acquire) || explicit {
        core.push_event(WorkerEvent::Stopped { pid: link.pid });
    } else {
        let text = match &restarted {
            Some(restart) => format!("{text}; killed: {}", restart.reason),
            None => text,
        };
        tracing::warn!(pid = link.pid, status = %text, "worker process died");
        core.push_event(WorkerEvent::Crashed {
            pid: link.pid,
            status: text,
        });
    }
}

impl Core {
    /// Begins a shutdown: calls in flight may finish for `grace`, new ones are refused; the
    /// slot completes once the process is gone.
    pub(crate) fn stop(&self, grace: Duration) -> Arc<Slot> {
        let slot = Arc::new(Slot::new(format!("stopping the {}", self.cfg.what()), None));
        let mut state = lock(&self.state);
        let now = Instant::now();
        let finished = state
            .stop
            .as_ref()
            .is_some_and(|s| s.sent.is_some() && state.link.is_none() && state.dying.is_empty());
        match state.stop.as_mut() {
            Some(_) if finished => {
                slot.complete(Ok(Default::default()));
            }
            Some(stop) => {
                stop.grace = stop.grace.min(now + grace);
                stop.waiters.push(slot.clone());
            }
            None => {
                state.stop = Some(Stop {
                    grace: now + grace,
                    waiters: vec![slot.clone()],
                    sent: None,
                })
            }
        }
        drop(state);
        self.wake.wake();
        slot
    }
}
