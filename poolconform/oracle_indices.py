"""MaxPool's Indices: where each window's first maximum lies, found without gathering windows.

The first maximum is separable, so it is found by the oracle's engine
(poolconform/oracle_blocks.py) axis by axis, in the same pass as the maxima themselves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from poolconform.case import PoolCase
from poolconform.oracle_blocks import Axis, Scratch, at, axes_of, cast, interior, max_type, per_chunk, plan


def max_with_indices(case: PoolCase, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
    axes = axes_of(case)
    spatial = x.shape[2:]
    rank = len(spatial)
    t = max_type(x)
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

    def work(chunk: np.ndarray, block: list[Axis], dst: np.ndarray, p0: int, r0: int, scratch: Scratch) -> None:
        y = cast(chunk, t, scratch)
        vals, code = _first_maxima(y, block, scratch, code_type, nan_aware=False)
        if t.kind == "f" and vals.size and np.isnan(vals.max()):  # max propagates NaN: a window holds one
            vals, code = _first_maxima(y, block, scratch, code_type, nan_aware=True)
        np.copyto(values[p0 : p0 + dst.shape[0], r0 : r0 + dst.shape[1]], vals)
        np.take(delta + p0 * plane, code, out=dst, mode="clip")
        dst += block_base(base, dst.shape, r0, plane, scratch)
        if t.kind == "f" or any(g.borders() for g in block):
            _fix_negative_infinity(y, block, vals, dst, p0, r0, axes, plane_strides, plane, offsets)

    indices = per_chunk(x, axes, base.shape, np.int64, work, t.itemsize + 1, 16)
    return values.reshape(indices.shape), indices


def _first_maxima(
    y: np.ndarray, block: list[Axis], scratch: Scratch, code_type: np.dtype, nan_aware: bool,
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


def block_base(base: np.ndarray, shape: tuple[int, ...], r0: int, plane: int, scratch: Scratch) -> np.ndarray:
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
    a: np.ndarray, code: np.ndarray | None, axis: int, g: Axis, after: int, out: np.ndarray,
    out_code: np.ndarray, nan_aware: bool, scratch: Scratch,
) -> None:
    """Max over the k offsets of `axis` into `out`, and into `out_code` the code of the first
    offset j holding it: j * after + code there (code None: just j). Offsets run in order and
    replace the running maximum only when strictly greater (or the first NaN), so the first
    maximum stays; the code is updated branch-free, in wrapping unsigned arithmetic."""
    ct = out_code.dtype.type
    lo, hi, borders = plan(g)

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
        dst, views = interior(a, out, axis, g, lo, hi, scratch)
        cdst, cviews = interior(code, out_code, axis, g, lo, hi) if code is not None else (None, None)
        if cdst is None:
            cdst = interior(a, out_code, axis, g, lo, hi)[0]
        c = (lambda j: cviews[j]) if cviews is not None else (lambda j: None)  # noqa: E731
        if g.k == 1:
            dst[...] = views[0]
            cdst[...] = cviews[0] if cviews is not None else 0
        else:
            step(dst, cdst, views[0], c(0), views[1], c(1), 1)
            for j in range(2, g.k):
                step(dst, cdst, dst, cdst, views[j], c(j), j)
    for o, real in borders:
        dst, cdst = at(out, axis, o), at(out_code, axis, o)
        if not real:
            dst[...] = -np.inf
            cdst[...] = 0
            continue
        j0 = real[0]
        dst[...] = at(a, axis, o * g.s + g.first(j0))
        cdst[...] = (at(code, axis, o * g.s + g.first(j0)) if code is not None else 0) + ct(j0 * after)
        for j in real[1:]:
            pos = o * g.s + g.first(j)
            step(dst, cdst, dst, cdst, at(a, axis, pos), at(code, axis, pos) if code is not None else None, j)
    return None


def _fix_negative_infinity(
    y: np.ndarray, block: list[Axis], best: np.ndarray, dst: np.ndarray, p0: int, r0: int, axes: Sequence[Axis],
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
