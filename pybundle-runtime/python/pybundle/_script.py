"""Runner of one-shot scripts (argv: ``_protocol.SCRIPT_ARGV``).

Reads the start message (the input), then runs SCRIPT as ``__main__`` with
``sys.argv = [SCRIPT, *ARGS]``. An uncaught exception is reported as an error frame (and its
traceback printed to stderr, as Python would); ``sys.exit`` keeps its meaning.

The script's bytecode is kept in its ``__pycache__`` folder as a checked-hash ``.pyc`` (PEP 552,
the format ``import`` reads too): a later run whose source hashes the same loads it instead of
compiling. Compiling a small script is cheap; calling ``compile()`` is not: its first call in
a process sets up the ``ast`` module's types (about 9 million instructions on CPython 3.11, by
callgrind: more than the rest of the runner), which ``python SCRIPT`` never pays. The source's
hash, not its timestamp, decides, so an edit within the same second is never missed.
"""

from __future__ import annotations

import faulthandler
import marshal
import os
import sys

import pybundle

from . import _protocol
from ._channel import Channel, decode_buffers, error_info

_OWN_DIR = os.path.dirname(os.path.abspath(__file__))

try:
    # CPython's path-based importer, always loaded: `importlib.util`, which re-exports the
    # same names, imports `contextlib` and `collections` (more than the compile it saves).
    import _frozen_importlib_external as _importer
except ImportError:  # pragma: no cover - not CPython
    import importlib.util as _importer

# PEP 552 header: magic, flags (bit 0: hash-based, bit 1: check the source), source hash.
_HASH_FLAGS = 0b11
_HEADER = 16


TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import CodeType


def _code(script: str) -> CodeType:
    """The script's code object: from its checked-hash bytecode when that matches the source,
    else compiled, and the bytecode written for the next run (best effort, atomically)."""
    import _imp

    with open(script, "rb") as f:
        source = f.read()
    magic = _importer.MAGIC_NUMBER
    digest = _imp.source_hash(int.from_bytes(magic, "little"), source)
    head = magic + _HASH_FLAGS.to_bytes(4, "little") + digest
    try:
        cached = _importer.cache_from_source(script)
    except (NotImplementedError, ValueError):  # no cache tag, or an odd path
        cached = None
    if cached is not None:
        try:
            with open(cached, "rb") as f:
                data = f.read()
            if data[:_HEADER] == head:
                code = marshal.loads(memoryview(data)[_HEADER:])
                # Written at this path (a folder that moved keeps its bytecode).
                if isinstance(code, _CODE_TYPE) and code.co_filename == script:
                    return code
        except (OSError, EOFError, ValueError, TypeError):
            pass
    code = compile(source, script, "exec", dont_inherit=True)
    if cached is not None and not sys.dont_write_bytecode:
        tmp = "%s.%d.tmp" % (cached, os.getpid())
        try:
            os.makedirs(os.path.dirname(cached), exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(head + marshal.dumps(code))
            os.replace(tmp, cached)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return code


_CODE_TYPE = type(_code.__code__)


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
        exec(_code(script), namespace)
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
