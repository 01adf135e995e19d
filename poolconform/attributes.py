"""The pooling attributes, one row each: the table that says which attributes an op has.

Every place that asks "does this op take that attribute, and does this case use it" reads
this table: the case id (`PoolCase.id`, and `parse_case_id` back), the case's parameters
(`PoolCase.describe`), the ONNX node the exporter writes (`PoolCase.onnx_attributes`) and the
schema check (`poolconform.support.onnx_rejects`). Adding an attribute is adding a row.

The table is on the ground floor of the package: it imports nothing from poolconform.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

#: The pooling operators poolconform knows, with whether they take a window.
WINDOWED_OPS = ("MaxPool", "AveragePool", "LpPool")
GLOBAL_OPS = ("GlobalMaxPool", "GlobalAveragePool", "GlobalLpPool")
OPS = WINDOWED_OPS + GLOBAL_OPS
#: Framework ops that exporters lower, not ONNX operators (docs/conformance-space.md, "Adaptive
#: pooling"): judged through the frameworks and their exporters, never written as an ONNX node.
ADAPTIVE_OPS = ("AdaptiveAveragePool", "AdaptiveMaxPool")
#: Every op a case may have: the ONNX pooling operators and the adaptive ones.
ALL_OPS = OPS + ADAPTIVE_OPS
#: Ops that compute a sum (and so round): averages and Lp norms.
AVERAGING_OPS = ("AveragePool", "GlobalAveragePool", "LpPool", "GlobalLpPool", "AdaptiveAveragePool")

#: Ops with a quantized form (docs/conformance-space.md): QLinearAveragePool, QLinearGlobalAveragePool
#: (com.microsoft) and MaxPool between DequantizeLinear and QuantizeLinear.
QUANT_OPS = ("MaxPool", "AveragePool", "GlobalAveragePool")

#: The graph a pooling node sits in: alone, after a Pad node, with symbolic N, C, H, W, or feeding MaxUnpool.
CONTEXTS = ("single", "pad", "dynamic", "unpool")
#: The Pad node's modes in the `pad` context.
PadMode = Literal["constant", "edge", "reflect"]
PAD_MODES: tuple[PadMode, ...] = ("constant", "edge", "reflect")
#: How the id writes a choice's non-default values.
CHOICE_TOKENS = {"context": {"pad": "pad", "dynamic": "dyn", "unpool": "unpool"},
                 "pad_mode": {"edge": "edge", "reflect": "reflect"}}
#: Rows that describe the graph around the pooling node, not one of its attributes.
GRAPH_ROWS = ("quant", "context", "pad_mode", "unpool_shape")

#: The values of the auto_pad attribute.
AUTO_PADS = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")

Kind = Literal["axes", "pads", "auto_pad", "flag", "int", "choice", "quant"]
#: When a row shows: whenever the op has the attribute, or only when the value is not the default.
#: "defined" (written only): also whenever the op's schema at the case's opset defines it.
Shown = Literal["always", "changed", "defined", "never"]


@dataclass(frozen=True)
class Attribute:
    """One pooling attribute: its PoolCase field, its ONNX spelling and how the id writes it."""

    #: The PoolCase field.
    name: str
    #: The attribute's name on the ONNX node; None for with_indices (the Indices output).
    onnx: str | None
    #: What ONNX assumes when the attribute is absent (per axis for per-axis attributes);
    #: None when there is no default (kernel_shape is required).
    default: object
    #: The ops whose schema defines it; on any other op the field must keep its PoolCase default.
    ops: tuple[str, ...]
    #: op -> the first opset whose schema defines it (tests check this against onnx.defs).
    since: dict[str, int] = field(hash=False)
    #: How the value is written in an id: the token's prefix ("k" in `k3`), or the whole
    #: token of a flag ("ceil").
    tag: str
    kind: Kind
    #: When the case id shows it.
    in_id: Shown
    #: When `PoolCase.describe` (records' params) shows it.
    in_params: Shown
    #: When the exporter writes it on the node.
    written: Shown


def _per_op(ops: tuple[str, ...], *opsets: int) -> dict[str, int]:
    return dict(zip(ops, opsets))


_W = WINDOWED_OPS
_LP = ("LpPool", "GlobalLpPool")

#: The table, in the order the case id writes the attributes.
ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("kernel", "kernel_shape", None, _W, _per_op(_W, 1, 1, 1), "k", "axes", "always", "always", "always"),
    Attribute("strides", "strides", 1, _W, _per_op(_W, 1, 1, 1), "s", "axes", "always", "always", "always"),
    Attribute("auto_pad", "auto_pad", "NOTSET", _W, _per_op(_W, 1, 1, 1), "", "auto_pad", "changed", "always",
              "changed"),
    # Explicit pads are shown and written only while auto_pad is NOTSET (validation refuses both at once).
    Attribute("pads", "pads", 0, _W, _per_op(_W, 1, 1, 1), "p", "pads", "always", "always", "always"),
    Attribute("dilations", "dilations", 1, _W, _per_op(_W, 10, 19, 18), "d", "axes", "changed", "always",
              "changed"),
    Attribute("ceil_mode", "ceil_mode", False, _W, _per_op(_W, 10, 10, 18), "ceil", "flag", "changed", "always",
              "changed"),
    Attribute("count_include_pad", "count_include_pad", False, ("AveragePool",), {"AveragePool": 7}, "cip", "flag",
              "changed", "always", "defined"),
    Attribute("p", "p", 2, _LP, _per_op(_LP, 1, 1), "L", "int", "always", "always", "always"),
    Attribute("with_indices", None, False, ("MaxPool",), {"MaxPool": 8}, "idx", "flag", "changed", "changed",
              "never"),
    Attribute("storage_order", "storage_order", 0, ("MaxPool",), {"MaxPool": 8}, "col", "int", "changed",
              "changed", "changed"),
    # The graph around the node (docs/conformance-space.md, "Contexts and quantized pooling"):
    # never an attribute of the pooling node, always in the id when not the default.
    Attribute("quant", None, (), QUANT_OPS, _per_op(QUANT_OPS, 12, 12, 12), "q", "quant", "changed", "changed",
              "never"),
    Attribute("context", None, "single", OPS, _per_op(OPS, *(11,) * len(OPS)), "", "choice", "changed", "changed",
              "never"),
    Attribute("pad_mode", None, "constant", OPS, _per_op(OPS, *(11,) * len(OPS)), "", "choice", "changed",
              "changed", "never"),
    Attribute("unpool_shape", None, False, ("MaxPool",), {"MaxPool": 11}, "oshape", "flag", "changed", "changed",
              "never"),
    # Adaptive pooling's output size per axis: a framework argument, never on an ONNX node (no opset).
    Attribute("output_size", None, 1, ADAPTIVE_OPS, _per_op(ADAPTIVE_OPS, 1, 1), "os", "axes", "always", "always",
              "never"),
)
BY_NAME = {a.name: a for a in ATTRIBUTES}

#: Tokens the id writes as one: Indices in column-major order is `idxcol` (the first release's spelling).
GLUED = {("idx", "col"): "idxcol"}


def axes_tag(values: tuple[int, ...]) -> str:
    """`3` when every axis agrees, `2x3` otherwise."""
    if len(set(values)) == 1:
        return str(values[0])
    return "x".join(str(v) for v in values)


def is_default(attribute: Attribute, value: object) -> bool:
    """Whether the value is what ONNX assumes without the attribute (every axis at the default)."""
    if attribute.kind in ("axes", "pads"):
        return all(v == attribute.default for v in value)  # type: ignore[attr-defined]
    return value == attribute.default


def shows(attribute: Attribute, when: Shown, op: str, value: object, opset: int) -> bool:
    """Whether a row with policy `when` appears for an op and value."""
    if op not in attribute.ops or when == "never":
        return False
    if when == "always":
        return True
    changed = not is_default(attribute, value)
    if when == "defined":
        return changed or opset >= attribute.since[op]
    return changed


def token(attribute: Attribute, value: object) -> str:
    """The id token of one value: `k3`, `p0_1_0_1`, `sameupper`, `ceil`, `L2`, `col`."""
    if attribute.kind == "axes":
        return attribute.tag + axes_tag(value)  # type: ignore[arg-type]
    if attribute.kind == "pads":
        pads: tuple[int, ...] = value  # type: ignore[assignment]
        return attribute.tag + (str(pads[0]) if len(set(pads)) == 1 else "_".join(str(v) for v in pads))
    if attribute.kind == "auto_pad":
        return str(value).lower().replace("_", "")
    if attribute.kind == "flag":
        return attribute.tag
    if attribute.kind == "choice":
        return CHOICE_TOKENS[attribute.name][value]  # type: ignore[index]
    if attribute.kind == "quant":
        return attribute.tag + "_".join(_quant_number(v) for v in value)  # type: ignore[attr-defined]
    if attribute.name == "storage_order":
        return attribute.tag  # 1 is the only value an id shows
    return f"{attribute.tag}{value}"


def _quant_number(value: float | int) -> str:
    """A scale or zero point as an id writes it: `0p05` for 0.05, `m3` for -3 (no `.` or `-` in a token)."""
    text = repr(value) if isinstance(value, float) else str(int(value))
    return text.replace(".", "p").replace("-", "m")


_QUANT_NUMBER = r"m?[0-9]+(?:p[0-9]+)?"


_NUMBER = r"(?:0|[1-9][0-9]*)"


def read_token(attribute: Attribute, text: str, rank: int) -> object | None:
    """The value one id token gives the attribute, or None when the token is not this attribute's.

    Per-axis values written once (`k3`) stand for every axis; pads written once for both sides.
    """
    if attribute.kind == "axes":
        m = re.fullmatch(rf"{attribute.tag}({_NUMBER}(?:x{_NUMBER})*)", text)
        if not m:
            return None
        values = tuple(int(v) for v in m.group(1).split("x"))
        return values * rank if len(values) == 1 else values
    if attribute.kind == "pads":
        m = re.fullmatch(rf"{attribute.tag}({_NUMBER}(?:_{_NUMBER})*)", text)
        if not m:
            return None
        values = tuple(int(v) for v in m.group(1).split("_"))
        return values * (2 * rank) if len(values) == 1 else values
    if attribute.kind == "auto_pad":
        spelled = {token(attribute, v): v for v in AUTO_PADS if v != attribute.default}
        return spelled.get(text)
    if attribute.kind == "flag":
        return True if text == attribute.tag else None
    if attribute.kind == "choice":
        spelled = {t: v for v, t in CHOICE_TOKENS[attribute.name].items()}
        return spelled.get(text)
    if attribute.kind == "quant":
        m = re.fullmatch(rf"{attribute.tag}({_QUANT_NUMBER})_({_QUANT_NUMBER})_({_QUANT_NUMBER})_({_QUANT_NUMBER})", text)
        if not m:
            return None
        xs, xz, ys, yz = (g.replace("p", ".").replace("m", "-") for g in m.groups())
        try:
            return (float(xs), int(xz), float(ys), int(yz))
        except ValueError:
            return None
    if attribute.name == "storage_order":
        return 1 if text == attribute.tag else None
    m = re.fullmatch(rf"{attribute.tag}({_NUMBER})", text)
    return int(m.group(1)) if m else None


def onnx_value(attribute: Attribute, value: object) -> object:
    """The value as the ONNX node holds it: lists for per-axis values, 0/1 for flags."""
    if attribute.kind in ("axes", "pads"):
        return list(value)  # type: ignore[call-overload]
    if attribute.kind == "flag":
        return int(bool(value))
    return value
