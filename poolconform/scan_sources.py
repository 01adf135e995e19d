"""`scan` of a Keras file or a torch factory: export to ONNX, then say which pooling layers
the exporter changed.

The export runs in a child process (poolconform.scan_export): Keras reads its backend once
per process and a factory is the user's code. The child lists every pooling layer with
the ONNX pooling it should have become; here that expectation is built into a PoolCase
and compared, by what it computes (padding resolved, global as a full window, batch
ignored), with the pooling nodes the scan found. A layer whose node computes something
else, or that became other ops, is listed with the layer name and what it became.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx

from poolconform.case import PoolCase
from poolconform.errors import PoolconformError
from poolconform.report.text import printable
from poolconform.scan import PoolNode, ScannedModel, config_text
from poolconform.shapes import resolve_pads, spatial_output_shape
from poolconform.validation import make_case

#: Opset of the torch export unless --opset says otherwise (what torch.onnx's TorchScript path defaults to).
DEFAULT_TORCH_OPSET = 17
#: The Keras backends whose `model.export(format="onnx")` exists (jax needs jax2onnx).
KERAS_BACKENDS = ("tensorflow", "torch", "jax")
EXPORT_TIMEOUT_S = 900
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def source_kind(text: str) -> str:
    """`onnx`, `keras` (a .keras file) or `torch` (`package.module:factory`)."""
    if text.lower().endswith(".keras"):
        return "keras"
    if _FACTORY.match(text) and not Path(text).exists():
        return "torch"
    return "onnx"


@dataclass(frozen=True)
class LayerChange:
    """A source pooling layer that did not come out of the exporter as the pooling it is."""

    layer: str
    kind: str
    expected: str
    became: str

    def line(self) -> str:
        return f"layer `{self.layer}` ({self.kind}, expected {self.expected}) became {self.became}"


def export_source(text: str, kind: str, inputs: dict[str, tuple[int, ...]], opset: int | None,
                  keras_backend: str | None, folder: Path) -> tuple[Path, list[dict]]:
    """Export the source to `folder/model.onnx` in a child process; its pooling layers as
    the child listed them. PoolconformError (one line) on any failure."""
    if kind == "torch" and not inputs:
        raise PoolconformError(f"{text}: a torch factory needs an example shape: --input-shape input=1x3x224x224")
    if kind == "keras" and not Path(text).is_file():
        raise PoolconformError(f"{text}: no such Keras file")
    out, answer, request = folder / "model.onnx", folder / "answer.json", folder / "request.json"
    request.write_text(json.dumps({
        "kind": kind, "source": str(Path(text).resolve()) if kind == "keras" else text,
        "inputs": [[n, list(d)] for n, d in inputs.items()], "backend": keras_backend, "out": str(out),
        "opset": opset if opset is not None or kind == "keras" else DEFAULT_TORCH_OPSET, "answer": str(answer)}))
    try:
        done = subprocess.run([sys.executable, "-m", "poolconform.scan_export", str(request)], capture_output=True,
                              text=True, timeout=EXPORT_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise PoolconformError(f"{text}: the ONNX export took over {EXPORT_TIMEOUT_S} s") from None
    if not answer.is_file():
        tail = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise PoolconformError(f"{text}: the export process ended with status {done.returncode} "
                               f"({printable(tail[-1][:300]) if tail else 'no message'})")
    result = json.loads(answer.read_text())
    if "error" in result:
        raise PoolconformError(printable(result["error"]))
    if not out.is_file():
        raise PoolconformError(f"{text}: the exporter wrote no ONNX file")
    return out, list(result["layers"])


def expected_case(layer: dict, opset: int) -> PoolCase | None:
    """The PoolCase the layer stands for, in ONNX terms; None when it has none."""
    want = layer.get("expected")
    if not want or not layer.get("input_shape"):
        return None
    rest = {k: v for k, v in want.items() if k not in ("op", "kernel", "strides", "pads", "dilations")}
    return make_case(want["op"], tuple(layer["input_shape"]), kernel=want.get("kernel"), strides=want.get("strides"),
                     pads=want.get("pads"), dilations=want.get("dilations"), opset=opset, **rest)


def computes(case: PoolCase) -> tuple:
    """What a case computes, not how it is written: auto_pad resolved, a global op as its
    full window, ceil_mode only through the output size, the batch left out."""
    op = case.op.replace("Global", "")
    if case.is_global:
        kernel, strides, pads, dil = case.spatial, (1,) * case.rank, (0,) * 2 * case.rank, (1,) * case.rank
    else:
        kernel, strides, pads, dil = case.kernel, case.strides, resolve_pads(case), case.dilations or (1,) * case.rank
    out = spatial_output_shape(case)
    padded = any(pads) or case.ceil_mode
    return (op, case.input_shape[1:], tuple(kernel), tuple(strides), tuple(dil), tuple(pads), out,
            case.count_include_pad if op == "AveragePool" and padded else None,
            case.p if op == "LpPool" else None, case.with_indices)


def _scope_matches(node_name: str, layer: str, kind: str) -> bool:
    """Whether an exported node sits in the layer's scope: torch's `/a/b.0/MaxPool` names
    (each part a dotted piece of the module's name, the last one its end), tf2onnx's
    `model/layer_1/Op`. Keras on torch names nodes by aten op only: nothing matches."""
    parts = node_name.strip("/").split("/")[:-1]
    if not parts or not layer:
        return False
    if kind == "torch":  # a module called again gets `name_1`, `name_2` scopes
        bare = [re.sub(r"_\d+$", "", p) for p in parts]
        return any(f".{layer}".endswith(f".{ps[-1]}") and all(f".{p}." in f".{layer}." for p in ps)
                   for ps in (parts, bare))
    return any(re.fullmatch(re.escape(layer) + r"(_\d+)?", p) for p in parts)


def _shown(node: PoolNode) -> str:
    return f"{node.op} `{node.name}`" + (f" ({config_text(node.case)})" if node.case is not None else "")


def exporter_changes(layers: list[dict], scanned: ScannedModel, model: onnx.ModelProto, kind: str) -> tuple[
        list[LayerChange], dict[str, list[str]]]:
    """The layers the exporter changed, and for the rest which node each became (node -> layers).

    A layer is kept when a pooling node in its scope (by name), or failing names any node
    not yet taken, computes what the layer computes; otherwise it is a change, shown with
    the nodes of its scope or, without names, the nodes no layer was matched to."""
    graph_nodes = [(n.name, n.op_type) for n in model.graph.node]
    claimed: dict[str, list[str]] = {}
    pending: list[tuple[dict, str, list[PoolNode]]] = []
    for layer in layers:
        try:
            want = expected_case(layer, scanned.opset)
        except PoolconformError as exc:
            want, layer = None, {**layer, "why": str(exc)}
        expected = config_text(want) if want is not None else f"no ONNX pooling: {layer.get('why')}"
        key = computes(want) if want is not None else None
        scoped = [n for n in scanned.nodes if _scope_matches(n.name, layer["name"], kind)]
        pool = [n for n in (scoped or scanned.nodes) if n.name not in claimed]
        same = next((n for n in pool if key is not None and n.case is not None and computes(n.case) == key), None)
        if same is not None:
            claimed.setdefault(same.name, []).append(layer["name"])
        else:
            pending.append((layer, expected, scoped))
    changes: list[LayerChange] = []
    for layer, expected, scoped in pending:
        ops = list(dict.fromkeys(op for name, op in graph_nodes if _scope_matches(name, layer["name"], kind)
                                 and op not in {n.op for n in scoped} | {"Constant"}))
        if scoped:
            became = ", ".join(_shown(n) for n in scoped) + (f" with {', '.join(ops)}" if ops else "")
        else:
            left = [_shown(n) for n in scanned.nodes if n.name not in claimed]
            became = (f"the ops {', '.join(ops)} (no pooling node)" if ops else
                      "no pooling node of that configuration in the exported graph"
                      + (f" (not matched to any layer: {', '.join(left[:4])})" if left else ""))
        changes.append(LayerChange(layer["name"], layer["kind"], expected, became))
    return changes, claimed


def scan_source(text: str, kind: str, inputs: dict[str, tuple[int, ...]], opset: int | None,
                keras_backend: str | None, scan) -> ScannedModel:
    """Export, scan the ONNX file (`scan` is scan.scan_model), and attach the layer changes."""
    with tempfile.TemporaryDirectory(prefix="poolconform-scan-") as tmp:
        path, layers = export_source(text, kind, inputs, opset, keras_backend, Path(tmp))
        try:
            scanned = scan(path)
        except PoolconformError as exc:
            names = ", ".join(f"{layer['name']!r} ({layer['kind']})" for layer in layers)
            raise PoolconformError(f"{text}: exported to ONNX: {str(exc).split(': ', 1)[-1]}"
                                   + (f"; its pooling layers: {names}" if names else "")) from None
        model = onnx.load(str(path), load_external_data=False)
    changes, claimed = exporter_changes(layers, scanned, model, kind)
    scanned.path = Path(text)
    scanned.source = {"kind": kind, "layers": len(layers), "changed": [c.__dict__ for c in changes],
                      "layer_of_node": claimed}
    scanned.changes = [c.line() for c in changes]
    return scanned
