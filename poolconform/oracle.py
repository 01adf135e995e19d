"""The truth: the ONNX pooling spec computed with vectorised NumPy, at memory speed.

Each windowed op is a reduction run by the oracle's engine (poolconform/oracle_blocks.py:
one spatial axis at a time, over blocks that stay in cache, padding never read); this
module says what each op reduces, in which type, and what it does at the edges.

- Max is computed exactly in the input's own values (16-bit floats and integers in float32,
  which holds them exactly); Indices in the same pass, by a separable first-maximum search
  (last axis first, a running maximum replaced only by a strictly greater value, carrying
  the kernel offset), never gathering windows.
- Sums (average, Lp) accumulate in float64, exact for almost all windows of 16- and 32-bit
  inputs; float64 inputs accumulate in np.longdouble so the mean of values near the type's
  maximum does not overflow to inf in the oracle.

Semantics chosen where the spec is silent (reported as findings, not hidden):
NaN propagates through max and average (IEEE: any NaN in the window gives NaN); a
window with no input element gives -inf for max (the lowest value of an integer type, which
holds no -inf) and NaN for average. Indices pick the
first maximum in row-major window order, a NaN counting as the maximum; a window whose
elements are all -inf (or none) points at its first position, clipped into the input.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable

import numpy as np

from poolconform import dtypes
from poolconform.case import PoolCase
from poolconform.oracle_blocks import Axis, Scratch, axes_of, cast, max_type, per_chunk, reduce_all
from poolconform.oracle_indices import max_with_indices


def _sum_type(x: np.ndarray) -> np.dtype:
    """float64 for every input but float64, whose sums need longdouble's range."""
    return np.dtype(np.longdouble) if x.dtype == np.float64 else np.dtype(np.float64)


def _window_max(case: PoolCase, x: np.ndarray) -> np.ndarray:
    axes = axes_of(case)
    t = max_type(x)

    def work(chunk: np.ndarray, block: list[Axis], dst: np.ndarray, _p0: int, _r0: int, scratch: Scratch) -> None:
        y = reduce_all(cast(chunk, t, scratch), block, _maximum, t, -np.inf, dst, scratch)
        if y is not dst:
            np.copyto(dst, y)

    return per_chunk(x, axes, tuple(g.out for g in axes), np.float64, work, t.itemsize)


def _maximum(a: np.ndarray, b: np.ndarray, out: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return np.maximum(a, b, out=out)


def _add(a: np.ndarray, b: np.ndarray, out: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return np.add(a, b, out=out, dtype=dtype)


def _terms(x: np.ndarray, p: int | None, t: np.dtype) -> np.ndarray:
    """The summands in the sum type: x itself, or |x|**p (a square of a float32 is exact)."""
    y = x.astype(t)
    if p is None:
        return y
    if p == 2:
        return np.square(y, out=y)
    np.abs(y, out=y)
    return y if p == 1 else np.power(y, p, out=y)


def _powers(y: np.ndarray, p: int | None) -> None:
    """The summands in place: y itself, or |y|**p (as _terms computes them)."""
    if p == 2:
        np.square(y, out=y)
    elif p is not None:
        np.abs(y, out=y)
        if p != 1:
            np.power(y, p, out=y)


def _root(s: np.ndarray, p: int) -> np.ndarray:
    """s ** (1 / p) in float64; the rare p > 2 (and every longdouble sum) via longdouble."""
    if p == 1:
        return s.astype(np.float64, copy=False)
    if p == 2 and s.dtype == np.float64:
        return np.sqrt(s, out=s)
    return (s.astype(np.longdouble) ** (np.longdouble(1) / p)).astype(np.float64)


def _window_sum(case: PoolCase, x: np.ndarray, p: int | None, divide: bool) -> np.ndarray:
    """Window sums of x (p None), or of |x|**p then the p-th root; averaged when `divide`."""
    axes = axes_of(case)
    t = _sum_type(x)
    divisor = _divisor(axes, case.count_include_pad, t) if divide else None

    def work(chunk: np.ndarray, block: list[Axis], dst: np.ndarray, _: int, r0: int, scratch: Scratch) -> None:
        y = scratch.get("input", chunk.shape, t)
        np.copyto(y, chunk, casting="unsafe")
        _powers(y, p)
        y = reduce_all(y, block, _add, t, 0.0, dst, scratch)
        if divisor is not None:
            by = divisor if divisor.ndim == 1 else divisor[:, r0 : r0 + dst.shape[1]]
            with np.errstate(invalid="ignore", divide="ignore"):
                np.divide(y, by, out=y)
        if p is not None:
            y = _root(y, p)
        if y is not dst:
            dst[...] = y

    return per_chunk(x, axes, tuple(g.out for g in axes), np.float64, work, t.itemsize)


def _lp_range(t: np.dtype, count: int) -> tuple[float, float]:
    """log2 of the largest |x|**p that `count` of sum below t's maximum, and of t's smallest
    normal: where the plain sum of powers is exact enough."""
    info = np.finfo(t)
    return float(np.log2(info.max)) - math.log2(max(count, 1)), float(np.log2(info.tiny))


def _lp_in_range(x: np.ndarray, p: int | None, count: int, t: np.dtype) -> bool:
    """Whether every nonzero finite |x|**p is a normal number of t and `count` of them sum
    below its maximum: then the plain sum is exact enough. Otherwise (p = 10**6 on 2.86 is
    inf, on 0.5 is 0, p = 9 on float32's maximum is inf) _scaled_lp computes the norm."""
    if p is None or p == 1:
        return True
    top, bottom = _lp_range(t, count)
    if x.dtype.kind == "f":  # every value of the dtype is in range (float32 to p = 6): no scan
        own = np.finfo(x.dtype)
        if p * float(np.log2(own.max)) < top and p * float(np.log2(own.smallest_subnormal)) > bottom:
            return True
    a = np.abs(x.astype(np.float64, copy=False))
    a = a[np.isfinite(a) & (a > 0)]
    if not a.size:
        return True
    return p * math.log2(float(a.max())) < top and p * math.log2(float(a.min())) > bottom


def lp_may_scale(case: PoolCase) -> bool:
    """Whether some input of the case's dtype could send its LpPool to _scaled_lp (whose
    memory budget.oracle_bytes must then count): |x|**p of the dtype's largest or smallest
    nonzero magnitude leaves the sum type's normal range (_lp_in_range, without the data)."""
    import ml_dtypes

    from poolconform import dtypes

    if case.op != "LpPool" or case.p is None or case.p == 1:
        return False
    t = np.dtype(np.longdouble) if case.dtype == "float64" else np.dtype(np.float64)
    top, bottom = _lp_range(t, math.prod(case.kernel))
    own = dtypes.numpy_dtype(case.dtype)
    if dtypes.is_float(case.dtype):
        fi = ml_dtypes.finfo(own)
        largest, smallest = float(fi.max), float(fi.smallest_subnormal)
    else:
        ii = np.iinfo(own)
        largest, smallest = float(max(abs(int(ii.min)), int(ii.max))), 1.0
    return not (case.p * math.log2(largest) < top and case.p * math.log2(smallest) > bottom)


def _unscale(m: np.ndarray, total: np.ndarray, p: int) -> np.ndarray:
    """m * total**(1/p) where m is a window's largest |x| (finite, > 0); inf and NaN windows
    keep m, and a window of zeros or of no element gives 0 (what the plain sum gives)."""
    with np.errstate(all="ignore"):
        y = m.astype(total.dtype) * _root(total.astype(np.longdouble), p).astype(total.dtype)
    y = np.where(np.isfinite(m) & (m > 0), y, np.where(m > 0, m, np.where(np.isnan(m), m, 0.0)))
    return y.astype(np.float64)


def _scaled_lp(case: PoolCase, x: np.ndarray) -> np.ndarray:
    """LpPool as m * (sum (|x_i| / m)**p)**(1/p), m the window's largest |x_i|: every ratio is
    at most 1 and the largest term is 1, so nothing overflows or underflows to 0 for any p.
    Not separable (m is the whole window's), so each kernel offset adds its strided view of
    the zero-padded input, as accumulated_outputs does: memory input plus output per offset."""
    t = _sum_type(x)
    axes = axes_of(case)
    a = np.abs(x.astype(np.float64, copy=False))
    m = _window_max(case, a).astype(t)  # float64 holds every |x| of every input dtype exactly
    right = [max(0, (g.out - 1) * g.s + g.first(g.k - 1) - (g.n - 1)) for g in axes]
    padded = np.pad(a.astype(t), [(0, 0), (0, 0)] + [(g.pb, r) for g, r in zip(axes, right)])
    total = np.zeros(m.shape, dtype=t)
    with np.errstate(all="ignore"):
        for offset in np.ndindex(*(g.k for g in axes)):
            view = padded[(slice(None), slice(None)) + tuple(
                slice(j * g.d, j * g.d + (g.out - 1) * g.s + 1, g.s) for j, g in zip(offset, axes))]
            total += np.power(view / m, case.p)
    return _unscale(m, total, case.p)


def _kept_when_small(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """Memoize a function of hashable arguments whose result is an array, keeping results of
    at most KEPT_ELEMENTS elements (the last KEPT_RESULTS of them). On a small case such an
    array costs more to remake than the pooling itself; a large one is remade (its cost is
    small next to the work it serves, and keeping it would hold memory). Results are made
    read-only, since a kept one is shared."""
    kept: dict[tuple, np.ndarray] = {}
    lock = threading.Lock()

    @functools.wraps(fn)
    def wrapper(*args: object) -> np.ndarray:
        hit = kept.get(args)
        if hit is not None:
            return hit
        result = fn(*args)
        result.flags.writeable = False
        if result.size <= KEPT_ELEMENTS:
            with lock:
                if len(kept) >= KEPT_RESULTS:
                    kept.pop(next(iter(kept)), None)
                kept[args] = result
        return result

    return wrapper


#: See _kept_when_small: at most 16 KiB an array and 512 of them, 8 MiB per function.
KEPT_ELEMENTS = 1 << 11
KEPT_RESULTS = 512


@_kept_when_small
def _divisor(axes: tuple[Axis, ...], include_pad: bool, t: np.dtype) -> np.ndarray:
    """An average's divisor per output, shaped (1, outs...) in type t, or one element when it
    is the same everywhere."""
    divisor = np.ones((1,) * len(axes))
    for a, g in enumerate(axes):
        shape = [1] * len(axes)
        shape[a] = g.out
        divisor = divisor * g.counts(include_pad).reshape(shape)
    divisor = divisor[None].astype(t)
    if divisor.size and divisor.min() == divisor.max():  # one count everywhere: a scalar
        divisor = divisor.ravel()[:1].copy()
    return divisor


def _global(case: PoolCase, x: np.ndarray, kind: str) -> np.ndarray:
    """The global ops, plane chunk by plane chunk: max in the input's values, sums as above."""
    rank = x.ndim - 2
    t = _sum_type(x)
    size = math.prod(x.shape[2:])

    def work(chunk: np.ndarray, _: list[Axis], dst: np.ndarray, *__: object) -> None:
        flat = chunk.reshape(chunk.shape[0], -1)
        if kind == "max":
            y = flat.astype(max_type(x), copy=False).max(axis=1)
        elif kind == "avg":
            y = (flat.sum(axis=1, dtype=t) / t.type(size)).astype(np.float64)
        elif _lp_in_range(flat, case.p, size, t):
            y = _root(_terms(flat, case.p, t).sum(axis=1), case.p)
        else:  # |x|**p over- or underflows t: scale each plane by its largest |x| (_scaled_lp)
            a = np.abs(flat.astype(t))
            m = a.max(axis=1, keepdims=True)
            with np.errstate(all="ignore"):
                total = np.power(a / m, case.p).sum(axis=1, keepdims=True)
            y = _unscale(m, total, case.p).ravel()
        dst[...] = y.reshape((-1,) + (1,) * rank)

    return per_chunk(x, None, (1,) * rank, np.float64, work)


@_kept_when_small
def window_counts(case: PoolCase) -> np.ndarray:
    """How many input elements each output window holds, shaped (1, 1, outs...) to broadcast
    against the output: W of the tolerance model, and 0 marks a window with no element.
    Read-only (kept for small cases: each backend's answer asks for it)."""
    if case.output_size:  # adaptive pooling: poolconform/oracle_adaptive.py
        from poolconform import oracle_adaptive

        return oracle_adaptive.window_counts(case)
    lead = (1, 1)
    if case.is_global:
        return np.full(lead + (1,) * case.rank, int(np.prod(case.spatial)), dtype=np.int64)
    count = np.ones(lead + (1,) * case.rank, dtype=np.int64)
    for a, g in enumerate(axes_of(case)):
        shape = [1] * (2 + case.rank)
        shape[2 + a] = g.out
        count = count * g.counts(False).reshape(shape)
    return count


def _lowest_for_empty(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """An empty window's max is -inf, the identity of max; an integer type holds no -inf, so
    there it is the type's lowest value, which no answer of that type could otherwise meet
    (a window keeps no input element only before opset 22, with ceil_mode's overhang)."""
    if x.dtype.kind in "iu":
        np.copyto(y, float(np.iinfo(x.dtype).min), where=np.isneginf(y))
    return y


def window_abs_means(case: PoolCase, x: np.ndarray) -> np.ndarray:
    """sum |x_i| over each window, over the op's divisor (float64): the scale of the rounding
    error an average can carry. Only for AveragePool and GlobalAveragePool."""
    if case.output_size:  # adaptive pooling: poolconform/oracle_adaptive.py
        from poolconform import oracle_adaptive

        return oracle_adaptive.window_abs_means(case, x)
    a = np.abs(_as_array(x))
    if case.op == "GlobalAveragePool":
        return _global(case, a, "avg")
    if case.op == "AveragePool":
        return _window_sum(case, a, None, divide=True)
    raise ValueError(f"window_abs_means is for averages, not {case.op!r}")


def accumulated_outputs(case: PoolCase, x: np.ndarray, dtype: str) -> np.ndarray:
    """The averaging op computed with every operation rounded to `dtype`, each window summed in
    row-major order: what a backend that accumulates in that type returns (float64 array).

    Sequential in-type sums are not separable: every kernel offset, in row-major order, adds
    its strided view of the zero-padded terms (memory: input plus padding plus output)."""
    t = dtypes.numpy_dtype(dtype)
    x = np.asarray(x).astype(np.float64)
    lp = case.op in ("LpPool", "GlobalLpPool")
    with np.errstate(all="ignore"):
        terms = (np.abs(x).astype(t) ** case.p).astype(t) if lp else x.astype(t)
        if case.is_global:
            flat: np.ndarray = terms.reshape(x.shape[:2] + (-1,))
            total = np.add.accumulate(flat, axis=-1, dtype=t)[..., -1].reshape(x.shape[:2] + (1,) * case.rank)
            divisor = t.type(flat.shape[-1])
        else:
            axes = axes_of(case)
            right = [max(0, (g.out - 1) * g.s + g.first(g.k - 1) - (g.n - 1)) for g in axes]
            padded = np.pad(terms, [(0, 0), (0, 0)] + [(g.pb, r) for g, r in zip(axes, right)])
            total = np.zeros(x.shape[:2] + tuple(g.out for g in axes), dtype=t)
            for offset in np.ndindex(*(g.k for g in axes)):
                view = padded[(slice(None), slice(None)) + tuple(
                    slice(j * g.d, j * g.d + (g.out - 1) * g.s + 1, g.s) for j, g in zip(offset, axes))]
                total = (total + view).astype(t)
            divisor = np.ones((1, 1) + (1,) * len(axes))
            for a, g in enumerate(axes):
                shape = [1] * (2 + len(axes))
                shape[2 + a] = g.out
                divisor = divisor * g.counts(case.count_include_pad).reshape(shape)
            divisor = divisor.astype(t)
        if lp:
            result = (total ** (t.type(1) / t.type(case.p))).astype(t)
        else:
            result = (total / divisor).astype(t)
    return result.astype(np.float64)


def _as_array(x: np.ndarray) -> np.ndarray:
    """The input as a NumPy array in its own type (float64 for anything else numeric)."""
    a = np.asarray(x)
    return a if a.dtype in dtypes.NUMPY_DTYPES.values() else a.astype(np.float64)


def reference_outputs(case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The expected outputs of `case` in float64 (Indices as int64). inf + -inf is NaN and a
    sum past the type's range is inf by the semantics in this module's docstring: NumPy's
    warnings about them would only be noise on the user's terminal."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        return _reference_outputs(case, inputs)


def _reference_outputs(case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
    if case.output_size:  # adaptive pooling, not an ONNX operator: poolconform/oracle_adaptive.py
        from poolconform.oracle_adaptive import reference_outputs as adaptive

        return adaptive(case, inputs)
    if case.context != "single" or case.quant:  # a graph around the node: poolconform/oracle_contexts.py
        from poolconform.oracle_contexts import reference_outputs as in_context

        return in_context(case, inputs, _reference_outputs)
    x = _as_array(inputs[0])
    if case.op == "GlobalMaxPool":
        return [_global(case, x, "max")]
    if case.op == "GlobalAveragePool":
        return [_global(case, x, "avg")]
    if case.op == "GlobalLpPool":
        return [_global(case, x, "lp")]
    if case.op == "MaxPool":
        if case.with_indices:
            values, indices = max_with_indices(case, x)
            return [_lowest_for_empty(values, x), indices]
        return [_lowest_for_empty(_window_max(case, x), x)]
    if case.op == "AveragePool":
        return [_window_sum(case, x, None, divide=True)]
    if case.op == "LpPool":
        if not _lp_in_range(x, case.p, math.prod(case.kernel), _sum_type(x)):
            return [_scaled_lp(case, x)]
        return [_window_sum(case, x, case.p, divide=False)]
    raise ValueError(f"oracle has no rule for op {case.op!r}")
