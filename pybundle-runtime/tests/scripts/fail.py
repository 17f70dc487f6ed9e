"""Raises an exception from a nested function."""
import pybundle


def compute_ratio(value):
    return check_positive(value)


def check_positive(value):
    if value <= 0:
        raise ValueError("value must be positive, got %r" % value)
    return value


pybundle.send("about to fail")
compute_ratio(pybundle.input())
