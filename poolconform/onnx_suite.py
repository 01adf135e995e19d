"""The ONNX project's own pooling node tests, as backend-test directories for `check`.

onnx ships the generators of its node tests (onnx.backend.test.case.node.<op>.py: each
`export_*` calls `expect(node, inputs, outputs, name)`), but its wheels no longer carry
the generated data folder. So the directories come from the installed package's data
folder when it has them, else they are generated once from the `expect` machinery (about
20 s: three 32x32x32 cases run onnx's pure-Python pool reference) and cached per onnx
version. The expected outputs are onnx's, not poolconform's oracle: this is their suite.
"""

from __future__ import annotations

import importlib
import inspect
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnx
from onnx import numpy_helper

from poolconform.case import OPS
from poolconform.errors import PoolconformError

#: Written last into a generated suite folder: its presence means the folder is complete.
COMPLETE_MARKER = "poolconform-onnx-suite.txt"
_NODE_PACKAGE = "onnx.backend.test.case.node"


class NodeTestCase(Protocol):
    """What this module reads of onnx's TestCase: a node test always has its model and data
    (onnx types both as optional because its model-zoo cases carry a URL instead)."""

    @property
    def name(self) -> str: ...
    @property
    def model(self) -> onnx.ModelProto: ...
    @property
    def data_sets(self) -> Sequence[tuple[Sequence[Any], Sequence[Any]]]: ...


def pooling_modules() -> list[str]:
    """onnx's node-test modules named after a pooling op (maxpool, averagepool, lppool, ...)."""
    import pkgutil

    package = importlib.import_module(_NODE_PACKAGE)
    present = {name for _, name, _ in pkgutil.iter_modules(package.__path__)}
    return [op.lower() for op in OPS if op.lower() in present]


def default_cache_dir() -> Path:
    """Where a generated suite is kept: in poolconform's cache folder (backend_cache.cache_root)."""
    from poolconform.backend_cache import cache_root

    return cache_root() / f"onnx-{onnx.__version__}-pooling-node-tests"


def _is_pooling_model(model_path: Path) -> bool:
    model = onnx.load(str(model_path), load_external_data=False)
    return len(model.graph.node) == 1 and model.graph.node[0].op_type in OPS


def installed_data_dirs() -> list[Path]:
    """Pooling test directories already in the installed onnx's data folder (often none)."""
    data = Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"
    if not data.is_dir():
        return []
    prefixes = tuple(f"test_{module}" for module in pooling_modules())
    return sorted(
        d
        for d in data.iterdir()
        if d.name.startswith(prefixes) and (d / "model.onnx").is_file() and _is_pooling_model(d / "model.onnx")
    )


def collect_pooling_testcases() -> list[NodeTestCase]:
    """onnx's TestCase objects for every single-node pooling test, in a private collection.

    expect() appends to module globals of onnx.backend.test.case.node; they are swapped
    for fresh ones while the pooling exports run, so an earlier collect_testcases() (or a
    filter it left set) neither hides nor duplicates cases.
    """
    from onnx.backend.test.case import node
    from onnx.backend.test.case.base import Base

    saved = (node._NodeTestCases, node._existing_names, node._TargetOpType)
    collected: list[NodeTestCase] = []
    node._NodeTestCases, node._existing_names, node._TargetOpType = collected, {}, None
    try:
        for module_name in pooling_modules():
            qualified = f"{_NODE_PACKAGE}.{module_name}"
            if qualified not in sys.modules:
                importlib.import_module(qualified)  # class creation runs the exports
                saved[0].extend(c for c in collected if c not in saved[0])
                continue
            module = sys.modules[qualified]
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, Base) and cls is not Base and cls.__module__ == qualified:
                    for attr in sorted(vars(cls)):
                        if attr.startswith("export"):
                            np.random.seed(0)  # as onnx's _Exporter does before each export
                            getattr(cls, attr)()
    finally:
        node._NodeTestCases, node._existing_names, node._TargetOpType = saved
    return [
        c
        for c in collected
        if len(c.model.graph.node) == 1 and c.model.graph.node[0].op_type in OPS
    ]


def _tensor(value: object, name: str) -> bytes:
    if isinstance(value, onnx.TensorProto):
        return value.SerializeToString()
    return numpy_helper.from_array(np.asarray(value), name).SerializeToString()


def write_testcase(case: NodeTestCase, directory: Path) -> Path:
    """One onnx TestCase as `model.onnx` + `test_data_set_N/{input,output}_K.pb` (as onnx's cmd_tools)."""
    model = case.model
    target = directory / case.name
    target.mkdir(parents=True, exist_ok=True)
    (target / "model.onnx").write_bytes(model.SerializeToString())
    for i, (inputs, outputs) in enumerate(case.data_sets):
        data = target / f"test_data_set_{i}"
        data.mkdir(exist_ok=True)
        for j, value in enumerate(inputs):
            (data / f"input_{j}.pb").write_bytes(_tensor(value, model.graph.input[j].name))
        for j, value in enumerate(outputs):
            (data / f"output_{j}.pb").write_bytes(_tensor(value, model.graph.output[j].name))
    return target


def generate_suite(dest: Path) -> list[Path]:
    """Generate every pooling node test into dest (atomically: a partial folder is never used).

    A folder that cannot be written (a read-only HOME in a CI container) is one line
    naming it and the variable that moves it, not a traceback.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    except OSError as exc:
        raise _unwritable(dest, exc) from None
    try:
        cases = collect_pooling_testcases()
        names = sorted(write_testcase(case, staging).name for case in cases)
        (staging / COMPLETE_MARKER).write_text(f"onnx {onnx.__version__}\n" + "\n".join(names) + "\n")
        if dest.is_symlink() or dest.is_file():
            dest.unlink()
        elif dest.exists():
            shutil.rmtree(dest)
        os.replace(staging, dest)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise _unwritable(dest, exc) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [dest / name for name in names]


def _unwritable(dest: Path, exc: OSError) -> PoolconformError:
    reason = exc.strerror or str(exc)
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(dest) else ""
    return PoolconformError(
        f"cannot write the ONNX pooling suite to {str(dest)!r}: {reason}{where}; "
        "set POOLCONFORM_CACHE_DIR (or XDG_CACHE_HOME) to a writable folder"
    )


def _complete_suite(dest: Path) -> list[Path] | None:
    marker = dest / COMPLETE_MARKER
    try:
        lines = marker.read_text().splitlines() if marker.is_file() else []
    except (OSError, UnicodeDecodeError):
        return None  # unreadable: generate it again
    if not lines or lines[0] != f"onnx {onnx.__version__}":
        return None
    if any(not name or "/" in name or name in (".", "..") for name in lines[1:]):
        return None  # not a marker this module wrote: generate it again
    dirs = [dest / name for name in lines[1:]]
    return dirs if all((d / "model.onnx").is_file() for d in dirs) else None


def onnx_suite_dirs(dest: Path | None = None) -> list[Path]:
    """Backend-test directories of every ONNX pooling node test (e.g. test_maxpool_2d_ceil).

    With dest: generated into dest (reused when it already holds this onnx version's suite).
    Without: the installed onnx's data folder when it has them, else the cache folder.
    """
    if dest is None:
        shipped = installed_data_dirs()
        if shipped:
            return shipped
        dest = default_cache_dir()
    return _complete_suite(Path(dest)) or generate_suite(Path(dest))


def main(argv: list[str] | None = None) -> int:
    """`python -m poolconform.onnx_suite [DEST]`: generate the suite and print its folders."""
    args = sys.argv[1:] if argv is None else argv
    for path in onnx_suite_dirs(Path(args[0]) if args else None):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
