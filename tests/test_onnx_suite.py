"""The ONNX project's pooling node tests: generated from the installed onnx, run on onnxruntime."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from poolconform.case import OPS
from poolconform.onnx_suite import COMPLETE_MARKER, _complete_suite, onnx_suite_dirs, pooling_modules


@pytest.fixture(scope="module")
def suite(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Generated once into pytest's cache folder (about 20 s), then reused across runs;
    into a temporary folder when the cache plug-in is off (-p no:cacheprovider)."""
    cache = getattr(request.config, "cache", None)
    root = Path(cache.mkdir("poolconform-onnx-suite")) if cache else tmp_path_factory.mktemp("onnx-suite")
    return onnx_suite_dirs(root / onnx.__version__)


def _op_type(directory: Path) -> str:
    model = onnx.load(str(directory / "model.onnx"))
    assert len(model.graph.node) == 1
    return model.graph.node[0].op_type


def _tensors(directory: Path, kind: str) -> list[np.ndarray]:
    paths = sorted(directory.glob(f"{kind}_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
    return [numpy_helper.to_array(onnx.load_tensor(str(p))) for p in paths]


def test_pooling_modules_come_from_onnx() -> None:
    assert {"maxpool", "averagepool", "lppool", "globalmaxpool", "globalaveragepool"} <= set(pooling_modules())


def test_suite_holds_every_pooling_node_test(suite: list[Path]) -> None:
    names = [d.name for d in suite]
    assert len(suite) >= 45, names
    assert len(set(names)) == len(names)
    assert {"test_maxpool_2d_ceil", "test_averagepool_2d_pads_count_include_pad", "test_lppool_2d_dilations"} <= set(
        names
    )
    ops = Counter(_op_type(d) for d in suite)
    assert set(ops) <= set(OPS)
    assert {"MaxPool", "AveragePool", "LpPool", "GlobalMaxPool", "GlobalAveragePool"} <= set(ops)
    for d in suite:
        data = d / "test_data_set_0"
        assert (data / "input_0.pb").is_file() and (data / "output_0.pb").is_file(), d


def test_a_complete_suite_is_reused_and_a_stale_one_is_not(suite: list[Path]) -> None:
    start = time.perf_counter()
    assert onnx_suite_dirs(suite[0].parent) == suite
    assert time.perf_counter() - start < 5
    marker = suite[0].parent / COMPLETE_MARKER
    assert marker.read_text().splitlines()[0] == f"onnx {onnx.__version__}"
    fake = suite[0].parent.parent / "stale-copy"
    fake.mkdir(exist_ok=True)
    (fake / COMPLETE_MARKER).write_text("onnx 0.0.1\ntest_maxpool_2d_ceil\n")
    assert _complete_suite(fake) is None


def _run_onnxruntime(directory: Path) -> str:
    """'pass', or why onnxruntime's outputs differ from the stored ones (onnx's tolerances)."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(directory / "model.onnx"), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001  the reason is the finding
        return f"load error: {str(exc).strip().splitlines()[0]}"
    data = directory / "test_data_set_0"
    inputs, expected = _tensors(data, "input"), _tensors(data, "output")
    try:
        got = session.run(None, {meta.name: x for meta, x in zip(session.get_inputs(), inputs)})
    except Exception as exc:  # noqa: BLE001
        return f"run error: {str(exc).strip().splitlines()[0]}"
    for k, (actual, want) in enumerate(zip(got, expected)):
        if actual.shape != want.shape:
            return f"output {k}: shape {actual.shape!r}, expected {want.shape!r}"
        # onnx's backend runner compares with rtol 1e-3, atol 1e-7 for node tests
        a, w = actual.astype(np.float64), want.astype(np.float64)
        bad = ~np.isclose(a, w, rtol=1e-3, atol=1e-7, equal_nan=True)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            return f"output {k}: {int(bad.sum())} values differ, first at {first}: {a[first]!r} vs {w[first]!r}"
    return "pass"


def test_onnxruntime_passes_the_onnx_pooling_suite(suite: list[Path]) -> None:
    pytest.importorskip("onnxruntime")
    results = {d.name: _run_onnxruntime(d) for d in suite}
    failures = {name: why for name, why in results.items() if why != "pass"}
    passed = len(results) - len(failures)
    print(f"\nonnxruntime CPU: {passed}/{len(results)} ONNX pooling node tests pass")
    for name, why in sorted(failures.items()):
        print(f"  {name}: {why}")
    assert passed >= len(results) - 2, failures


def test_unwritable_cache_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    """HOME under a file (unwritable for root too): `check --onnx-suite` exits 2 in one line."""
    from conftest import run_cli

    home = tmp_path / "home-is-a-file"
    home.write_text("")
    env = {"HOME": str(home), "XDG_CACHE_HOME": "", "POOLCONFORM_CACHE_DIR": ""}
    proc = run_cli("check", "--onnx-suite", "--backends", "onnxruntime-cpu", env=env)
    if proc.returncode != 2 and installed_data_dir_has_suite():
        pytest.skip("this onnx ships its pooling test data: nothing is written")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "POOLCONFORM_CACHE_DIR" in proc.stderr and str(home) in proc.stderr


def installed_data_dir_has_suite() -> bool:
    from poolconform.onnx_suite import installed_data_dirs

    return bool(installed_data_dirs())


def test_a_hostile_marker_is_not_trusted(tmp_path: Path) -> None:
    (tmp_path / COMPLETE_MARKER).write_text(f"onnx {onnx.__version__}\n..\n")
    assert _complete_suite(tmp_path) is None


def test_a_suite_finding_reproduces_with_the_line_it_prints(suite: list[Path], tmp_path: Path) -> None:
    """A finding on one of the ONNX project's directories names `check --onnx-suite --cases`:
    the directory lives in poolconform's cache, not in the folder where the user types."""
    import json
    import shlex
    import shutil

    from conftest import run_cli

    cache = tmp_path / "cache"
    shutil.copytree(suite[0].parent, cache / f"onnx-{onnx.__version__}-pooling-node-tests")
    env = {"POOLCONFORM_CACHE_DIR": str(cache)}
    proc = run_cli("check", "--onnx-suite", "--backends", "onnxruntime-cpu", "--out", str(tmp_path / "all"), env=env)
    assert proc.returncode in (0, 1), proc.stderr  # onnx 1.23's suite: one finding, the stored data's, excused
    findings = json.loads((tmp_path / "all" / "summary.json").read_text())["findings"]
    assert findings, "every onnx release's suite so far gives at least one finding"
    finding = findings[0]
    case = finding["minimal_case"]
    assert finding["suite"] == "onnx"
    assert finding["reproduce"].startswith(f"poolconform check --onnx-suite --cases {case}")
    words = shlex.split(finding["reproduce"])
    assert words[:2] == ["poolconform", "check"]
    only = [] if "--backends" in words else ["--backends", "onnxruntime-cpu"]
    again = run_cli(*words[1:], *only, "--out", str(tmp_path / "one"), env=env, cwd=tmp_path)
    assert again.returncode in (0, 1), again.stderr
    records = [json.loads(line) for line in (tmp_path / "one" / "results.jsonl").read_text().splitlines()]
    assert {r["case"] for r in records} == {case} and all(r.get("suite") == "onnx" for r in records)
    assert (case, finding["backend"], finding["status"]) in {(r["case"], r["backend"], r["status"]) for r in records}
    nothing = run_cli("check", "--onnx-suite", "--cases", "test_maxpool_9d_*", "--backends", "onnxruntime-cpu",
                      "--out", str(tmp_path / "none"), env=env)
    assert nothing.returncode == 2 and nothing.stderr.count("\n") == 1, nothing.stderr
    assert "--cases test_maxpool_9d_*: no test directory has such a name" in nothing.stderr
