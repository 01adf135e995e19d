"""The oracle's engine: windows reduced one spatial axis at a time, over blocks that stay in cache.

Windowed reductions are separable: each spatial axis is reduced in turn by combining the
kernel's k strided views of the previous result (k - 1 elementwise maxima or additions of
the output's size; no (out x kernel) gather). Positions outside the input (explicit
padding, ceil-mode overhang) are never read: each kernel offset j covers one contiguous
range of outputs (`Axis.valid`), the interior where every offset is real is one vectorised
chain (`interior`), and the few border outputs are combined from their real offsets only
(`plan`). `per_chunk` runs an op's work over blocks of (N x C) planes (and rows), so
intermediates stay in cache and memory stays input plus output; blocks are independent, so
POOLCONFORM_ORACLE_THREADS > 1 spreads them over threads. The ops themselves are in
poolconform/oracle.py and poolconform/oracle_indices.py.
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

from poolconform import shapes
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


class Axis(NamedTuple):
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

    def block(self, r0: int, r1: int) -> tuple[Axis, int, int]:
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
def axes_of(case: PoolCase) -> tuple[Axis, ...]:
    """The case's spatial axes (computed once per case: a small case's oracle, its tolerance
    and its window counts all ask, and each answer costs more than the pooling itself)."""
    pads = shapes.resolve_pads(case)
    out = shapes.spatial_output_shape(case)
    r = case.rank
    return tuple(
        Axis(case.spatial[a], out[a], case.kernel[a], case.strides[a], case.dilations[a], pads[a], pads[a + r])
        for a in range(r)
    )


def at(a: np.ndarray, axis: int, index: int | slice) -> np.ndarray:
    return a[(slice(None),) * axis + (index,)]


def span(g: Axis, j: int, lo: int, hi: int) -> slice:
    """Input slice that offset j reads for outputs [lo, hi)."""
    start = lo * g.s + g.first(j)
    return slice(start, start + (hi - lo - 1) * g.s + 1, g.s)


@functools.lru_cache(maxsize=1024)
def plan(g: Axis) -> tuple[int, int, tuple[tuple[int, tuple[int, ...]], ...]]:
    """Interior [lo, hi) of an axis and, per border output, its real offsets (computed once
    per axis geometry, not once per block)."""
    ranges = [g.valid(j) for j in range(g.k)]
    lo, hi = g.interior()
    borders = tuple((o, tuple(j for j, (first, last) in enumerate(ranges) if first <= o < last)) for o in g.borders())
    return lo, hi, borders


class Scratch:
    """A call's reusable buffers: a block's intermediates are written into arrays allocated once
    per call (and kept in cache), not once per block."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, np.dtype], np.ndarray] = {}
        #: What a buffer kept between blocks holds (see oracle_indices.block_base).
        self.keys: dict[str, object] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: DTypeLike) -> np.ndarray:
        dtype, size = np.dtype(dtype), math.prod(shape)
        buf = self._buffers.get((name, dtype))
        if buf is None or buf.size < size:
            buf = self._buffers[(name, dtype)] = np.empty(max(1, size), dtype)
        return buf[:size].reshape(shape)


def interior(
    a: np.ndarray, out: np.ndarray, axis: int, g: Axis, lo: int, hi: int, scratch: Scratch | None = None,
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
    return at(out, axis, slice(lo, hi)), [at(a, axis, span(g, j, lo, hi)) for j in range(g.k)]


def _phases(flat: np.ndarray, s: int, scratch: Scratch) -> list[np.ndarray]:
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


def reduce_axis(
    a: np.ndarray, axis: int, g: Axis, combine: Callable[..., np.ndarray], dtype: np.dtype, empty: float,
    out: np.ndarray, scratch: Scratch | None = None,
) -> np.ndarray:
    """Combine the k offsets of `axis` (max or add, computed in `dtype`) into `out`; `empty`
    where none is real. The interior first, then the border outputs from their real offsets."""
    lo, hi, borders = plan(g)
    if lo < hi:
        dst, views = interior(a, out, axis, g, lo, hi, scratch)
        if g.k == 1:
            dst[...] = views[0]
        else:
            combine(views[0], views[1], out=dst, dtype=dtype)
            for v in views[2:]:
                combine(dst, v, out=dst, dtype=dtype)
    for o, real in borders:
        dst = at(out, axis, o)
        if not real:
            dst[...] = empty
            continue
        dst[...] = at(a, axis, o * g.s + g.first(real[0]))
        for j in real[1:]:
            combine(dst, at(a, axis, o * g.s + g.first(j)), out=dst, dtype=dtype)
    return out


def reduce_all(
    y: np.ndarray, block: list[Axis], combine: Callable[..., np.ndarray], t: np.dtype, empty: float,
    dst: np.ndarray, scratch: Scratch,
) -> np.ndarray:
    """Reduce every spatial axis of a block (first to last) in type t; the last axis writes
    straight into `dst` when that is of type t, else into a buffer that is returned."""
    for a, g in enumerate(block):
        shape = list(y.shape)
        shape[1 + a] = g.out
        last = a == len(block) - 1
        target = dst if last and dst.dtype == t else scratch.get(f"axis{a}", tuple(shape), t)
        y = reduce_axis(y, 1 + a, g, combine, t, empty, target, scratch)
    return y


def cast(chunk: np.ndarray, t: np.dtype, scratch: Scratch) -> np.ndarray:
    """The block in type t: itself, or a copy in a reused buffer."""
    if chunk.dtype == t:
        return chunk
    y = scratch.get("input", chunk.shape, t)
    np.copyto(y, chunk, casting="unsafe")
    return y


def _blocks(planes: int, spatial: tuple[int, ...], first: Axis | None, elements: int,
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


def max_type(x: np.ndarray) -> np.dtype:
    """Where max is computed: float32 and float64 as they are; 16-bit floats and 8-bit
    integers in float32, which holds each of their values exactly (and -inf)."""
    return x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float32)




def per_chunk(
    x: np.ndarray, axes: Sequence[Axis] | None, out_shape: tuple[int, ...], out_dtype: DTypeLike,
    work: Callable[[np.ndarray, list[Axis], np.ndarray, int, int, Scratch], None], itemsize: int = 8,
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
        scratch = Scratch()
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
