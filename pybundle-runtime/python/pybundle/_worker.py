"""Runner of long-lived workers: ``python -I -c <bootstrap> LIB MAX_FRAME THREADS SCRIPTS MODULE...``.

Imports each MODULE once (from SCRIPTS), says ``ready``, then serves ``call`` messages on a
pool of THREADS threads while the main thread keeps reading, so ``cancel`` and ``ping`` are
answered even when every thread is busy. Ends at ``shutdown`` or at the end of its input.
"""

from __future__ import annotations

import importlib
import os
import queue
import sys
import threading

import pybundle

from ._channel import Channel, ProtocolError, decode_buffers, error_info

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List

_OWN_DIR = os.path.dirname(os.path.abspath(__file__))


class _Call:
    """One call in flight; ``cancelled`` is set by the reader thread."""

    __slots__ = ("id", "func", "args", "buffers", "cancelled")

    def __init__(self, msg: dict, buffers: List[bytes]) -> None:
        self.id = msg["id"]
        self.func = msg["func"]
        self.args = msg.get("args")
        self.buffers = buffers
        self.cancelled = False


_functions: Dict[str, Callable[..., Any]] = {}


def _resolve(name: str) -> Callable[..., Any]:
    func = _functions.get(name)
    if func is None:
        module_name, _, attr = name.rpartition(".")
        if not module_name:
            raise ValueError("pybundle: call %r as module.function" % name)
        module = sys.modules.get(module_name) or importlib.import_module(module_name)
        func = getattr(module, attr)
        _functions[name] = func
    return func


def _serve(channel: Channel, calls: queue.SimpleQueue, running: Dict[int, _Call]) -> None:
    local = pybundle._local
    while True:
        call = calls.get()
        if call is None:
            return
        local.call = call.id
        local.cancel = call
        try:
            func = _resolve(call.func)
            args = decode_buffers(call.args, call.buffers) if call.buffers else call.args
            if isinstance(args, list):
                result = func(*args)
            elif isinstance(args, dict):
                result = func(**args)
            elif args is None:
                result = func()
            else:
                result = func(args)
            if not call.cancelled:
                channel.send({"type": "result", "id": call.id}, result, True)
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
            if not call.cancelled:
                try:
                    channel.send({"type": "error", "id": call.id, "error": error_info(exc, _OWN_DIR)})
                except OSError:
                    return
        finally:
            running.pop(call.id, None)
            local.call = None
            local.cancel = None


def main() -> None:
    max_frame = int(sys.argv[2])
    threads = max(1, int(sys.argv[3]))
    scripts = sys.argv[4]
    modules = sys.argv[5:]
    channel = Channel.from_stdio(max_frame)
    pybundle._install(channel, None)
    sys.path.insert(0, scripts)
    sys.argv = [""]
    try:
        for name in modules:
            importlib.import_module(name)
    except BaseException as exc:  # noqa: BLE001 - reported to Rust as a failed start
        info = error_info(exc, _OWN_DIR)
        sys.stderr.write(info["traceback"])
        channel.send({"type": "fatal", "error": info})
        sys.exit(1)

    calls: queue.SimpleQueue = queue.SimpleQueue()
    running: Dict[int, _Call] = {}
    for i in range(threads):
        threading.Thread(
            target=_serve, args=(channel, calls, running), name="pybundle-%d" % i, daemon=True
        ).start()
    channel.send({"type": "ready", "pid": os.getpid()})

    while True:
        try:
            message = channel.read_message()
        except (ProtocolError, ValueError) as exc:
            sys.stderr.write("pybundle worker: %s\n" % exc)
            sys.exit(2)
        if message is None:
            break
        msg, buffers = message
        kind = msg.get("type")
        if kind == "call":
            call = _Call(msg, buffers)
            running[call.id] = call
            calls.put(call)
        elif kind == "cancel":
            call = running.get(msg["id"])
            if call is not None:
                call.cancelled = True
        elif kind == "ping":
            channel.send({"type": "pong", "id": msg["id"]})
        elif kind == "shutdown":
            break
    sys.stdout.flush()
    sys.stderr.flush()
