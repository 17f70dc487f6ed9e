"""Functions served by the worker tests."""
import os
import sys
import time

import pybundle

_seen_cancel = {}


def add(a, b):
    return a + b


def echo(value):
    return value


def keywords(a, b=2, *, c=3):
    return [a, b, c]


def pid():
    return os.getpid()


def noisy(x):
    print("noisy print", x)
    sys.stdout.write("noisy sys.stdout.write\n")
    os.write(1, b"noisy os.write fd 1\n")
    return x * 2


def fail(key):
    def lookup_missing():
        return {}[key]

    return lookup_missing()


def sleep(seconds):
    time.sleep(seconds)
    return seconds


def announced_sleep(seconds):
    """Says "started" (a progress message) once running in Python, then sleeps: the test
    waits for that message instead of guessing with a sleep of its own."""
    pybundle.send("started")
    time.sleep(seconds)
    return seconds


def wait_for_cancel(tag, limit):
    """Says "started", then polls pybundle.cancelled() until it turns true (or `limit`
    seconds pass)."""
    pybundle.send("started")
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if pybundle.cancelled():
            _seen_cancel[tag] = True
            return "cancelled"
        time.sleep(0.01)
    _seen_cancel[tag] = False
    return "not cancelled"


def saw_cancel(tag):
    return _seen_cancel.get(tag)


def burn(n):
    """CPU-bound: holds the GIL for the whole loop."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return [os.getpid(), total]


def burn_timed(n):
    """CPU-bound like `burn`, returning when it ran: [pid, start, end] on the system-wide
    monotonic clock, so calls in different processes can be compared."""
    start = time.monotonic()
    burn(n)
    return [os.getpid(), start, time.monotonic()]


def progress(n):
    for i in range(n):
        pybundle.send({"step": i})
    return n


def buffer_info(data):
    return {"type": type(data).__name__, "len": len(data), "first": data[0], "last": data[-1]}


def make_bytes(n):
    return {"payload": bytes(range(256)) * (n // 256), "n": n}


def filled(n, value):
    return bytes([value]) * n


# What `take_bytes` was asked to keep, and the byte each kept value held when kept.
_kept_bytes = []


def take_bytes(data, keep=""):
    """What a test needs to see that a `bytes` frame arrived whole and is what it claims:
    its type, length, whether every byte is its first, and whether its hash is that of a new
    copy of it. Keeps it (in a list, as a memoryview, as a dict key) or only hashes it when
    asked."""
    if keep == "list":
        _kept_bytes.append((data, data[0]))
    elif keep == "memoryview":
        _kept_bytes.append((memoryview(data), data[0]))
    elif keep == "dict key":
        _kept_bytes.append(({data: data[0]}, data[0]))
    elif keep == "hash":
        hash(data)
    copy = bytes(memoryview(data))
    return [
        type(data).__name__,
        len(data),
        data.count(data[:1]) == len(data),
        hash(data) == hash(copy),
    ]


def bytes_reused():
    """How many frames so far were read into memory a finished call left behind."""
    return pybundle.current_call()._channel.reused


def kept_bytes_intact():
    """For each value `take_bytes` kept: whether it still holds only the byte it held then
    (a dict key: whether the dict still finds it by an equal new `bytes`)."""
    out = []
    for value, first in _kept_bytes:
        if isinstance(value, dict):
            (key,) = value
            out.append(value.get(bytes([first]) * len(key)) == first)
        else:
            out.append(bytes(value).count(bytes([first])) == len(value))
    return out


def list_len(values):
    return len(values)


def unencodable():
    return {1, 2}


_marks = []


def mark(tag):
    _marks.append(tag)


def marks():
    return list(_marks)


def pause(seconds):
    """`sleep` under another name: a second function whose speed the worker learns apart."""
    time.sleep(seconds)
    return seconds


def wait_for_path(path, limit):
    """Returns once `path` exists (at once if it does), or after `limit` seconds: a barrier
    the test lifts."""
    end = time.monotonic() + limit
    while not os.path.exists(path) and time.monotonic() < end:
        time.sleep(0.001)
    return os.path.exists(path)
