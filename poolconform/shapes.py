"""Output shape and padding arithmetic: the one source of truth for every module.

The oracle, the exporter's shape check, the reports and the README all call these
functions. The rule is the ONNX operator spec's, not the seed tutorial's
`(n - f + 1) / s` (see `seed_output_size`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from poolconform.case import PoolCase


def effective_kernel(kernel: int, dilation: int) -> int:
    """Span of a dilated window: `dilation * (kernel - 1) + 1`."""
    return dilation * (kernel - 1) + 1


#: From this opset on, the spec (and onnx's shape inference) drops a ceil_mode window that
#: would start in the right padding; MaxPool, AveragePool and LpPool before it keep one.
CEIL_DROPS_OVERHANG_FROM_OPSET = 22


def output_size(
    n: int,
    kernel: int,
    stride: int,
    pad_begin: int = 0,
    pad_end: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
    drop_overhang: bool = True,
) -> int:
    """Output length of one axis with explicit pads.

    `floor((n + pad_begin + pad_end - dilation*(kernel-1) - 1) / stride) + 1`, or ceil with
    ceil_mode. With ceil_mode, a last window that would start past the padded input (it
    covers neither input nor padding, possible when the stride exceeds the window) is
    dropped at every opset: the corrected rule of opset 22 (onnx/onnx#5711), which ONNX
    Runtime and onnx's reference evaluator apply at every opset. With `drop_overhang`
    (opset 22 on, and what ONNX Runtime and PyTorch always do) a window that would start
    in the right padding is dropped too.
    """
    out = _ceil_letter_size(n, kernel, stride, pad_begin, pad_end, dilation, ceil_mode)
    if not ceil_mode or out == 0:
        return out
    last_start = (out - 1) * stride  # in padded coordinates: the input starts at pad_begin
    if last_start >= n + pad_begin + (0 if drop_overhang else pad_end):
        out -= 1
    return out


def _ceil_letter_size(
    n: int, kernel: int, stride: int, pad_begin: int, pad_end: int, dilation: int, ceil_mode: bool
) -> int:
    """The formula alone, no window dropped: what onnx's shape inference gives before opset 22."""
    span = n + pad_begin + pad_end - effective_kernel(kernel, dilation)
    if span < 0:
        return 0
    return (-(-span // stride) if ceil_mode else span // stride) + 1


def drops_overhang(case: PoolCase) -> bool:
    """Whether the case's opset drops a ceil_mode window that starts in the right padding."""
    return case.opset >= CEIL_DROPS_OVERHANG_FROM_OPSET


def same_pads(n: int, kernel: int, stride: int, dilation: int, upper: bool) -> tuple[int, int]:
    """(begin, end) pads of SAME_UPPER / SAME_LOWER: output `ceil(n / stride)`.

    The odd pad goes at the end for SAME_UPPER (TensorFlow's "same") and at the
    beginning for SAME_LOWER.
    """
    out = -(-n // stride)
    total = max(0, (out - 1) * stride + effective_kernel(kernel, dilation) - n)
    small, large = total // 2, total - total // 2
    return (small, large) if upper else (large, small)


def resolve_pads(case: PoolCase) -> tuple[int, ...]:
    """Explicit pads (begin..., end...) that the case's auto_pad stands for."""
    rank = case.rank
    if case.is_global:
        return (0,) * (2 * rank)
    if case.auto_pad == "NOTSET":
        return case.pads
    if case.auto_pad == "VALID":
        return (0,) * (2 * rank)
    begins, ends = [], []
    for axis in range(rank):
        b, e = same_pads(
            case.spatial[axis],
            case.kernel[axis],
            case.strides[axis],
            case.dilations[axis],
            upper=case.auto_pad == "SAME_UPPER",
        )
        begins.append(b)
        ends.append(e)
    return tuple(begins + ends)


def spatial_output_shape(case: PoolCase) -> tuple[int, ...]:
    """Spatial output sizes of the case."""
    if case.output_size:  # adaptive pooling: the sizes asked for (poolconform.adaptive)
        return tuple(case.output_size)
    if case.is_global:
        return (1,) * case.rank
    if case.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return tuple(-(-n // s) for n, s in zip(case.spatial, case.strides))
    pads = resolve_pads(case)
    rank = case.rank
    # ceil_mode holds under VALID too (onnx/onnx#5248; onnx's shape inference, ONNX Runtime);
    # the spec's VALID-with-ceil formula is its floor formula, a doc slip. SAME ignores it.
    ceil = case.ceil_mode and case.auto_pad in ("NOTSET", "VALID")
    drop = drops_overhang(case)
    return tuple(
        output_size(
            case.spatial[a], case.kernel[a], case.strides[a], pads[a], pads[a + rank], case.dilations[a], ceil, drop
        )
        for a in range(rank)
    )


def keeps_an_overhang_window(case: PoolCase) -> bool:
    """True when the case's opset keeps a ceil_mode window that opset 22 would drop: the
    output is one longer than every framework's single ceil rule gives."""
    if case.is_global or not case.ceil_mode or case.auto_pad != "NOTSET" or drops_overhang(case):
        return False
    return spatial_output_shape(case) != spatial_output_shape(case.replace(opset=CEIL_DROPS_OVERHANG_FROM_OPSET))


def onnx_inferred_spatial_shape(case: PoolCase) -> tuple[int, ...]:
    """What onnx's shape inference gives for the case: before opset 22 it keeps every window
    the ceil formula counts, even one that covers neither input nor padding."""
    if drops_overhang(case) or case.is_global or not case.ceil_mode:
        return spatial_output_shape(case)
    rank, pads = case.rank, resolve_pads(case)  # auto_pad: onnx applies the formula to its pads
    return tuple(
        _ceil_letter_size(case.spatial[a], case.kernel[a], case.strides[a], pads[a], pads[a + rank],
                          case.dilations[a], True)
        for a in range(rank)
    )


#: The record note of a case whose ceil_mode output drops a window holding no element.
EMPTY_WINDOW_NOTE = (
    "a ceil_mode window covering neither input nor padding is dropped at every opset "
    "(the corrected rule of opset 22, onnx/onnx#5711; opset {opset}'s text and onnx's shape inference keep it)"
)


def empty_window_note(case: PoolCase) -> str | None:
    """The note to record when the case's shape drops a window that holds no element."""
    if onnx_inferred_spatial_shape(case) == spatial_output_shape(case):
        return None
    return EMPTY_WINDOW_NOTE.format(opset=case.opset)


def output_shape(case: PoolCase) -> tuple[int, ...]:
    """Full output shape (N, C, spatial...) of the case's first output (and of Indices)."""
    return case.input_shape[:2] + spatial_output_shape(case)


def seed_output_size(n: int, kernel: int, stride: int) -> float:
    """The seed tutorial's formula `(n - f + 1) / s`: wrong, kept to show where it differs."""
    return (n - kernel + 1) / stride


def seed_formula_explains(case: PoolCase, actual: list[int] | tuple[int, ...] | None) -> bool:
    """Whether a backend's wrong output shape is due to the seed's formula, not a coincidence.

    The seed's mistake is where the `+ 1` sits: `(n - f + 1) / s` instead of
    `(n - f) / s + 1`. Where its value is an integer it equals the ONNX floor rule without
    padding (and its ceiling always does), so only code that computes it with integer
    division, `(n - f + 1) // s`, is told apart. True when the shape is exactly that on
    every axis, it is wrong, and on every wrong axis no misreading of the ONNX rule
    (padding ignored, dilation ignored, ceil_mode flipped) gives the same size.
    """
    if case.is_global or not actual or len(actual) != len(case.input_shape):
        return False
    actual = tuple(int(v) for v in actual)
    correct = output_shape(case)
    if actual == correct or actual[:2] != correct[:2]:
        return False
    rank, pads = case.rank, resolve_pads(case)
    for a in range(rank):
        n, k, s, d = case.spatial[a], case.kernel[a], case.strides[a], case.dilations[a]
        if actual[2 + a] != (n - k + 1) // s:
            return False
        if actual[2 + a] == correct[2 + a]:
            continue
        misreadings = {
            output_size(n, k, s, pb, pe, dd, ceil)
            for pb, pe in ((pads[a], pads[a + rank]), (0, 0))
            for dd in (d, 1)
            for ceil in (False, True)
        }
        if actual[2 + a] in misreadings:
            return False
    return True
