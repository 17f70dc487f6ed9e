"""Python half of the cargo-pybundle protocol.

In a one-shot script::

    import pybundle

    data = pybundle.input()          # the JSON value the Rust side passed, or None
    pybundle.send({"progress": 0.5}) # delivered to the Rust callback while the script runs
    pybundle.reply({"result": 42})   # the value `run()` returns

In a function served by a worker, ``pybundle.send`` reports progress of the current call and
``pybundle.cancelled()`` tells whether the Rust side cancelled it; both follow the call into
asyncio tasks it starts. A thread the function starts has no call of its own: hand it
``pybundle.current_call()`` and use that object's ``send``/``cancelled`` there. ``reply`` is
for scripts only (a worker function returns its result).

Run by hand (``python script.py``, no runtime around), ``input()`` returns None, ``send()``
does nothing and ``reply()`` prints the value as JSON on stdout.
"""

from __future__ import annotations

from . import _protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from contextvars import ContextVar
    from typing import Any, Callable, Optional, TypeVar

    from ._call import Call
    from ._channel import Channel

    F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["input", "reply", "send", "cancelled", "current_call", "export", "Call"]

_active: Optional[Channel] = None
_input: Any = None
_replied = False
# Serving worker calls (not running a script). (Not named `_worker`: that is the runner module,
# which its import sets as an attribute of this package.)
_in_worker = False
# The call this thread or task serves (`_call.current`), set by `_install` in a worker. A script
# has no calls: leaving `_call` (and with it `contextvars`) unimported keeps its start short.
_current: Optional[ContextVar[Optional[Call]]] = None


def __getattr__(name: str) -> Any:
    """``pybundle.Call``, imported when first asked for (see ``_current``)."""
    if name == "Call":
        from ._call import Call

        return Call
    raise AttributeError("module 'pybundle' has no attribute %r" % name)


def input() -> Any:  # noqa: A001 - the protocol's name for it
    """The JSON input the Rust side gave this script (None if it gave none)."""
    return _input


def reply(value: Any) -> None:
    """Sends the script's result. Call it once; the value must be JSON-encodable.

    Raises ``TypeError``/``ValueError`` here, in the caller's code, for values JSON cannot
    carry (a set, an arbitrary object, NaN).
    """
    global _replied
    if _in_worker:
        raise RuntimeError(
            "pybundle.reply() is for one-shot scripts; a worker function returns its result "
            "(return the value instead)"
        )
    if _replied:
        raise RuntimeError("pybundle.reply() was already called; a script replies once")
    if _active is None:
        import json
        import sys

        sys.stdout.write(json.dumps(value, ensure_ascii=False, allow_nan=False) + "\n")
        sys.stdout.flush()
        _replied = True
        return
    _active.send(_protocol.reply(), value, True)
    _replied = True


def send(value: Any) -> None:
    """Sends a progress message; the Rust side receives it while the code still runs.

    In a worker it belongs to the call being served; from a thread that serves no call it
    raises ``RuntimeError`` (use ``current_call().send`` there)."""
    if _active is None:
        return
    call = _current.get() if _current is not None else None
    if call is not None:
        call.send(value)
    elif _in_worker:
        raise RuntimeError(
            "pybundle.send() was called from a thread that serves no worker call; take "
            "call = pybundle.current_call() in the function and use call.send() in the thread"
        )
    else:
        _active.send(_protocol.message(), value, True)


def cancelled() -> bool:
    """Whether the Rust side cancelled the worker call being served (False outside a call)."""
    call = _current.get() if _current is not None else None
    return call is not None and call.cancelled()


def current_call() -> Optional[Call]:
    """The worker call being served by this thread or task, or None (in a script, or in a
    thread the function started)."""
    return _current.get() if _current is not None else None


def export(func: F) -> F:
    """Marks a function as served by a worker. In a module that marks any function, only the
    marked ones can be called; a module that marks none serves the names in its ``__all__``,
    or else all its public functions."""
    func.__pybundle_export__ = True  # type: ignore[attr-defined]
    return func


def _install(channel: Channel, value: Any, worker: bool = False) -> None:
    """Connects the API to the runtime (called by the runners before user code runs)."""
    global _active, _input, _in_worker, _current
    _active = channel
    _input = value
    _in_worker = worker
    if worker:
        from . import _call

        _current = _call.current
