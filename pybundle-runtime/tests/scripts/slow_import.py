"""A worker module whose import takes half a second (a model loading, say)."""
import os
import time

time.sleep(0.5)


def pid():
    return os.getpid()
