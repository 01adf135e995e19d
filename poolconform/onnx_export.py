"""PoolCase -> a checked single-node ONNX ModelProto.

Every exported model passes `onnx.checker.check_model(full_check=True)` and strict shape
inference, and the inferred output shape must equal poolconform.shapes' rule: an
exporter that disagrees with the spec stops here, not in a backend.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from poolconform import contexts, dtypes, shapes
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


def node_attributes(case: PoolCase) -> dict[str, Any]:
    """The ONNX attributes of the case's node, only those its op and opset define
    (the table in poolconform/attributes.py says which)."""
    return case.onnx_attributes()


def output_names(case: PoolCase) -> list[str]:
    return ["Y", "Indices"] if case.with_indices else ["Y"]


#: The contrib domain of the quantized pooling ops, and its one version.
MS_DOMAIN = "com.microsoft"
_SPATIAL_NAMES = {1: ("W",), 2: ("H", "W"), 3: ("D", "H", "W")}


def _pool_nodes(case: PoolCase) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The nodes (and initializers) from `X` to the graph's outputs (docs/conformance-space.md,
    "Contexts and quantized pooling")."""
    outs = output_names(case)
    if case.quant:
        return _quant_nodes(case)
    inner, _ = contexts.pool_view(case)
    if case.context == "pad":
        pads = numpy_helper.from_array(np.array([0, 0] + list(case.pads[:case.rank]) + [0, 0]
                                                + list(case.pads[case.rank:]), dtype=np.int64), "pads")
        return [helper.make_node("Pad", ["X", "pads"], ["X_padded"], name="pad", mode=case.pad_mode),
                helper.make_node(case.op, ["X_padded"], outs, name=case.op.lower(), **inner.onnx_attributes())], [pads]
    if case.context == "unpool":
        unpool_inputs, inits = ["Y_pooled", "Y_indices"], []
        if case.unpool_shape:
            inits.append(numpy_helper.from_array(np.array(case.input_shape, dtype=np.int64), "output_shape"))
            unpool_inputs.append("output_shape")
        attrs = {k: v for k, v in inner.onnx_attributes().items() if k in ("kernel_shape", "strides", "pads")}
        return [helper.make_node("MaxPool", ["X"], ["Y_pooled", "Y_indices"], name="maxpool",
                                 **inner.onnx_attributes()),
                helper.make_node("MaxUnpool", unpool_inputs, ["Y"], name="maxunpool", **attrs)], inits
    return [helper.make_node(case.op, ["X"], outs, name=case.op.lower(), **node_attributes(case))], []


def _quant_nodes(case: PoolCase) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    xs, xz, ys, yz = case.quant
    zero_type = dtypes.numpy_dtype(case.dtype)
    inits = [numpy_helper.from_array(np.array(xs, dtype=np.float32), "x_scale"),
             numpy_helper.from_array(np.array(xz, dtype=zero_type), "x_zero_point"),
             numpy_helper.from_array(np.array(ys, dtype=np.float32), "y_scale"),
             numpy_helper.from_array(np.array(yz, dtype=zero_type), "y_zero_point")]
    attrs = case.onnx_attributes()
    if case.op == "MaxPool":
        return [helper.make_node("DequantizeLinear", ["X", "x_scale", "x_zero_point"], ["X_real"], name="dequantize"),
                helper.make_node("MaxPool", ["X_real"], ["Y_real"], name="maxpool", **attrs),
                helper.make_node("QuantizeLinear", ["Y_real", "y_scale", "y_zero_point"], ["Y"], name="quantize")], inits
    op = "QLinearGlobalAveragePool" if case.is_global else "QLinearAveragePool"
    node = helper.make_node(op, ["X", "x_scale", "x_zero_point", "y_scale", "y_zero_point"], ["Y"],
                            name=op.lower(), domain=MS_DOMAIN, **attrs)
    return [node], inits


def build_model(case: PoolCase, check: bool = True) -> onnx.ModelProto:
    """The case as an ONNX model (input `X`, outputs `Y` and maybe `Indices`): the pooling node
    alone, or in its context's small graph (poolconform.contexts, poolconform.quantized)."""
    if case.output_size:  # adaptive pooling has no ONNX operator (poolconform.adaptive)
        from poolconform.adaptive import ONNX_REFUSAL

        raise CaseError(f"{case.id}: {ONNX_REFUSAL}")
    elem = dtypes.ONNX_TYPES[case.dtype]
    out_shape: list[int | str] = list(contexts.graph_output_shape(case))
    if case.context != "unpool":
        inner, _ = contexts.pool_view(case)
        inferred = shapes.onnx_inferred_spatial_shape(inner)
        for axis, size in enumerate(inferred):
            if size != out_shape[2 + axis]:
                # onnx's shape inference before opset 22 counts a window that holds no element
                # (see shapes.empty_window_note): declare the axis symbolic so the model is valid.
                out_shape[2 + axis] = f"Y_{axis}"
    in_shape: list[int | str] = list(case.input_shape)
    if case.context == "dynamic":
        in_shape = ["N", "C", *_SPATIAL_NAMES[case.rank]]
        out_shape = ["N", "C", *(f"Y_{axis}" for axis in range(case.rank))]
    nodes, initializers = _pool_nodes(case)
    outputs = [helper.make_tensor_value_info("Y", elem, out_shape)]
    if case.with_indices:
        outputs.append(helper.make_tensor_value_info("Indices", onnx.TensorProto.INT64, out_shape))
    graph = helper.make_graph(nodes, case.id, [helper.make_tensor_value_info("X", elem, in_shape)], outputs,
                              initializer=initializers)
    imports = [helper.make_opsetid("", case.opset)]
    if any(n.domain == MS_DOMAIN for n in nodes):
        imports.append(helper.make_opsetid(MS_DOMAIN, 1))
    model = helper.make_model(
        graph,
        opset_imports=imports,
        producer_name="poolconform",
        ir_version=ir_version_for(case.opset),
    )
    if check:
        check_model(model, case)
    return model


def check_model(model: onnx.ModelProto, case: PoolCase) -> None:
    """Checker, strict shape inference, and the inferred shape against the project's rule
    (where the model declares static shapes and onnx knows every node's schema)."""
    contrib = any(n.domain == MS_DOMAIN for n in model.graph.node)
    try:
        onnx.checker.check_model(model, full_check=not contrib)
        if contrib:
            return  # onnx has no schema for com.microsoft nodes: ONNX Runtime's own check runs them
        inferred = shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CaseError(f"ONNX rejects {case.id}: {first}") from exc
    if case.context == "dynamic":
        return  # symbolic by design: the runtime output shape is what the verdict checks
    if case.context == "unpool":
        expected = list(contexts.graph_output_shape(case))
    else:
        inner, _ = contexts.pool_view(case)
        expected = list(case.input_shape[:2] + shapes.onnx_inferred_spatial_shape(inner))
    for value in inferred.graph.output:
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        if dims and dims != expected:
            raise CaseError(f"onnx shape inference gives {dims!r} for {case.id}, the spec rule gives {expected!r}")


def model_bytes(case: PoolCase) -> bytes:
    """Serialized model: the stored bytes for cases read from disk, else a fresh export."""
    if case.model_bytes is not None:
        return case.model_bytes
    return build_model(case).SerializeToString(deterministic=True)
