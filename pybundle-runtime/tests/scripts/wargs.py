"""Functions for the argument-form tests."""


def show(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs, "types": [type(a).__name__ for a in args]}


def total(values):
    return sum(values)


def fit(x, scale=1, *, offset=0):
    return [v * scale + offset for v in x]


def blobs(first, *, second):
    return [type(first).__name__, len(first), type(second).__name__, len(second)]


def _private():
    return "never served"
