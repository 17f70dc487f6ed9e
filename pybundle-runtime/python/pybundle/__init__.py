"""Python half of the cargo-pybundle protocol.

In a one-shot script::

    import pybundle

    data = pybundle.input()          # the JSON value the Rust side passed, or None
    pybundle.send({"progress": 0.5}) # delivered to the Rust callback while the script runs
    pybundle.reply({"result": 42})   # the value `run()` returns

In a function served by a worker, ``pybundle.send`` reports progress of the current call and
``pybundle.cancelled()`` tells whether the Rust side cancelled it.

Run by hand (``python script.py``, no runtime around), ``input()`` returns None, ``send()``
does nothing and ``reply()`` prints the value as JSON on stdout.
"""

from __future__ import annotations

import _thread

from . import _protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, TypeVar

    from ._channel import Channel

    F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["input", "reply", "send", "cancelled", "export"]

_active: Optional[Channel] = None
_input: Any = None
_replied = False
# Per-thread state of worker calls: the id of the call being served and its cancel event.
_local = _thread._local()


def input() -> Any:  # noqa: A001 - the protocol's name for it
    """The JSON input the Rust side gave this script (None if it gave none)."""
    return _input


def reply(value: Any) -> None:
    """Sends the script's result. Call it once; the value must be JSON-encodable.

    Raises ``TypeError``/``ValueError`` here, in the caller's code, for values JSON cannot
    carry (a set, an arbitrary object, NaN).
    """
    global _replied
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
    """Sends a progress message; the Rust side receives it while the code still runs."""
    if _active is None:
        return
    _active.send(_protocol.message(id=getattr(_local, "call", None)), value, True)


def cancelled() -> bool:
    """Whether the Rust side cancelled the worker call this thread is serving."""
    call = getattr(_local, "cancel", None)
    return call is not None and call.cancelled


def export(func: F) -> F:
    """Marks a function as served by a worker. In a module that marks any function, only the
    marked ones can be called; a module that marks none serves the names in its ``__all__``,
    or else all its public functions."""
    func.__pybundle_export__ = True  # type: ignore[attr-defined]
    return func


def _install(channel: Channel, value: Any) -> None:
    """Connects the API to the runtime (called by the runners before user code runs)."""
    global _active, _input
    _active = channel
    _input = value
