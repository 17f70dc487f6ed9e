//! The shared state of a worker: the calls in flight (by id), calls waiting for a process,
//! timers, and the current process. Callers submit and cancel here without ever blocking on
//! the process; replies are read by a caller that waits for one (it takes the read token and
//! reads for itself, which saves a thread hand-off per call) or else by the supervisor.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::builder::Config;
use super::link::{Chunk, Link, ReadSide};
use super::slot::{lock, MessageFn, Slot};
use super::WorkerEvent;
use crate::child::StderrSink;
use crate::protocol::{Kind, Message, Outgoing, Violation};
use crate::{sys, Error, Result};

/// How long a caller reading for itself tries again without sleeping in `poll` when the
/// answer is not there yet. A warm call takes 10-20 µs, and a caller that sleeps at once adds
/// the wake-up of its core when that core went idle meanwhile (tens of µs on a VM). The spin
/// yields its core, so the process it waits for can run on it.
const SPIN: Duration = Duration::from_micros(50);

/// One call (or ping) the process was given or will be given.
pub(super) struct Entry {
    /// `None` once the caller gave up (cancelled, timed out): the entry stays until the
    /// process acknowledges the id, so a late answer is recognised.
    slot: Option<Arc<Slot>>,
    /// The process generation it was written to; `None` while it waits for a process.
    gen: Option<u64>,
    ping: bool,
}

pub(super) struct State {
    pub link: Option<Arc<Link>>,
    pub next_gen: u64,
    pub calls: HashMap<u64, Entry>,
    /// Calls accepted while no process was ready, with their frames, in order.
    pub waiting: VecDeque<(u64, Vec<Chunk>)>,
    /// Call deadlines: (when, call id, the timeout it came from).
    pub timers: BinaryHeap<Reverse<(Instant, u64, Duration)>>,
    /// Timed-out calls the restart policy watches: (when the grace ends, call id, process
    /// generation, the call).
    pub hung: BinaryHeap<Reverse<(Instant, u64, u64, String)>>,
    /// Waiters for the next process to be ready (a start, a restart).
    pub start_waiters: Vec<Arc<Slot>>,
    /// Start a process even with no call waiting.
    pub want_start: bool,
    /// The current process was started now and must say `ready` by this deadline.
    pub start_deadline: Option<Instant>,
    /// Processes whose output ended, to reap.
    pub dying: Vec<(Arc<Link>, Instant)>,
    pub died_at: Option<Instant>,
    pub last_stderr: Option<Arc<Mutex<StderrSink>>>,
    pub stop: Option<super::supervisor::Stop>,
    /// When the supervisor means to wake next; an earlier deadline must wake it.
    pub next_tick: Option<Instant>,
    /// The functions the last ready process serves, sorted.
    pub functions: Option<Arc<[String]>>,
}

impl State {
    /// The process generation a call was written to and its name, if it is still waited for.
    pub(super) fn sent_call(&self, id: u64) -> Option<(u64, String)> {
        let entry = self.calls.get(&id)?;
        let slot = entry.slot.as_ref()?;
        entry
            .gen
            .filter(|_| !entry.ping)
            .map(|gen| (gen, slot.what.clone()))
    }
}

/// See the module docs.
pub(crate) struct Core {
    pub cfg: Config,
    pub(super) state: Mutex<State>,
    pub(super) wake: sys::Wake,
    next_id: AtomicU64,
    next_ticket: AtomicU64,
    pub(super) in_flight: AtomicUsize,
    /// Bytes of answers received and not yet taken (against `max_in_flight`).
    held: Arc<AtomicUsize>,
    /// Consecutive crashes (reset by any answer): drives the restart backoff.
    pub(super) crashes: AtomicU32,
    events: Mutex<Vec<WorkerEvent>>,
    /// Where Python log records outside any call go.
    span: tracing::Span,
}

/// What a submitted call needs besides its frames.
pub(crate) struct Submit {
    pub what: String,
    pub on_message: Option<MessageFn>,
    pub timeout: Option<Duration>,
    pub ping: bool,
}

impl Core {
    pub(crate) fn new(cfg: Config) -> io::Result<Arc<Core>> {
        Ok(Arc::new(Core {
            cfg,
            state: Mutex::new(State {
                link: None,
                next_gen: 1,
                calls: HashMap::new(),
                waiting: VecDeque::new(),
                timers: BinaryHeap::new(),
                hung: BinaryHeap::new(),
                start_waiters: Vec::new(),
                want_start: false,
                start_deadline: None,
                dying: Vec::new(),
                died_at: None,
                last_stderr: None,
                stop: None,
                next_tick: None,
                functions: None,
            }),
            wake: sys::Wake::new()?,
            next_id: AtomicU64::new(1),
            next_ticket: AtomicU64::new(1),
            in_flight: AtomicUsize::new(0),
            held: Arc::new(AtomicUsize::new(0)),
            crashes: AtomicU32::new(0),
            events: Mutex::new(Vec::new()),
            span: tracing::Span::current(),
        }))
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(super) fn push_event(&self, event: WorkerEvent) {
        lock(&self.events).push(event);
    }

    /// Calls `on_event` for what happened, on the calling thread (never under a lock).
    pub(super) fn emit_events(&self) {
        let events = std::mem::take(&mut *lock(&self.events));
        for event in &events {
            self.cfg.emit(event);
        }
    }

    /// Asks for a process to be started (if none is running) and returns a slot completed
    /// when the next process is ready or fails to start.
    pub(crate) fn request_start(&self) -> Arc<Slot> {
        let slot = Arc::new(Slot::new(format!("starting the {}", self.cfg.what()), None));
        let mut state = lock(&self.state);
        if state.stop.is_some() {
            slot.complete(Err(Error::WorkerStopped {
                what: slot.what.clone(),
            }));
            return slot;
        }
        match &state.link {
            Some(link) if link.ready.load(Ordering::Acquire) && !link.is_dead() => {
                slot.complete(Ok(Default::default()));
            }
            _ => {
                state.want_start = true;
                state.start_waiters.push(slot.clone());
            }
        }
        drop(state);
        self.wake.wake();
        slot
    }

    /// Kills the current process (its calls fail with [`Error::WorkerRestarted`]) and starts
    /// a new one; the slot completes when that one is ready (or fails to start).
    pub(crate) fn restart(&self, restart: super::link::Restart) -> Arc<Slot> {
        let slot = Arc::new(Slot::new(
            format!("restarting the {}", self.cfg.what()),
            None,
        ));
        let mut state = lock(&self.state);
        if state.stop.is_some() {
            slot.complete(Err(Error::WorkerStopped {
                what: slot.what.clone(),
            }));
            return slot;
        }
        if let Some(link) = state.link.as_ref().filter(|l| !l.is_dead()) {
            tracing::info!(pid = link.pid, reason = %restart.reason, "restarting the worker");
            lock(&link.restarted).get_or_insert(restart);
            link.kill();
        }
        state.want_start = true;
        state.start_waiters.push(slot.clone());
        drop(state);
        self.wake.wake();
        slot
    }

    /// The process if it is ready for calls.
    pub(super) fn ready_link(&self) -> Option<Arc<Link>> {
        lock(&self.state)
            .link
            .clone()
            .filter(|l| l.ready.load(Ordering::Acquire) && !l.is_dead())
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.ready_link().map(|l| l.pid)
    }

    pub(crate) fn stderr_tail(&self) -> String {
        let state = lock(&self.state);
        let sink = state
            .link
            .as_ref()
            .map(|l| l.stderr_sink())
            .or_else(|| state.last_stderr.clone());
        drop(state);
        sink.map(|s| lock(&s).text()).unwrap_or_default()
    }

    pub(crate) fn functions(&self) -> Vec<String> {
        lock(&self.state)
            .functions
            .as_deref()
            .map(<[String]>::to_vec)
            .unwrap_or_default()
    }

    /// A fresh ticket for a caller lending borrowed buffers (0 means none).
    pub(crate) fn ticket(&self) -> u64 {
        self.next_ticket.fetch_add(1, Ordering::Relaxed)
    }

    /// Makes every borrowed payload of `ticket` owned wherever it still waits to be written:
    /// the queue for the next process, the current process's input, a dying one's. After this
    /// the lender's memory is no longer referred to.
    pub(crate) fn unborrow(&self, ticket: u64) {
        let mut state = lock(&self.state);
        for (_, chunks) in state.waiting.iter_mut() {
            let mut chunks_queue: std::collections::VecDeque<Chunk> = std::mem::take(chunks).into();
            super::link::unborrow(&mut chunks_queue, &mut 0, ticket);
            *chunks = chunks_queue.into();
        }
        let links = state.link.iter().chain(state.dying.iter().map(|(l, _)| l));
        for link in links {
            link.unborrow(ticket);
        }
    }

    /// Refuses a function the worker does not serve (once a process has said which it does).
    pub(crate) fn check_function(&self, func: &str, what: &str) -> Result<()> {
        let functions = lock(&self.state).functions.clone();
        match functions {
            Some(known) if known.binary_search_by(|f| f.as_str().cmp(func)).is_err() => {
                Err(Error::UnknownFunction {
                    what: what.to_owned(),
                    available: known.to_vec(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Sends a call (or ping): written to the process now if one is ready, else queued for
    /// the next one. Never blocks on the process.
    pub(crate) fn submit(
        &self,
        encode: impl FnOnce(u64) -> Result<Vec<Chunk>>,
        call: Submit,
    ) -> Result<(u64, Arc<Slot>)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let chunks = encode(id)?;
        let deadline = call.timeout.map(|after| (Instant::now() + after, after));
        let size: usize = chunks.iter().map(Chunk::len).sum();
        let slot = Arc::new(
            Slot::new(call.what, call.on_message)
                .with_counter(self.held.clone())
                .with_deadline(deadline.map(|d| d.0))
                .with_span(self.cfg.log_level.map(|_| tracing::Span::current())),
        );
        let mut state = lock(&self.state);
        if state.stop.is_some() {
            return Err(Error::WorkerStopped {
                what: slot.what.clone(),
            });
        }
        let mut wake = false;
        let link = state
            .link
            .clone()
            .filter(|l| l.ready.load(Ordering::Acquire) && !l.is_dead());
        if !call.ping {
            // Memory held for calls: what waits to be written, plus answers not yet taken.
            let queued = match &link {
                Some(link) => link.queued_bytes(),
                None => state
                    .waiting
                    .iter()
                    .flat_map(|(_, c)| c.iter())
                    .map(Chunk::len)
                    .sum(),
            };
            let limit = self.cfg.max_in_flight;
            if queued + size + self.held.load(Ordering::Relaxed) > limit {
                return Err(Error::InFlightLimit {
                    what: slot.what.clone(),
                    len: size,
                    limit,
                });
            }
        }
        let entry = Entry {
            slot: Some(slot.clone()),
            gen: link.as_ref().map(|l| l.gen),
            ping: call.ping,
        };
        state.calls.insert(id, entry);
        match &link {
            Some(link) => wake |= link.send(chunks),
            None => {
                state.waiting.push_back((id, chunks));
                wake = true;
            }
        }
        if let Some((deadline, after)) = deadline {
            state.timers.push(Reverse((deadline, id, after)));
            wake |= state.next_tick.is_none_or(|t| deadline < t);
        }
        if !call.ping {
            self.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        drop(state);
        if wake {
            self.wake.wake();
        }
        Ok((id, slot))
    }

    /// Completes a call's (or ping's) slot; a call no longer counts as in flight by the time
    /// its waiter sees the outcome.
    fn settle(&self, slot: &Slot, ping: bool, outcome: Result<crate::protocol::Payload>) {
        self.settle_holding(slot, ping, outcome, 0);
    }

    /// [`settle`](Core::settle), the outcome holding `hold` bytes until it is taken.
    fn settle_holding(
        &self,
        slot: &Slot,
        ping: bool,
        outcome: Result<crate::protocol::Payload>,
        hold: usize,
    ) {
        slot.complete_then(outcome, || {
            slot.hold(hold);
            if !ping {
                self.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
        });
    }

    /// Gives up on a call: its slot gets `outcome` (unless it has one) and the process is
    /// told to cancel it (or it is dropped from the queue if it was never sent).
    pub(crate) fn abandon(&self, id: u64, outcome: impl FnOnce(&str) -> Error) {
        let mut state = lock(&self.state);
        self.abandon_locked(&mut state, id, outcome);
    }

    pub(super) fn abandon_locked(
        &self,
        state: &mut State,
        id: u64,
        outcome: impl FnOnce(&str) -> Error,
    ) {
        let Some(entry) = state.calls.get_mut(&id) else {
            return;
        };
        let Some(slot) = entry.slot.take() else {
            return;
        };
        self.settle(&slot, entry.ping, Err(outcome(&slot.what)));
        let live = state
            .link
            .as_ref()
            .filter(|l| Some(l.gen) == entry.gen && !l.is_dead());
        match (entry.gen, live) {
            (None, _) => {
                // Never sent: gone from the queue too.
                state.calls.remove(&id);
                state.waiting.retain(|(queued, _)| *queued != id);
            }
            (Some(_), Some(link)) if !entry.ping => {
                let frame = Outgoing::Cancel { id }.encode();
                if let Ok(chunks) = super::link::frames(frame, Vec::new(), self.cfg.max_frame, 0) {
                    if link.send(chunks) {
                        self.wake.wake();
                    }
                }
            }
            _ => {}
        }
    }

    /// Hands one message to the call it belongs to. `Err` when the process broke the
    /// protocol (an answer for a call it was never given, a script's message).
    pub(super) fn dispatch(&self, link: &Link, msg: Message) -> std::result::Result<(), Violation> {
        match msg.kind {
            Kind::Ready => self.ready(link, msg),
            Kind::Fatal => {
                let detail = msg.error.map(|e| e.traceback).unwrap_or_default();
                self.fail_start(|_| Error::WorkerStart {
                    modules: self.cfg.modules.clone(),
                    detail: detail.clone(),
                });
            }
            Kind::Result | Kind::Error | Kind::Pong | Kind::Finished => self.answer(link, msg)?,
            Kind::Message => {
                let id = msg.id.unwrap_or(0);
                let slot = {
                    let state = lock(&self.state);
                    match state.calls.get(&id) {
                        Some(entry) if entry.gen == Some(link.gen) && !entry.ping => {
                            entry.slot.clone()
                        }
                        _ => return Err(unknown(id, "message")),
                    }
                };
                // Outside the lock: the callback may call the worker.
                if let Some(on_message) = slot.as_ref().and_then(|s| s.on_message.as_ref()) {
                    let value = crate::buffer::from_payload(msg.into_payload())
                        .unwrap_or(serde_json::Value::Null);
                    (lock(on_message))(value);
                }
            }
            Kind::Reply => {
                return Err(Violation::Malformed(
                    "a worker sent a script's `reply`".into(),
                ))
            }
            Kind::Log => {
                let Some(record) = msg.log else {
                    return Ok(());
                };
                // A record of a call goes to that call's span; others (a thread outside any
                // call, or a call already answered) to the worker's.
                let span = msg.id.and_then(|id| {
                    let state = lock(&self.state);
                    let entry = state.calls.get(&id)?;
                    entry.slot.as_ref()?.span.clone()
                });
                crate::logs::emit(span.as_ref().unwrap_or(&self.span), &record);
            }
        }
        Ok(())
    }

    /// The process is ready: its functions are known, start waiters are told, and the calls
    /// that waited for a process are sent to it.
    fn ready(&self, link: &Link, msg: Message) {
        if msg.pid != Some(link.pid) {
            // A launcher that starts Python as its own child, not by exec: worth a note.
            tracing::debug!(pid = link.pid, reported = ?msg.pid, "the worker reports another pid");
        }
        let mut state = lock(&self.state);
        let mut functions = msg.functions;
        functions.sort();
        state.functions = Some(functions.into());
        link.ready.store(true, Ordering::Release);
        state.start_deadline = None;
        for waiter in state.start_waiters.drain(..) {
            waiter.complete(Ok(Default::default()));
        }
        // Calls that waited for a process go to this one, in order.
        let mut wake = false;
        while let Some((id, chunks)) = state.waiting.pop_front() {
            if let Some(entry) = state.calls.get_mut(&id) {
                entry.gen = Some(link.gen);
                wake |= link.send(chunks);
            }
        }
        drop(state);
        tracing::debug!(pid = link.pid, modules = ?self.cfg.modules, "worker ready");
        self.push_event(WorkerEvent::Started { pid: link.pid });
        self.wake.wake();
        let _ = wake;
    }

    /// An answer (a result, an error, a pong, a cancelled call's end) settles its call.
    fn answer(&self, link: &Link, msg: Message) -> std::result::Result<(), Violation> {
        let id = msg.id.unwrap_or(0);
        let entry = self.answered(link, id, msg.kind)?;
        self.crashes.store(0, Ordering::Relaxed);
        let Some(slot) = entry.slot else {
            return Ok(());
        };
        let outcome = match msg.kind {
            // Only a cancelled call is answered so, and its slot is gone by then.
            Kind::Finished => Err(Error::Cancelled {
                what: slot.what.clone(),
            }),
            Kind::Error => Err(Error::Python {
                what: slot.what.clone(),
                // The table makes `error` required: the decoder checked it.
                error: msg
                    .error
                    .unwrap_or_else(|| unreachable!("checked on decoding")),
            }),
            _ => Ok(msg.into_payload()),
        };
        // An answer past the in-flight cap fails its call instead of being kept.
        let size = outcome.as_ref().map_or(0, crate::protocol::Payload::size);
        let limit = self.cfg.max_in_flight;
        let outcome = if !entry.ping && self.held.load(Ordering::Relaxed) + size > limit {
            Err(Error::InFlightLimit {
                what: slot.what.clone(),
                len: size,
                limit,
            })
        } else {
            outcome
        };
        let hold = if outcome.is_ok() && !entry.ping {
            size
        } else {
            0
        };
        self.settle_holding(&slot, entry.ping, outcome, hold);
        Ok(())
    }

    /// Removes the entry the process answered; a protocol violation when the process was
    /// never given that id (or it was a ping answered as a call, or the reverse).
    fn answered(&self, link: &Link, id: u64, kind: Kind) -> std::result::Result<Entry, Violation> {
        let mut state = lock(&self.state);
        match state.calls.get(&id) {
            Some(entry) if entry.gen == Some(link.gen) && entry.ping == (kind == Kind::Pong) => {
                Ok(state
                    .calls
                    .remove(&id)
                    .unwrap_or_else(|| unreachable!("just found")))
            }
            _ => Err(unknown(id, kind.name())),
        }
    }

    /// Fails whoever waits for the process being started, and the calls queued for it.
    pub(super) fn fail_start(&self, error: impl Fn(&str) -> Error) {
        let mut state = lock(&self.state);
        state.start_deadline = None;
        for waiter in state.start_waiters.drain(..) {
            waiter.complete(Err(error(&waiter.what)));
        }
        let waiting: Vec<u64> = state.waiting.drain(..).map(|(id, _)| id).collect();
        for id in waiting {
            if let Some(entry) = state.calls.remove(&id) {
                if let Some(slot) = entry.slot {
                    self.settle(&slot, entry.ping, Err(error(&slot.what)));
                }
            }
        }
    }

    /// Fails every call given to process `gen` (it died).
    pub(super) fn fail_gen(&self, gen: u64, error: impl Fn(&str) -> Error) {
        let mut state = lock(&self.state);
        let ids: Vec<u64> = state
            .calls
            .iter()
            .filter(|(_, e)| e.gen == Some(gen))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(entry) = state.calls.remove(&id) {
                if let Some(slot) = entry.slot {
                    self.settle(&slot, entry.ping, Err(error(&slot.what)));
                }
            }
        }
    }

    /// Reads and delivers whatever the process has written, without waiting; `false` when
    /// another thread holds the read token.
    pub(super) fn read_available(&self, link: &Link) -> bool {
        let Ok(mut side) = link.read.try_lock() else {
            return false;
        };
        loop {
            match self.pump(link, &mut side) {
                Pump::Progress => {}
                Pump::Empty | Pump::Ended => return true,
            }
        }
    }

    /// One step of reading: deliver what is decoded, else one `read(2)`.
    fn pump(&self, link: &Link, side: &mut ReadSide) -> Pump {
        if link.is_dead() {
            return Pump::Ended;
        }
        match side.reader.next() {
            Ok(Some(msg)) => {
                if let Err(violation) = self.dispatch(link, msg) {
                    return self.ended(link, Some(violation));
                }
                return Pump::Progress;
            }
            Ok(None) => {}
            Err(violation) => return self.ended(link, Some(violation)),
        }
        match side.reader.read_from(&side.stdout) {
            Ok(0) => {
                let violation = side.reader.at_end();
                self.ended(link, violation)
            }
            Ok(_) => Pump::Progress,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Out of input: a message may have stopped halfway (the supervisor times it).
                *lock(&link.partial) = side.reader.started();
                Pump::Empty
            }
            Err(e) => {
                tracing::debug!(pid = link.pid, "reading the worker's output failed: {e}");
                self.ended(link, None)
            }
        }
    }

    fn ended(&self, link: &Link, violation: Option<Violation>) -> Pump {
        link.mark_dead(violation);
        self.wake.wake();
        Pump::Ended
    }

    /// Waits for `slot` until `limit`; whether it has its outcome. When no other thread
    /// reads the process's output, this thread reads it itself.
    pub(crate) fn wait(&self, slot: &Slot, limit: Option<Instant>) -> bool {
        loop {
            if slot.is_done() {
                return true;
            }
            if limit.is_some_and(|l| Instant::now() >= l) {
                return false;
            }
            if let Some(link) = self.ready_link() {
                if let Ok(mut side) = link.read.try_lock() {
                    link.leading.store(true, Ordering::Release);
                    self.lead(&link, &mut side, slot, limit);
                    link.leading.store(false, Ordering::Release);
                    drop(side);
                    // Others may be waiting for answers nobody reads now.
                    if self.in_flight() > 0 {
                        self.wake.wake();
                    }
                    continue;
                }
            }
            // Another thread reads: its answer may come any moment.
            let spin_until = Instant::now() + SPIN;
            while !slot.is_done() && Instant::now() < spin_until {
                std::thread::yield_now();
            }
            if !slot.is_done() {
                return slot.wait_until(limit);
            }
        }
    }

    /// Reads for `slot` until it has its outcome, `limit` passes or the output ends.
    fn lead(&self, link: &Link, side: &mut ReadSide, slot: &Slot, limit: Option<Instant>) {
        // Past its deadline the worker's thread fails the call: stop reading for it then.
        let limit = match (limit, slot.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut spin_until = Instant::now() + SPIN;
        loop {
            if slot.is_done() {
                // Answers for others may already sit decoded in the buffer, where nobody
                // polling the pipe would see them: deliver those before giving up the token.
                while !link.is_dead() {
                    match side.reader.next() {
                        Ok(Some(msg)) => {
                            if let Err(violation) = self.dispatch(link, msg) {
                                self.ended(link, Some(violation));
                            }
                        }
                        Ok(None) => break,
                        Err(violation) => {
                            self.ended(link, Some(violation));
                        }
                    }
                }
                return;
            }
            match self.pump(link, side) {
                Pump::Progress => spin_until = Instant::now() + SPIN,
                Pump::Ended => return,
                Pump::Empty => {
                    let now = Instant::now();
                    if now < spin_until {
                        std::thread::yield_now();
                        continue;
                    }
                    // A message that stopped halfway: this thread holds the reader, so it can
                    // say exactly where.
                    let stall = side.reader.started().map(|s| s + self.cfg.frame_timeout);
                    if stall.is_some_and(|s| now >= s) {
                        self.ended(link, Some(side.reader.stalled(self.cfg.frame_timeout)));
                        return;
                    }
                    let timeout = match (limit, stall) {
                        (Some(l), _) if now >= l => return,
                        (Some(l), Some(s)) => Some(l.min(s) - now),
                        (Some(l), None) => Some(l - now),
                        (None, Some(s)) => Some(s - now),
                        (None, None) => None,
                    };
                    let mut fds = [sys::pollfd(link.stdout_fd, libc::POLLIN)];
                    if sys::poll(&mut fds, timeout).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

enum Pump {
    /// A message was delivered or bytes were read.
    Progress,
    /// Nothing to read now.
    Empty,
    /// The output ended (or broke the protocol).
    Ended,
}

fn unknown(id: u64, kind: &str) -> Violation {
    Violation::Malformed(format!(
        "a `{kind}` for call {id}, which this process was not given (or already answered)"
    ))
}
