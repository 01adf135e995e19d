"""PoolCase: one single-node pooling model, described by its ONNX attributes.

A case is frozen and hashable so it can key results, travel to worker processes and
be expanded from a matrix without duplicates. Its `id` is stable across releases:
users' expectation files and CI histories refer to it, and it is a complete description
of the case (`poolconform.case_ids.parse_case_id` reads one back).

This module is the package's ground floor: it imports only the attribute table. Whether
ONNX can express a case is poolconform.validation's question (`make_case`, `validate_case`).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

from poolconform.attributes import (
    ADAPTIVE_OPS,
    ATTRIBUTES,
    AUTO_PADS,
    AVERAGING_OPS,
    GLOBAL_OPS,
    GLUED,
    OPS,
    WINDOWED_OPS,
    Attribute,
    axes_tag,
    onnx_value,
    shows,
    token,
)

__all__ = [
    "AUTO_PADS", "AVERAGING_OPS", "DEFAULT_GENERATOR", "DEFAULT_OPSET", "DTYPES", "DTYPE_TAGS", "GLOBAL_OPS",
    "ID_IMPLICIT_OPSET", "OPS", "POOLING_OPSETS", "PoolCase", "WINDOWED_OPS",
]

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

#: Input generators (see poolconform.generators); "normal" is left implicit in ids.
DEFAULT_GENERATOR = "normal"


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
    #: Quantized form: (x_scale, x_zero_point, y_scale, y_zero_point), () for none (poolconform.quantized).
    quant: tuple = ()
    #: The graph around the node: single, pad, dynamic or unpool (poolconform.contexts).
    context: str = "single"
    #: The Pad node's mode in the `pad` context: constant (0), edge or reflect.
    pad_mode: str = "constant"
    #: In the `unpool` context, whether MaxUnpool gets the input's shape as output_shape.
    unpool_shape: bool = False
    #: Adaptive pooling's output size per spatial axis, () for every other op (poolconform.adaptive).
    output_size: tuple[int, ...] = ()
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
        """The kernel, or the whole spatial extent for global ops (for adaptive ops, the largest
        window: ceil(n/o) + 1 at most, poolconform.adaptive)."""
        if self.op in ADAPTIVE_OPS:
            return tuple(min(n, -(-n // o) + 1) for n, o in zip(self.spatial, self.output_size))
        return self.spatial if self.is_global else self.kernel

    @property
    def window_elements(self) -> int:
        n = 1
        for k in self.window:
            n *= k
        return n

    def _rows(self, policy: str) -> list[Attribute]:
        """The attribute rows that appear under one of the table's policies (in_id, in_params, written)."""
        rows = []
        for row in ATTRIBUTES:
            if row.name == "pads" and policy != "in_params" and self.auto_pad != "NOTSET":
                continue  # auto_pad stands for the pads
            if shows(row, getattr(row, policy), self.op, getattr(self, row.name), self.opset):
                rows.append(row)
        return rows

    @functools.cached_property
    def id(self) -> str:
        """Stable human-readable id, e.g. `MaxPool-2d-k3-s2-p1-ceil-f32-n7`. Computed once per
        case (about 80 us; a run asks for it about ten times a case): the case is frozen, so
        the id cannot go stale."""
        if self.label is not None:
            return self.label
        parts = [self.op, f"{self.rank}d"]
        for row in self._rows("in_id"):
            part = token(row, getattr(self, row.name))
            glued = GLUED.get((parts[-1], part))
            if glued:
                parts[-1] = glued
            else:
                parts.append(part)
        parts.append(DTYPE_TAGS.get(self.dtype, self.dtype))
        parts.append(f"n{axes_tag(self.spatial)}")
        n, c = self.input_shape[:2]
        if (n, c) != (1, 1):
            parts.append(f"b{n}c{c}")
        if self.opset != ID_IMPLICIT_OPSET:
            parts.append(f"o{self.opset}")
        if self.generator != DEFAULT_GENERATOR:
            parts.append(f"g{self.generator}")
        return "-".join(parts)

    def replace(self, **changes: object) -> PoolCase:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

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
        for row in self._rows("in_params"):
            value = getattr(self, row.name)
            out[row.name] = list(value) if isinstance(value, tuple) else value
        return out

    def onnx_attributes(self) -> dict[str, Any]:
        """The attributes of the case's ONNX node: those the op has and the case needs written
        (values typed as onnx.helper.make_node's keywords are: Any)."""
        return {row.onnx: onnx_value(row, getattr(self, row.name))
                for row in self._rows("written") if row.onnx is not None}
