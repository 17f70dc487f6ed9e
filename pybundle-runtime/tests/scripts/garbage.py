"""Corrupts the frame channel (as a buggy extension writing to the private fd would), then
hangs: the runtime must reject the frame and kill it."""
import os
import time

import pybundle

os.write(pybundle._active._write_fd, b"\x7f\xff\xff\xffnot a frame")
time.sleep(60)
