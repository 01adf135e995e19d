"""The oracle for adaptive pooling (poolconform.adaptive), in float64.

Output index i of an axis pools [floor(i*n/o), ceil((i+1)*n/o)). Max and sum are both
separable over axes, so each axis is reduced in turn: per output index, one slice of the
input along that axis. Sums run in the single-node oracle's sum type (float64, longdouble for
float64 inputs) and the average divides by the window's element count; max is exact, and a
NaN in a window makes its output NaN (as torch's and Keras' kernels do, docs/conformance-space.md).
"""

from __future__ import annotations

import numpy as np

from poolconform.adaptive import windows
from poolconform.case import PoolCase


def _reduce(case: PoolCase, x: np.ndarray, kind: str) -> np.ndarray:
    """Window maxima ("max") or sums ("sum") over every spatial axis in turn."""
    y = x
    for a, (n, o) in enumerate(zip(case.spatial, case.output_size)):
        axis = 2 + a
        starts, ends = windows(n, o)
        parts = []
        for s, e in zip(starts, ends):
            block = np.take(y, np.arange(s, e), axis=axis)
            parts.append(block.max(axis=axis, keepdims=True) if kind == "max"
                         else block.sum(axis=axis, keepdims=True, dtype=y.dtype))
        y = np.concatenate(parts, axis=axis)
    return y


def window_counts(case: PoolCase) -> np.ndarray:
    """Elements in each output's window, shaped (1, 1, outs...): W of the tolerance model."""
    count = np.ones((1, 1) + (1,) * case.rank, dtype=np.int64)
    for a, (n, o) in enumerate(zip(case.spatial, case.output_size)):
        starts, ends = windows(n, o)
        shape = [1] * (2 + case.rank)
        shape[2 + a] = o
        count = count * (ends - starts).reshape(shape)
    return count


def _sum_type(x: np.ndarray) -> np.dtype:
    return np.dtype(np.longdouble) if x.dtype == np.float64 else np.dtype(np.float64)


def _average(case: PoolCase, x: np.ndarray) -> np.ndarray:
    t = _sum_type(x)
    total = _reduce(case, x.astype(t), "sum")
    with np.errstate(invalid="ignore", over="ignore"):
        return (total / window_counts(case).astype(t)).astype(np.float64)


def window_abs_means(case: PoolCase, x: np.ndarray) -> np.ndarray:
    """sum |x_i| over each adaptive window, over its count: the scale of an average's rounding error."""
    if case.op != "AdaptiveAveragePool":
        raise ValueError(f"window_abs_means is for averages, not {case.op!r}")
    return _average(case, np.abs(_as_float(x)))


def _as_float(x: np.ndarray) -> np.ndarray:
    a = np.asarray(x)
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)


def reference_outputs(case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The expected output of an adaptive case in float64."""
    x = _as_float(inputs[0])
    if case.op == "AdaptiveMaxPool":
        return [_reduce(case, x.astype(np.float64), "max")]
    if case.op == "AdaptiveAveragePool":
        return [_average(case, x)]
    raise ValueError(f"the adaptive oracle has no rule for op {case.op!r}")
