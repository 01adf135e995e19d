"""The truth: the ONNX pooling spec computed with vectorised NumPy, at memory speed.

Windowed reductions are separable: each spatial axis is reduced in turn by combining the
kernel's k strided views of the previous result (k - 1 elementwise maxima or additions of
the output's size; no (out x kernel) gather). Positions outside the input (explicit
padding, ceil-mode overhang) are never read: each kernel offset j covers one contiguous
range of outputs, the interior where every offset is real is one vectorised chain, and the
few border outputs are combined from their real offsets only. The work runs over chunks of
(N x C) planes, so intermediates stay in cache and memory stays input plus output; chunks
are independent, so POOLCONFORM_ORACLE_THREADS > 1 spreads them over threads.

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

import contextvars
import functools
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import DTypeLike

from poolconform import dtypes, shapes
from poolconform.case import PoolCase

#: Elements of input per block for a stride-1 float64 average, which holds 32 bytes per input
#: element (work copy, one intermediate per axis, output): 4 MiB a block. Other ops get as
#: many elements as hold the same bytes (a float32 MaxPool k3 s2 about 3.5x as many):
#: big enough that NumPy's per-call cost fades, small enough to stay in cache (measured best
#: here, against blocks of half and twice the size).
CHUNK_ELEMENTS = 1 << 17
_CHUNK_BYTES_PER_ELEMENT = 32


def oracle_threads() -> int:
    """Threads one oracle call may spread its blocks over: POOLCONFORM_ORACLE_THREADS, else 1.

    One by default: during a run the oracle is computed in the parent while the backend
    workers keep the cores busy, and on this project's shared 2-core machine a second thread
    measured no faster (docs/speed.md). Set it on an idle many-core machine to go faster on
    large inputs; outputs are the same bytes for any count."""
    from poolconform.environment import ORACLE_THREADS, thread_count

    return thread_count(ORACLE_THREADS) or 1


class _Axis(NamedTuple):
    """One spatial axis of a windowed case: input size, output size, kernel, stride,
    dilation and explicit pads."""

    n: int
    out: int
    k: int
    s: int
    d: int
    pb: int
    pe: int

    def first(self, j: int) -> int:
        """Input position that offset j of output 0 reads."""
        return j * self.d - self.pb

    def valid(self, j: int) -> tuple[int, int]:
        """The outputs [lo, hi) whose offset j reads a real input element."""
        off = self.first(j)
        lo = min(self.out, (-off + self.s - 1) // self.s) if off < 0 else 0
        hi = min(self.out, max(0, (self.n - 1 - off) // self.s + 1))
        return lo, max(lo, hi)

    def interior(self) -> tuple[int, int]:
        """The outputs [lo, hi) whose every offset is real (lo == hi when none)."""
        ranges = [self.valid(j) for j in range(self.k)]
        lo, hi = max(r[0] for r in ranges), min(r[1] for r in ranges)
        return (lo, hi) if lo < hi else (0, 0)

    def borders(self) -> list[int]:
        lo, hi = self.interior()
        return [*range(0, lo), *range(hi, self.out)]

    def block(self, r0: int, r1: int) -> tuple[_Axis, int, int]:
        """Outputs [r0, r1) as a problem of their own: the axis over input rows [start, stop)."""
        start = max(0, r0 * self.s - self.pb)
        stop = min(self.n, max(start, (r1 - 1) * self.s - self.pb + (self.k - 1) * self.d + 1))
        return self._replace(n=stop - start, out=r1 - r0, pb=self.pb - r0 * self.s + start), start, stop

    def positions(self) -> np.ndarray:
        """Input position of each (output, offset), shape (out, k), unclipped."""
        return np.arange(self.out)[:, None] * self.s + self.first(0) + np.arange(self.k)[None, :] * self.d

    def counts(self, include_pad: bool) -> np.ndarray:
        """Per output: offsets on real input (or, with include_pad, inside input + pads)."""
        pos = self.positions()
        low, high = (-self.pb, self.n + self.pe) if include_pad else (0, self.n)
        return ((pos >= low) & (pos < high)).sum(axis=1)


@functools.lru_cache(maxsize=4096)
def _axes(case: PoolCase) -> tuple[_Axis, ...]:
    """The case's spatial axes (computed once per case: a small case's oracle, its tolerance
    and its window counts all ask, and each answer costs more than the pooling itself)."""
    pads = shapes.resolve_pads(case)
    out = shapes.spatial_output_shape(case)
    r = case.rank
    return tuple(
        _Axis(case.spatial[a], out[a], case.kernel[a], case.strides[a], case.dilations[a], pads[a], pads[a + r])
        for a in range(r)
    )


def _at(a: np.ndarray, axis: int, index: int | slice) -> np.ndarray:
    return a[(slice(None),) * axis + (index,)]


def _span(g: _Axis, j: int, lo: int, hi: int) -> slice:
    """Input slice that offset j reads for outputs [lo, hi)."""
    start = lo * g.s + g.first(j)
    return slice(start, start + (hi - lo - 1) * g.s + 1, g.s)


@functools.lru_cache(maxsize=1024)
def _plan(g: _Axis) -> tuple[int, int, tuple[tuple[int, tuple[int, ...]], ...]]:
    """Interior [lo, hi) of an axis and, per border output, its real offsets (computed once
    per axis geometry, not once per block)."""
    ranges = [g.valid(j) for j in range(g.k)]
    lo, hi = g.interior()
    borders = tuple((o, tuple(j for j, (first, last) in enumerate(ranges) if first <= o < last)) for o in g.borders())
    return lo, hi, borders


class _Scratch:
    """A call's reusable buffers: a block's intermediates are written into arrays allocated once
    per call (and kept in cache), not once per block."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, np.dtype], np.ndarray] = {}
        #: What a buffer kept between blocks holds (see _block_base).
        self.keys: dict[str, object] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: DTypeLike) -> np.ndarray:
        dtype, size = np.dtype(dtype), math.prod(shape)
        buf = self._buffers.get((name, dtype))
        if buf is None or buf.size < size:
            buf = self._buffers[(name, dtype)] = np.empty(max(1, size), dtype)
        return buf[:size].reshape(shape)


def _interior(
    a: np.ndarray, out: np.ndarray, axis: int, g: _Axis, lo: int, hi: int, scratch: _Scratch | None = None,
) -> tuple[np.ndarray, list]:
    """The destination and the k source views of outputs [lo, hi) on `axis`.

    When the layout allows (row length = outputs x stride, and the axis is the last one or
    has stride 1), they are flat 1-D views over the whole block: NumPy runs a 1-D loop
    several times faster than the same work as a 2-D one. Flat views also compute (in-bounds)
    garbage at the border outputs lying between, which the border pass then rewrites.
    On the last axis with a stride s > 1, for 32-bit values (maxima), the block is first split
    into its s phases (elements i*s + p, each copied once into a contiguous buffer): every
    offset's view is then a contiguous slice of one phase. Measured here, NumPy's float32
    maximum runs about 7x faster on contiguous than on stride-2 views, which more than pays
    for the s strided copies; float64 additions gain under 2x, which does not (_phases).
    """
    n, inner = a.shape[axis], math.prod(a.shape[axis + 1 :])
    if a.flags.c_contiguous and out.flags.c_contiguous and n == g.out * g.s and (inner == 1 or g.s == 1):
        outer = math.prod(a.shape[:axis])
        begin, end = lo * inner, ((outer - 1) * g.out + hi) * inner
        af, of = a.reshape(-1), out.reshape(-1)
        views = []
        phases = _phases(af, g.s, scratch) if g.s > 1 and g.k > 1 and a.itemsize <= 4 and scratch else None
        for j in range(g.k):
            if phases is not None:
                shift, phase = divmod(g.first(j), g.s)
                views.append(phases[phase][begin + shift : end + shift])
                continue
            start = begin * g.s + (j * g.d - g.pb) * inner
            views.append(af[start : start + (end - begin - 1) * g.s + 1 : g.s])
        return of[begin:end], views
    return _at(out, axis, slice(lo, hi)), [_at(a, axis, _span(g, j, lo, hi)) for j in range(g.k)]


def _phases(flat: np.ndarray, s: int, scratch: _Scratch) -> list[np.ndarray]:
    """The s phases of a flat block whose rows are a whole number of strides long: phase p
    holds elements p, p + s, p + 2s, ... (so row r's output o at phase p is element
    r * outputs + o), each in a contiguous buffer of the scratch."""
    size = flat.size // s
    out = []
    for p in range(s):
        buf = scratch.get(f"phase{p}", (size,), flat.dtype)
        np.copyto(buf, flat[p : p + (size - 1) * s + 1 : s])
        out.append(buf)
    return out


def _reduce_axis(
    a: np.ndarray, axis: int, g: _Axis, combine: Callable[..., np.ndarray], dtype: np.dtype, empty: float,
    out: np.ndarray, scratch: _Scratch | None = None,
) -> np.ndarray:
    """Combine the k offsets of `axis` (max or add, computed in `dtype`) into `out`; `empty`
    where none is real. The interior first, then the border outputs from their real offsets."""
    lo, hi, borders = _plan(g)
    if lo < hi:
        dst, views = _interior(a, out, axis, g, lo, hi, scratch)
        if g.k == 1:
            dst[...] = views[0]
        else:
            combine(views[0], views[1], out=dst, dtype=dtype)
            for v in views[2:]:
                combine(dst, v, out=dst, dtype=dtype)
    for o, real in borders:
        dst = _at(out, axis, o)
        if not real:
            dst[...] = empty
            continue
        dst[...] = _at(a, axis, o * g.s + g.first(real[0]))
        for j in real[1:]:
            combine(dst, _at(a, axis, o * g.s + g.first(j)), out=dst, dtype=dtype)
    return out


def _reduce_all(
    y: np.ndarray, block: list[_Axis], combine: Callable[..., np.ndarray], t: np.dtype, empty: float,
    dst: np.ndarray, scratch: _Scratch,
) -> np.ndarray:
    """Reduce every spatial axis of a block (first to last) in type t; the last axis writes
    straight into `dst` when that is of type t, else into a buffer that is returned."""
    for a, g in enumerate(block):
        shape = list(y.shape)
        shape[1 + a] = g.out
        last = a == len(block) - 1
        target = dst if last and dst.dtype == t else scratch.get(f"axis{a}", tuple(shape), t)
        y = _reduce_axis(y, 1 + a, g, combine, t, empty, target, scratch)
    return y


def _cast(chunk: np.ndarray, t: np.dtype, scratch: _Scratch) -> np.ndarray:
    """The block in type t: itself, or a copy in a reused buffer."""
    if chunk.dtype == t:
        return chunk
    y = scratch.get("input", chunk.shape, t)
    np.copyto(y, chunk, casting="unsafe")
    return y


def _blocks(planes: int, spatial: tuple[int, ...], first: _Axis | None, elements: int,
            ) -> Iterator[tuple[slice, int, int]]:
    """(planes, output rows r0..r1 of the first spatial axis) per block of about `elements`
    input elements; a plane larger than that is cut along its first axis."""
    plane = math.prod(spatial)
    if first is None or plane <= elements:
        step = max(1, elements // max(1, plane))
        rows = first.out if first is not None else 1
        for start in range(0, planes, step):
            yield slice(start, min(planes, start + step)), 0, rows
        return
    rows = max(1, elements // (first.s * math.prod(spatial[1:])))
    for p in range(planes):
        for r0 in range(0, first.out, rows):
            yield slice(p, p + 1), r0, min(first.out, r0 + rows)


def _max_type(x: np.ndarray) -> np.dtype:
    """Where max is computed: float32 and float64 as they are; 16-bit floats and 8-bit
    integers in float32, which holds each of their values exactly (and -inf)."""
    return x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float32)


def _sum_type(x: np.ndarray) -> np.dtype:
    """float64 for every input but float64, whose sums need longdouble's range."""
    return np.dtype(np.longdouble) if x.dtype == np.float64 else np.dtype(np.float64)


def _per_chunk(
    x: np.ndarray, axes: Sequence[_Axis] | None, out_shape: tuple[int, ...], out_dtype: DTypeLike,
    work: Callable[[np.ndarray, list[_Axis], np.ndarray, int, int, _Scratch], None], itemsize: int = 8,
    out_itemsize: int = 8,
) -> np.ndarray:
    """Run `work(block of input, its axes, its part of the output, p0, r0, scratch)` over blocks
    of (N x C) planes (and of rows of the first spatial axis); work writes the output part.

    Blocks are independent, so with several threads (oracle_threads()) each thread takes a
    contiguous run of them with buffers of its own; results do not depend on the count.
    `itemsize`, `out_itemsize`: bytes per element of the work type and of the outputs (all
    of them), which set the block size (see CHUNK_ELEMENTS)."""
    planes = x.reshape((-1,) + x.shape[2:])
    out: np.ndarray = np.empty((planes.shape[0],) + out_shape, out_dtype)
    first, rest = (axes[0], axes[1:]) if axes else (None, [])
    held, kept = float(itemsize), 1.0  # bytes a block holds per input element
    for g in axes or []:
        kept *= g.out / max(1, g.n)
        held += itemsize * kept
    held += out_itemsize * kept
    elements = max(1, int(CHUNK_ELEMENTS * _CHUNK_BYTES_PER_ELEMENT / held))
    blocks = list(_blocks(planes.shape[0], x.shape[2:], first, elements))

    def run(part: list[tuple[slice, int, int]]) -> None:
        scratch = _Scratch()
        for sl, r0, r1 in part:
            if first is None:
                work(planes[sl], [], out[sl], sl.start, sl.stop, scratch)
                continue
            sub, start, stop = first.block(r0, r1) if (r0, r1) != (0, first.out) else (first, 0, first.n)
            work(planes[sl, start:stop], [sub, *rest], out[sl, r0:r1], sl.start, r0, scratch)

    n = min(oracle_threads(), len(blocks) // 2) if len(blocks) >= 4 else 1
    if n <= 1:
        run(blocks)
    else:
        _in_threads(run, [blocks[i * len(blocks) // n : (i + 1) * len(blocks) // n] for i in range(n)])
    return out.reshape(x.shape[:2] + out_shape)


def _in_threads(run: Callable[[list], None], parts: list[list]) -> None:
    """run(part) for every part, the first in this thread and the others in threads of their
    own, each in a copy of this thread's context (so np.errstate carries over); the first
    exception is raised once all are done."""
    errors: list[BaseException] = []

    def guarded(part: list) -> None:
        try:
            run(part)
        except BaseException as exc:  # re-raised in the calling thread below
            errors.append(exc)

    threads = [threading.Thread(target=contextvars.copy_context().run, args=(guarded, part), daemon=True)
               for part in parts[1:]]
    for t in threads:
        t.start()
    guarded(parts[0])
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def _window_max(case: PoolCase, x: np.ndarray) -> np.ndarray:
    axes = _axes(case)
    t = _max_type(x)

    def work(chunk: np.ndarray, block: list[_Axis], dst: np.ndarray, _p0: int, _r0: int, scratch: _Scratch) -> None:
        y = _reduce_all(_cast(chunk, t, scratch), block, _maximum, t, -np.inf, dst, scratch)
        if y is not dst:
            np.copyto(dst, y)

    return _per_chunk(x, axes, tuple(g.out for g in axes), np.float64, work, t.itemsize)


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
    axes = _axes(case)
    t = _sum_type(x)
    divisor = _divisor(axes, case.count_include_pad, t) if divide else None

    def work(chunk: np.ndarray, block: list[_Axis], dst: np.ndarray, _: int, r0: int, scratch: _Scratch) -> None:
        y = scratch.get("input", chunk.shape, t)
        np.copyto(y, chunk, casting="unsafe")
        _powers(y, p)
        y = _reduce_all(y, block, _add, t, 0.0, dst, scratch)
        if divisor is not None:
            by = divisor if divisor.ndim == 1 else divisor[:, r0 : r0 + dst.shape[1]]
            with np.errstate(invalid="ignore", divide="ignore"):
                np.divide(y, by, out=y)
        if p is not None:
            y = _root(y, p)
        if y is not dst:
            dst[...] = y

    return _per_chunk(x, axes, tuple(g.out for g in axes), np.float64, work, t.itemsize)


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
    axes = _axes(case)
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
def _divisor(axes: tuple[_Axis, ...], include_pad: bool, t: np.dtype) -> np.ndarray:
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

    def work(chunk: np.ndarray, _: list[_Axis], dst: np.ndarray, *__: object) -> None:
        flat = chunk.reshape(chunk.shape[0], -1)
        if kind == "max":
            y = flat.astype(_max_type(x), copy=False).max(axis=1)
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

    return _per_chunk(x, None, (1,) * rank, np.float64, work)


def _max_with_indices(case: PoolCase, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MaxPool's values and ONNX Indices (flat over (N, C, spatial), row-major or column-major
    per plane), in one pass over blocks, never materialising a window.

    Indices point at the first maximum in row-major window order (a NaN counting as the
    maximum, padding as -inf at its position clipped into the input). The first maximum is
    separable: reduce the last axis first, keeping per output the first offset holding its
    row's maximum, then each earlier axis, keeping the first row whose maximum is the largest
    together with that row's code (`_argmax_axis`). The code is the window offset in row-major
    order; an output's index is a per-position base plus a per-offset delta. Outputs whose
    maximum is -inf (no element above padding) are recomputed from their positions.
    """
    axes = _axes(case)
    spatial = x.shape[2:]
    rank = len(spatial)
    t = _max_type(x)
    if case.storage_order == 0:
        plane_strides = [math.prod(spatial[a + 1 :]) for a in range(rank)]
    else:
        plane_strides = [math.prod(spatial[:a]) for a in range(rank)]
    plane = math.prod(spatial)
    kernel = tuple(g.k for g in axes)
    offsets = list(np.ndindex(*kernel))
    code_type = np.dtype(np.uint8 if len(offsets) <= 256 else np.uint32)  # the row-major offset
    delta = np.array([sum(j * g.d * st for j, g, st in zip(js, axes, plane_strides)) for js in offsets], np.int64)
    # Index of each output's offset-0 position (unclipped), as one array per plane.
    base = np.zeros(tuple(g.out for g in axes), np.int64)
    for a, g in enumerate(axes):
        shape = [1] * rank
        shape[a] = g.out
        base += ((np.arange(g.out) * g.s - g.pb) * plane_strides[a]).reshape(shape)
    values = np.empty((math.prod(x.shape[:2]),) + base.shape, np.float64)

    def work(chunk: np.ndarray, block: list[_Axis], dst: np.ndarray, p0: int, r0: int, scratch: _Scratch) -> None:
        y = _cast(chunk, t, scratch)
        vals, code = _first_maxima(y, block, scratch, code_type, nan_aware=False)
        if t.kind == "f" and vals.size and np.isnan(vals.max()):  # max propagates NaN: a window holds one
            vals, code = _first_maxima(y, block, scratch, code_type, nan_aware=True)
        np.copyto(values[p0 : p0 + dst.shape[0], r0 : r0 + dst.shape[1]], vals)
        np.take(delta + p0 * plane, code, out=dst, mode="clip")
        dst += _block_base(base, dst.shape, r0, plane, scratch)
        if t.kind == "f" or any(g.borders() for g in block):
            _fix_negative_infinity(y, block, vals, dst, p0, r0, axes, plane_strides, plane, offsets)

    indices = _per_chunk(x, axes, base.shape, np.int64, work, t.itemsize + 1, 16)
    return values.reshape(indices.shape), indices


def _first_maxima(
    y: np.ndarray, block: list[_Axis], scratch: _Scratch, code_type: np.dtype, nan_aware: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """A block's maxima and the row-major kernel offset of each one's first occurrence,
    reducing the last axis first (see _argmax_axis)."""
    vals, code = y, None
    after = 1  # kernel offsets per step of this axis, in row-major order
    for a in reversed(range(len(block))):
        g = block[a]
        shape = list(vals.shape)
        shape[1 + a] = g.out
        new_vals = scratch.get(f"vals{a}", tuple(shape), vals.dtype)
        new_code = scratch.get(f"code{a}", tuple(shape), code_type)
        _argmax_axis(vals, code, 1 + a, g, after, new_vals, new_code, nan_aware, scratch)
        vals, code = new_vals, new_code
        after *= g.k
    assert code is not None  # a windowed case has at least one spatial axis
    return vals, code


def _block_base(base: np.ndarray, shape: tuple[int, ...], r0: int, plane: int, scratch: _Scratch) -> np.ndarray:
    """base (rows from r0) plus each plane's offset relative to the block's first plane, for a
    block of `shape`; kept in the thread's scratch, since most blocks share it."""
    key = (shape, r0)
    if scratch.keys.get("base") != key:
        out = scratch.get("base", shape, np.int64)
        np.add(base[None, r0 : r0 + shape[1]],
               (np.arange(shape[0], dtype=np.int64) * plane).reshape((-1,) + (1,) * (len(shape) - 1)), out=out)
        scratch.keys["base"] = key
    return scratch.get("base", shape, np.int64)


def _argmax_axis(
    a: np.ndarray, code: np.ndarray | None, axis: int, g: _Axis, after: int, out: np.ndarray,
    out_code: np.ndarray, nan_aware: bool, scratch: _Scratch,
) -> None:
    """Max over the k offsets of `axis` into `out`, and into `out_code` the code of the first
    offset j holding it: j * after + code there (code None: just j). Offsets run in order and
    replace the running maximum only when strictly greater (or the first NaN), so the first
    maximum stays; the code is updated branch-free, in wrapping unsigned arithmetic."""
    ct = out_code.dtype.type
    lo, hi, borders = _plan(g)

    def step(m: np.ndarray, c: np.ndarray, m0: np.ndarray, c0: np.ndarray | None, v: np.ndarray,
             cv: np.ndarray | None, j: int) -> None:
        """(m, c) = the running (max, code) (m0, c0) after offset j's values v and codes cv;
        c0 None is code 0 everywhere (only before j = 1, so 0/1 is the bool `v > m0`)."""
        first = c0 is None and cv is None
        upd = np.greater(v, m0, out=c.view(np.bool_) if first else scratch.get("upd", m.shape, np.bool_))
        if nan_aware:
            fresh = np.isnan(v, out=scratch.get("nan", m.shape, np.bool_))
            fresh &= ~np.isnan(m0)
            upd |= fresh
        np.maximum(m0, v, out=m)
        if first:
            return
        assert c0 is not None  # only the first step (handled above) starts from no code
        if cv is None:  # codes grow with j: the running code is the largest j that updated
            np.maximum(c0, np.multiply(upd.view(np.uint8), ct(j), out=scratch.get("term", m.shape, c.dtype)), out=c)
            return
        term = np.add(cv, ct(j * after), out=scratch.get("term", m.shape, c.dtype))
        term -= c0
        term *= upd.view(np.uint8)
        np.add(c0, term, out=c)

    if lo < hi:
        dst, views = _interior(a, out, axis, g, lo, hi, scratch)
        cdst, cviews = _interior(code, out_code, axis, g, lo, hi) if code is not None else (None, None)
        if cdst is None:
            cdst = _interior(a, out_code, axis, g, lo, hi)[0]
        c = (lambda j: cviews[j]) if cviews is not None else (lambda j: None)  # noqa: E731
        if g.k == 1:
            dst[...] = views[0]
            cdst[...] = cviews[0] if cviews is not None else 0
        else:
            step(dst, cdst, views[0], c(0), views[1], c(1), 1)
            for j in range(2, g.k):
                step(dst, cdst, dst, cdst, views[j], c(j), j)
    for o, real in borders:
        dst, cdst = _at(out, axis, o), _at(out_code, axis, o)
        if not real:
            dst[...] = -np.inf
            cdst[...] = 0
            continue
        j0 = real[0]
        dst[...] = _at(a, axis, o * g.s + g.first(j0))
        cdst[...] = (_at(code, axis, o * g.s + g.first(j0)) if code is not None else 0) + ct(j0 * after)
        for j in real[1:]:
            at = o * g.s + g.first(j)
            step(dst, cdst, dst, cdst, _at(a, axis, at), _at(code, axis, at) if code is not None else None, j)
    return None


def _fix_negative_infinity(
    y: np.ndarray, block: list[_Axis], best: np.ndarray, dst: np.ndarray, p0: int, r0: int, axes: Sequence[_Axis],
    plane_strides: list[int], plane: int, offsets: list[tuple[int, ...]],
) -> None:
    """Indices of the outputs whose maximum is -inf: the first offset that is -inf or padding,
    at its position clipped into the input (padding never equals M in the main search)."""
    if not best.size or np.fmin.reduce(best, axis=None) != -np.inf:  # a reduction, no mask; fmin skips NaN
        return
    where = np.nonzero(best == -np.inf)
    if not where[0].size:
        return
    outs = where[1:]
    first = None
    for c in reversed(range(len(offsets))):
        pos = [o * g.s + j * g.d - g.pb for o, g, j in zip(outs, block, offsets[c])]
        real = np.ones(where[0].shape, bool)
        for q, g in zip(pos, block):
            real &= (q >= 0) & (q < g.n)
        value = np.full(where[0].shape, -np.inf)
        clipped = tuple(np.clip(q, 0, g.n - 1) for q, g in zip(pos, block))
        value[real] = y[(where[0],) + clipped][real]
        hit = value == -np.inf
        first = np.where(hit, c, first if first is not None else 0)
    start = max(0, r0 * axes[0].s - axes[0].pb)  # the block's first input row
    js = np.array(offsets, np.int64)[first]
    index = (where[0] + p0) * plane
    for a, (o, g, full) in enumerate(zip(outs, block, axes)):
        q = o * g.s + js[:, a] * g.d - g.pb + (start if a == 0 else 0)
        index += np.clip(q, 0, full.n - 1) * plane_strides[a]
    dst[where] = index


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
    for a, g in enumerate(_axes(case)):
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
            axes = _axes(case)
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
            values, indices = _max_with_indices(case, x)
            return [_lowest_for_empty(values, x), indices]
        return [_lowest_for_empty(_window_max(case, x), x)]
    if case.op == "AveragePool":
        return [_window_sum(case, x, None, divide=True)]
    if case.op == "LpPool":
        if not _lp_in_range(x, case.p, math.prod(case.kernel), _sum_type(x)):
            return [_scaled_lp(case, x)]
        return [_window_sum(case, x, case.p, divide=False)]
    raise ValueError(f"oracle has no rule for op {case.op!r}")
