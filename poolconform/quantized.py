"""Quantized pooling: the case's `quant` = (x_scale, x_zero_point, y_scale, y_zero_point).

The exported graph (poolconform.onnx_export) is what quantized models hold:
- AveragePool -> com.microsoft QLinearAveragePool, GlobalAveragePool -> QLinearGlobalAveragePool
  (per-tensor scale and zero point as initializers, the node's own pooling attributes);
- MaxPool -> DequantizeLinear -> MaxPool -> QuantizeLinear (the QDQ form ONNX Runtime fuses
  into an integer MaxPool).

The oracle is dequantize (float64), the float oracle, requantize: `clip(rint(y / y_scale) +
y_zero_point)` with ties to even, as QuantizeLinear's text says.

Rounding rule, ±1 in the quantized domain near a rounding boundary only: a backend computes
the dequantized window sum in float32 or as integers with a fixed-point rescale (x_scale /
y_scale / count folded into one multiplier), so the value it rounds can differ from
float64's by a few units in the last place of float32; where float64's value lies within
that distance (TIE_MARGIN) of a rounding boundary (k + 1/2), the backend may round to the
other neighbour. That moves the result by exactly 1 and never by 2; everywhere else the
result is exact. MaxPool with y's scale and zero point equal to x's requantizes a stored
value to itself: exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from poolconform.attributes import QUANT_OPS
from poolconform.case import PoolCase
from poolconform.errors import CaseError

#: Quantized element types and their ranges.
QUANT_DTYPES = {"uint8": (0, 255), "int8": (-128, 127)}
#: Scales an id writes plainly (repr without an exponent): `0p05`, never `5em2`.
SCALE_RANGE = (1e-4, 1e4)
#: The largest distance from the oracle's quantized value a backend may show (the rule above).
QUANT_TOLERANCE = 1.0


def check_quant(case: PoolCase) -> None:
    """CaseError when the case's quantized form cannot be written or run."""
    if not case.quant:
        return
    if case.op not in QUANT_OPS:
        raise CaseError(f"{case.op} has no quantized form (only {', '.join(QUANT_OPS)})",
                        category="quant on an op without a quantized form")
    if case.dtype not in QUANT_DTYPES:
        raise CaseError(f"quantized pooling needs dtype uint8 or int8, got {case.dtype!r}",
                        category="quant with a float dtype")
    if len(case.quant) != 4:
        raise CaseError(f"quant must be (x_scale, x_zero_point, y_scale, y_zero_point), got {case.quant!r}")
    low, high = QUANT_DTYPES[case.dtype]
    for name, scale in (("x_scale", case.quant[0]), ("y_scale", case.quant[2])):
        if (isinstance(scale, bool) or not isinstance(scale, float) or not math.isfinite(scale)
                or not SCALE_RANGE[0] <= scale < SCALE_RANGE[1] or "e" in repr(scale)):
            raise CaseError(f"{name} must be a float in [{SCALE_RANGE[0]}, {SCALE_RANGE[1]}) written without "
                            f"an exponent, got {scale!r}")
    for name, zero in (("x_zero_point", case.quant[1]), ("y_zero_point", case.quant[3])):
        if isinstance(zero, bool) or not isinstance(zero, int) or not low <= zero <= high:
            raise CaseError(f"{name} must be an integer in [{low}, {high}] for {case.dtype}, got {zero!r}",
                            category="zero point outside the dtype")


def dequantize(x: np.ndarray, scale: float, zero: int) -> np.ndarray:
    """(x - zero_point) * scale in float64."""
    return (np.asarray(x).astype(np.float64) - zero) * scale


def requantize(y: np.ndarray, scale: float, zero: int, dtype: str) -> np.ndarray:
    """clip(rint(y / scale) + zero_point), ties to even, as float64 holding integers."""
    low, high = QUANT_DTYPES[dtype]
    with np.errstate(invalid="ignore"):
        return np.clip(np.rint(np.asarray(y, dtype=np.float64) / scale) + zero, low, high)


#: The float oracle (poolconform.oracle.reference_outputs), passed in by its callers: this
#: module sits below the oracle, which computes a quantized case through it.
FloatOracle = Callable[[PoolCase, list[np.ndarray]], list[np.ndarray]]


def reference_outputs(case: PoolCase, inputs: list[np.ndarray], float_outputs: FloatOracle) -> list[np.ndarray]:
    """Dequantize, the float oracle on the same pooling case, requantize."""
    xs, xz, ys, yz = case.quant
    xs, ys = float(np.float32(xs)), float(np.float32(ys))  # the scales as the model stores them
    real = case.replace(quant=(), dtype="float64")
    y = float_outputs(real, [dequantize(inputs[0], xs, xz)])
    return [requantize(y[0], ys, yz, case.dtype)]


#: How near to a rounding boundary k + 1/2 the unrounded quantized value must lie for a
#: backend to round it the other way: float32's relative precision (2**-24) at the largest
#: value a clip can see (a few hundred) is about 2**-15; this allows some 30 times that.
TIE_MARGIN = 2.0**-10


def element_tolerance(case: PoolCase, expected: np.ndarray, inputs: list[np.ndarray],
                      float_outputs: FloatOracle) -> np.ndarray:
    """±1 where the rule in this module's docstring allows it: an element whose unrounded
    value y / y_scale + y_zero_point lies within TIE_MARGIN of k + 1/2 (the backend's float32
    or fixed-point value may fall on the other side of the boundary); 0 elsewhere, where
    every faithful computation rounds to the oracle's integer (+1 on every element passed
    before, where an exact integer or a value far from a boundary could not come from
    rounding). A MaxPool that requantizes with x's own scale and zero point is exact."""
    xs, xz, ys, yz = case.quant
    if case.op == "MaxPool" and (xs, xz) == (ys, yz):
        return np.zeros(np.shape(expected))
    low, high = QUANT_DTYPES[case.dtype]
    xs, ys = float(np.float32(xs)), float(np.float32(ys))
    y = float_outputs(case.replace(quant=(), dtype="float64"), [dequantize(inputs[0], xs, xz)])[0]
    with np.errstate(invalid="ignore"):
        unrounded = y / ys + yz
        near_tie = np.abs(unrounded - np.floor(unrounded) - 0.5) <= TIE_MARGIN
        near_edge = (unrounded > low - 0.5 - TIE_MARGIN) & (unrounded < high + 0.5 + TIE_MARGIN)
    return np.where(near_tie & near_edge, QUANT_TOLERANCE, 0.0).reshape(np.shape(expected))
