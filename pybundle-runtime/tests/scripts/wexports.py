"""A module that marks what it serves with @pybundle.export."""
import pybundle


@pybundle.export
def served(x):
    return x + 1


def helper(x):
    return x * 100


@pybundle.export
def also_served():
    return helper(1)
