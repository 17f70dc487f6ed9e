"""The frame channel to the Rust runtime: 4-byte big-endian length + UTF-8 JSON.

Opening the channel moves the protocol off the process's standard streams before any user
code runs: fd 0 and fd 1 are duplicated to private descriptors for frames, fd 1 is then
pointed at fd 2 (so ``print()``, ``sys.stdout.write`` and C code writing to fd 1 end up on
stderr) and fd 0 at ``/dev/null``. The private descriptors are non-inheritable, so
subprocesses never see them.

A worker's answers to calls read in one batch go out together (``hold``): one write, one
wake-up of the reader on the Rust side, instead of one per answer. The worker decides how long
an answer waits (see ``_worker._Server``); whatever the reading thread holds is written before
the channel reads from the pipe again, so nothing waits for input that may never come.

Byte buffers (``bytes``, ``bytearray``, ``memoryview``) inside a value travel as binary frames
after the JSON frame: the JSON holds ``{"$buffer": i}`` and its ``"buffers"`` field says how many
binary frames follow. numpy arrays travel the same way (see ``_arrays``). Frames are written
from the objects' own memory (``writev``), and read straight into their final object.
"""

from __future__ import annotations

import _thread
import io
import os
import sys
import time

from . import _protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO, Callable, List, Optional, Tuple

_HEADER = 4
# A lone frame up to this size is joined to its header (one small copy, one system call);
# anything else goes out with writev, from where it is.
_JOIN_LIMIT = 1 << 16
_BUFFER_KEY = "$buffer"
# `Channel.hold_result`'s frame, and the strings it takes (encoded, well below _JOIN_LIMIT).
_RESULT_FORMAT = '{"type":"%s","id":%%d,"data":%%s}' % _protocol.RESULT
_SHORT_STR = 1 << 12
# An array frame this big or bigger gets memory a finished call left behind (see `recycle`).
_REUSE_MIN = 1 << 20
_IOV_MAX = 1024
_writev = getattr(os, "writev", None)
# How long an idle worker's reading thread polls the pipe before it sleeps in a read (see
# `Channel.poll_when_idle`), as the Rust side polls for answers: the next call of a caller that
# waits for each answer comes within microseconds, and a thread that sleeps at once adds the
# wake-up of its core (tens of µs on a VM, when that core went idle meanwhile).
_SPIN = 50e-6
_clock = time.perf_counter
_yield = getattr(os, "sched_yield", None)


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame."""


class _Input(io.RawIOBase):
    """The raw side of the channel's buffered reader: counts what arrives, and writes the
    held answers before each read from the pipe (a read that may wait for the peer, who may
    be waiting for them)."""

    def __init__(self, fd: int, channel: Channel) -> None:
        super().__init__()
        self._fd = fd
        self._channel = channel

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def readinto(self, buffer: Any) -> int:
        channel = self._channel
        if channel.held:
            channel.write_held(channel.held)
        idle = channel.idle
        if idle is None:
            n = os.readv(self._fd, [buffer])
        else:
            # Poll before sleeping when the last wait for input was short, giving the core to
            # whoever else wants it between polls; after a longer wait, sleep at once.
            clock = _clock
            start = clock()
            if channel._waits_short and idle():
                poll, until = channel._poll, start + _SPIN
                while not poll(0) and clock() < until:
                    _yield()
            n = os.readv(self._fd, [buffer])
            channel._waits_short = clock() - start < _SPIN
        channel._arrived += n
        return n

    def close(self) -> None:
        if not self.closed:
            super().close()
            os.close(self._fd)


class Channel:
    """Reads and writes frames on private descriptors; writing is thread-safe."""

    def __init__(self, reader: BinaryIO, write_fd: int, max_frame: int) -> None:
        self._reader = reader
        self._write_fd = write_fd
        self.max_frame = max_frame
        self._write_lock = _thread.allocate_lock()
        # Bytes the pipe delivered, and bytes the frames read so far took: while they differ,
        # input that has arrived is still unread (counted only with an `_Input` reader).
        self._arrived = 0
        self._taken = 0
        # The reading thread's held answers (see `hold`): written before each read from the
        # pipe, at the latest.
        self.held: List[bytes] = []
        # A frame no object refers to any more (see `recycle`): the next frame of its size and
        # kind (array or bytes) is read into it instead of into fresh memory.
        self._spare: Optional[Any] = None
        # Frames read into such memory (for tests and curious users).
        self.reused = 0
        # Checks each outgoing message head before it is sent (a worker checks call ids).
        self.check: Optional[Callable[[dict], None]] = None
        # See `poll_when_idle`.
        self.idle: Optional[Callable[[], bool]] = None
        self._poll: Optional[Callable[[int], list]] = None
        self._waits_short = True

    @classmethod
    def from_stdio(cls, max_frame: int) -> Channel:
        """Takes fd 0/1 for frames and protects them from user output (see module docs)."""
        read_fd = os.dup(0)
        write_fd = os.dup(1)
        os.dup2(2, 1)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        out = sys.stdout
        if out is not None:
            # The old object still writes to fd 1 (now stderr); make it line buffered so
            # prints interleave sensibly with stderr output.
            try:
                out.reconfigure(line_buffering=True)  # type: ignore[union-attr]
            except (AttributeError, ValueError):
                pass
        channel = cls(None, write_fd, max_frame)  # type: ignore[arg-type]
        channel._reader = io.BufferedReader(_Input(read_fd, channel), 1 << 16)
        return channel

    def poll_when_idle(self, idle: Callable[[], bool]) -> None:
        """From now on, a read from the pipe (the buffered reader's, when it has nothing left)
        first polls the pipe for up to ``_SPIN`` seconds, yielding the core between polls, when
        the last read got its input within that time (a caller that waits for each answer
        before its next call) and ``idle()`` says nothing else needs this process (a worker: no
        call runs on another thread, which would want the core and the GIL). A read after a
        longer wait (calls that come now and then, or a caller busy reading a batch of answers)
        sleeps at once, as do all reads where ``poll`` or ``sched_yield`` are missing."""
        import select

        reader = self._reader
        if hasattr(select, "poll") and _yield is not None and isinstance(reader, io.BufferedReader):
            pipe = select.poll()
            pipe.register(reader.fileno(), select.POLLIN)
            self._poll, self.idle = pipe.poll, idle

    # --- reading ---

    def read_frame(self, writable: bool = False) -> Optional[Any]:
        """The next frame's payload (``bytes``, or a ``bytearray`` when ``writable``), or None
        at a clean end of input, read straight into its final object: the frame ``recycle``
        kept when it has this size and kind, else one allocated at this size."""
        header = self._reader.read(_HEADER)
        if not header:
            return None
        if len(header) < _HEADER:
            raise ProtocolError("input ended inside a frame header")
        size = int.from_bytes(header, "big")
        if size > self.max_frame:
            raise ProtocolError(
                "incoming frame of %d bytes exceeds the limit of %d bytes" % (size, self.max_frame)
            )
        self._taken += _HEADER + size
        spare = None
        if size >= _REUSE_MIN:
            spare, self._spare = self._spare, None
            if spare is not None and (
                len(spare) != size or type(spare) is not (bytearray if writable else bytes)
            ):
                spare = None
        if not writable:
            if spare is None:
                payload = self._reader.read(size)
                if len(payload) < size:
                    raise ProtocolError("input ended inside a frame of %d bytes" % size)
                return payload
            # A `bytes` that nothing refers to any more (see `recycle`): whoever sees it next
            # sees it only with its new content, and its cached hash reset.
            buf = spare
            view = _bytes_memory(buf, _layout)
        else:
            buf = spare if spare is not None else bytearray(size)
            view = memoryview(buf)
        if spare is not None:
            self.reused += 1
        got = 0
        while got < size:
            n = self._reader.readinto(view[got:])
            if not n:
                raise ProtocolError("input ended inside a frame of %d bytes" % size)
            got += n
        return buf

    def read_message(self) -> Optional[Tuple[Any, List[Any]]]:
        """The next JSON message and the binary frames it announces, or None at end of input.
        Frames that hold numpy arrays are read into writable memory."""
        reader = self._reader
        header = reader.read(_HEADER)
        size = int.from_bytes(header, "big")
        if len(header) == _HEADER and size <= self.max_frame:
            self._taken += _HEADER + size
            payload = reader.read(size)
            if len(payload) < size:
                raise ProtocolError("input ended inside a frame of %d bytes" % size)
        elif not header:
            return None
        else:
            raise ProtocolError(
                "input ended inside a frame header"
                if len(header) < _HEADER
                else "incoming frame of %d bytes exceeds the limit of %d bytes"
                % (size, self.max_frame)
            )
        msg = (_codec or _load_codec())[0](payload.decode("utf-8"))
        count = msg.get("buffers", 0) if type(msg) is dict else 0
        if not count:
            return msg, []
        arrays = ()
        if count and b'"$ndarray"' in payload:
            # Imported when first needed, as numpy is (a script's start does without it).
            from . import _arrays

            arrays = _arrays.frames_of(msg, set())
        buffers = []
        for i in range(count):
            frame = self.read_frame(i in arrays)
            if frame is None:
                raise ProtocolError("input ended before all binary frames of a message")
            buffers.append(frame)
        return msg, buffers

    def recycle(self, frames: List[Any]) -> None:
        """Empties ``frames``, the binary frames of a call that has returned. A frame of at
        least ``_REUSE_MIN`` bytes that nothing else refers to any more (no array, view, dict
        or other object holds it: its reference count says so, and nothing reaches an object
        without a reference) is kept, and the next frame of the same size and kind is read
        into it — an array's ``bytearray``, or a ``bytes`` where its layout allows (see
        ``_bytes_layout``): a copy into memory already touched runs at the speed of memory,
        while fresh memory costs a page fault and a zeroing per page first, which halves a
        large transfer. One frame is kept at most; the next frame of at least ``_REUSE_MIN``
        bytes and another size or kind lets it go."""
        while frames:
            frame, count = _pop_counted(frames)
            if (
                count == _LONE
                and len(frame) >= _REUSE_MIN
                and (type(frame) is bytearray or type(frame) is bytes and _bytes_layout())
            ):
                self._spare = frame

    # --- writing ---

    def write_frames(self, frames: List[Any]) -> None:
        """Writes frames (bytes-like, written from where they are) atomically with respect to
        other threads."""
        parts: List[Any] = []
        for frame in frames:
            size = len(frame)
            if size > self.max_frame:
                raise ValueError(
                    "pybundle: a message of %d bytes exceeds the frame limit of %d bytes; "
                    "raise max_frame on the Rust side" % (size, self.max_frame)
                )
            parts.append(size.to_bytes(_HEADER, "big"))
            parts.append(frame)
        if len(parts) == 2 and len(parts[1]) <= _JOIN_LIMIT:
            joined = parts[0] + parts[1]
            with self._write_lock:
                written = os.write(self._write_fd, joined)
                if written < len(joined):
                    self._write_all([memoryview(joined)[written:]])
            return
        with self._write_lock:
            self._write_all(parts)

    def hold(self, held: List[bytes], head: dict, data: Any = None, has_data: bool = False) -> None:
        """``answer``, kept in ``held`` (a list its thread owns) to go out later in one write
        with the others (``write_held``); a message with binary frames or a large one is
        written now, after what ``held`` has."""
        buffers: List[Any] = []
        frame = encode(head, buffers, data, has_data)
        size = len(frame)
        if buffers or size > _JOIN_LIMIT or size > self.max_frame:
            self.write_held(held)
            self.write_frames([frame] + buffers)
            return
        held.append(size.to_bytes(_HEADER, "big") + frame)

    def hold_result(self, held: List[bytes], call_id: int, data: Any) -> None:
        """``hold(held, result(call_id), data, True)``, quicker for the values most calls
        return (an int, a short str, None)."""
        kind = type(data)
        if kind is int:
            body = repr(data)
        elif kind is str and len(data) < _SHORT_STR:
            body = _encode_str(data)
        elif data is None:
            body = "null"
        else:
            self.hold(held, _protocol.result(call_id), data, True)
            return
        frame = (_RESULT_FORMAT % (call_id, body)).encode("utf-8")
        size = len(frame)
        if size > self.max_frame:
            # Raises the frame-limit error, naming max_frame (a limit set below 4 KiB or so).
            self.write_frames([frame])
        held.append(size.to_bytes(_HEADER, "big") + frame)

    def unread(self) -> bool:
        """Whether input that has arrived is still unread (the reading thread's question:
        its answers may wait while it is)."""
        return self._arrived != self._taken

    def write_held(self, held: List[bytes]) -> None:
        """Writes the answers in ``held`` in one go and empties it. A peer that no longer
        reads (a closed pipe) gets nothing: the reading thread then meets the end of its
        input."""
        if not held:
            return
        out = b"".join(held)
        held.clear()
        try:
            with self._write_lock:
                written = os.write(self._write_fd, out)
                if written < len(out):
                    self._write_all([memoryview(out)[written:]])
        except OSError:
            pass

    def _write_all(self, parts: List[Any]) -> None:
        if len(parts) == 1 or _writev is None:
            for part in parts:
                view = memoryview(part)
                while view:
                    view = view[os.write(self._write_fd, view) :]
            return
        views = [memoryview(p) for p in parts]
        while views:
            written = _writev(self._write_fd, views[:_IOV_MAX])
            while views and written >= len(views[0]):
                written -= len(views[0])
                views.pop(0)
            if written:
                views[0] = views[0][written:]

    def send_error(self, head: dict) -> None:
        """Sends an error report (``head["error"]`` holds the info), cutting the traceback's
        start to fit the frame limit."""
        if self.check is not None:
            self.check(head)
        self.answer_error(head)

    def answer_error(self, head: dict) -> None:
        """``send_error`` without the check (the runner's own report)."""
        info = head["error"]
        frame = encode(head, [])
        excess = len(frame) - self.max_frame
        if excess > 0:
            text = info["traceback"].encode("utf-8")
            keep = max(0, len(text) - excess - 64)
            info["traceback"] = "[...]" + text[len(text) - keep :].decode("utf-8", "replace")
            info["message"] = info["message"][: max(0, self.max_frame // 4)]
            frame = encode(head, [])
        self.write_frames([frame])

    def send(self, head: dict, data: Any = None, has_data: bool = False) -> None:
        """Sends ``head``, plus ``data`` under the key "data" when ``has_data``."""
        if self.check is not None:
            self.check(head)
        self.answer(head, data, has_data)

    def answer(self, head: dict, data: Any = None, has_data: bool = False) -> None:
        """``send`` without the check: for what the runner itself sends (a call's answer)."""
        buffers: List[Any] = []
        frame = encode(head, buffers, data, has_data)
        size = len(frame)
        if buffers or size > _JOIN_LIMIT or size > self.max_frame:
            self.write_frames([frame] + buffers)
            return
        out = size.to_bytes(_HEADER, "big") + frame
        with self._write_lock:
            written = os.write(self._write_fd, out)
            if written < len(out):
                self._write_all([memoryview(out)[written:]])


# --- whether anything else holds a frame ---


def _pop_counted(frames: List[Any]) -> Tuple[Any, int]:
    """The last of ``frames``, taken out of the list first (whoever holds the list can no
    longer reach it), and its reference count as seen here: ``_LONE`` when nothing else holds
    it."""
    frame = frames.pop()
    return frame, sys.getrefcount(frame)


def _lone_count() -> int:
    """``_pop_counted``'s count for an object nothing else holds, measured rather than assumed
    (what a local name and a call's argument add to it is the interpreter's business: since
    3.14 CPython may pass a local's object to a call without a reference of its own), and only
    where each other holder counts one more; else -1, and nothing is kept."""
    lone = _pop_counted([bytearray(1)])[1]
    held = bytearray(1)
    if _pop_counted([held])[1] != lone + 1 or _pop_counted([held, held])[1] != lone + 2:
        return -1
    return lone


_LONE = _lone_count()


# --- writing into a `bytes` no one refers to ---
# A `bytes` is immutable to everyone who can reach it. One that nothing refers to any more
# (`recycle` checks its reference count) can be filled again before anyone sees it, as CPython's
# own code fills a new `bytes`: that needs its layout (header, cached hash, then the data), which
# is checked once on a live object before anything is written. Where the check fails (another
# implementation or layout) or ctypes is missing, `bytes` frames are read into fresh memory.

# None: not checked yet; False: not usable here; else (ctypes, hash offset, data offset).
_layout: Any = None


def _bytes_layout() -> Any:
    """How to write into a `bytes` here, checked on first use; False where it cannot be done."""
    global _layout
    if _layout is None:
        _layout = False
        try:
            _layout = _check_layout()
        except Exception:  # ImportError, or anything else off the expected layout
            pass
    return _layout


def _check_layout() -> Any:
    if sys.implementation.name != "cpython" or bytes.__itemsize__ != 1:
        return False
    import ctypes

    # The data ends the object (its size counts the trailing NUL); the cached hash (-1 until
    # computed) sits just before it.
    data = bytes.__basicsize__ - 1
    cached = data - ctypes.sizeof(ctypes.c_ssize_t)
    if cached < 3 * ctypes.sizeof(ctypes.c_ssize_t):
        return False
    probe = bytes(range(256))
    base = id(probe)
    if ctypes.string_at(base + data, len(probe)) != probe:
        return False
    # Not hashed yet: -1; once hashed: the hash.
    hashed = ctypes.c_ssize_t.from_address(base + cached)
    if hashed.value != -1 or hash(probe) != hashed.value:
        return False
    layout = (ctypes, cached, data)
    # Fill it again as a recycled frame is filled: reversed content, the hash computed anew.
    _bytes_memory(probe, layout)[:] = bytes(range(255, -1, -1))
    if probe != bytes(range(255, -1, -1)) or hash(probe) != hash(bytes(range(255, -1, -1))):
        return False
    return layout


def _bytes_memory(target: bytes, layout: Any) -> Any:
    """A writable view of the data of ``target``, a `bytes` no one else refers to, its cached
    hash reset (``layout``: `_check_layout`'s). The caller holds ``target`` for as long as it
    uses the view."""
    ctypes, cached, data = layout
    base = id(target)
    ctypes.c_ssize_t.from_address(base + cached).value = -1
    return memoryview((ctypes.c_char * len(target)).from_address(base + data)).cast("B")


def encode(head: dict, buffers: List[Any], data: Any = None, has_data: bool = False) -> bytes:
    """Encodes ``head`` (and ``data``) as compact UTF-8 JSON, byte buffers moved to ``buffers``.

    ``data`` is encoded on its own first, so an unencodable value (a set, NaN, ...) raises a
    ``TypeError``/``ValueError`` that names the user's value in the caller's code.
    """

    # The common messages (a result, a progress message, a pong) go out without building a
    # dict encoder's output: their head is a type and a call id.
    quick = len(head) == 2 and type(head.get("id")) is int
    if not has_data:
        if quick:
            return ('{"type":"%s","id":%d}' % (head["type"], head["id"])).encode("utf-8")
        head["buffers"] = 0
        return dumps_plain(head).encode("utf-8")
    kind = type(data)
    if kind is int or kind is float and data == data and data not in (_INF, -_INF):
        body = repr(data)
    elif kind is str:
        body = _encode_str(data)
    elif data is None:
        body = "null"
    else:
        try:
            # Most values are plain JSON: one cached encoder, no closure; anything else
            # (bytes, arrays, an unencodable object) takes the full path below.
            body = dumps_plain(data)
        except _NotPlain:
            body = None
    if body is not None:
        if quick:
            text = '{"type":"%s","id":%d,"data":%s}' % (head["type"], head["id"], body)
            return text.encode("utf-8")
        head["buffers"] = 0
        text = dumps_plain(head)
        return (text[:-1] + ',"data":' + body + "}").encode("utf-8")

    def default(obj: Any) -> Any:
        if isinstance(obj, (bytes, bytearray)):
            buffers.append(obj)
            return {_BUFFER_KEY: len(buffers) - 1}
        if isinstance(obj, memoryview):
            buffers.append(obj.cast("B") if obj.c_contiguous else obj.tobytes())
            return {_BUFFER_KEY: len(buffers) - 1}
        from . import _arrays

        np = _arrays.loaded()
        if np is not None:
            stand_in = _arrays.encode(obj, np, buffers)
            if stand_in is not None:
                return stand_in
        raise TypeError(
            "pybundle: object of type %s is not JSON serializable" % type(obj).__name__
        )

    body = dumps(data, default) if has_data else None
    head["buffers"] = len(buffers)
    text = dumps(head, default)
    if body is not None:
        text = text[:-1] + ',"data":' + body + "}"
    return text.encode("utf-8")


# --- JSON ---
# The `json` package imports `re` (and with it `enum`), a few milliseconds of every one-shot
# start. Its C accelerator `_json` is all the channel needs, so that is used directly when it
# has the interface CPython has had since 3.x; otherwise `json` is imported.


class _ScanContext:
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict = {}

    @staticmethod
    def parse_constant(name: str) -> Any:
        raise ValueError("pybundle: %s is not valid JSON" % name)


_INF = float("inf")


def _encode_str(text: str) -> str:
    return (_codec or _load_codec())[3](text)


class _NotPlain(Exception):
    """Raised by the plain encoder for a value JSON cannot hold as it is."""


def _not_plain(obj: Any) -> Any:
    raise _NotPlain


_codec: Optional[Tuple[Any, Any, Any, Any]] = None


def _load_codec() -> Tuple[Any, Any, Any, Any]:
    global _codec
    try:
        import _json

        scan = _json.make_scanner(_ScanContext())
        encode_str = _json.encode_basestring
        make_encoder = _json.make_encoder
        # Probe the interface once; a mismatch falls back to the `json` package.
        make_encoder({}, None, encode_str, None, ":", ",", False, False, False)(["ok"], 0)

        def loads(text: str) -> Any:
            try:
                value, end = scan(text, 0)
            except StopIteration:
                raise ValueError("pybundle: a frame holds no JSON value") from None
            if end != len(text):
                raise ValueError("pybundle: extra data after the JSON value in a frame")
            return value

        def dumps(value: Any, default: Any) -> str:
            encoder = make_encoder({}, default, encode_str, None, ":", ",", False, False, False)
            return "".join(encoder(value, 0))

        # Shared by all threads: without a markers dict it holds no state between calls (a
        # circular value then ends in RecursionError instead of ValueError).
        plain_encoder = make_encoder(
            None, _not_plain, encode_str, None, ":", ",", False, False, False
        )

        def dumps_plain(value: Any) -> str:
            return "".join(plain_encoder(value, 0))

        _codec = (loads, dumps, dumps_plain, encode_str)
    except (ImportError, AttributeError, TypeError):
        import json

        def dumps(value: Any, default: Any) -> str:
            return json.dumps(
                value, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=default
            )

        def dumps_plain(value: Any) -> str:
            return dumps(value, _not_plain)

        _codec = (json.loads, dumps, dumps_plain, lambda text: dumps(text, None))
    return _codec


def loads(payload: bytes) -> Any:
    """Decodes one JSON frame."""
    return (_codec or _load_codec())[0](payload.decode("utf-8"))


def dumps(value: Any, default: Any) -> str:
    """Encodes compactly, non-ASCII kept, NaN refused, ``default`` for other types."""
    return (_codec or _load_codec())[1](value, default)


def dumps_plain(value: Any) -> str:
    """``dumps`` for plain JSON values; raises ``_NotPlain`` at anything else."""
    return (_codec or _load_codec())[2](value)


def decode_buffers(value: Any, buffers: List[bytes]) -> Any:
    """Replaces ``{"$buffer": i}`` objects in a decoded value by the i-th binary frame."""
    if not buffers:
        return value
    if isinstance(value, dict):
        if len(value) == 1 and _BUFFER_KEY in value:
            return buffers[value[_BUFFER_KEY]]
        from . import _arrays

        if _arrays.ARRAY_KEY in value:
            return _arrays.decode(value, buffers)
        return {k: decode_buffers(v, buffers) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_buffers(v, buffers) for v in value]
    return value


def error_info(exc: BaseException, skip_prefix: str = "") -> dict:
    """Type, message and traceback text of an exception, for an error message."""
    import traceback

    tb = exc.__traceback__
    # Leave out the runtime's own frames at the top of the traceback.
    while tb is not None and skip_prefix and tb.tb_frame.f_code.co_filename.startswith(skip_prefix):
        tb = tb.tb_next
    cls = type(exc)
    name = cls.__qualname__
    if cls.__module__ not in ("builtins", "__main__"):
        name = "%s.%s" % (cls.__module__, name)
    text = "".join(traceback.format_exception(cls, exc, tb))
    return {"type": name, "message": str(exc), "traceback": text}
