"""PoolCase: one single-node pooling model, described by its ONNX attributes.

A case is frozen and hashable so it can key results, travel to worker processes and
be expanded from a matrix without duplicates. Its `id` is stable across releases:
users' expectation files and CI histories refer to it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from poolconform.errors import CaseError

#: The pooling operators poolconform knows, with whether they take a window.
WINDOWED_OPS = ("MaxPool", "AveragePool", "LpPool")
GLOBAL_OPS = ("GlobalMaxPool", "GlobalAveragePool", "GlobalLpPool")
OPS = WINDOWED_OPS + GLOBAL_OPS

AUTO_PADS = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")

#: dtype name -> the short tag used in case ids.
DTYPE_TAGS = {
    "float32": "f32",
    "float64": "f64",
    "float16": "f16",
    "bfloat16": "bf16",
    "int8": "i8",
    "uint8": "u8",
}
DTYPES = tuple(DTYPE_TAGS)

#: The opset that ids leave implicit. Frozen forever: changing it would rename cases.
ID_IMPLICIT_OPSET = 22
DEFAULT_OPSET = 22
#: Opsets in which some pooling operator changed (the axis issue C compares across).
POOLING_OPSETS = (7, 8, 10, 11, 12, 18, 19, 22)

#: Input generators (see poolconform.inputs); "normal" is left implicit in ids.
DEFAULT_GENERATOR = "normal"


def _axes_tag(values: tuple[int, ...]) -> str:
    """`3` when every axis agrees, `2x3` otherwise."""
    if len(set(values)) == 1:
        return str(values[0])
    return "x".join(str(v) for v in values)


@dataclass(frozen=True)
class PoolCase:
    """One pooling configuration in ONNX terms (NCHW, pads as begin..., end...)."""

    op: str
    input_shape: tuple[int, ...]
    kernel: tuple[int, ...] = ()
    strides: tuple[int, ...] = ()
    pads: tuple[int, ...] = ()
    dilations: tuple[int, ...] = ()
    auto_pad: str = "NOTSET"
    ceil_mode: bool = False
    count_include_pad: bool = False
    p: int = 2
    storage_order: int = 0
    with_indices: bool = False
    dtype: str = "float32"
    opset: int = DEFAULT_OPSET
    generator: str = DEFAULT_GENERATOR
    #: A name that replaces the generated id (cases read back by `check` keep their folder name).
    label: str | None = field(default=None, compare=False)
    #: The serialized model when the case came from a file: ONNX backends run it as it is.
    model_bytes: bytes | None = field(default=None, compare=False, repr=False)
    #: Why only backends that read the ONNX model can run the case (a stored node that
    #: poolconform's translation does not cover); None for every matrix case.
    onnx_only: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.auto_pad == "":  # the ONNX default written out: onnx, ORT and OpenVINO read it as NOTSET
            object.__setattr__(self, "auto_pad", "NOTSET")

    @property
    def rank(self) -> int:
        """Number of spatial axes."""
        return len(self.input_shape) - 2

    @property
    def spatial(self) -> tuple[int, ...]:
        return self.input_shape[2:]

    @property
    def is_global(self) -> bool:
        return self.op in GLOBAL_OPS

    @property
    def window(self) -> tuple[int, ...]:
        """The kernel, or the whole spatial extent for global ops."""
        return self.spatial if self.is_global else self.kernel

    @property
    def window_elements(self) -> int:
        n = 1
        for k in self.window:
            n *= k
        return n

    @property
    def id(self) -> str:
        """Stable human-readable id, e.g. `MaxPool-2d-k3-s2-p1-ceil-f32-n7`."""
        if self.label is not None:
            return self.label
        parts = [self.op, f"{self.rank}d"]
        if not self.is_global:
            parts += [f"k{_axes_tag(self.kernel)}", f"s{_axes_tag(self.strides)}"]
            if self.auto_pad != "NOTSET":
                parts.append(self.auto_pad.lower().replace("_", ""))
            elif len(set(self.pads)) == 1:
                parts.append(f"p{self.pads[0]}")
            else:
                parts.append("p" + "_".join(str(v) for v in self.pads))
            if any(d != 1 for d in self.dilations):
                parts.append(f"d{_axes_tag(self.dilations)}")
            if self.ceil_mode:
                parts.append("ceil")
            if self.op == "AveragePool" and self.count_include_pad:
                parts.append("cip")
        if self.op in ("LpPool", "GlobalLpPool"):
            parts.append(f"L{self.p}")
        if self.with_indices:
            parts.append("idx" if self.storage_order == 0 else "idxcol")
        parts.append(DTYPE_TAGS.get(self.dtype, self.dtype))
        parts.append(f"n{_axes_tag(self.spatial)}")
        n, c = self.input_shape[:2]
        if (n, c) != (1, 1):
            parts.append(f"b{n}c{c}")
        if self.opset != ID_IMPLICIT_OPSET:
            parts.append(f"o{self.opset}")
        if self.generator != DEFAULT_GENERATOR:
            parts.append(f"g{self.generator}")
        return "-".join(parts)

    def replace(self, **changes: object) -> PoolCase:
        return dataclasses.replace(self, **changes)

    def describe(self) -> dict[str, object]:
        """The case's parameters as plain JSON values (manifests, records, reports)."""
        out: dict[str, object] = {
            "op": self.op,
            "rank": self.rank,
            "input_shape": list(self.input_shape),
            "dtype": self.dtype,
            "opset": self.opset,
            "generator": self.generator,
        }
        if not self.is_global:
            out.update(
                kernel=list(self.kernel),
                strides=list(self.strides),
                pads=list(self.pads),
                dilations=list(self.dilations),
                auto_pad=self.auto_pad,
                ceil_mode=self.ceil_mode,
                count_include_pad=self.count_include_pad,
            )
        if self.op in ("LpPool", "GlobalLpPool"):
            out["p"] = self.p
        if self.with_indices:
            out.update(with_indices=True, storage_order=self.storage_order)
        return out


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
    shape = tuple(int(v) for v in input_shape)
    if len(shape) < 3:
        raise CaseError(f"input_shape must be (N, C, spatial...) with 1-3 spatial axes, got {shape!r}")
    rank = len(shape) - 2
    if op in GLOBAL_OPS:
        case = PoolCase(op=op, input_shape=shape, **rest)  # type: ignore[arg-type]
    else:
        case = PoolCase(
            op=op,
            input_shape=shape,
            kernel=_per_axis("kernel", kernel, rank, None),
            strides=_per_axis("strides", strides, rank, 1),
            pads=_per_axis("pads", pads, 2 * rank, 0, broadcast=rank),
            dilations=_per_axis("dilations", dilations, rank, 1),
            **rest,  # type: ignore[arg-type]
        )
    validate_case(case)
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
    from poolconform import shapes  # local: shapes imports case for typing only
    from poolconform.budget import check_budget  # local: budget imports case

    if case.op not in OPS:
        raise CaseError(f"unknown op {case.op!r}; allowed: {', '.join(OPS)}")
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
    _validate_against_onnx(case)
    if case.is_global:
        check_budget(case)
        return
    rank = case.rank
    for name, values, length in (
        ("kernel", case.kernel, rank),
        ("strides", case.strides, rank),
        ("dilations", case.dilations, rank),
        ("pads", case.pads, 2 * rank),
    ):
        if len(values) != length:
            raise CaseError(f"{name}={values!r} needs {length} values for rank {rank}")
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
    check_budget(case)  # work and memory, before anything is allocated (poolconform/budget.py)


def _validate_against_onnx(case: PoolCase) -> None:
    """What the installed onnx's schema allows at the case's opset, and what the inputs can hold."""
    from poolconform.generators import generator_rejects
    from poolconform.support import onnx_rejects

    reason = onnx_rejects(case)
    if reason:
        if "does not accept dtype" in reason:
            category = "dtype not allowed by the op at this opset"
        elif "does not exist at opset" in reason:
            category = "op not defined at this opset"
        else:
            category = "attribute not defined at this opset"
        raise CaseError(reason, category=category)
    reason = generator_rejects(case.generator, case.dtype)
    if reason:
        raise CaseError(reason, category=f"generator {case.generator!r} cannot make {case.dtype} inputs")
    if case.generator == "seed" and case.input_shape != (1, 1, 4, 4):
        raise CaseError(
            f"generator 'seed' is the tutorial's 1x1x4x4 map; input_shape {case.input_shape!r} does not fit",
            category="seed input needs shape 1x1x4x4",
        )
