"""Worker functions that misbehave on purpose, for tests/it/misbehave.rs."""
import ctypes
import os
import sys
import time

import pybundle


def pid():
    return os.getpid()


def add(a, b):
    return a + b


def sleep(seconds):
    time.sleep(seconds)
    return seconds


def _say(text):
    sys.stderr.write("wbad: %s\n" % text)
    sys.stderr.flush()


def segfault():
    _say("about to read address 0")
    ctypes.string_at(0)


def exit_now(code):
    _say("exiting with %d" % code)
    os._exit(code)


def hang_sleeping():
    time.sleep(3600)


def hang_holding_the_gil():
    # A PyDLL call keeps the GIL: no other thread of the worker runs, not even its reader.
    ctypes.PyDLL(None).sleep(3600)


def flood(total, exit_code=None):
    """Writes `total` bytes to stderr (fd 2 directly, as C code would), then returns the count
    or exits with `exit_code`."""
    block = memoryview((b"y" * 1023 + b"\n") * 1024)
    written = 0
    while written < total:
        written += os.write(2, block)
    _say("flood done")
    if exit_code is not None:
        os._exit(exit_code)
    return written


def _raw(data):
    """Writes bytes straight to the frame descriptor, bypassing the channel, then hangs."""
    os.write(pybundle._active._write_fd, data)
    time.sleep(60)


def _frame(payload):
    return len(payload).to_bytes(4, "big") + payload


def garbage(kind):
    if kind == "text":
        _raw(b"hello, this is not a frame\n")
    elif kind == "not-json":
        _raw(_frame(b"not json at all"))
    elif kind == "unknown-type":
        _raw(_frame(b'{"type":"surprise","id":1}'))
    elif kind == "cut-binary":
        # A message announcing a binary frame, then the end of the output.
        os.write(pybundle._active._write_fd, _frame(b'{"type":"result","id":0,"data":null,"buffers":1}'))
        os._exit(0)
    raise ValueError(kind)


def oversized_frame(length):
    """A frame header over the cap followed by a plausible message, written directly."""
    payload = b'{"type":"result","id":0,"data":"' + b"z" * length + b'"}'
    _raw(_frame(payload))


def big_result(length):
    return "r" * length


def spawn_and_exit(code):
    """Leaves a grandchild holding the stderr pipe, then exits."""
    import subprocess

    child = subprocess.Popen(["sleep", "600"])
    _say("grandchild %d" % child.pid)
    os._exit(code)


def partial_frame(length):
    """Half a frame written straight to the frame descriptor, then silence: stuck mid-write."""
    payload = b'{"type":"result","id":0,"data":"' + b"z" * length + b'"}'
    os.write(pybundle._active._write_fd, _frame(payload)[: 4 + length // 2])
    time.sleep(60)


def many_frames(count, size):
    """A result announcing `count` binary frames of `size` bytes (each under the frame cap),
    written straight to the frame descriptor; `size` < 0 writes the announcement alone."""
    head = b'{"type":"result","id":%d,"data":null,"buffers":%d}' % (
        pybundle.current_call().id,
        count,
    )
    os.write(pybundle._active._write_fd, _frame(head))
    if size >= 0:
        block = _frame(b"b" * size)
        for _ in range(count):
            os.write(pybundle._active._write_fd, block)
    time.sleep(60)


def big_bytes(n):
    return b"x" * n


def length(data):
    return len(data)


def hold_gil(seconds):
    # Nothing else in the process runs meanwhile, not even the thread reading calls.
    ctypes.PyDLL(None).usleep(int(seconds * 1e6))
    return seconds
