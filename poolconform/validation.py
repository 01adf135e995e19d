"""Whether ONNX can express a case: `make_case` builds a checked PoolCase, `validate_case` checks one.

This sits above the case (poolconform.case), the shape rule (shapes), the schema rules
(support), the input generators and the budget: it asks each of them, and none of them
asks it back. Every refusal is a CaseError whose `category` a matrix counts drops under.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from poolconform import shapes
from poolconform.adaptive import check_adaptive
from poolconform.attributes import ADAPTIVE_OPS, ALL_OPS, ATTRIBUTES, AUTO_PADS, GLOBAL_OPS
from poolconform.budget import check_budget
from poolconform.contexts import check_context
from poolconform.case import DTYPES, PoolCase
from poolconform.errors import CaseError
from poolconform.generators import SEED_SHAPE, generator_rejects
from poolconform.quantized import check_quant
from poolconform.support import onnx_rejects

#: PoolCase's own defaults: what a field an op does not have must keep.
_FIELD_DEFAULTS = {f.name: f.default for f in dataclasses.fields(PoolCase)}


def make_case(
    op: str,
    input_shape: tuple[int, ...] | list[int],
    kernel: int | tuple[int, ...] | list[int] | None = None,
    strides: int | tuple[int, ...] | list[int] | None = None,
    pads: int | tuple[int, ...] | list[int] | None = None,
    dilations: int | tuple[int, ...] | list[int] | None = None,
    **rest: object,
) -> PoolCase:
    """Build a validated case; scalars broadcast over every spatial axis.

    ONNX defaults apply where a value is omitted: strides 1, pads 0, dilations 1
    (not the kernel-sized strides of PyTorch and Keras).
    """
    case = build_case(op, input_shape, kernel=kernel, strides=strides, pads=pads, dilations=dilations, **rest)
    validate_case(case)
    return case


def build_case(op: str, input_shape: tuple[int, ...] | list[int], **arguments: Any) -> PoolCase:
    """The case `make_case` makes of these arguments, without asking whether ONNX can express
    it: for arguments make_case accepted before (a matrix's kept combination, made again
    when read, poolconform/case_list.py), where validating again would cost 30x the build."""
    kernel, strides, pads, dilations = (arguments.pop(name, None) for name in ("kernel", "strides", "pads", "dilations"))
    rest = arguments
    shape = tuple(int(v) for v in input_shape)
    if len(shape) < 3:
        raise CaseError(f"input_shape must be (N, C, spatial...) with 1-3 spatial axes, got {shape!r}")
    rank = len(shape) - 2
    if op in ADAPTIVE_OPS:  # output_size broadcasts like a kernel (poolconform.adaptive)
        given = {"kernel": kernel, "strides": strides, "pads": pads, "dilations": dilations}
        window = [name for name, value in given.items() if value is not None]
        if window:
            raise CaseError(f"{op} has no {', '.join(window)}: its windows follow from output_size",
                            category=f"{window[0]} on an op without it")
        size = rest.pop("output_size", None)
        output_size = _per_axis("output_size", size, rank, None)
        case = PoolCase(op=op, input_shape=shape, output_size=output_size, **rest)
    elif op in GLOBAL_OPS:
        case = PoolCase(op=op, input_shape=shape, **rest)
    else:
        given = {"kernel": kernel, "strides": strides, "pads": pads, "dilations": dilations}
        per_axis = {
            row.name: _per_axis(row.name, given[row.name], 2 * rank if row.kind == "pads" else rank,
                                row.default, broadcast=rank if row.kind == "pads" else None)  # type: ignore[arg-type]
            for row in ATTRIBUTES if row.name in given
        }
        case = PoolCase(op=op, input_shape=shape, **per_axis, **rest)  # type: ignore[arg-type]
    return case


def _per_axis(
    name: str,
    value: int | tuple[int, ...] | list[int] | None,
    length: int,
    default: int | None,
    broadcast: int | None = None,
) -> tuple[int, ...]:
    if value is None:
        if default is None:
            raise CaseError(f"{name} is required for windowed pooling")
        return (default,) * length
    if isinstance(value, bool):
        raise CaseError(f"{name} must be an integer or a list of integers, got {value!r}")
    if isinstance(value, int):
        return (value,) * length
    values = tuple(value)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise CaseError(f"{name} must hold integers, got {value!r}")
    if broadcast is not None and len(values) == broadcast:
        return values + values  # symmetric: the same begin and end per axis
    if len(values) != length:
        raise CaseError(f"{name}={value!r} needs {length} values for this rank")
    return values


def validate_case(case: PoolCase) -> None:
    """Raise CaseError with the reason when ONNX cannot express the case."""
    if case.op not in ALL_OPS:
        raise CaseError(f"unknown op {case.op!r}; allowed: {', '.join(ALL_OPS)}")
    if not 1 <= case.rank <= 3:
        raise CaseError(f"rank must be 1, 2 or 3, got {case.rank!r} (input_shape={case.input_shape!r})")
    if any(v < 0 for v in case.input_shape[:2]) or any(v < 1 for v in case.input_shape[2:]):
        raise CaseError(
            f"input_shape needs N, C >= 0 and every spatial size >= 1, got {case.input_shape!r}",
            category="zero spatial size" if 0 in case.input_shape[2:] else None,
        )
    if case.dtype not in DTYPES:
        raise CaseError(f"unknown dtype {case.dtype!r}; allowed: {', '.join(DTYPES)}")
    if case.auto_pad not in AUTO_PADS:
        raise CaseError(f"unknown auto_pad {case.auto_pad!r}; allowed: {', '.join(AUTO_PADS)}")
    if case.op in ("LpPool", "GlobalLpPool") and case.p < 1:
        raise CaseError(f"p must be >= 1, got {case.p!r}")
    if case.with_indices and case.op != "MaxPool":
        raise CaseError(f"only MaxPool has an Indices output, not {case.op!r}")
    if case.storage_order not in (0, 1):
        raise CaseError(f"storage_order must be 0 or 1, got {case.storage_order!r}")
    _check_foreign_attributes(case)
    if case.op in ADAPTIVE_OPS:  # not an ONNX operator: no schema, context or quantized form to ask
        check_adaptive(case)
        _check_generator(case)
        check_budget(case)
        return
    check_context(case)
    check_quant(case)
    _validate_against_onnx(case)
    if case.is_global:
        check_budget(case)
        return
    _check_window(case)
    check_budget(case)  # work and memory, before anything is allocated (docs/refusals.md)


def _check_foreign_attributes(case: PoolCase) -> None:
    """An attribute the op does not have must keep its default: the id, the exported node and
    every backend ignore it, so two different cases would otherwise share one id."""
    for row in ATTRIBUTES:
        value = getattr(case, row.name)
        if case.op not in row.ops and value != _FIELD_DEFAULTS[row.name]:
            has = ", ".join(row.ops)
            raise CaseError(f"{case.op} has no {row.name} (only {has}), got {row.name}={value!r}",
                            category=f"{row.name} on an op without it")


def _check_window(case: PoolCase) -> None:
    """The window attributes of a windowed op: lengths, ranges, and a window that sees the input."""
    rank = case.rank
    for row in ATTRIBUTES:
        if row.kind not in ("axes", "pads") or case.op not in row.ops:
            continue
        values, length = getattr(case, row.name), (2 * rank if row.kind == "pads" else rank)
        if len(values) != length:
            raise CaseError(f"{row.name}={values!r} needs {length} values for rank {rank}")
    if any(k < 1 for k in case.kernel):
        raise CaseError(f"kernel must be >= 1, got {case.kernel!r}")
    if any(s < 1 for s in case.strides):
        raise CaseError(f"strides must be >= 1, got {case.strides!r}")
    if any(d < 1 for d in case.dilations):
        raise CaseError(f"dilations must be >= 1, got {case.dilations!r}")
    if any(v < 0 for v in case.pads):
        raise CaseError(f"pads must be >= 0, got {case.pads!r}")
    if case.auto_pad != "NOTSET" and any(case.pads):
        raise CaseError(f"explicit pads {case.pads!r} cannot be combined with auto_pad={case.auto_pad!r}")
    for axis in range(rank):
        begin, end = case.pads[axis], case.pads[axis + rank]
        effective = shapes.effective_kernel(case.kernel[axis], case.dilations[axis])
        if case.auto_pad == "NOTSET" and (begin >= effective or end >= effective):
            raise CaseError(
                f"pad ({begin}, {end}) on axis {axis} must be smaller than the effective kernel "
                f"{effective} (kernel={case.kernel!r}, dilations={case.dilations!r}): "
                "a window could hold nothing but padding",
                category="pad not smaller than the window",
            )
    out = shapes.output_shape(case)
    if any(v < 1 for v in out[2:]):
        raise CaseError(
            f"kernel larger than padded input: output shape {out!r} for input_shape={case.input_shape!r}, "
            f"kernel={case.kernel!r}, pads={case.pads!r}, dilations={case.dilations!r}",
            category="kernel larger than padded input",
        )


def _validate_against_onnx(case: PoolCase) -> None:
    """What the installed onnx's schema allows at the case's opset, and what the inputs can hold."""
    reason = onnx_rejects(case)
    if reason:
        if "does not accept dtype" in reason:
            category = "dtype not allowed by the op at this opset"
        elif "does not exist at opset" in reason:
            category = "op not defined at this opset"
        else:
            category = "attribute not defined at this opset"
        raise CaseError(reason, category=category)
    _check_generator(case)


def _check_generator(case: PoolCase) -> None:
    """Whether the case's input generator can make its inputs."""
    reason = generator_rejects(case.generator, case.dtype, case.input_shape)
    if reason:
        category = (f"seed input needs shape {'x'.join(map(str, SEED_SHAPE))}" if case.generator == "seed"
                    else f"generator {case.generator!r} cannot make {case.dtype} inputs")
        raise CaseError(reason, category=category)
