"""A worker module with state set up by an init call, for the lifecycle tests."""
import ctypes
import os
import time

STATE = None


def _setup(value, *, unit="m"):
    global STATE
    if value == "fail":
        raise RuntimeError("init refused %r" % value)
    STATE = {"value": value, "unit": unit, "pid": os.getpid(), "cwd": os.getcwd()}


def state():
    return STATE


def env(name):
    return os.environ.get(name)


def pid():
    return os.getpid()


def sleep(seconds):
    time.sleep(seconds)
    return seconds


def hang_in_c():
    # A PyDLL call keeps the GIL: nothing in the process runs, cancelled() is never read.
    ctypes.PyDLL(None).sleep(3600)
