"""A one-shot script that misbehaves as `sys.argv[1]` says, after sending its pid."""
import ctypes
import os
import subprocess
import sys
import time

import pybundle

case = sys.argv[1]
pybundle.send({"pid": os.getpid()})
if case == "segfault":
    ctypes.string_at(0)
elif case == "exit":
    os._exit(3)
elif case == "hang":
    time.sleep(3600)
elif case == "flood":
    block = (b"y" * 1023 + b"\n") * 1024
    written = 0
    while written < int(sys.argv[2]):
        written += os.write(2, block)
    pybundle.reply(written)
elif case == "garbage":
    os.write(pybundle._active._write_fd, b"hello, this is not a frame\n")
    time.sleep(60)
elif case == "oversized":
    payload = b'{"type":"reply","data":"' + b"z" * int(sys.argv[2]) + b'"}'
    os.write(pybundle._active._write_fd, len(payload).to_bytes(4, "big") + payload)
    time.sleep(60)
elif case == "partial":
    payload = b'{"type":"reply","data":"' + b"z" * 1000 + b'"}'
    os.write(pybundle._active._write_fd, (len(payload).to_bytes(4, "big") + payload)[:100])
    time.sleep(60)
elif case == "grandchild":
    # Holds the stderr pipe open long after this script ends.
    child = subprocess.Popen(["sleep", "600"])
    pybundle.send({"pid": os.getpid(), "grandchild": child.pid})
    pybundle.reply(0)
else:
    raise ValueError(case)
