"""A module whose import fails, for the worker start test."""


def helper():
    raise RuntimeError("broken at import time")


helper()
