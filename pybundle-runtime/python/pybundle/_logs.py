"""Forwarding Python ``logging`` records to the Rust side as ``log`` messages (only when the
start message asks for it; ``logging`` is imported only then)."""

from __future__ import annotations

import logging

from . import _call, _protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._channel import Channel


class Forward(logging.Handler):
    """Sends each record, formatted (with its traceback, if any), tagged with the worker call
    being served by the thread or task that logged it."""

    def __init__(self, channel: Channel, level: int) -> None:
        super().__init__(level)
        self.channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            call = _call.current.get()
            if call is not None and call._finished:
                call = None
            head = _protocol.log(
                record.levelno, record.name, message, id=None if call is None else call.id
            )
            previous = getattr(_call.sending, "call", None)
            _call.sending.call = call
            try:
                self.channel.send(head)
            finally:
                _call.sending.call = previous
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - a log record must never break the code logging it
            self.handleError(record)


def install(channel: Channel, level: int) -> None:
    """Adds the handler to the root logger, lowering the root's level to ``level`` if needed."""
    root = logging.getLogger()
    root.addHandler(Forward(channel, level))
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
