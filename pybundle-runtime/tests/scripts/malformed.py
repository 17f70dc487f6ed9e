"""Writes a well-sized frame that is not JSON, then hangs."""
import os
import time

import pybundle

os.write(pybundle._active._write_fd, b"\x00\x00\x00\x05{oops")
time.sleep(60)
