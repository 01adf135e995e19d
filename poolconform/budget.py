"""What one case costs, computed from its attributes before anything is allocated.

A case is a few integers, but `dilation=100000, pads=99999` on a 1-element input asks
for a 99999 x 99999 output, and a 2048-tall window over a 4096 x 4096 input makes the
oracle gather 128 GiB. Both are refused here, in one line, before the inputs exist:

- the input's own size (N x C x spatial elements);
- `window_visits`: output elements x window elements, the work any implementation does;
- `oracle_bytes`: the float64 oracle's peak memory (its output plus the largest arrays
  it holds at once, as poolconform/oracle.py and its engine compute today).

The limits are stated in docs/refusals.md. They are per case and do not depend on the
machine, so a matrix is refused (or not) the same way everywhere.
"""

from __future__ import annotations

import math

from poolconform import shapes
from poolconform.case import PoolCase
from poolconform.errors import PoolconformError

GiB = 2**30
#: Largest input (N x C x spatial elements) one case may have: 2**24 float64 values are
#: 128 MiB in the oracle; anything larger is a typo, not a pooling test.
MAX_INPUT_ELEMENTS = 2**24
#: Most memory the oracle may need for one case (its input copy and intermediates).
MAX_ORACLE_BYTES = 1 * GiB
#: Most output-element x window-element visits one case may ask of a backend (2**30,
#: about a second of vectorised work; a Python evaluator such as onnx.reference takes minutes).
MAX_WINDOW_VISITS = 2**30

_FLOAT64 = 8
_LONGDOUBLE = 16  # np.longdouble on x86-64 Linux; the oracle sums in it
_INT64 = 8
#: Bytes per (output, kernel offset) position of the oracle's geometry: positions, clipped positions, masks.
_GEOMETRY_BYTES = 24
#: NumPy's fixed costs (reduction buffers, small arrays), whatever the case.
_OVERHEAD = 2**20


class CaseTooLarge(PoolconformError):
    """A case whose work or memory is over a stated limit (not an ONNX question: a typo)."""


def _output_spatial(case: PoolCase) -> tuple[int, ...]:
    return tuple(shapes.spatial_output_shape(case))


def output_elements(case: PoolCase) -> int:
    """N x C x the spatial output size (1 per plane for global ops)."""
    n, c = case.input_shape[:2]
    if case.is_global:
        return n * c
    return n * c * math.prod(_output_spatial(case))


def window_visits(case: PoolCase) -> int:
    """Output elements x window elements: the reads a direct implementation makes."""
    return output_elements(case) * case.window_elements


def oracle_bytes(case: PoolCase) -> int:
    """Peak bytes of the oracle (poolconform/oracle.py) on this case (an upper estimate, kept in step with it).

    The oracle reduces one axis at a time over chunks of (N x C) planes, so it holds the
    float64 output plus one chunk's intermediates; a 16-bit average judged against narrow
    accumulation also builds the zero-padded input in that type.
    """
    from poolconform.oracle import lp_may_scale
    from poolconform.oracle_blocks import CHUNK_ELEMENTS

    n, c = case.input_shape[:2]
    planes, plane = n * c, math.prod(case.spatial)
    chunk = min(planes, max(1, CHUNK_ELEMENTS // max(1, plane)))
    outputs = output_elements(case) * _FLOAT64 * (2 if case.with_indices else 1)
    is_max = case.op in ("MaxPool", "GlobalMaxPool")
    if is_max:
        item = _FLOAT64 if case.dtype == "float64" else 4
    else:
        item = _LONGDOUBLE if case.dtype == "float64" else _FLOAT64
    if case.is_global:  # max and average read the input in place; Lp squares a chunk's copy
        return outputs + (chunk * plane * item if case.op == "GlobalLpPool" else 0) + _OVERHEAD
    out = _output_spatial(case)
    # Per chunk: the input in the working type, then each axis' reduced array while the
    # previous one is held (Indices carry an int64 index beside each value).
    per_value = item + (_INT64 if case.with_indices else 0)
    held, peak = chunk * plane, 0
    for a in range(case.rank):
        reduced = chunk * math.prod(out[: a + 1]) * math.prod(case.spatial[a + 1 :])
        peak = max(peak, held + reduced * (2 if case.with_indices else 1))
        held = reduced
    geometry = sum(o * k for o, k in zip(out, case.kernel)) * _GEOMETRY_BYTES
    total = (outputs + peak * per_value) * 4 // 3 + geometry  # a third more: NumPy's temporaries, measured
    if not is_max and case.dtype in ("float16", "bfloat16"):
        padded = n * c * math.prod(
            s + 2 * shapes.effective_kernel(k, d) for s, k, d in zip(case.spatial, case.kernel, case.dilations)
        )
        # float64 copy, |x|, the terms in the 16-bit type; the padded terms; the running total
        narrow = n * c * plane * 20 + padded * 2 + output_elements(case) * 14
        total = max(total, (outputs + narrow) * 4 // 3)
    if lp_may_scale(case):
        # _scaled_lp, whole: |x| and the zero-padded input in float64; the window maxima, the
        # running total and each offset's two temporaries; the longdouble root (measured 87 MiB
        # on a 1x4x512x512 float32 input, p = 9, against 17 MiB for the separable path)
        padded = n * c * math.prod(
            s + 2 * shapes.effective_kernel(k, d) for s, k, d in zip(case.spatial, case.kernel, case.dilations)
        )
        scaled = n * c * plane * _FLOAT64 + padded * _LONGDOUBLE + output_elements(case) * (4 * _FLOAT64 + 3 * _LONGDOUBLE)
        total = max(total, scaled * 4 // 3)
    return total + _OVERHEAD


def budget_problem(case: PoolCase) -> str | None:
    """Why `case` is too large to run (one line naming the limit), or None."""
    elements = math.prod(case.input_shape)
    if elements > MAX_INPUT_ELEMENTS:
        return (f"case {case.id!r} has an input of {elements} elements (shape {case.input_shape!r}), "
                f"more than the limit {MAX_INPUT_ELEMENTS}; lower batch, channels or input_size")
    visits = window_visits(case)
    if visits > MAX_WINDOW_VISITS:
        return (f"case {case.id!r} needs {visits:.3g} window reads ({output_elements(case)} output elements x "
                f"{case.window_elements} window elements), more than the limit {MAX_WINDOW_VISITS:.3g} "
                "(MAX_WINDOW_VISITS); lower input_size, kernel, dilation or pads")
    need = oracle_bytes(case)
    if need > MAX_ORACLE_BYTES:
        return (f"case {case.id!r} needs {need / GiB:.3g} GiB in the float64 oracle, more than the limit "
                f"{MAX_ORACLE_BYTES / GiB:.3g} GiB (MAX_ORACLE_BYTES); lower batch, channels, input_size, dilation or pads")
    return None


def check_budget(case: PoolCase) -> None:
    """Raise CaseTooLarge (exit 2, one line) when the case is over a limit; called by validate_case."""
    problem = budget_problem(case)
    if problem:
        raise CaseTooLarge(problem)
