"""Element types: numpy dtype, ONNX enum, machine epsilon, and their order-preserving ULP grid.

bfloat16 has no numpy type of its own; onnx already depends on ml_dtypes, which has one.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
from onnx import TensorProto

NUMPY_DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8),
}

ONNX_TYPES: dict[str, int] = {
    "float32": TensorProto.FLOAT,
    "float64": TensorProto.DOUBLE,
    "float16": TensorProto.FLOAT16,
    "bfloat16": TensorProto.BFLOAT16,
    "int8": TensorProto.INT8,
    "uint8": TensorProto.UINT8,
}

#: Same-width unsigned integers, to read a float's bits as an ordered integer.
_BITS: dict[int, type[np.signedinteger]] = {2: np.int16, 4: np.int32, 8: np.int64}


def numpy_dtype(name: str) -> np.dtype:
    return NUMPY_DTYPES[name]


def dtype_name(dtype: np.dtype) -> str:
    """Our name for a numpy dtype (the inverse of numpy_dtype)."""
    for name, candidate in NUMPY_DTYPES.items():
        if candidate == dtype:
            return name
    raise KeyError(str(dtype))


def onnx_type_name(elem_type: int) -> str:
    for name, candidate in ONNX_TYPES.items():
        if candidate == elem_type:
            return name
    raise KeyError(elem_type)


def is_float(name: str) -> bool:
    return name in ("float32", "float64", "float16", "bfloat16")


def epsilon(name: str) -> float:
    """Unit roundoff scale of the type (0 for integers: they compare exactly)."""
    if not is_float(name):
        return 0.0
    return float(ml_dtypes.finfo(NUMPY_DTYPES[name]).eps)


#: The type sums are accumulated in: 16-bit floats widen to float32, as ONNX Runtime,
#: PyTorch and TensorFlow do on CPU (the tolerance model in the README).
ACCUMULATION_TYPES: dict[str, str] = {
    "float16": "float32",
    "bfloat16": "float32",
    "float32": "float32",
    "float64": "float64",
}


def accumulation_type(name: str) -> str:
    """The float type a conforming backend is assumed to accumulate `name` in."""
    return ACCUMULATION_TYPES[name]


def unit_roundoff(name: str) -> float:
    """u = eps / 2: the largest relative error of one correctly rounded operation."""
    return epsilon(name) / 2


def smallest_subnormal(name: str) -> float:
    """Spacing of the type near zero: the absolute error floor of a rounding that underflows."""
    return float(ml_dtypes.finfo(NUMPY_DTYPES[name]).smallest_subnormal)


def ulp(values: np.ndarray, name: str) -> np.ndarray:
    """Spacing of float type `name` at |values| (float64, elementwise, never overflows).

    Magnitudes past the largest finite get the spacing at the largest finite; NaN counts as 0.
    """
    info = ml_dtypes.finfo(NUMPY_DTYPES[name])
    v = np.abs(np.asarray(values, dtype=np.float64))
    v = np.where(np.isnan(v), 0.0, np.minimum(v, float(info.max)))
    _, exp = np.frexp(v)  # v = m * 2**exp with m in [0.5, 1): floor(log2 v) = exp - 1
    exp = np.where(v == 0, info.minexp, exp - 1)
    return np.ldexp(1.0, np.maximum(exp, info.minexp) - info.nmant)


def ulp_distance(a: np.ndarray, b: np.ndarray, name: str) -> np.ndarray:
    """Number of representable values of type `name` between a and b (elementwise, float64).

    Both are rounded to the type first; NaN positions give 0 here (NaN is judged apart),
    and an infinity is one step past the largest finite value.
    """
    if not is_float(name):
        return np.abs(a.astype(np.float64) - b.astype(np.float64))
    dtype = NUMPY_DTYPES[name]
    with np.errstate(over="ignore"):  # beyond the type's range rounds to inf, as it should
        x = np.nan_to_num(np.asarray(a, dtype=np.float64), posinf=np.inf, neginf=-np.inf).astype(dtype)
        y = np.nan_to_num(np.asarray(b, dtype=np.float64), posinf=np.inf, neginf=-np.inf).astype(dtype)
    return np.abs(_line(x) - _line(y)).astype(np.float64)


def _line(x: np.ndarray) -> np.ndarray:
    """Values of one float type as positions on a monotonic integer line (adjacent values
    one apart, -0.0 and 0.0 both at 0, each infinity one past the largest finite)."""
    ints = _BITS[x.dtype.itemsize]
    bits = x.view(ints).astype(np.int64)
    magnitude = np.int64(np.iinfo(ints).max)  # every bit but the sign
    return np.where(bits < 0, -(bits & magnitude), bits)


def _from_line(positions: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The inverse of _line (0 gives +0.0)."""
    ints = _BITS[dtype.itemsize]
    sign = np.int64(np.iinfo(ints).min)
    bits = np.where(positions < 0, (-positions) | sign, positions)
    return bits.astype(ints).view(dtype)


def bracket(exact: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The two values of type `name` around each exact (float64) value: equal where the value
    is exactly representable. A faithfully rounded result is one of them, and no other value
    is within 1 ULP of the exact one. Held in that type where NumPy has it (float16, float32:
    a quarter or half of float64's bytes, every value the same), else as float64."""
    dtype = NUMPY_DTYPES[name]
    with np.errstate(over="ignore", invalid="ignore"):
        nearest = np.asarray(exact, dtype=np.float64).astype(dtype)
        back = nearest.astype(np.float64)
    line = _line(nearest)
    step = np.where(back > exact, -1, np.where(back < exact, 1, 0))
    other = _from_line(line + step, dtype).astype(np.float64)
    held = dtype if dtype in (np.float16, np.float32) else np.float64
    return np.minimum(back, other).astype(held, copy=False), np.maximum(back, other).astype(held, copy=False)
