"""ONNX backend-test directories, in and out: `model.onnx` + `test_data_set_N/*.pb`.

This is the portable form of a case: onnx's own backend test runner, onnxruntime's
test runner and `poolconform check` all read it. Writing is deterministic (the same
cases give byte-identical trees); reading refuses, in one line, anything it cannot
read safely, and one bad directory never stops the others (`discover`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from poolconform import contexts, dtypes, oracle, quantized
from poolconform.case import AUTO_PADS, OPS, PoolCase
from poolconform.validation import validate_case
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
    if case.quant:  # the ±1 rule of poolconform/quantized.py
        atol = quantized.QUANT_TOLERANCE
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
        "expected_shape": list(contexts.graph_output_shape(case)),
        "outputs": output_names(case),
        "params": case.describe(),
    }


class ExportInterrupted(KeyboardInterrupt):
    """Ctrl-C during `export_cases`: `written` of `total` case directories are complete and
    listed in the manifest (so a later export into the folder can replace or clean them up)."""

    def __init__(self, written: int, total: int) -> None:
        super().__init__(written, total)
        self.written, self.total = written, total


def export_cases(cases: Iterable[PoolCase], out_dir: str | os.PathLike[str]) -> Path:
    """Write every case as `out_dir/test_<id>/` plus `manifest.json`; returns the manifest path.

    Directories named by a previous manifest in `out_dir` but no longer exported are
    removed, so re-exporting into a corpus leaves no stale cases; nothing else is touched.
    A manifest.json that export did not write is refused, never overwritten. Interrupted
    (ExportInterrupted), the manifest still lists every export folder left in `out_dir`.
    """
    out = Path(out_dir)
    unique: dict[str, PoolCase] = {}
    for case in cases:
        seen = unique.setdefault(case.id, case)
        if seen != case:
            raise PoolconformError(f"two different cases share the id {case.id!r}: {seen!r} and {case!r}")
    if os.path.lexists(out) and not out.is_dir():
        raise PoolconformError(f"export folder {str(out)!r} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PoolconformError(f"cannot create export folder {str(out)!r}: {exc.strerror or exc}") from None
    manifest_path = out / MANIFEST
    wanted = {dir_name(c) for c in unique.values()}
    previous = _previous_manifest(manifest_path)  # refuses a manifest.json that is not export's
    for name in sorted(wanted):  # refuse before writing anything: never write through a link
        foreign = _foreign_content(out, name)
        if foreign:
            raise PoolconformError(f"{str(out / name)!r} exists but {foreign}; move it away and export again")
    entries: list[dict[str, object]] = []
    current: Path | None = None
    try:
        for stale in sorted(set(previous) - wanted):
            if os.path.lexists(out / stale) and _foreign_content(out, stale) is None:
                shutil.rmtree(out / stale)
                del previous[stale]
        for case in sorted(unique.values(), key=dir_name):
            current = out / dir_name(case)
            if os.path.lexists(current):
                shutil.rmtree(current)  # no leftover output_1.pb from an older version of the case
            previous.pop(current.name, None)
            write_case_dir(case, current)
            entries.append(manifest_entry(case))
            current = None
    except KeyboardInterrupt:
        _finish_interrupted(out, current, entries, previous)
        raise ExportInterrupted(len(entries), len(unique)) from None
    except OSError as exc:
        _finish_interrupted(out, current, entries, previous)
        where = exc.filename if exc.filename is not None else out
        raise PoolconformError(f"export into {str(out)!r} failed at {str(where)!r}: {exc.strerror or exc}") from None
    _write_manifest(manifest_path, entries)
    return manifest_path


def _write_manifest(path: Path, entries: list[dict[str, object]]) -> None:
    from poolconform.results import write_atomic

    try:
        write_atomic(path, _manifest_text(entries))
    except OSError as exc:
        raise PoolconformError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None


def _finish_interrupted(out: Path, current: Path | None, entries: list[dict[str, object]],
                        previous: dict[str, dict[str, object]]) -> None:
    """After a stop part-way: drop the half-written case folder and list every export folder
    still in `out` (the finished ones, and an earlier export's not yet rewritten) in the
    manifest, so a later export can replace or remove each. Best effort: the first error stands."""
    try:
        listed = {e["dir"] for e in entries}
        if current is not None and current.name not in listed and os.path.lexists(current) \
                and _foreign_content(out, current.name) is None:
            shutil.rmtree(current, ignore_errors=True)
        kept = [e for name, e in previous.items() if os.path.lexists(out / name)]
        _write_manifest(out / MANIFEST, sorted([*entries, *kept], key=lambda e: str(e["dir"])))
    except (OSError, PoolconformError):
        pass


def _manifest_text(entries: list[dict[str, object]]) -> str:
    """Sorted keys, one case per line: valid JSON that diffs well and has no timestamps."""
    lines = [json.dumps(e, sort_keys=True) for e in entries]
    body = ",\n  ".join(lines)
    return (
        f'{{"cases": [\n  {body}\n], "count": {len(entries)}, "format": {json.dumps(MANIFEST_FORMAT)}}}\n'
    )


#: Largest manifest.json read back (the 806-case corpus's is about 0.5 MB).
MAX_MANIFEST_BYTES = 2**28


def _previous_manifest(path: Path) -> dict[str, dict[str, object]]:
    """The case entries (by folder name) of the manifest a previous export left at `path`,
    only folder names export could have generated; {} when there is none. A manifest.json
    export did not write (a link, not a file, not JSON, another or no "format") is refused:
    export would overwrite it."""
    try:
        mode = os.lstat(path)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise PoolconformError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(mode.st_mode):
        raise PoolconformError(f"{str(path)!r} is a symlink; export does not write through links")
    refuse = PoolconformError(f"{str(path)!r} is not a manifest export wrote (format {MANIFEST_FORMAT}) and export "
                              "would overwrite it; move it away or export into another folder")
    if not stat.S_ISREG(mode.st_mode) or mode.st_size > MAX_MANIFEST_BYTES:
        raise refuse
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        document = None
    if not isinstance(document, dict) or document.get("format") != MANIFEST_FORMAT:
        raise refuse
    cases = document.get("cases")
    found: dict[str, dict[str, object]] = {}
    for entry in cases if isinstance(cases, list) else ():
        name = entry.get("dir") if isinstance(entry, dict) else None
        if isinstance(name, str) and _GENERATED.fullmatch(name):
            found[name] = entry
    return found


#: What dir_name() can produce: no separator, no `..`, nothing but id characters.
_GENERATED = re.compile(DIR_PREFIX + r"[A-Za-z0-9][A-Za-z0-9_-]*")
#: The files write_case_dir() writes (older versions wrote more data sets and outputs).
_OWN_FILES = re.compile(r"model\.onnx|data\.json|test_data_set_[0-9]+(/(input|output)_[0-9]+\.pb)?")


def _foreign_content(out: Path, name: str) -> str | None:
    """Why `out/name` is not provably a folder export wrote (None: it is, or it is absent).

    Export deletes only what it can prove it wrote: a generated name, a real folder
    directly inside `out` (not a symlink), holding nothing but export's own files.
    """
    target = out / name
    if not _GENERATED.fullmatch(name):
        return "its name is not one export generates"
    if not os.path.lexists(target):
        return None
    if target.is_symlink() or not target.is_dir():
        return "it is a symlink or not a folder"
    for root, dirs, files in os.walk(target):
        for entry in dirs + files:
            path = Path(root) / entry
            rel = path.relative_to(target).as_posix()
            if path.is_symlink() or not _OWN_FILES.fullmatch(rel):
                return f"it holds {rel!r}, which export did not write"
    return None


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


#: The folder of one data set in a backend-test directory.
DATA_SET_NAME = re.compile(r"test_data_set_[0-9]+")


@dataclass(frozen=True)
class StoredCase:
    """A backend-test directory read back: the parsed case, its inputs and expected outputs.

    `inputs` / `outputs` are the first data set's (test_data_set_0); every set is read and
    validated and kept in `data_sets` (the first included), named in `data_set_names`; `check`
    judges each (`each_data_set`).
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
    data_set_names: list[str] = field(default_factory=list, repr=False)
    #: The data sets a PATH named (`check DIR/test_data_set_1`); None for all of them.
    chosen_sets: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        return self.case.id

    def each_data_set(self) -> list[StoredCase]:
        """One StoredCase per data set (those in `chosen_sets`, when given): the first keeps the
        directory's name, each later one is named `NAME/test_data_set_N` (its folder under the
        directory, which `check` also takes as a PATH), so each set is a record of its own and
        none hides another."""
        names = self.data_set_names or [f"test_data_set_{k}" for k in range(len(self.data_sets))]
        out = []
        for k, (set_name, (inputs, outputs)) in enumerate(zip(names, self.data_sets)):
            if self.chosen_sets is not None and set_name not in self.chosen_sets:
                continue
            out.append(self if k == 0 else StoredCase(
                self.case.replace(label=f"{self.name}/{set_name}"), inputs, outputs, self.path,
                self.expected_from, [(inputs, outputs)], self.unexpressible, [set_name]))
        return out


@dataclass(frozen=True)
class LoadFailure:
    """A directory that could not be read: its name and the one-line reason."""

    name: str
    path: Path
    message: str


def discover(paths: Iterable[str | os.PathLike[str]],
             chosen: Callable[[str], bool] | None = None) -> list[StoredCase | LoadFailure]:
    """Load every backend-test directory at or under `paths` (sorted; failures kept, not raised),
    or those whose name `chosen` accepts (`check --cases`; the others are not read).

    Every directory gets a distinct name (see `_unique_names`): a record must never hide
    another. One directory that cannot be read, whatever is wrong with it, becomes a
    LoadFailure and the others are still loaded.
    """
    located: list[tuple[Path, Path, str]] = []  # (directory, the root it was found under, root as typed)
    seen: set[Path] = set()
    only: dict[Path, set[str]] = {}  # a directory named by some of its data sets: those alone
    whole: set[Path] = set()  # a directory named itself (or found under a folder): every set
    for raw in paths:
        root = Path(raw)
        if root.name == "model.onnx" and not root.is_dir():
            root = root.parent
        one_set = DATA_SET_NAME.fullmatch(root.name) and root.is_dir() and (root.parent / "model.onnx").exists()
        if one_set:  # DIR/test_data_set_N: what the reproduce line of a later data set's finding names
            only.setdefault(root.parent.resolve(), set()).add(root.name)
            root = root.parent
        if not root.is_dir():
            raise ModelError(f"{str(raw)!r} is neither a backend-test directory nor a folder holding them")
        dirs = _model_dirs(root)
        if not dirs:
            raise ModelError(f"no backend-test directory (a folder with model.onnx) under {str(raw)!r}")
        if not one_set:
            whole.update(d.resolve() for d in dirs)
        for d in dirs:
            if d.resolve() not in seen:  # the same folder named twice is checked once
                seen.add(d.resolve())
                located.append((d, root, str(root) if one_set else str(raw)))
    results: list[StoredCase | LoadFailure] = []
    for name, directory in zip(_unique_names(located), (d for d, _, _ in located)):
        if chosen is not None and not chosen(name):
            continue
        try:
            item = load_test_dir(directory, label=name)
            if directory.resolve() in only and directory.resolve() not in whole:
                item = dataclasses.replace(item, chosen_sets=tuple(sorted(only[directory.resolve()])))
            results.append(item)
        except PoolconformError as exc:
            results.append(LoadFailure(name, directory, str(exc)))
        except (Exception, RecursionError) as exc:  # a hostile file must not stop the other directories
            results.append(LoadFailure(name, directory, f"{name}: cannot read ({type(exc).__name__}: {exc})"))
    return results


def safe_name(name: str) -> str:
    """A folder name as printable text: control and other unprintable characters (and the
    backslash, so the mapping stays one-to-one) become Python escapes such as `\\x1b`.

    Record ids are built from folder names and reach terminals, JUnit XML and HTML."""
    return "".join(ch if ch.isprintable() and ch != "\\" else ascii(ch)[1:-1] for ch in name)


def printable(text: str) -> str:
    """`text` with unprintable characters (ESC, other controls) as Python escapes: one
    safe line for terminals and XML, e.g. a message that quotes a hostile folder name."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _unique_names(located: list[tuple[Path, Path, str]]) -> list[str]:
    """One distinct, printable name per directory: its own name where that is unique,
    else its path under the root as typed (`A/test_x`, `B/test_x`), else a `#k` suffix."""
    names = [safe_name(d.resolve().name) for d, _, _ in located]
    clash = {n for n in names if names.count(n) > 1}
    for i, (d, root, typed) in enumerate(located):
        if names[i] in clash:
            rel = d.relative_to(root).as_posix()
            names[i] = safe_name(Path(typed).as_posix() if rel == "." else f"{Path(typed).as_posix()}/{rel}")
    taken: dict[str, int] = {}
    for i, n in enumerate(names):
        taken[n] = taken.get(n, 0) + 1
        if names.count(n) > 1 and taken[n] > 1:
            names[i] = f"{n}#{taken[n]}"
    return names


def _model_dirs(root: Path) -> list[Path]:
    """Folders holding an entry named model.onnx (a FIFO or a device counts too: reading it
    is refused per folder, with the reason, instead of hiding it)."""
    if os.path.lexists(root / "model.onnx") and not (root / "model.onnx").is_dir():
        return [root]
    return sorted((p.parent for p in root.rglob("model.onnx") if not p.is_dir()), key=lambda p: p.as_posix())


#: model.onnx holds one pooling node; anything bigger than this is not one poolconform reads.
MAX_MODEL_BYTES = 16 * 2**20
#: Protobuf overhead allowed beyond a tensor's data (name, dims, field tags).
TENSOR_OVERHEAD_BYTES = 2**16


def read_regular_file(path: Path, limit: int, where: str) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; ModelError otherwise.

    A FIFO, a device (a symlink to /dev/zero) or a socket is refused before it is opened
    for reading (opening a FIFO blocks); the file is opened non-blocking and checked
    again, and never more than `limit + 1` bytes are read.
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ModelError(f"{where}: cannot read it ({exc.strerror})") from exc
    if not stat.S_ISREG(info.st_mode):
        raise ModelError(f"{where}: not a regular file (a FIFO, device, socket or folder); refused")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise ModelError(f"{where}: cannot read it ({exc.strerror})") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ModelError(f"{where}: not a regular file (a FIFO, device, socket or folder); refused")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(2**20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ModelError(f"{where}: cannot read it ({exc.strerror})") from exc
    finally:
        os.close(fd)
    if size > limit:
        raise ModelError(f"{where}: larger than the {limit} bytes its declared contents can take; refused")
    return b"".join(chunks)


def load_test_dir(path: str | os.PathLike[str], label: str | None = None) -> StoredCase:
    """Read one backend-test directory; ModelError (one line) when it cannot be read safely."""
    directory = Path(path)
    label = label or directory.resolve().name
    model_file = directory / "model.onnx"
    raw = read_regular_file(model_file, MAX_MODEL_BYTES, f"{label}/model.onnx")
    model = _parse_model(raw, label)
    _check_external_data(_model_tensors(model), directory, label)
    case, unexpressible = _parse_case(model, label, raw, directory)
    sets = sorted(
        (d for d in directory.glob("test_data_set_*") if d.is_dir() and DATA_SET_NAME.fullmatch(d.name)),
        key=lambda d: int(d.name[14:]),
    )
    data_sets = [_read_data_set(d, model, case, label) for d in sets]
    if data_sets:
        inputs, outputs = data_sets[0]
        return StoredCase(case, inputs, outputs, directory, "stored", data_sets, unexpressible, [d.name for d in sets])
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


def _parse_case(model: onnx.ModelProto, label: str, raw: bytes, raw_dir: Path | None = None
                ) -> tuple[PoolCase, str | None]:
    """The pooling node (alone, or in a context graph `export` writes) as a PoolCase, and why it
    is not a valid one (None if it is)."""
    nodes = model.graph.node
    ops = [n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}" for n in nodes]
    graph = read_graph(model, label)
    if graph is None and (len(nodes) != 1 or ops[0] not in OPS):
        raise ModelError(f"{label}: expected one pooling node ({', '.join(OPS)}) or a context graph "
                         f"poolconform exports, found ops {ops!r}")
    produced, declared = [o for o in nodes[-1].output if o], [v.name for v in model.graph.output]
    if declared != produced:  # else every backend would be blamed with a shape-mismatch for the model
        raise ModelError(f"{label}: the graph's outputs {declared!r} are not its last node's outputs {produced!r}; "
                         "a backend-test model returns what its pooling node computes")
    extra: GraphFields
    node, extra = graph if graph is not None else (nodes[0], {})
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise ModelError(f"{label}: model imports no default-domain opset")
    initializers = {t.name for t in model.graph.initializer}
    graph_inputs = [v for v in model.graph.input if v.name not in initializers]
    if len(graph_inputs) != 1:
        raise ModelError(f"{label}: expected one graph input, found {[v.name for v in graph_inputs]!r}")
    if _is_symbolic(graph_inputs[0]):
        shape, dtype = _data_shape(model, graph_inputs[0], label, raw_dir), dtypes.onnx_type_name(
            graph_inputs[0].type.tensor_type.elem_type)
        extra = {**extra, "context": "dynamic"}
    else:
        shape, dtype = _declared(graph_inputs[0], label, "input")
    case, problem = case_from_node(node, shape, dtype, int(opset), label=label, model_bytes=raw)
    if not extra:
        return case, problem
    extra = extra.copy()
    problems = [p for p in (problem or "").split("; ") if p.startswith("attribute ")]  # unknown attributes
    if "pad_node" in extra:
        if any(case.pads):
            problems.append(f"the pool after the Pad node has pads {list(case.pads)!r} of its own")
        extra["pads"] = _pad_node_pads(extra.pop("pad_node"), case.rank, label)
    output_shape = extra.pop("unpool_output", None)
    if output_shape is not None and output_shape != case.input_shape:
        problems.append(f"MaxUnpool's output_shape {list(output_shape)!r} is not the input's {list(case.input_shape)!r}")
    case = case.replace(**extra)
    try:
        validate_case(case)
    except CaseError as exc:
        problems.append(str(exc))
    return case, ("; ".join(problems) or None)


class GraphFields(TypedDict, total=False):
    """What a context graph sets around its pooling node: case fields, and the Pad node's pads
    and MaxUnpool's output_shape, which become case fields once checked."""

    context: str
    pad_mode: str
    pads: tuple[int, ...]
    unpool_shape: bool
    quant: tuple[float, int, float, int]
    pad_node: tuple[int, ...]
    unpool_output: tuple[int, ...]


def read_graph(model: onnx.ModelProto, label: str) -> tuple[onnx.NodeProto, GraphFields] | None:
    """The pooling node of a context graph `export` writes (docs/conformance-space.md, "Contexts
    and quantized pooling") and the case fields the graph around it sets; None for any other graph."""
    nodes = list(model.graph.node)
    kinds = [(n.domain or "", n.op_type) for n in nodes]
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    attrs = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in nodes]
    if kinds == [("", "Pad"), ("", kinds[-1][1])] and kinds[1][1] in OPS and len(nodes[0].input) >= 2 \
            and nodes[0].input[1] in inits and nodes[1].input[0] == nodes[0].output[0]:
        if len(nodes[0].input) > 2 and nodes[0].input[2]:
            return None  # a constant value or axes input: not a graph export writes
        mode = attrs[0].get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        return nodes[1], {"context": "pad", "pad_mode": mode, "pad_node": tuple(int(v) for v in inits[nodes[0].input[1]])}
    if kinds == [("", "MaxPool"), ("", "MaxUnpool")] and list(nodes[1].input[:2]) == list(nodes[0].output[:2]):
        pool = onnx.NodeProto()
        pool.CopyFrom(nodes[0])
        del pool.output[1:]
        shaped = len(nodes[1].input) > 2 and nodes[1].input[2] != ""
        if shaped and nodes[1].input[2] not in inits:
            return None
        fields: GraphFields = {"context": "unpool", "unpool_shape": shaped}
        if shaped:
            fields["unpool_output"] = tuple(int(v) for v in inits[nodes[1].input[2]])
        return pool, fields
    if len(nodes) == 1 and kinds[0] in (("com.microsoft", "QLinearAveragePool"), ("com.microsoft", "QLinearGlobalAveragePool")) \
            and all(name in inits for name in nodes[0].input[1:5]) and len(nodes[0].input) == 5:
        node = onnx.helper.make_node(kinds[0][1][len("QLinear"):], [nodes[0].input[0]], list(nodes[0].output),
                                     **{k: v for k, v in attrs[0].items() if k != "channels_last"})
        if attrs[0].get("channels_last", 0):
            return None
        return node, {"quant": _quant(inits, list(nodes[0].input[1:5]))}
    if [k[1] for k in kinds] == ["DequantizeLinear", "MaxPool", "QuantizeLinear"] and len(nodes[0].input) == 3 \
            and len(nodes[2].input) == 3 and all(i in inits for i in (*nodes[0].input[1:], *nodes[2].input[1:])):
        node = onnx.NodeProto()
        node.CopyFrom(nodes[1])
        del node.input[:]
        node.input.append(nodes[0].input[0])
        return node, {"quant": _quant(inits, [*nodes[0].input[1:], *nodes[2].input[1:]])}
    return None


def _quant(inits: dict[str, np.ndarray], names: list[str]) -> tuple[float, int, float, int]:
    xs, xz, ys, yz = (inits[n] for n in names)
    def scale(v: np.ndarray) -> float:  # a float32 scale as its shortest decimal, as the id writes it
        return float(str(np.float32(v.reshape(-1)[0])))

    return (scale(xs), int(xz.reshape(-1)[0]), scale(ys), int(yz.reshape(-1)[0]))


def _pad_node_pads(pads: tuple[int, ...], rank: int, label: str) -> tuple[int, ...]:
    """The spatial pads (begin..., end...) of a Pad node's (N, C, spatial...) amounts."""
    if len(pads) != 2 * (rank + 2) or pads[0] or pads[1] or pads[rank + 2] or pads[rank + 3]:
        raise ModelError(f"{label}: the Pad node pads {list(pads)!r}; poolconform reads spatial padding only")
    return tuple(pads[2:rank + 2]) + tuple(pads[rank + 4:])


def _is_symbolic(value: onnx.ValueInfoProto) -> bool:
    dims = value.type.tensor_type.shape.dim
    return bool(dims) and all(d.HasField("dim_param") and not d.HasField("dim_value") for d in dims)


def _data_shape(model: onnx.ModelProto, value: onnx.ValueInfoProto, label: str, directory: Path | None
                ) -> tuple[int, ...]:
    """A symbolic input's shape, from test_data_set_0's input (the dynamic context)."""
    path = directory / "test_data_set_0" / "input_0.pb" if directory is not None else None
    if path is None or not path.is_file():
        raise ModelError(f"{label}: input {value.name!r} is symbolic and there is no test_data_set_0/input_0.pb")
    shape = tuple(int(d) for d in _read_tensor(path, None, f"{label}/test_data_set_0/input_0.pb").shape)
    if len(shape) != len(value.type.tensor_type.shape.dim) or 0 in shape[2:]:
        raise ModelError(f"{label}: input_0.pb has shape {list(shape)!r}, the model declares rank "
                         f"{len(value.type.tensor_type.shape.dim)}")
    return shape


def case_from_node(
    node: onnx.NodeProto, shape: tuple[int, ...], dtype: str, opset: int,
    label: str | None = None, model_bytes: bytes | None = None,
) -> tuple[PoolCase, str | None]:
    """One pooling node (of any graph) as a PoolCase with its exact attributes, input shape,
    dtype and opset, and why it is not a valid one (None if it is). `check` reads its single
    node with this, `scan` every pooling node of a model; ModelError for a mistyped attribute."""
    for a in node.attribute:
        want = _ATTRIBUTE_TYPES.get(a.name)
        if want is not None and a.type != want:
            raise ModelError(
                (f"{label}: " if label else "")
                + f"attribute {a.name!r} is stored as {onnx.AttributeProto.AttributeType.Name(a.type)}, "
                f"ONNX defines it as {onnx.AttributeProto.AttributeType.Name(want)}"
            )
    names = [a.name for a in node.attribute]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:  # a dict would keep the last; ONNX Runtime refuses such a model outright
        raise ModelError((f"{label}: " if label else "") + f"attribute {repeated[0]!r} appears more than once "
                         "in the node; ONNX allows each attribute once")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if isinstance(attrs.get("auto_pad"), bytes):
        attrs["auto_pad"] = attrs["auto_pad"].decode()
    problems = [f"attribute {k}={v!r} is not one poolconform knows" for k, v in sorted(attrs.items())
                if k not in _KNOWN_ATTRIBUTES]
    with_indices = len(node.output) > 1 and node.output[1] != ""
    params: dict[str, Any] = dict(  # PoolCase's fields, as the node gives them
        op=node.op_type,
        input_shape=shape,
        auto_pad=str(attrs.get("auto_pad", "")) or "NOTSET",  # "" is the ONNX default written out
        ceil_mode=bool(attrs.get("ceil_mode", 0)),
        count_include_pad=bool(attrs.get("count_include_pad", 0)),
        p=int(attrs.get("p", 2)),
        storage_order=int(attrs.get("storage_order", 0)),
        with_indices=with_indices,
        dtype=dtype,
        opset=int(opset),
        label=label,
        model_bytes=model_bytes,
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
    case = PoolCase(**params)
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
#: The type ONNX gives each known attribute; a model storing another is refused by name.
_ATTRIBUTE_TYPES = {
    **{k: onnx.AttributeProto.INTS for k in ("kernel_shape", "strides", "pads", "dilations")},
    **{k: onnx.AttributeProto.INT for k in ("ceil_mode", "count_include_pad", "p", "storage_order")},
    "auto_pad": onnx.AttributeProto.STRING,
}


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
    if not tensor_type.HasField("shape") or any(not d.HasField("dim_value") or d.dim_value < 0 for d in dims):
        raise ModelError(f"{label}: {what} {value.name!r} needs a static shape, got {_dims_text(dims)}")
    shape = tuple(int(d.dim_value) for d in dims)
    if 0 in shape[2:]:  # N = 0 or C = 0 is a valid empty tensor; an empty spatial axis has no window
        raise ModelError(f"{label}: {what} {value.name!r} has a spatial size 0 ({list(shape)!r}); "
                         "pooling needs every spatial axis >= 1")
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
    declared: list[tuple[tuple[int, ...], str] | None] = []
    for value in model.graph.output:
        try:
            declared.append(_declared(value, label, "output"))
        except ModelError:
            declared.append(None)  # an output without a static shape: checked against nothing
    # An output without a static shape is still bounded: pooling never outputs more than
    # 2**rank elements per input element (ceil_mode and padding add at most one per axis).
    bound = max(1, int(np.prod(case.input_shape, dtype=object))) * 2 ** max(case.rank, 0)
    outputs = _read_tensors(directory, "output", len(model.graph.output), declared, label, bound)
    return inputs, outputs


def _read_tensors(
    directory: Path, kind: str, count: int, declared: Sequence[tuple[tuple[int, ...], str] | None], label: str,
    bound: int = MAX_INPUT_ELEMENTS,
) -> list[np.ndarray]:
    files = sorted(directory.glob(f"{kind}_*.pb"), key=lambda p: p.name)
    names = [f"{kind}_{k}.pb" for k in range(count)]
    if sorted(p.name for p in files) != sorted(names):
        raise ModelError(
            f"{label}/{directory.name}: expected {names!r}, found {sorted(p.name for p in files)!r}"
        )
    arrays = []
    for k, name in enumerate(names):
        arrays.append(_read_tensor(directory / name, declared[k], f"{label}/{directory.name}/{name}", bound))
    return arrays


def _read_tensor(
    path: Path, declared: tuple[tuple[int, ...], str] | None, where: str, bound: int = MAX_INPUT_ELEMENTS
) -> np.ndarray:
    """One TensorProto file, read no further than its declared size allows (`bound` elements
    when the model declares no static shape for it)."""
    elements = int(np.prod(declared[0], dtype=object)) if declared is not None else bound
    # At most 10 bytes an element (an int64 varint; raw data takes 8) plus the header.
    raw = read_regular_file(path, 10 * min(elements, MAX_INPUT_ELEMENTS) + TENSOR_OVERHEAD_BYTES, where)
    tensor = onnx.TensorProto()
    try:
        tensor.ParseFromString(raw)
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
        size = int(np.prod(shape, dtype=object)) * itemsize
        if len(tensor.raw_data) != size:
            raise ModelError(f"{where}: raw data has {len(tensor.raw_data)} bytes, shape {shape!r} needs {size}")
    try:
        return numpy_helper.to_array(tensor)
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{where}: cannot decode tensor data ({exc})") from exc


if __name__ == "__main__":
    raise SystemExit(main())
