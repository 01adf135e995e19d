"""ONNX backend-test directories, in and out: `model.onnx` + `test_data_set_N/*.pb`.

This is the portable form of a case: onnx's own backend test runner, onnxruntime's
test runner and `poolconform check` all read it. Writing is deterministic (the same
cases give byte-identical trees); reading refuses, in one line, anything it cannot
read safely, and one bad directory never stops the others (`discover`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from poolconform import dtypes, oracle, shapes
from poolconform.case import AUTO_PADS, OPS, PoolCase, validate_case
from poolconform.errors import CaseError, ModelError, PoolconformError
from poolconform.inputs import make_inputs
from poolconform.onnx_export import build_model, output_names

#: Directory prefix: onnx's BackendTest only collects directories named `test_*`.
DIR_PREFIX = "test_"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "poolconform-testdirs/1"
#: Largest input (in elements) a model may declare before we refuse to allocate it (256 Mi).
MAX_INPUT_ELEMENTS = 2**28
#: Tolerances written to data.json for onnx's runner (it defaults to rtol 1e-3, atol 1e-7).
RUNNER_TOLERANCE = {
    "float64": (1e-7, 1e-7),
    "float32": (1e-5, 1e-6),
    "float16": (2e-3, 1e-3),
    "bfloat16": (1.6e-2, 1e-2),
    "int8": (0.0, 0.0),
    "uint8": (0.0, 0.0),
}


# --------------------------------------------------------------------------- writing


def dir_name(case: PoolCase) -> str:
    """`test_<case id>`: the name onnx's runner collects and `check` reports as `case`."""
    return DIR_PREFIX + case.id


def expected_outputs(case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """The oracle's outputs cast to the model's output types (Indices stay int64)."""
    ref = oracle.reference_outputs(case, inputs)
    out = [_cast(ref[0], case.dtype)]
    if len(ref) > 1:
        out.append(ref[1].astype(np.int64))
    return out


def _cast(values: np.ndarray, dtype: str) -> np.ndarray:
    if not dtypes.is_float(dtype):
        values = np.rint(values)
    return values.astype(dtypes.numpy_dtype(dtype))


def _tensor_bytes(array: np.ndarray, name: str) -> bytes:
    return numpy_helper.from_array(np.ascontiguousarray(array), name).SerializeToString(deterministic=True)


def write_case_dir(case: PoolCase, directory: str | os.PathLike[str], outputs: list[np.ndarray] | None = None) -> None:
    """Write one backend-test directory; `outputs` default to the oracle's (cast to the output type)."""
    directory = Path(directory)
    inputs = make_inputs(case)
    if outputs is None:
        outputs = expected_outputs(case, inputs)
    data = directory / "test_data_set_0"
    data.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").write_bytes(build_model(case).SerializeToString(deterministic=True))
    rtol, atol = RUNNER_TOLERANCE[case.dtype]
    (directory / "data.json").write_text(json.dumps({"atol": atol, "rtol": rtol}, sort_keys=True) + "\n")
    (data / "input_0.pb").write_bytes(_tensor_bytes(inputs[0], "X"))
    for k, (name, value) in enumerate(zip(output_names(case), outputs)):
        (data / f"output_{k}.pb").write_bytes(_tensor_bytes(value, name))


def manifest_entry(case: PoolCase) -> dict[str, object]:
    """What a manifest says about one case (plain JSON, no timestamps)."""
    return {
        "dir": dir_name(case),
        "id": case.id,
        "opset": case.opset,
        "dtype": case.dtype,
        "expected_shape": list(shapes.output_shape(case)),
        "outputs": output_names(case),
        "params": case.describe(),
    }


def export_cases(cases: Iterable[PoolCase], out_dir: str | os.PathLike[str]) -> Path:
    """Write every case as `out_dir/test_<id>/` plus `manifest.json`; returns the manifest path.

    Directories named by a previous manifest in `out_dir` but no longer exported are
    removed, so re-exporting into a corpus leaves no stale cases; nothing else is touched.
    """
    out = Path(out_dir)
    unique: dict[str, PoolCase] = {}
    for case in cases:
        seen = unique.setdefault(case.id, case)
        if seen != case:
            raise PoolconformError(f"two different cases share the id {case.id!r}: {seen!r} and {case!r}")
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    wanted = {dir_name(c) for c in unique.values()}
    for stale in sorted(_manifest_dirs(manifest_path) - wanted):
        target = out / stale
        if target.is_dir() and target.parent == out:
            shutil.rmtree(target)
    entries = []
    for case in sorted(unique.values(), key=dir_name):
        target = out / dir_name(case)
        if target.exists():
            shutil.rmtree(target)  # no leftover output_1.pb from an older version of the case
        write_case_dir(case, target)
        entries.append(manifest_entry(case))
    manifest_path.write_text(_manifest_text(entries))
    return manifest_path


def _manifest_text(entries: list[dict[str, object]]) -> str:
    """Sorted keys, one case per line: valid JSON that diffs well and has no timestamps."""
    lines = [json.dumps(e, sort_keys=True) for e in entries]
    body = ",\n  ".join(lines)
    return (
        f'{{"cases": [\n  {body}\n], "count": {len(entries)}, "format": {json.dumps(MANIFEST_FORMAT)}}}\n'
    )


def _manifest_dirs(path: Path) -> set[str]:
    try:
        document = json.loads(path.read_text())
        return {str(e["dir"]) for e in document["cases"] if "/" not in str(e["dir"])}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


#: The committed corpus keeps default-matrix cases up to this spatial size (the 13- and
#: 56-wide inputs would make models/ 29 MB instead of about 3 MB).
CORPUS_MAX_SPATIAL = 9


def corpus_cases() -> list[PoolCase]:
    """The models/ corpus: the default matrix (golden cases included) up to CORPUS_MAX_SPATIAL."""
    from poolconform.matrix import load_matrix

    return [c for c in load_matrix().cases if max(c.spatial) <= CORPUS_MAX_SPATIAL]


def main(argv: list[str] | None = None) -> int:
    """`python -m poolconform.testdirs --out models`: regenerate the committed corpus."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m poolconform.testdirs", description=main.__doc__)
    parser.add_argument("--out", default="models", help="corpus folder (default: models)")
    args = parser.parse_args(argv)
    cases = corpus_cases()
    manifest = export_cases(cases, args.out)
    print(f"wrote {len(cases)} backend-test directories and {manifest}")
    return 0


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class StoredCase:
    """A backend-test directory read back: the parsed case, its inputs and expected outputs.

    `inputs` / `outputs` are test_data_set_0's; the other sets are read and validated as
    well and kept in `data_sets` (index 0 included), but `check` runs the first only.
    `expected_from` is "stored" when outputs come from output_K.pb, "oracle" when the
    directory had no test data (inputs are then generated from the declared shape).
    `unexpressible` says why the node is not a valid PoolCase (the model still runs on
    ONNX backends, which use `case.model_bytes`); None when it is.
    """

    case: PoolCase
    inputs: list[np.ndarray]
    outputs: list[np.ndarray]
    path: Path
    expected_from: str = "stored"
    data_sets: list[tuple[list[np.ndarray], list[np.ndarray]]] = field(default_factory=list, repr=False)
    unexpressible: str | None = None

    @property
    def name(self) -> str:
        return self.case.id


@dataclass(frozen=True)
class LoadFailure:
    """A directory that could not be read: its name and the one-line reason."""

    name: str
    path: Path
    message: str


def discover(paths: Iterable[str | os.PathLike[str]]) -> list[StoredCase | LoadFailure]:
    """Load every backend-test directory at or under `paths` (sorted; failures kept, not raised)."""
    located: list[tuple[Path, Path]] = []  # (directory, the root it was found under)
    for raw in paths:
        root = Path(raw)
        if root.is_file() and root.name == "model.onnx":
            root = root.parent
        if not root.is_dir():
            raise ModelError(f"{str(raw)!r} is neither a backend-test directory nor a folder holding them")
        dirs = _model_dirs(root)
        if not dirs:
            raise ModelError(f"no backend-test directory (a folder with model.onnx) under {str(raw)!r}")
        located += [(d, root) for d in dirs]
    names = [d.resolve().name for d, _ in located]
    # Equal folder names in different places keep their path relative to their root.
    found = [
        (name if names.count(name) == 1 or d == root else d.relative_to(root).as_posix(), d)
        for name, (d, root) in zip(names, located)
    ]
    results: list[StoredCase | LoadFailure] = []
    for name, directory in found:
        try:
            results.append(load_test_dir(directory, label=name))
        except PoolconformError as exc:
            results.append(LoadFailure(name, directory, str(exc)))
    return results


def _model_dirs(root: Path) -> list[Path]:
    if (root / "model.onnx").is_file():
        return [root]
    return sorted((p.parent for p in root.rglob("model.onnx") if p.is_file()), key=lambda p: p.as_posix())


def load_test_dir(path: str | os.PathLike[str], label: str | None = None) -> StoredCase:
    """Read one backend-test directory; ModelError (one line) when it cannot be read safely."""
    directory = Path(path)
    label = label or directory.resolve().name
    model_file = directory / "model.onnx"
    try:
        raw = model_file.read_bytes()
    except OSError as exc:
        raise ModelError(f"{label}: cannot read {str(model_file)!r}: {exc.strerror}") from exc
    model = _parse_model(raw, label)
    _check_external_data(_model_tensors(model), directory, label)
    case, unexpressible = _parse_case(model, label, raw)
    sets = sorted(
        (d for d in directory.glob("test_data_set_*") if d.is_dir() and d.name[14:].isdigit()),
        key=lambda d: int(d.name[14:]),
    )
    data_sets = [_read_data_set(d, model, case, label) for d in sets]
    if data_sets:
        inputs, outputs = data_sets[0]
        return StoredCase(case, inputs, outputs, directory, "stored", data_sets, unexpressible)
    if unexpressible:
        raise ModelError(f"{label}: no test data, and the oracle cannot compute it: {unexpressible}")
    inputs = make_inputs(case)
    outputs = expected_outputs(case, inputs)
    return StoredCase(case, inputs, outputs, directory, "oracle", [(inputs, outputs)], None)


def _parse_model(raw: bytes, label: str) -> onnx.ModelProto:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(raw)
    except DecodeError as exc:
        raise ModelError(f"{label}: model.onnx is not an ONNX model ({exc})") from exc
    if not model.HasField("graph") or not model.opset_import:
        raise ModelError(f"{label}: model.onnx is not an ONNX model (no graph or no opset_import)")
    return model


def _model_tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        tensors += [a.t for a in node.attribute if a.HasField("t")]
    return tensors


def _check_external_data(tensors: list[onnx.TensorProto], directory: Path, label: str) -> None:
    """Refuse external-data locations that leave the model's folder (absolute, `..`, symlinks)."""
    base = directory.resolve()
    for tensor in tensors:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (base / location).resolve()
        if not location or os.path.isabs(location) or not target.is_relative_to(base):
            raise ModelError(
                f"{label}: tensor {tensor.name!r} points at external data {location!r} outside its folder"
            )


def _parse_case(model: onnx.ModelProto, label: str, raw: bytes) -> tuple[PoolCase, str | None]:
    """The single pooling node as a PoolCase, and why it is not a valid one (None if it is)."""
    nodes = model.graph.node
    ops = [n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}" for n in nodes]
    if len(nodes) != 1 or ops[0] not in OPS:
        raise ModelError(f"{label}: expected one pooling node ({', '.join(OPS)}), found ops {ops!r}")
    node = nodes[0]
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise ModelError(f"{label}: model imports no default-domain opset")
    initializers = {t.name for t in model.graph.initializer}
    graph_inputs = [v for v in model.graph.input if v.name not in initializers]
    if len(graph_inputs) != 1:
        raise ModelError(f"{label}: expected one graph input, found {[v.name for v in graph_inputs]!r}")
    shape, dtype = _declared(graph_inputs[0], label, "input")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if isinstance(attrs.get("auto_pad"), bytes):
        attrs["auto_pad"] = attrs["auto_pad"].decode()
    problems = [f"attribute {k}={v!r} is not one poolconform knows" for k, v in sorted(attrs.items())
                if k not in _KNOWN_ATTRIBUTES]
    with_indices = len(node.output) > 1 and node.output[1] != ""
    params: dict[str, object] = dict(
        op=node.op_type,
        input_shape=shape,
        auto_pad=str(attrs.get("auto_pad", "NOTSET")),
        ceil_mode=bool(attrs.get("ceil_mode", 0)),
        count_include_pad=bool(attrs.get("count_include_pad", 0)),
        p=int(attrs.get("p", 2)),
        storage_order=int(attrs.get("storage_order", 0)),
        with_indices=with_indices,
        dtype=dtype,
        opset=int(opset),
        label=label,
        model_bytes=raw,
    )
    if node.op_type not in ("GlobalMaxPool", "GlobalAveragePool", "GlobalLpPool"):
        kernel = tuple(int(v) for v in attrs.get("kernel_shape", ()))
        rank = len(kernel) or max(len(shape) - 2, 0)
        params.update(
            kernel=kernel,
            strides=tuple(int(v) for v in attrs.get("strides", (1,) * rank)),
            pads=tuple(int(v) for v in attrs.get("pads", (0,) * (2 * rank))),
            dilations=tuple(int(v) for v in attrs.get("dilations", (1,) * rank)),
        )
    case = PoolCase(**params)  # type: ignore[arg-type]
    if params["auto_pad"] not in AUTO_PADS:
        problems.append(f"auto_pad {params['auto_pad']!r} is not one of {', '.join(AUTO_PADS)}")
    else:
        try:
            validate_case(case)
        except CaseError as exc:
            problems.append(str(exc))
    return case, ("; ".join(problems) or None)


_KNOWN_ATTRIBUTES = frozenset(
    ("kernel_shape", "strides", "pads", "dilations", "auto_pad", "ceil_mode", "count_include_pad", "p",
     "storage_order")
)


def _declared(value: onnx.ValueInfoProto, label: str, what: str) -> tuple[tuple[int, ...], str]:
    """Static shape and dtype name of a graph input/output; refuses symbolic or absurd shapes."""
    tensor_type = value.type.tensor_type
    try:
        dtype = dtypes.onnx_type_name(tensor_type.elem_type)
    except KeyError:
        if what == "output" and tensor_type.elem_type == onnx.TensorProto.INT64:
            dtype = "int64"
        else:
            raise ModelError(
                f"{label}: {what} {value.name!r} has element type {tensor_type.elem_type!r}; "
                f"allowed: {', '.join(dtypes.ONNX_TYPES)}"
            ) from None
    dims = tensor_type.shape.dim
    if not tensor_type.HasField("shape") or any(not d.HasField("dim_value") or d.dim_value < 1 for d in dims):
        raise ModelError(f"{label}: {what} {value.name!r} needs a static positive shape, got {_dims_text(dims)}")
    shape = tuple(int(d.dim_value) for d in dims)
    if what == "input" and int(np.prod(shape, dtype=object)) > MAX_INPUT_ELEMENTS:
        raise ModelError(
            f"{label}: input shape {shape!r} holds more than MAX_INPUT_ELEMENTS={MAX_INPUT_ELEMENTS} elements"
        )
    return shape, dtype


def _dims_text(dims) -> str:
    return "[" + ", ".join(str(d.dim_value) if d.HasField("dim_value") else repr(d.dim_param) for d in dims) + "]"


def _read_data_set(
    directory: Path, model: onnx.ModelProto, case: PoolCase, label: str
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    inputs = _read_tensors(directory, "input", 1, [(case.input_shape, case.dtype)], label)
    declared = []
    for value in model.graph.output:
        try:
            declared.append(_declared(value, label, "output"))
        except ModelError:
            declared.append(None)  # an output without a static shape: checked against nothing
    outputs = _read_tensors(directory, "output", len(model.graph.output), declared, label)
    return inputs, outputs


def _read_tensors(directory: Path, kind: str, count: int, declared: list, label: str) -> list[np.ndarray]:
    files = sorted(directory.glob(f"{kind}_*.pb"), key=lambda p: p.name)
    names = [f"{kind}_{k}.pb" for k in range(count)]
    if sorted(p.name for p in files) != sorted(names):
        raise ModelError(
            f"{label}/{directory.name}: expected {names!r}, found {sorted(p.name for p in files)!r}"
        )
    arrays = []
    for k, name in enumerate(names):
        arrays.append(_read_tensor(directory / name, declared[k], f"{label}/{directory.name}/{name}"))
    return arrays


def _read_tensor(path: Path, declared: tuple[tuple[int, ...], str] | None, where: str) -> np.ndarray:
    tensor = onnx.TensorProto()
    try:
        tensor.ParseFromString(path.read_bytes())
    except DecodeError as exc:
        raise ModelError(f"{where}: not a TensorProto (truncated or corrupt: {exc})") from exc
    shape = tuple(int(d) for d in tensor.dims)
    if any(d < 0 for d in shape) or int(np.prod(shape, dtype=object)) > MAX_INPUT_ELEMENTS:
        raise ModelError(f"{where}: tensor shape {shape!r} is negative or over {MAX_INPUT_ELEMENTS} elements")
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        raise ModelError(f"{where}: test data with external storage is not supported")
    try:
        dtype = "int64" if tensor.data_type == onnx.TensorProto.INT64 else dtypes.onnx_type_name(tensor.data_type)
    except KeyError:
        raise ModelError(f"{where}: element type {tensor.data_type!r} is not one poolconform reads") from None
    if declared is not None and (shape, dtype) != declared:
        want = f"{declared[1]}{list(declared[0])!r}"
        raise ModelError(f"{where}: holds {dtype}{list(shape)!r}, the model declares {want}")
    if tensor.HasField("raw_data"):
        itemsize = 8 if dtype == "int64" else dtypes.numpy_dtype(dtype).itemsize
        want = int(np.prod(shape, dtype=object)) * itemsize
        if len(tensor.raw_data) != want:
            raise ModelError(f"{where}: raw data has {len(tensor.raw_data)} bytes, shape {shape!r} needs {want}")
    try:
        return numpy_helper.to_array(tensor)
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{where}: cannot decode tensor data ({exc})") from exc


if __name__ == "__main__":
    raise SystemExit(main())
