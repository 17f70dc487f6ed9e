"""numpy arrays on the channel, without JSON: an array travels as one binary frame (its data,
C-ordered, little-endian) referred to by ``{"$ndarray": i, "dtype": ..., "shape": [...]}``.

numpy is never imported here for a value that holds no array: sending looks for it among the
modules already imported (an array to send means numpy is loaded), and receiving imports it
only when an array arrives.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List, Optional

ARRAY_KEY = "$ndarray"
# dtype kinds that cross: booleans, signed and unsigned integers, floats, complex numbers.
_KINDS = "biufc"


def loaded() -> Any:
    """numpy if some code imported it, else None."""
    return sys.modules.get("numpy")


def encode(obj: Any, np: Any, buffers: List[Any]) -> Optional[Any]:
    """The JSON stand-in for a numpy array or scalar (the array's data appended to
    ``buffers``), or None when ``obj`` is neither."""
    if isinstance(obj, np.generic):
        # A numpy scalar (np.float32(1.5), np.int64, np.bool_) as the Python value it holds.
        return obj.item()
    if not isinstance(obj, np.ndarray):
        return None
    dtype = obj.dtype
    if dtype.kind not in _KINDS or dtype.hasobject:
        raise TypeError(
            "pybundle: a numpy array of dtype %s cannot be sent; convert it first "
            "(.astype(...) or .tolist())" % dtype
        )
    if dtype.byteorder == ">" or (dtype.byteorder == "=" and sys.byteorder == "big"):
        # The channel carries little-endian data: a big-endian array is converted.
        obj = obj.astype(dtype.newbyteorder("<"))
    if not obj.flags.c_contiguous:
        obj = np.ascontiguousarray(obj)
    buffers.append(memoryview(obj.reshape(-1)).cast("B"))
    return {ARRAY_KEY: len(buffers) - 1, "dtype": obj.dtype.str, "shape": list(obj.shape)}


def frames_of(value: Any, out: set) -> set:
    """The indices of the binary frames that hold arrays in a decoded message value."""
    if isinstance(value, dict):
        if ARRAY_KEY in value:
            out.add(value[ARRAY_KEY])
        else:
            for v in value.values():
                frames_of(v, out)
    elif isinstance(value, list):
        for v in value:
            frames_of(v, out)
    return out


def decode(ref: dict, buffers: List[Any]) -> Any:
    """A numpy array over the frame ``ref`` names (writable, no copy)."""
    try:
        import numpy as np
    except ImportError as exc:
        raise ImportError(
            "pybundle: an NdArray was sent, but numpy is not installed in this environment"
        ) from exc
    data = buffers[ref[ARRAY_KEY]]
    return np.frombuffer(data, dtype=np.dtype(ref["dtype"])).reshape(ref["shape"])
