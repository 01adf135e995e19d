"""PoolCase -> a checked single-node ONNX ModelProto.

Every exported model passes `onnx.checker.check_model(full_check=True)` and strict shape
inference, and the inferred output shape must equal poolconform.shapes' rule: an
exporter that disagrees with the spec stops here, not in a backend.
"""

from __future__ import annotations

import functools

import onnx
from onnx import helper, shape_inference

from poolconform import dtypes, shapes
from poolconform.case import PoolCase
from poolconform.errors import CaseError


def ir_version_for(opset: int) -> int:
    """The lowest IR version that can hold the opset, so models load on older runtimes too."""
    return helper.find_min_ir_version_for([helper.make_opsetid("", opset)])


@functools.cache
def exportable_opsets() -> tuple[int, ...]:
    """The opsets this exporter can write: those some onnx release defined (not 2-4), up to
    the installed onnx's newest. The matrix and case validation accept exactly these."""
    found = []
    for opset in range(1, onnx.defs.onnx_opset_version() + 1):
        try:
            ir_version_for(opset)
        except ValueError:
            continue
        found.append(opset)
    return tuple(found)


def opsets_text() -> str:
    """exportable_opsets() for messages, runs collapsed: `1, 5-28`."""
    runs: list[list[int]] = []
    for opset in exportable_opsets():
        if runs and runs[-1][-1] == opset - 1:
            runs[-1].append(opset)
        else:
            runs.append([opset])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def node_attributes(case: PoolCase) -> dict[str, object]:
    """The ONNX attributes of the case's node, only those its op and opset define
    (the table in poolconform/attributes.py says which)."""
    return case.onnx_attributes()


def output_names(case: PoolCase) -> list[str]:
    return ["Y", "Indices"] if case.with_indices else ["Y"]


def build_model(case: PoolCase, check: bool = True) -> onnx.ModelProto:
    """The case as an ONNX model (input `X`, outputs `Y` and maybe `Indices`)."""
    elem = dtypes.ONNX_TYPES[case.dtype]
    out_shape: list[int | str] = list(shapes.output_shape(case))
    inferred = shapes.onnx_inferred_spatial_shape(case)
    for axis, size in enumerate(inferred):
        if size != out_shape[2 + axis]:
            # onnx's shape inference before opset 22 counts a window that holds no element
            # (see shapes.empty_window_note): declare the axis symbolic so the model is valid.
            out_shape[2 + axis] = f"Y_{axis}"
    node = helper.make_node(case.op, ["X"], output_names(case), name=case.op.lower(), **node_attributes(case))
    outputs = [helper.make_tensor_value_info("Y", elem, out_shape)]
    if case.with_indices:
        outputs.append(helper.make_tensor_value_info("Indices", onnx.TensorProto.INT64, out_shape))
    graph = helper.make_graph(
        [node],
        case.id,
        [helper.make_tensor_value_info("X", elem, list(case.input_shape))],
        outputs,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", case.opset)],
        producer_name="poolconform",
        ir_version=ir_version_for(case.opset),
    )
    if check:
        check_model(model, case)
    return model


def check_model(model: onnx.ModelProto, case: PoolCase) -> None:
    """Checker, strict shape inference, and the inferred shape against the project's rule."""
    try:
        onnx.checker.check_model(model, full_check=True)
        inferred = shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CaseError(f"ONNX rejects {case.id}: {first}") from exc
    expected = list(case.input_shape[:2] + shapes.onnx_inferred_spatial_shape(case))
    for value in inferred.graph.output:
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        if dims and dims != expected:
            raise CaseError(f"onnx shape inference gives {dims!r} for {case.id}, the spec rule gives {expected!r}")


def model_bytes(case: PoolCase) -> bytes:
    """Serialized model: the stored bytes for cases read from disk, else a fresh export."""
    if case.model_bytes is not None:
        return case.model_bytes
    return build_model(case).SerializeToString(deterministic=True)
