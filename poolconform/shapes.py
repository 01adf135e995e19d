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
    ceil_mode; with ceil_mode and `drop_overhang` (opset 22 on, and what ONNX Runtime and
    PyTorch always do) a window that would start in the right padding is dropped.
    """
    span = n + pad_begin + pad_end - effective_kernel(kernel, dilation)
    if span < 0:
        return 0
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if drop_overhang and (out - 1) * stride >= n + pad_begin:
        out -= 1
    return out


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
    if case.is_global:
        return (1,) * case.rank
    if case.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return tuple(-(-n // s) for n, s in zip(case.spatial, case.strides))
    pads = resolve_pads(case)
    rank = case.rank
    ceil = case.ceil_mode and case.auto_pad == "NOTSET"
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


def output_shape(case: PoolCase) -> tuple[int, ...]:
    """Full output shape (N, C, spatial...) of the case's first output (and of Indices)."""
    return case.input_shape[:2] + spatial_output_shape(case)


def seed_output_size(n: int, kernel: int, stride: int) -> float:
    """The seed tutorial's formula `(n - f + 1) / s`: wrong, kept to show where it differs."""
    return (n - kernel + 1) / stride
