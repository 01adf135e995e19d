"""What the ONNX operator at a given opset can express, read from the installed onnx's schemas.

No hand-written version table: which attributes exist (ceil_mode, dilations,
storage_order, count_include_pad, p), whether the Indices output exists and which
element types the type constraint `T` admits all come from `onnx.defs`, so the rules
follow the onnx package instead of going stale. `python -m poolconform.support`
prints the resulting table (docs/conformance-space.md embeds it).
"""

from __future__ import annotations

import functools

from onnx import AttributeProto, TensorProto, defs

from poolconform import dtypes
from poolconform.attributes import ATTRIBUTES, BY_NAME
from poolconform.case import DTYPE_TAGS, DTYPES, OPS, POOLING_OPSETS, PoolCase
from poolconform.onnx_export import exportable_opsets, opsets_text


def onnx_type_string(dtype: str) -> str:
    """The schema's spelling of an element type: `tensor(float)` for float32, `tensor(uint8)`..."""
    return f"tensor({TensorProto.DataType.Name(dtypes.ONNX_TYPES[dtype]).lower()})"


@functools.cache
def _schema(op: str, opset: int) -> defs.OpSchema | None:
    try:
        return defs.get_schema(op, opset, "")
    except defs.SchemaError:
        return None


@functools.cache
def supported_opsets(op: str) -> list[int]:
    """The opset versions in which `op` changed (its schema's since_versions), ascending."""
    versions = sorted(
        {s.since_version for s in defs.get_all_schemas_with_history() if s.name == op and s.domain == ""}
    )
    if not versions:
        raise KeyError(f"onnx {_onnx_version()} has no operator {op!r}")
    return versions


def _onnx_version() -> str:
    import onnx

    return onnx.__version__


def _used_features(case: PoolCase) -> list[str]:
    """The case fields whose attribute the exported node carries (poolconform.attributes decides which)."""
    written = case.onnx_attributes()
    return [row.name for row in ATTRIBUTES if row.onnx in written]


def onnx_rejects(case: PoolCase) -> str | None:
    """Why `case.op` at `case.opset` cannot express the case (one line), or None when it can."""
    if case.op not in OPS:
        return f"unknown op {case.op!r}; allowed: {', '.join(OPS)}"
    newest = defs.onnx_opset_version()
    if case.opset > newest:
        return f"opset {case.opset!r} is newer than the installed onnx {_onnx_version()} knows (up to {newest!r})"
    schema = _schema(case.op, case.opset)
    if schema is None:
        first = supported_opsets(case.op)[0]
        return f"{case.op} does not exist at opset {case.opset!r}: the schema starts at opset {first!r}"
    if case.opset not in exportable_opsets():
        return f"opset {case.opset!r} is not one the exporter can write; allowed: {opsets_text()}"
    where = f"{case.op}-{schema.since_version} (opset {case.opset!r})"
    for feature in _used_features(case):
        attribute = BY_NAME[feature].onnx
        assert attribute is not None
        if attribute not in schema.attributes:
            return f"{where} has no {attribute!r} attribute (needed for {feature}={getattr(case, feature)!r})"
        if feature == "p" and schema.attributes[attribute].type != AttributeProto.INT:
            # onnx's stub declares OpSchema.AttrType without the int value the pybind enum holds
            kind = AttributeProto.AttributeType.Name(schema.attributes[attribute].type)  # type: ignore[arg-type]
            return f"{where} takes p as {kind}, poolconform's p={case.p!r} is an integer attribute"
    if case.with_indices and len(schema.outputs) < 2:
        return f"{where} has no Indices output (with_indices={case.with_indices!r})"
    allowed = allowed_dtypes(case.op, case.opset)
    if case.quant:  # the quantized graph pools dequantized floats (poolconform.quantized)
        if "float32" not in allowed:
            return f"{where} does not accept float32, which the quantized graph pools"
        return None
    if case.dtype not in allowed:
        return f"{where} does not accept dtype {case.dtype!r}; allowed: {', '.join(allowed) or 'none'}"
    return None


def allowed_dtypes(op: str, opset: int) -> list[str]:
    """poolconform dtypes that the type constraint T of `op` admits at `opset`."""
    return list(_allowed_dtypes(op, opset))


@functools.cache
def _allowed_dtypes(op: str, opset: int) -> tuple[str, ...]:
    schema = _schema(op, opset)
    if schema is None:
        return ()
    admitted: set[str] = set()
    for constraint in schema.type_constraints:
        if constraint.type_param_str == "T":
            admitted.update(constraint.allowed_type_strs)
    return tuple(d for d in DTYPES if onnx_type_string(d) in admitted)


def attributes(op: str, opset: int) -> list[str]:
    """The attribute names of `op` at `opset` (empty when the op does not exist there)."""
    schema = _schema(op, opset)
    return sorted(schema.attributes) if schema is not None else []


def support_table(opsets: tuple[int, ...] = POOLING_OPSETS) -> str:
    """A Markdown table: per op schema version, the opsets it covers, its attributes, outputs, dtypes."""
    lines = [
        "| op | schema | opsets | attributes (besides kernel_shape) | outputs | dtypes |",
        "|---|---|---|---|---|---|",
    ]
    for op in OPS:
        covered: dict[int, list[int]] = {}
        for opset in opsets:
            schema = _schema(op, opset)
            if schema is not None:
                covered.setdefault(schema.since_version, []).append(opset)
        for version, versions in covered.items():
            schema = _schema(op, versions[0])
            assert schema is not None
            attrs = ", ".join(a for a in attributes(op, versions[0]) if a != "kernel_shape") or "-"
            outputs = ", ".join(o.name for o in schema.outputs)
            tags = ", ".join(DTYPE_TAGS[d] for d in allowed_dtypes(op, versions[0]))
            shown = ", ".join(str(v) for v in versions)
            lines.append(f"| {op} | {op}-{version} | {shown} | {attrs} | {outputs} | {tags} |")
    return "\n".join(lines)


def changes_table() -> str:
    """One line per op: the opsets where its schema changed (what POOLING_OPSETS must cover)."""
    return "\n".join(f"- {op}: {', '.join(str(v) for v in supported_opsets(op))}" for op in OPS)


def main() -> None:
    """Print the opset/dtype rules of the installed onnx as Markdown."""
    print(f"Pooling operators in onnx {_onnx_version()} (schema versions where each changed):\n")
    print(changes_table())
    print()
    print(support_table())


if __name__ == "__main__":
    main()
