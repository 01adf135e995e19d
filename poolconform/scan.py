"""A user's ONNX model read without its weights: every pooling node as a case.

`poolconform scan` judges exactly the pooling layers of a real model. The graph is parsed
once (external data is never opened, and refused when it points outside the model's
folder), symbolic dimensions are resolved from `--input-shape` or by shape inference,
and each pooling node becomes the PoolCase of its exact attributes, input shape, dtype
and opset (the reader `check` uses for its single node). Identical configurations are
run once and keep the names of all their nodes. A node poolconform cannot express stays
in the list with the reason, so it is reported, never dropped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import onnx
from google.protobuf.message import DecodeError

from poolconform import dtypes
from poolconform.case import DTYPE_TAGS, OPS, PoolCase
from poolconform.errors import ModelError, PoolconformError
from poolconform.report.text import printable
from poolconform.testdirs import _check_external_data, case_from_node, read_regular_file
from poolconform.tomlfile import shown_path

#: Protobuf cannot hold a model over 2 GiB; bigger ones keep their weights as external data.
MAX_MODEL_BYTES = 2**31 - 1
#: Quantized pooling (onnxruntime's contrib ops): found and listed, not run yet.
QUANTIZED_OPS = ("QLinearAveragePool", "QLinearGlobalAveragePool")
_DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class PoolNode:
    """One pooling node: its case, or why poolconform cannot express it (`problem`)."""

    name: str
    op: str
    case: PoolCase | None
    problem: str | None = None


@dataclass(frozen=True)
class PoolGroup:
    """Nodes with the same configuration: one case, run once, reported under every name."""

    nodes: tuple[str, ...]
    op: str
    case: PoolCase | None
    problem: str | None = None

    @property
    def case_id(self) -> str:
        """The normal case id (explain/repro/--cases accept it); `OP@node` for a problem node."""
        if self.problem is None and self.case is not None:
            return self.case.id
        return f"{self.op}@{self.nodes[0]}"

    @property
    def config(self) -> str:
        """`MaxPool k3 s2 p1 ceil`: the case id up to its dtype, which says the attributes."""
        if self.problem is not None or self.case is None:
            return self.op
        return config_text(self.case)


class ScanSource(TypedDict):
    """How a Keras file or torch factory became the scanned ONNX model (poolconform.scan_sources)."""

    kind: str
    #: How many pooling layers the source has.
    layers: int
    #: The layers the exporter changed, as LayerChange fields.
    changed: list[dict[str, object]]
    #: node name -> the source layers it came from.
    layer_of_node: dict[str, list[str]]


@dataclass
class ScannedModel:
    """The pooling nodes of one model and what was assumed to find their shapes."""

    path: Path
    opset: int
    node_count: int
    nodes: list[PoolNode]
    notes: list[str] = field(default_factory=list)
    #: For a Keras file or torch factory: how it was exported and which layers became what.
    source: ScanSource | None = None
    #: One line per pooling layer the exporter changed (`layer \`gap\` (...) became ...`).
    changes: list[str] = field(default_factory=list)

    def groups(self) -> list[PoolGroup]:
        """Nodes grouped by configuration, in graph order of their first node."""
        order: dict[object, list[PoolNode]] = {}
        for node in self.nodes:
            key: object = node.case if node.problem is None else ("problem", node.name)
            order.setdefault(key, []).append(node)
        return [PoolGroup(tuple(n.name for n in members), members[0].op, members[0].case, members[0].problem)
                for members in order.values()]

    def describe(self) -> dict[str, object]:
        """What summary.json records about the scan: the model and node -> case."""
        entries = []
        for group in self.groups():
            for name in group.nodes:
                entry = {"node": name, "op": group.op, "config": group.config, "case": group.case_id}
                if group.problem:
                    entry["problem"] = group.problem
                entries.append(entry)
        described: dict[str, object] = {
            "model": shown_path(self.path), "opset": self.opset, "graph_nodes": self.node_count,
            "pooling_nodes": len(self.nodes), "notes": list(self.notes), "nodes": entries}
        if self.source is not None:
            described["source"] = self.source
        return described


def config_text(case: PoolCase) -> str:
    """The attribute part of a case id, spaced: `MaxPool k3 s2 p1 ceil` (one source: the id)."""
    parts = case.replace(label=None).id.split("-")
    tag = DTYPE_TAGS.get(case.dtype, case.dtype)
    cut = parts.index(tag) if tag in parts[2:] else len(parts)
    return " ".join([parts[0]] + parts[2:cut])


def parse_input_shapes(values: list[str] | None) -> dict[str, tuple[int, ...]]:
    """`--input-shape NAME=1x3x224x224` (repeatable) as {name: dims}."""
    shapes: dict[str, tuple[int, ...]] = {}
    for value in values or []:
        name, sep, dims = value.rpartition("=")
        try:
            parsed = tuple(int(d) for d in dims.lower().split("x"))
        except ValueError:
            parsed = ()
        if not sep or not name or not parsed or any(d < 1 for d in parsed):
            raise PoolconformError(f"--input-shape {value!r}: expected NAME=DIMS with positive sizes, "
                                   "e.g. input=1x3x224x224")
        if name in shapes:
            raise PoolconformError(f"--input-shape names {name!r} twice")
        shapes[name] = parsed
    return shapes


def read_model(path: Path, max_bytes: int = MAX_MODEL_BYTES) -> onnx.ModelProto:
    """The graph, weights left where they are: size checked before reading, external data
    never opened and refused when it points outside the model's folder."""
    where = shown_path(path)
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise ModelError(f"{where}: cannot read it ({exc.strerror})") from None
    if size > max_bytes:
        raise ModelError(f"{where}: {size} bytes, over the {max_bytes}-byte limit of one protobuf; save the model "
                         "with its weights as external data (onnx.save_model(..., save_as_external_data=True))")
    raw = read_regular_file(path, max_bytes, where)
    model = onnx.ModelProto()
    try:
        model.ParseFromString(raw)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{where}: not an ONNX model ({printable(exc).splitlines()[0] if str(exc) else 'cannot parse'})") from None
    if not model.HasField("graph") or not model.opset_import:
        raise ModelError(f"{where}: not an ONNX model (no graph or no opset_import)")
    _check_external_data(list(_tensors(model)), path.parent, where)
    return model


def _tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor the model stores, subgraphs and functions included."""
    def graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        for node in graph.node:
            yield from node_tensors(node)

    def node_tensors(node: onnx.NodeProto) -> Iterator[onnx.TensorProto]:
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            if a.HasField("g"):
                yield from graph_tensors(a.g)
            for g in a.graphs:
                yield from graph_tensors(g)

    yield from graph_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from node_tensors(node)


def _model_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializers = {t.name for t in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in initializers]


def _dims(value: onnx.ValueInfoProto) -> list[int | str] | None:
    """Static sizes as ints, symbolic ones as their name (or '?'); None without a shape."""
    tensor_type = value.type.tensor_type
    if not value.type.HasField("tensor_type") or not tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor_type.shape.dim]


def _static(dims: list[int | str] | None) -> bool:
    return dims is not None and all(isinstance(d, int) and d >= 0 for d in dims)


def resolve_inputs(model: onnx.ModelProto, given: dict[str, tuple[int, ...]]) -> list[str]:
    """Fix every model input's shape in place: `given` first, then batch 1 for a symbolic
    first axis. Returns the notes that say what was assumed."""
    inputs = {v.name: v for v in _model_inputs(model)}
    notes: list[str] = []
    for name, dims in given.items():
        if name not in inputs:
            raise PoolconformError(f"--input-shape names {name!r}, which is not a model input; "
                                   f"inputs: {', '.join(repr(n) for n in inputs) or 'none'}")
        declared = _dims(inputs[name])
        if declared is not None and len(declared) != len(dims):
            raise PoolconformError(f"--input-shape {name}=...: {len(dims)} sizes, but input {name!r} has rank "
                                   f"{len(declared)} ({_text(declared)})")
        for axis, (want, have) in enumerate(zip(dims, declared or [])):
            if isinstance(have, int) and have > 0 and have != want:
                raise PoolconformError(f"--input-shape {name}=...: axis {axis} is {want}, but the model fixes it "
                                       f"at {have} ({_text(declared)})")
        _set_dims(inputs[name], list(dims))
    for name, value in inputs.items():
        found = _dims(value)
        if name in given or found is None or _static(found) or not found:
            continue
        if not (isinstance(found[0], int) and found[0] > 0):
            notes.append(f"input {name!r}: batch axis {found[0]!r} set to 1 (pass --input-shape {name}=... "
                         "to choose another)")
            found[0] = 1
            _set_dims(value, found)
    return notes


def _set_dims(value: onnx.ValueInfoProto, dims: list[int | str]) -> None:
    shape = value.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        dim = shape.dim.add()
        if isinstance(d, int) and d > 0:
            dim.dim_value = d
        elif d != "?":
            dim.dim_param = str(d)


def _text(dims: list[int | str] | None) -> str:
    return "unknown" if dims is None else "[" + ", ".join(str(d) for d in dims) + "]"


def _inferred(model: onnx.ModelProto, notes: list[str]) -> onnx.ModelProto:
    """The model with inferred value types; the model as it is when inference fails."""
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)
    except Exception as exc:  # onnx raises several C++-mapped types; any failure leaves the declared shapes
        first = printable(str(exc)).strip().splitlines()
        notes.append(f"shape inference failed ({first[0][:200] if first else type(exc).__name__}); "
                     "using the shapes the model declares")
        return model


def _node_name(node: onnx.NodeProto, index: int, taken: set[str]) -> str:
    name = printable(node.name) if node.name else f"{node.op_type}#{index}"
    base, k = name, 2
    while name in taken:  # names must be unique in a graph; a model that breaks the rule still gets distinct ones
        name, k = f"{base}#{k}", k + 1
    taken.add(name)
    return name


def _is_pool(node: onnx.NodeProto) -> bool:
    return (node.domain in _DEFAULT_DOMAINS and node.op_type in OPS) or node.op_type in QUANTIZED_OPS


def scan_model(path: Path, input_shapes: dict[str, tuple[int, ...]] | None = None,
               max_bytes: int = MAX_MODEL_BYTES) -> ScannedModel:
    """Every pooling node of the model at `path` as a case (or a reason); PoolconformError
    (one line) when the file is not a readable ONNX model, has no pooling node, or a
    pooling node's input shape depends on an input size nobody gave."""
    where = shown_path(path)
    model = read_model(path, max_bytes)
    opset = next((o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS), None)
    if opset is None:
        raise ModelError(f"{where}: the model imports no default-domain opset")
    notes = resolve_inputs(model, input_shapes or {})
    graph = model.graph
    inferred = _inferred(model, notes)
    types = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    rewritten = list(_spatial_reductions(graph, types))
    if not any(_is_pool(n) for n in graph.node) and not any(True for _ in _nested_pools(model)):
        ops = sorted({n.op_type for n in graph.node})
        shown = ", ".join(ops[:12]) + (", ..." if len(ops) > 12 else "")
        also = (f"; node(s) {', '.join(repr(n) for n, _, _ in rewritten)} reduce the spatial axes (an exporter's rewrite of "
                "global pooling), which is not a pooling op") if rewritten else ""
        raise ModelError(f"{where}: no pooling node ({', '.join(OPS)}) among its {len(graph.node)} nodes "
                         f"(ops: {shown or 'none'}){also}")
    unresolved = {v.name: _dims(v) for v in _model_inputs(model) if not _static(_dims(v))}
    nodes: list[PoolNode] = []
    taken: set[str] = set()
    blocked: list[str] = []
    for index, node in enumerate(graph.node):
        if not _is_pool(node):
            continue
        name = _node_name(node, index, taken)
        if node.op_type in QUANTIZED_OPS or node.domain not in _DEFAULT_DOMAINS:
            nodes.append(PoolNode(name, node.op_type, None, f"{node.domain or 'ai.onnx'}.{node.op_type}: "
                                  "quantized pooling is not supported yet"))
            continue
        value = types.get(node.input[0]) if node.input else None
        dims = _dims(value) if value is not None else None
        if value is None or not _static(dims):
            if unresolved:
                blocked.append(name)
                continue
            nodes.append(PoolNode(name, node.op_type, None,
                                  f"shape inference could not resolve its input shape ({_text(dims)})"))
            continue
        nodes.append(_pool_node(node, name, tuple(int(d) for d in dims or []), value, opset))
    if blocked:
        first = next(iter(unresolved))
        example = "x".join(str(d) if isinstance(d, int) and d > 0 else f"<{d}>" for d in unresolved[first] or []) or "..."
        raise PoolconformError(
            f"{where}: the input shape of pooling node {blocked[0]!r}"
            f"{f' (and {len(blocked) - 1} more)' if len(blocked) > 1 else ''} depends on "
            + ", ".join(f"input {n!r} {_text(d)}" for n, d in unresolved.items())
            + f"; pass its sizes with --input-shape {first}={example}")
    for name, op, why in rewritten:
        nodes.append(PoolNode(_unique(name, taken), op, None, why))
    for name, op, where_found in _nested_pools(model):
        nodes.append(PoolNode(_unique(name, taken), op, None,
                              f"inside {where_found}: shape inference does not reach it, so it is not scanned"))
    return ScannedModel(path, int(opset), len(graph.node), nodes, notes)


def _unique(name: str, taken: set[str]) -> str:
    base, k = name, 2
    while name in taken:
        name, k = f"{base}#{k}", k + 1
    taken.add(name)
    return name


def _pool_node(node: onnx.NodeProto, name: str, shape: tuple[int, ...], value: onnx.ValueInfoProto,
               opset: int) -> PoolNode:
    """The node's case through check's reader; whatever it cannot express becomes the problem."""
    elem_type = value.type.tensor_type.elem_type
    try:
        dtype = dtypes.onnx_type_name(elem_type)
    except KeyError:
        type_name = onnx.TensorProto.DataType.Name(elem_type) if elem_type in onnx.TensorProto.DataType.values() else elem_type
        return PoolNode(name, node.op_type, None, f"element type {type_name} is not one poolconform runs "
                                                   f"({', '.join(dtypes.ONNX_TYPES)})")
    try:
        case, problem = case_from_node(node, shape, dtype, opset)
    except PoolconformError as exc:
        return PoolNode(name, node.op_type, None, str(exc))
    except (ValueError, TypeError, OverflowError, IndexError) as exc:  # a hostile attribute value: a reason, not a crash
        return PoolNode(name, node.op_type, None, f"cannot read its attributes ({type(exc).__name__}: {printable(exc)})")
    return PoolNode(name, node.op_type, case, problem)


def _nested_pools(model: onnx.ModelProto) -> Iterator[tuple[str, str, str]]:
    """(node name, op, where) for pooling nodes in subgraphs (If/Loop/Scan) and local functions."""
    def walk(graph: onnx.GraphProto, where: str) -> Iterator[tuple[str, str, str]]:
        for index, node in enumerate(graph.node):
            if where and _is_pool(node):
                yield node.name or f"{node.op_type}#{index}", node.op_type, where
            for a in node.attribute:
                for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    yield from walk(g, f"the subgraph {a.name!r} of node {node.name or node.op_type!r}")

    yield from walk(model.graph, "")
    for function in model.functions:
        for index, node in enumerate(function.node):
            if _is_pool(node):
                yield node.name or f"{node.op_type}#{index}", node.op_type, f"model-local function {function.name!r}"


#: Reductions that exporters write for global pooling layers (Keras' GlobalAveragePooling2D on torch).
_GLOBAL_REWRITES = {"ReduceMean": "GlobalAveragePool", "ReduceMax": "GlobalMaxPool"}


def _spatial_reductions(graph: onnx.GraphProto, types: dict[str, onnx.ValueInfoProto]) -> Iterator[tuple[str, str, str]]:
    """(node name, op, reason) for ReduceMean/ReduceMax over exactly the spatial axes of a
    3-5-d tensor (NCHW or NHWC): a pooling layer the exporter changed into another op. Listed,
    not judged: backends run the reduction, not a pooling op."""
    constants = {t.name: t for t in graph.initializer if t.data_location != onnx.TensorProto.EXTERNAL}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in _DEFAULT_DOMAINS:
            for a in node.attribute:
                if a.name in ("value", "value_ints") and node.output:
                    constants[node.output[0]] = a.t if a.name == "value" else onnx.helper.make_tensor(
                        "axes", onnx.TensorProto.INT64, [len(a.ints)], list(a.ints))
    for index, node in enumerate(graph.node):
        if node.op_type not in _GLOBAL_REWRITES or node.domain not in _DEFAULT_DOMAINS or not node.input:
            continue
        dims = _dims(types[node.input[0]]) if node.input[0] in types else None
        rank = len(dims) if dims is not None else 0
        if not 3 <= rank <= 5:
            continue
        axes: list[int] | None = None
        for a in node.attribute:
            if a.name == "axes":
                axes = list(a.ints)
        if axes is None and len(node.input) > 1 and node.input[1] in constants:
            try:
                axes = [int(v) for v in onnx.numpy_helper.to_array(constants[node.input[1]]).ravel()]
            except (ValueError, TypeError):
                axes = None
        if not axes:
            continue
        wanted = sorted(a % rank for a in axes)
        layout = {tuple(range(2, rank)): "NCHW", tuple(range(1, rank - 1)): "NHWC"}.get(tuple(wanted))
        if layout is None:
            continue
        name = printable(node.name) if node.name else f"{node.op_type}#{index}"
        yield name, node.op_type, (f"{node.op_type} over the spatial axes {wanted} ({layout}): the exporter wrote "
                                   f"global pooling as a reduction, not {_GLOBAL_REWRITES[node.op_type]}; "
                                   "poolconform judges pooling ops only")
