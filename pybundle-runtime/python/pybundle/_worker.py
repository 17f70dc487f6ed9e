"""Runner of long-lived workers (argv: ``_protocol.WORKER_ARGV``).

Reads the start message, imports each module once (from the scripts directory), says
``ready``, then serves ``call`` messages on a pool of threads (see ``_Server``); ``cancel`` and
``ping`` are answered even when every thread is busy. Ends at ``shutdown`` or at the end of its
input.
"""

from __future__ import annotations

import collections
import faulthandler
import importlib
import os
import signal
import sys
import threading
import time
import types

import pybundle

from . import _call, _protocol
from ._call import Call
from ._channel import Channel, ProtocolError, decode_buffers, error_info

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Set

_OWN_DIR = os.path.dirname(os.path.abspath(__file__))
# Calls that took less than this (seconds) last time run without a thread hand-off.
_QUICK = 0.0005
# At most this many answers are held before they are written (see `Channel.hold`).
_HOLD_MAX = 256


# The functions served, by `module.function` (filled by `_exports` before `ready`).
_functions: Dict[str, Callable[..., Any]] = {}


def _exports(modules: List[str]) -> Dict[str, Callable[..., Any]]:
    """What each module serves: the functions marked with ``@pybundle.export`` if it marks
    any, else the callables its ``__all__`` names, else its public functions (those defined in
    it whose names do not start with an underscore)."""
    table: Dict[str, Callable[..., Any]] = {}
    for name in modules:
        module = sys.modules[name]
        members = vars(module)
        marked = [(k, v) for k, v in members.items() if getattr(v, "__pybundle_export__", False)]
        if marked:
            chosen = marked
        elif isinstance(members.get("__all__"), (list, tuple)):
            chosen = [(k, members[k]) for k in members["__all__"] if callable(members.get(k))]
        else:
            chosen = [
                (k, v)
                for k, v in members.items()
                if not k.startswith("_")
                and isinstance(v, types.FunctionType)
                and v.__module__ == name
            ]
        for attr, func in chosen:
            table["%s.%s" % (name, attr)] = func
    return table


def _init_target(name: str, modules: List[str]) -> Callable[..., Any]:
    """The init function: any attribute of one of the worker's modules."""
    module, _, attr = name.rpartition(".")
    if module not in modules:
        raise LookupError(
            "pybundle: the init function %r is not in the worker's modules %r" % (name, modules)
        )
    return getattr(sys.modules[module], attr)


def _resolve(name: str) -> Callable[..., Any]:
    func = _functions.get(name)
    if func is None:
        raise LookupError(
            "pybundle: this worker has no function %r; it serves: %s"
            % (name, ", ".join(sorted(_functions)) or "nothing")
        )
    return func


class _Server:
    """Serves calls on ``threads + 1`` threads that take turns reading ("leader/followers").

    The thread that reads a call runs it itself, and another thread takes over reading as
    soon as the read token is released: no hand-off to a queue on the way to the call (it
    cost about half of a warm round trip). At most ``threads`` calls run at once; a call read
    while all run waits in ``pending`` and is taken by the next thread to finish, so one
    thread always reads and ``cancel``/``ping`` are answered even when every thread is busy.

    Handing the read token over still wakes a thread, which costs about as much as the rest of
    a warm round trip. So a function whose last call took under ``_QUICK`` seconds runs on the
    reading thread itself, keeping the token; messages that arrive meanwhile (a ``ping``, a
    ``cancel``) wait for it. A call that turns out slow moves its function back to the hand-off
    path, so that wait is one unexpectedly slow call at most.

    Answers are written in batches (``Channel.hold``): the reading thread holds the answers of
    its quick calls while input it has received is still unread, and a thread working through
    ``pending`` holds them while the next pending call is a quick one; both write what they
    hold before anything else may wait (a read from the pipe, a call not known to be quick,
    handing the token over, returning), and at ``_HOLD_MAX`` answers. So an answer waits for
    calls known to be quick only, or for one that turns out slow, once, like a ``ping``.
    """

    def __init__(self, channel: Channel, threads: int) -> None:
        self.channel = channel
        self.limit = threads
        self.read_token = threading.Lock()
        self.state = threading.Lock()
        self.executing = 0
        self.pending: collections.deque = collections.deque()
        self.running: Dict[int, Call] = {}
        self.done = threading.Event()
        # Functions whose last call took under _QUICK seconds.
        self.quick: Set[str] = set()

    def serve(self) -> None:
        while not self.done.is_set():
            call = self._next_call()
            if call is not None:
                self._run(call)

    def _next_call(self) -> Optional[Call]:
        """Reads until a call this thread may run arrives; None once the worker is done."""
        channel, running, quick, state = self.channel, self.running, self.quick, self.state
        read, done, call_type = channel.read_message, self.done, _protocol.CALL
        held, write_held, unread = channel.held, channel.write_held, channel.unread
        clock, limit = time.perf_counter, self.limit
        with self.read_token:
            while not done.is_set():
                try:
                    message = read()
                except (ProtocolError, ValueError) as exc:
                    sys.stderr.write("pybundle worker: %s\n" % exc)
                    message = None
                if message is None:
                    done.set()
                    break
                msg, buffers = message
                kind = msg.get("type")
                if kind == call_type:
                    call = Call(msg, buffers, channel)
                    # Read without the lock: only this thread raises `executing`, so what it
                    # reads is the count or above it (a call ending meanwhile), and the quick
                    # path changes nothing the lock guards.
                    if call.func not in quick or self.executing >= limit:
                        with state:
                            if self.executing >= limit:
                                running[call.id] = call
                                self.pending.append(call)
                                continue
                            if call.func not in quick:
                                running[call.id] = call
                                self.executing += 1
                                write_held(held)
                                return call
                    # Quick last time: run it on this thread, keeping the read token (the
                    # common case of `_run`, inlined: this is the hot path of a warm call).
                    # Nothing is read while it runs, so no `cancel` can reach it: it is not
                    # listed in `running`. It does not count in `executing` either: no other
                    # call starts meanwhile (only this thread starts calls, and `pending` is
                    # empty while fewer than `limit` run), so at most `limit` still run.
                    # Its answer is held while more input waits to be read (`Channel.hold`).
                    start = clock()
                    _serve_one(channel, call, held)
                    if clock() - start >= _QUICK:
                        quick.discard(call.func)
                    if call._buffers:
                        channel.recycle(call._buffers)
                    if not unread() or len(held) >= _HOLD_MAX:
                        write_held(held)
                elif kind == _protocol.CANCEL:
                    call = running.get(msg["id"])
                    if call is not None:
                        call._cancelled = True
                elif kind == _protocol.PING:
                    channel.answer(_protocol.pong(msg["id"]))
                elif kind == _protocol.SHUTDOWN:
                    done.set()
            write_held(held)
        return None

    def _run(self, call: Call) -> None:
        """Runs ``call``, then the pending calls while there are any. Answers wait in a list
        of this thread's while the next pending call is one of a quick function (and at most
        ``_HOLD_MAX`` of them), and go out together before anything else runs or the thread
        returns."""
        channel, quick, held = self.channel, self.quick, []
        while call is not None:
            start = time.perf_counter()
            _serve_one(channel, call, held)
            if time.perf_counter() - start < _QUICK:
                quick.add(call.func)
            else:
                quick.discard(call.func)
            if call._buffers:
                channel.recycle(call._buffers)
            self.running.pop(call.id, None)
            with self.state:
                # Invariant: `pending` is non-empty only while `limit` calls run.
                call = self.pending.popleft() if self.pending else None
                if call is None:
                    self.executing -= 1
            # Still counted in `executing` when there is one: it runs on this thread.
            if call is None or call.func not in quick or len(held) >= _HOLD_MAX:
                channel.write_held(held)


def _serve_one(channel: Channel, call: Call, held: List[bytes]) -> None:
    """Runs one call and puts its answer in ``held`` (see ``Channel.hold``; the runner's own
    message: no check needed). A report of an exception is written at once."""
    if call._cancelled:
        # Cancelled while it waited for a thread: it never runs.
        call._finish()
        channel.hold(held, _protocol.finished(call.id))
        return
    token = _call.current.set(call)
    try:
        func = _functions.get(call.func) or _resolve(call.func)
        args, kwargs = call.args, call.kwargs
        if call._buffers:
            args = decode_buffers(args, call._buffers)
            kwargs = decode_buffers(kwargs, call._buffers)
        result = func(*args, **kwargs) if kwargs else func(*args)
        # `call._finish()`, inlined (the hot path): marked, then any send in progress waited for.
        call._finished = True
        if call._lock is not None:
            call._finish()
        if call._cancelled:
            channel.hold(held, _protocol.finished(call.id))
        else:
            channel.hold_result(held, call.id, result)
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
        call._finish()
        try:
            if call._cancelled:
                channel.answer(_protocol.finished(call.id))
            else:
                channel.answer_error(_protocol.error(error_info(exc, _OWN_DIR), id=call.id))
        except (OSError, ValueError):
            pass
    finally:
        _call.current.reset(token)


def _ignore(signum: int, frame: Any) -> None:
    pass


def main() -> None:
    argv = _protocol.parse_argv(_protocol.WORKER_ARGV, sys.argv[1:])
    threads = max(1, int(argv["threads"]))
    channel = Channel.from_stdio(int(argv["max_frame"]))
    # A crash in C code (a segfault) then leaves the Python stack of every thread on stderr,
    # which the runtime's error message ends with.
    faulthandler.enable()
    # Ctrl-C in a terminal reaches the whole process group, this worker included: the Rust
    # side decides when it stops (a graceful shutdown lets calls finish). A handler, not
    # SIG_IGN, so that programs the functions start get the default back at exec.
    signal.signal(signal.SIGINT, _ignore)
    pybundle._install(channel, None, worker=True)
    channel.check = _call.check
    start = channel.read_message()
    if start is None or start[0].get("type") != _protocol.START:
        sys.stderr.write("pybundle: no start message on stdin; run this through the runtime\n")
        sys.exit(2)
    msg, buffers = start
    if msg.get("log_level") is not None:
        from . import _logs

        _logs.install(channel, msg["log_level"])
    sys.path.insert(0, argv["scripts"])
    sys.argv = [""]
    try:
        for name in argv["modules"]:
            importlib.import_module(name)
        init = msg.get("init")
        if init is not None:
            func = _init_target(init["func"], argv["modules"])
            args = decode_buffers(init.get("args") or [], buffers)
            kwargs = decode_buffers(init.get("kwargs") or {}, buffers)
            func(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - reported to Rust as a failed start
        info = error_info(exc, _OWN_DIR)
        sys.stderr.write(info["traceback"])
        channel.send_error(_protocol.fatal(info))
        sys.exit(1)

    _functions.update(_exports(argv["modules"]))
    server = _Server(channel, threads)
    # Between calls the reading thread polls the pipe a moment before it sleeps.
    channel.poll_when_idle(lambda: server.executing == 0)
    for i in range(threads + 1):
        threading.Thread(target=server.serve, name="pybundle-%d" % i, daemon=True).start()
    channel.send(_protocol.ready(os.getpid(), sorted(_functions)))
    server.done.wait()
    sys.stdout.flush()
    sys.stderr.flush()
