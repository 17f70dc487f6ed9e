"""numpy functions for the data tests (run with an interpreter that has numpy)."""
import numpy as np

import pybundle


def info(a):
    return {
        "type": type(a).__name__,
        "dtype": a.dtype.str,
        "shape": list(a.shape),
        "values": a.tolist(),
        "writable": bool(a.flags.writeable),
    }


def scale(a, k):
    return a * k


def double_in_place(a):
    a *= 2
    return a


def make(kind):
    if kind == "f32":
        return np.arange(6, dtype=np.float32).reshape(2, 3) / 4
    if kind == "i64":
        return np.array([1, -2, 3**30], dtype=np.int64)
    if kind == "bool":
        return np.array([[True, False], [False, True]])
    if kind == "zero_d":
        return np.array(7.5)
    if kind == "strided":
        return np.arange(20, dtype=np.int32).reshape(4, 5)[:, ::2]
    if kind == "fortran":
        return np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3))
    if kind == "big_endian":
        return np.arange(4, dtype=">i4")
    if kind == "scalars":
        return {"f32": np.float32(1.5), "i64": np.int64(2**40), "b": np.bool_(True)}
    if kind == "objects":
        return np.array([{"a": 1}], dtype=object)
    if kind == "strings":
        return np.array(["text"])
    if kind == "big":
        return np.ones(256 * 1024 * 1024 // 4, dtype=np.float32)
    raise ValueError(kind)


def total(a):
    return float(a.sum())


# --- receive memory reuse (see Channel.recycle) ---
_kept = []


def reused():
    """How many array frames so far were read into memory a finished call left behind."""
    return pybundle.current_call()._channel.reused


def take(a, keep=""):
    """The array's sum; keeps the array, a view of it or a memoryview over it when asked,
    so that `kept_sums` can show a test that kept data was never written over."""
    if keep == "array":
        _kept.append(a)
    elif keep == "view":
        _kept.append(a[::2])
    elif keep == "memoryview":
        _kept.append(memoryview(a))
    return float(a.sum())


def kept_sums():
    return [float(np.asarray(k, dtype=np.float32).sum()) for k in _kept]
