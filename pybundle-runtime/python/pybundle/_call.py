"""A worker call being served, as ``pybundle.current_call()`` hands it out."""

from __future__ import annotations

import _thread
import contextvars

from . import _protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List, Optional

    from ._channel import Channel


class Call:
    """One call to a worker function. Its ``send`` and ``cancelled`` work from any thread
    (or task) while the call runs: pass it to the threads the function starts. Once the
    function has returned, ``send`` raises."""

    __slots__ = ("id", "func", "args", "kwargs", "_buffers", "_cancelled", "_finished", "_lock", "_channel")

    def __init__(self, msg: dict, buffers: List[bytes], channel: Channel) -> None:
        self.id: int = msg["id"]
        self.func: str = msg["func"]
        self.args: Any = msg["args"]
        self.kwargs: Any = msg.get("kwargs")
        # The binary frames that came with the call (given back to the channel once it has
        # returned: `Channel.recycle`).
        self._buffers = buffers
        self._cancelled = False
        self._finished = False
        # Made by the first `send`; then held while a message is written and while the call
        # is marked finished, so no message of a call ever follows its answer. (Most calls
        # send nothing: they never pay for one.)
        self._lock: Any = None
        self._channel = channel

    def cancelled(self) -> bool:
        """Whether the Rust side gave up on this call (its result will be discarded)."""
        return self._cancelled

    def send(self, value: Any) -> None:
        """Sends a progress message for this call; raises once the call has finished."""
        lock = self._lock
        if lock is None:
            with _making:
                lock = self._lock
                if lock is None:
                    lock = self._lock = _thread.allocate_lock()
        with lock:
            if self._finished:
                raise RuntimeError(
                    "pybundle: call %d (%s) has finished; its progress messages can no longer "
                    "be sent" % (self.id, self.func)
                )
            sending.call = self
            try:
                self._channel.send(_protocol.message(id=self.id), value, True)
            finally:
                sending.call = None

    def _finish(self) -> None:
        # Marked first, then any send in progress is waited for: a send that made its lock
        # before this looked sees the mark or finishes writing before the answer goes out.
        self._finished = True
        lock = self._lock
        if lock is not None:
            with lock:
                pass

    def __repr__(self) -> str:
        return "<pybundle.Call %d %s%s>" % (
            self.id,
            self.func,
            " cancelled" if self._cancelled else "",
        )


# Guards the making of a call's lock (two threads sending at once make one).
_making = _thread.allocate_lock()

# The call whose message this thread is sending (see `check`).
sending = _thread._local()


def check(head: dict) -> None:
    """Refuses a message about a call unless it is sent on behalf of that very call (by the
    runner for its answer, or by ``Call.send``): no function answers another's call."""
    call_id = head.get("id")
    if call_id is None or head.get("type") == _protocol.PONG:
        return
    call = getattr(sending, "call", None)
    if call is None or call.id != call_id:
        raise RuntimeError(
            "pybundle: a `%s` message for call %d can only be sent by that call"
            % (head.get("type"), call_id)
        )


# The call the current thread (or task) serves.
current: contextvars.ContextVar[Optional[Call]] = contextvars.ContextVar(
    "pybundle_call", default=None
)
