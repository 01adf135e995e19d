"""The bytes between the parent and a backend worker: plain structure, arrays as raw bytes.

A worker may run under another interpreter with another numpy (README "Backends in their
own environments"): a numpy 2.x pickle of an array names `numpy._core`, which numpy 1.x
cannot load. So numpy objects never go through pickle: each array travels as its raw
bytes plus dtype and shape, and the pickle (protocol 4, read by every supported Python)
holds only builtins and poolconform's own dataclasses. The unpickler refuses any numpy
class, so a numpy object that slipped past the encoder fails loudly, not subtly.

A message is: u32 count of arrays, u64 pickle length, the pickle, then per array a u64
length and its bytes.
"""

from __future__ import annotations

import io
import pickle
import struct
from typing import Any

import numpy as np

PROTOCOL = 4
_HEAD = struct.Struct("<IQ")
_LEN = struct.Struct("<Q")


def dtype_text(dtype: np.dtype) -> str:
    """A dtype as text the other side can rebuild: `<f4`, or the ml_dtypes name (`bfloat16`),
    whose `.str` (`<V2`) would lose what it is."""
    return dtype.name if dtype.kind == "V" and dtype.names is None else dtype.str


def dtype_from_text(text: str) -> np.dtype:
    """The inverse of `dtype_text`."""
    try:
        return np.dtype(text)
    except TypeError:
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, text))


class _Encoder(pickle.Pickler):
    def __init__(self, file: io.BytesIO, buffers: list[bytes]) -> None:
        super().__init__(file, protocol=PROTOCOL)
        self.buffers = buffers

    def persistent_id(self, obj: Any) -> Any:  # noqa: D102  pickle's hook
        if isinstance(obj, np.dtype):
            return ("dtype", dtype_text(obj))
        if isinstance(obj, np.generic):
            obj, scalar = np.asarray(obj), True
        elif isinstance(obj, np.ndarray):
            scalar = False
        else:
            return None
        if obj.dtype.hasobject:
            raise TypeError(f"cannot send an object array (dtype {obj.dtype}) to or from a worker")
        self.buffers.append(np.ascontiguousarray(obj).tobytes())
        return ("array", len(self.buffers) - 1, dtype_text(obj.dtype), tuple(obj.shape), scalar)


class _Decoder(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, buffers: list[memoryview]) -> None:
        super().__init__(file)
        self.buffers = buffers

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102  pickle's hook
        if pid[0] == "dtype":
            return dtype_from_text(pid[1])
        _, index, text, shape, scalar = pid
        array = np.frombuffer(bytearray(self.buffers[index]), dtype=dtype_from_text(text)).reshape(shape)
        return array[()] if scalar else array

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102  pickle's hook
        if module == "numpy" or module.startswith(("numpy.", "ml_dtypes")):
            raise pickle.UnpicklingError(f"numpy object {module}.{name} in a worker message (arrays travel as bytes)")
        return super().find_class(module, name)


def encode(message: Any) -> bytes:
    """`message` as one frame; numpy arrays, scalars and dtypes travel out of band."""
    file = io.BytesIO()
    buffers: list[bytes] = []
    _Encoder(file, buffers).dump(message)
    body = file.getvalue()
    parts = [_HEAD.pack(len(buffers), len(body)), body]
    for buffer in buffers:
        parts += [_LEN.pack(len(buffer)), buffer]
    return b"".join(parts)


def decode(frame: bytes) -> Any:
    """The message of one frame from `encode`."""
    view = memoryview(frame)
    count, size = _HEAD.unpack_from(view)
    at = _HEAD.size
    body = view[at:at + size]
    at += size
    buffers = []
    for _ in range(count):
        (length,) = _LEN.unpack_from(view, at)
        at += _LEN.size
        buffers.append(view[at:at + length])
        at += length
    return _Decoder(io.BytesIO(body), buffers).load()
