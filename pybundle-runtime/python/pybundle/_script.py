"""Runner of one-shot scripts (argv: ``_protocol.SCRIPT_ARGV``).

Reads the start message (the input), then runs SCRIPT as ``__main__`` with
``sys.argv = [SCRIPT, *ARGS]``. An uncaught exception is reported as an error frame (and its
traceback printed to stderr, as Python would); ``sys.exit`` keeps its meaning.
"""

from __future__ import annotations

import faulthandler
import os
import sys

import pybundle

from . import _protocol
from ._channel import Channel, decode_buffers, error_info

_OWN_DIR = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    argv = _protocol.parse_argv(_protocol.SCRIPT_ARGV, sys.argv[1:])
    script = argv["script"]
    channel = Channel.from_stdio(int(argv["max_frame"]))
    # A crash in C code (a segfault) then leaves the Python stack of every thread on stderr,
    # which the runtime's error message ends with.
    faulthandler.enable()
    start = channel.read_message()
    if start is None or start[0].get("type") != _protocol.START:
        sys.stderr.write("pybundle: no start message on stdin; run this through the runtime\n")
        sys.exit(2)
    msg, buffers = start
    pybundle._install(channel, decode_buffers(msg.get("input"), buffers))
    if msg.get("log_level") is not None:
        from . import _logs

        _logs.install(channel, msg["log_level"])

    # Like `python SCRIPT`: its directory first on sys.path, its path as argv[0].
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    sys.argv = [script] + argv["script_args"]
    main_module = sys.modules["__main__"]
    namespace = main_module.__dict__
    namespace.update(__file__=script, __cached__=None, __spec__=None, __package__=None)
    try:
        with open(script, "rb") as f:
            source = f.read()
        code = compile(source, script, "exec", dont_inherit=True)
        exec(code, namespace)
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - every failure is reported to Rust
        info = error_info(exc, _OWN_DIR)
        sys.stderr.write(info["traceback"])
        try:
            channel.send_error(_protocol.error(info))
        except (OSError, ValueError):
            pass
        sys.exit(1)
