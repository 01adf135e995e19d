"""The oracle as it was before issue 18 (gathered (out x kernel) windows, longdouble sums), kept
only as the reference the fast oracle is checked against in tests/test_oracle.py."""

from __future__ import annotations

import numpy as np

from poolconform import dtypes, shapes
from poolconform.case import PoolCase


def _axis_positions(n: int, out: int, kernel: int, stride: int, dilation: int, pad_begin: int, pad_end: int):
    """Window positions (out, kernel) on one axis and their masks: real input, inside pads."""
    pos = np.arange(out)[:, None] * stride - pad_begin + np.arange(kernel)[None, :] * dilation
    real = (pos >= 0) & (pos < n)
    padded = (pos >= -pad_begin) & (pos < n + pad_end)
    return np.clip(pos, 0, n - 1), real, padded


def _geometry(case: PoolCase):
    pads = shapes.resolve_pads(case)
    out = shapes.spatial_output_shape(case)
    rank = case.rank
    return [
        _axis_positions(
            case.spatial[a], out[a], case.kernel[a], case.strides[a], case.dilations[a], pads[a], pads[a + rank]
        )
        for a in range(rank)
    ]


def _gather(x: np.ndarray, axis: int, index: np.ndarray) -> np.ndarray:
    """x with `axis` replaced by (out, kernel) from `index`; kernel is the last axis."""
    g = np.take(x, index, axis=axis)  # (..., out, kernel, ...)
    return np.moveaxis(g, axis + 1, -1)


def _mask(mask: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    """Broadcast an (out, kernel) mask against a gathered array of `ndim` dims."""
    shape = [1] * ndim
    shape[axis] = mask.shape[0]
    shape[-1] = mask.shape[1]
    return mask.reshape(shape)


def _windowed(case: PoolCase, x: np.ndarray, kind: str) -> np.ndarray:
    geometry = _geometry(case)
    y = x if kind == "max" else x.astype(np.longdouble)
    count = np.ones((1,) * x.ndim)
    for a, (index, real, padded) in enumerate(geometry):
        axis = 2 + a
        g = _gather(y, axis, index)
        m = _mask(real, g.ndim, axis)
        if kind == "max":
            y = np.where(m, g, -np.inf).max(axis=-1)
        else:
            y = np.where(m, g, 0.0).sum(axis=-1)
            counted = padded if case.count_include_pad else real
            shape = [1] * x.ndim
            shape[axis] = counted.shape[0]
            count = count * counted.sum(axis=1).reshape(shape)
    if kind == "avg":
        with np.errstate(invalid="ignore", divide="ignore"):
            return (y / count).astype(np.float64)
    return y


def _lp(values: np.ndarray, p: int) -> np.ndarray:
    return np.abs(values.astype(np.longdouble)) ** p


def _root(values: np.ndarray, p: int) -> np.ndarray:
    return (values ** (np.longdouble(1) / p)).astype(np.float64)


def _window_grids(case: PoolCase):
    """Per-axis input positions over (outs..., kernel...), and the masks of real input and of
    input-or-padding positions, all broadcast to that full grid; plus the output sizes."""
    geometry = _geometry(case)
    rank = case.rank
    outs = [g[0].shape[0] for g in geometry]
    ks = [g[0].shape[1] for g in geometry]
    grids, reals, paddeds = [], [], []
    for a, (index, real, padded) in enumerate(geometry):
        shape = [1] * (2 * rank)
        shape[a], shape[rank + a] = outs[a], ks[a]
        grids.append(index.reshape(shape))
        reals.append(real.reshape(shape))
        paddeds.append(padded.reshape(shape))
    full = tuple(np.broadcast_shapes(*[g.shape for g in grids]))
    grids = [np.broadcast_to(g, full) for g in grids]
    real = np.logical_and.reduce([np.broadcast_to(r, full) for r in reals])
    padded = np.logical_and.reduce([np.broadcast_to(p, full) for p in paddeds])
    return grids, real, padded, outs


def _max_indices(case: PoolCase, x: np.ndarray) -> np.ndarray:
    """ONNX MaxPool Indices: flat over (N, C, spatial), row-major or column-major per plane."""
    rank = case.rank
    grids, real, _, outs = _window_grids(case)
    window = x[(slice(None), slice(None), *grids)]  # (N, C, outs..., ks...)
    window = np.where(real, window, -np.inf).reshape(x.shape[:2] + tuple(outs) + (int(np.prod(real.shape[rank:])),))  # N or C may be 0
    # First maximum in row-major window order; a NaN counts as the maximum (argmax does so).
    choice = np.argmax(window, axis=-1)
    flat_grids = [g.reshape(tuple(outs) + (-1,)) for g in grids]
    spatial = x.shape[2:]
    if case.storage_order == 0:
        plane_strides = [int(np.prod(spatial[a + 1 :])) for a in range(rank)]
    else:
        plane_strides = [int(np.prod(spatial[:a])) for a in range(rank)]
    offset = np.zeros(choice.shape, dtype=np.int64)
    for a in range(rank):
        picked = np.take_along_axis(np.broadcast_to(flat_grids[a], choice.shape + (flat_grids[a].shape[-1],)),
                                    choice[..., None], axis=-1)[..., 0]
        offset += picked.astype(np.int64) * plane_strides[a]
    plane = int(np.prod(spatial))
    n, c = x.shape[:2]
    base = (np.arange(n)[:, None] * c + np.arange(c)[None, :]) * plane
    return offset + base.reshape((n, c) + (1,) * rank)


def window_counts(case: PoolCase) -> np.ndarray:
    """How many input elements each output window holds, shaped (1, 1, outs...) to broadcast
    against the output: W of the tolerance model, and 0 marks a window with no element."""
    lead = (1, 1)
    if case.is_global:
        return np.full(lead + (1,) * case.rank, int(np.prod(case.spatial)), dtype=np.int64)
    count = np.ones(lead + (1,) * case.rank, dtype=np.int64)
    for a, (_, real, _) in enumerate(_geometry(case)):
        shape = [1] * (2 + case.rank)
        shape[2 + a] = real.shape[0]
        count = count * real.sum(axis=1).reshape(shape)
    return count


def window_abs_means(case: PoolCase, x: np.ndarray) -> np.ndarray:
    """sum |x_i| over each window, over the op's divisor (float64): the scale of the rounding
    error an average can carry. Only for AveragePool and GlobalAveragePool."""
    a = np.abs(np.asarray(x).astype(np.float64))
    if case.op == "GlobalAveragePool":
        return a.astype(np.longdouble).mean(axis=tuple(range(2, a.ndim)), keepdims=True).astype(np.float64)
    if case.op == "AveragePool":
        return _windowed(case, a, "avg")
    raise ValueError(f"window_abs_means is for averages, not {case.op!r}")


def accumulated_outputs(case: PoolCase, x: np.ndarray, dtype: str) -> np.ndarray:
    """The averaging op computed with every operation rounded to `dtype`, each window summed in
    row-major order: what a backend that accumulates in that type returns (float64 array)."""
    t = dtypes.numpy_dtype(dtype)
    x = np.asarray(x).astype(np.float64)
    rank = case.rank
    if case.is_global:
        window = x.reshape(x.shape[:2] + (1,) * rank + (int(np.prod(x.shape[2:])),))  # N or C may be 0
        real = np.ones((1,) * rank + window.shape[-1:], dtype=bool)
        divisor = np.full((1,) * rank, window.shape[-1])
    else:
        grids, real, padded, outs = _window_grids(case)
        window = x[(slice(None), slice(None), *grids)].reshape(x.shape[:2] + tuple(outs) + (int(np.prod(real.shape[rank:])),))
        real = real.reshape(tuple(outs) + (-1,))
        counted = padded.reshape(real.shape) if case.count_include_pad else real
        divisor = counted.sum(axis=-1)
    lp = case.op in ("LpPool", "GlobalLpPool")
    terms = (np.abs(window).astype(t) ** case.p).astype(t) if lp else window.astype(t)
    with np.errstate(all="ignore"):
        total = np.zeros(window.shape[:-1], dtype=t)
        for k in range(window.shape[-1]):
            total = (total + np.where(real[..., k], terms[..., k], t.type(0)).astype(t)).astype(t)
        if lp:
            result = (total ** (t.type(1) / t.type(case.p))).astype(t)
        else:
            result = (total / divisor.astype(t)).astype(t)
    return result.astype(np.float64)


def reference_outputs(case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The expected outputs of `case` in float64 (Indices as int64)."""
    x = np.asarray(inputs[0]).astype(np.float64)
    spatial_axes = tuple(range(2, x.ndim))
    if case.op == "GlobalMaxPool":
        return [x.max(axis=spatial_axes, keepdims=True)]
    if case.op == "GlobalAveragePool":
        return [x.astype(np.longdouble).mean(axis=spatial_axes, keepdims=True).astype(np.float64)]
    if case.op == "GlobalLpPool":
        return [_root(_lp(x, case.p).sum(axis=spatial_axes, keepdims=True), case.p)]
    if case.op == "MaxPool":
        values = _windowed(case, x, "max")
        if case.with_indices:
            return [values, _max_indices(case, x)]
        return [values]
    if case.op == "AveragePool":
        return [_windowed(case, x, "avg")]
    if case.op == "LpPool":
        return [_root(_windowed(case, _lp(x, case.p), "sum"), case.p)]
    raise ValueError(f"oracle has no rule for op {case.op!r}")
