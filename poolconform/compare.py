"""Compare a backend's outputs with the expected ones: shape first, then values.

Tolerance policy (documented in the README):
- integer dtypes, MaxPool / GlobalMaxPool values and Indices: exact;
- averaging ops (AveragePool, GlobalAveragePool, LpPool, GlobalLpPool) in floating
  types: |actual - expected| <= eps(dtype) * W * scale, where W is the number of
  elements in the window and scale the largest |value| involved: the forward error
  bound of recursive summation (Higham), so any sane summation order passes and a
  wrong divisor or a lost element does not. A result within 1 ULP of the exact
  value (correct rounding) always passes.
NaN is compared by position; a NaN where a number was expected, or the reverse, is a
mismatch whose detail names what the backend did ("NaN dropped").
Every comparison reports max_abs_err, max_rel_err and max_ulp: the tolerance that would
have passed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from poolconform import dtypes
from poolconform.case import PoolCase

AVERAGING_OPS = ("AveragePool", "GlobalAveragePool", "LpPool", "GlobalLpPool")


@dataclass(frozen=True)
class Comparison:
    status: str  # "pass", "mismatch" or "shape-mismatch"
    expected_shape: list[int]
    actual_shape: list[int] | None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    max_ulp: float | None = None
    atol: float | None = None
    detail: str = ""
    digest: str | None = None


def tolerance(case: PoolCase, expected: np.ndarray, inputs: list[np.ndarray]) -> float:
    """Absolute tolerance of the case's first output (see module docstring)."""
    if case.op not in AVERAGING_OPS or not dtypes.is_float(case.dtype):
        return 0.0
    scale = 0.0
    for array in [inputs[0].astype(np.float64), expected]:
        finite = np.abs(array[np.isfinite(array)])
        if finite.size:
            scale = max(scale, float(finite.max()))
    if case.op in ("LpPool", "GlobalLpPool"):
        scale = max(scale, scale ** case.p)  # |x|^p is summed before the root
    return dtypes.epsilon(case.dtype) * max(case.window_elements, 1) * scale


def output_digest(outputs: list[np.ndarray]) -> str:
    """Short fingerprint of a backend's outputs, so two backends can be compared later
    (pairwise agreement) without keeping their arrays."""
    h = hashlib.sha1()
    for out in outputs:
        a = np.ascontiguousarray(np.asarray(out).astype(np.float64))
        h.update(str(a.shape).encode())
        h.update(np.nan_to_num(a, nan=np.pi * 1e300).tobytes())
    return h.hexdigest()[:12]


def _fmt(value: float) -> str:
    return f"{value:.9g}"


def _where(index: tuple[int, ...]) -> str:
    return "[" + ",".join(str(int(i)) for i in index) + "]"


def compare_outputs(
    case: PoolCase,
    expected: list[np.ndarray],
    actual: list[np.ndarray],
    inputs: list[np.ndarray],
) -> Comparison:
    """Classify `actual` against `expected` (float64 truth, or stored outputs for check)."""
    expected_shape = list(expected[0].shape)
    actual_list = [np.asarray(a) for a in actual]
    digest = output_digest(actual_list)
    first_shape = list(actual_list[0].shape) if actual_list else None
    if len(actual_list) < len(expected):
        return Comparison(
            "shape-mismatch", expected_shape, first_shape,
            detail=f"backend returned {len(actual_list)} output(s), expected {len(expected)}", digest=digest,
        )
    for i, (e, a) in enumerate(zip(expected, actual_list)):
        if list(a.shape) != list(e.shape):
            name = "Indices" if i == 1 else "Y"
            return Comparison(
                "shape-mismatch", expected_shape, first_shape,
                detail=f"output {name} has shape {tuple(a.shape)!r}, expected {tuple(e.shape)!r}", digest=digest,
            )
    worst = Comparison("pass", expected_shape, first_shape, 0.0, 0.0, 0.0, 0.0, "", digest)
    for i, (e, a) in enumerate(zip(expected, actual_list)):
        result = _compare_values(case, e, a, inputs, indices=(i == 1))
        if result.status != "pass":
            return Comparison(
                result.status, expected_shape, first_shape, result.max_abs_err, result.max_rel_err,
                result.max_ulp, result.atol, result.detail, digest,
            )
        if i == 0:
            worst = Comparison(
                "pass", expected_shape, first_shape, result.max_abs_err, result.max_rel_err,
                result.max_ulp, result.atol, "", digest,
            )
    return worst


def _compare_values(
    case: PoolCase, expected: np.ndarray, actual: np.ndarray, inputs: list[np.ndarray], indices: bool
) -> Comparison:
    shape = list(expected.shape)
    e = expected.astype(np.float64)
    try:
        a = actual.astype(np.float64)
    except (TypeError, ValueError):
        return Comparison("mismatch", shape, list(actual.shape), detail=f"output dtype {actual.dtype} is not numeric")
    type_name = "int64" if indices else case.dtype
    e_nan, a_nan = np.isnan(e), np.isnan(a)
    both = e_nan & a_nan
    same_inf = np.isinf(e) & (e == a)
    # inf - inf, huge / tiny: the special values are judged by position above, so silence numpy.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        diff = np.where(both | same_inf, 0.0, np.abs(a - e))
        diff = np.where(np.isnan(diff), np.inf, diff)
        rel = np.where(diff == 0, 0.0, diff / np.maximum(np.abs(e), np.finfo(np.float64).tiny))
    ulp = np.zeros_like(e) if indices else dtypes.ulp_distance(a, e, type_name)
    ulp = np.where(both | same_inf, 0.0, np.where(e_nan != a_nan, np.inf, ulp))
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float(rel.max()) if rel.size else 0.0
    max_ulp = float(ulp.max()) if ulp.size else 0.0
    atol = 0.0 if indices else tolerance(case, e, inputs)
    bad = (e_nan != a_nan) | ((diff > atol) & (ulp > (1 if atol > 0 else 0)))
    if not bad.any():
        return Comparison("pass", shape, list(actual.shape), max_abs, max_rel, max_ulp, atol)
    nan_lost = e_nan & ~a_nan
    nan_made = a_nan & ~e_nan
    what = "Indices" if indices else "Y"
    if nan_lost.any():
        w = tuple(np.argwhere(nan_lost)[0])
        detail = f"NaN dropped: {what}{_where(w)} expected NaN (NaN in window), got {_fmt(a[w])}"
    elif nan_made.any():
        w = tuple(np.argwhere(nan_made)[0])
        detail = f"NaN produced: {what}{_where(w)} expected {_fmt(e[w])}, got NaN"
    else:
        w = tuple(np.unravel_index(np.argmax(np.where(bad, diff, -1.0)), diff.shape))
        count = int(bad.sum())
        detail = f"{what}{_where(w)} expected {_fmt(e[w])}, got {_fmt(a[w])}; {count} of {bad.size} element(s) differ"
        if np.isneginf(e[w]) and np.isfinite(a[w]):
            detail += f" ({_fmt(a[w])} for an empty window)"
        elif atol:
            detail += f" (tolerance {atol:.3g})"
    return Comparison("mismatch", shape, list(actual.shape), max_abs, max_rel, max_ulp, atol, detail)
