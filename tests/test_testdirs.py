"""Backend-test directories: deterministic export, safe loading, the committed corpus."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import unittest
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from poolconform import oracle, shapes, testdirs
from poolconform.validation import make_case
from poolconform.errors import ModelError
from poolconform.inputs import SEED_INPUT, make_inputs
from poolconform.onnx_export import build_model

from conftest import make_model

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"

CASES = [
    make_case("MaxPool", (1, 2, 7, 7), kernel=3, strides=2, pads=1, ceil_mode=True),
    make_case("AveragePool", (1, 1, 6, 6), kernel=3, strides=2, pads=1, count_include_pad=True),
    make_case("MaxPool", (2, 2, 5, 5), kernel=2, strides=1, with_indices=True, storage_order=1),
    make_case("LpPool", (1, 1, 9), kernel=3, strides=2, auto_pad="SAME_UPPER", p=3),
    make_case("GlobalAveragePool", (1, 3, 4, 4, 4), dtype="float16"),
    make_case("MaxPool", (1, 1, 6, 6), kernel=2, strides=2, dtype="uint8"),
]


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_export_is_byte_identical_twice(tmp_path: Path) -> None:
    testdirs.export_cases(CASES, tmp_path / "a")
    testdirs.export_cases(list(reversed(CASES)), tmp_path / "b")
    first = tree_hashes(tmp_path / "a")
    assert first == tree_hashes(tmp_path / "b")
    testdirs.export_cases(CASES, tmp_path / "a")  # re-export in place changes nothing
    assert tree_hashes(tmp_path / "a") == first
    assert len([k for k in first if k.endswith("model.onnx")]) == len(CASES)
    assert "test_MaxPool-2d-k2-s1-p0-idxcol-f32-n5-b2c2/test_data_set_0/output_1.pb" in first


def test_every_exported_model_passes_the_full_checker(tmp_path: Path) -> None:
    testdirs.export_cases(CASES, tmp_path)
    for model_file in sorted(tmp_path.glob("test_*/model.onnx")):
        onnx.checker.check_model(onnx.load(model_file), full_check=True)


def test_manifest_lists_parameters_and_shapes(tmp_path: Path) -> None:
    manifest = testdirs.export_cases(CASES, tmp_path)
    document = json.loads(manifest.read_text())
    assert document["count"] == len(CASES) == len(document["cases"])
    entries = {e["id"]: e for e in document["cases"]}
    for case in CASES:
        entry = entries[case.id]
        assert entry["dir"] == "test_" + case.id and (tmp_path / entry["dir"] / "model.onnx").is_file()
        assert entry["params"] == case.describe()
        assert entry["expected_shape"] == list(shapes.output_shape(case))
        assert (entry["opset"], entry["dtype"]) == (case.opset, case.dtype)
    assert [e["dir"] for e in document["cases"]] == sorted(e["dir"] for e in document["cases"])


def test_reexport_removes_cases_no_longer_exported(tmp_path: Path) -> None:
    testdirs.export_cases(CASES, tmp_path)
    (tmp_path / "mine").mkdir()  # not named in the manifest: left alone
    testdirs.export_cases(CASES[:2], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == sorted(
        ["mine"] + [testdirs.dir_name(c) for c in CASES[:2]]
    )


def test_write_then_load_gives_the_same_case_and_arrays(tmp_path: Path) -> None:
    testdirs.export_cases(CASES, tmp_path)
    for case in CASES:
        stored = testdirs.load_test_dir(tmp_path / testdirs.dir_name(case))
        assert stored.case.describe() == case.describe()
        assert stored.case.id == stored.case.label == testdirs.dir_name(case)
        assert stored.case.model_bytes == (tmp_path / testdirs.dir_name(case) / "model.onnx").read_bytes()
        assert stored.expected_from == "stored" and stored.unexpressible is None
        np.testing.assert_array_equal(stored.inputs[0], make_inputs(case)[0])
        assert stored.inputs[0].dtype == np.dtype(case.dtype)
        expected = oracle.reference_outputs(case, stored.inputs)
        assert len(stored.outputs) == len(expected)
        np.testing.assert_allclose(stored.outputs[0].astype(np.float64), expected[0], rtol=1e-3, atol=1e-3)
        if case.with_indices:
            assert stored.outputs[1].dtype == np.int64
            np.testing.assert_array_equal(stored.outputs[1], expected[1])


def test_discover_keeps_going_past_a_broken_directory(tmp_path: Path) -> None:
    testdirs.export_cases(CASES, tmp_path / "corpus")
    broken = tmp_path / "corpus" / testdirs.dir_name(CASES[1])
    (broken / "model.onnx").write_bytes(b"\x08\x07garbage that is not protobuf \xff\xff\xff")
    results = testdirs.discover([tmp_path / "corpus"])
    assert [r.name for r in results] == sorted(testdirs.dir_name(c) for c in CASES)
    failures = [r for r in results if isinstance(r, testdirs.LoadFailure)]
    assert [f.name for f in failures] == [broken.name]
    assert "not an ONNX model" in failures[0].message and "\n" not in failures[0].message
    assert sum(isinstance(r, testdirs.StoredCase) for r in results) == len(CASES) - 1


def test_discover_refuses_a_path_without_models(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no backend-test directory"):
        testdirs.discover([tmp_path])
    with pytest.raises(ModelError, match="neither"):
        testdirs.discover([tmp_path / "missing"])


# ------------------------------------------------------------------ refusals


@pytest.fixture()
def case_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "test_case"
    testdirs.write_case_dir(CASES[0], directory)
    return directory


def _save(model: onnx.ModelProto, directory: Path) -> None:
    (directory / "model.onnx").write_bytes(model.SerializeToString())


def test_refuses_a_file_that_is_not_onnx(case_dir: Path) -> None:
    (case_dir / "model.onnx").write_bytes(b"\xff\xfe definitely not a protobuf")
    with pytest.raises(ModelError, match=r"test_case: model\.onnx is not an ONNX model"):
        testdirs.load_test_dir(case_dir)


def test_refuses_a_graph_that_is_not_one_pooling_node(case_dir: Path) -> None:
    nodes = [helper.make_node("Relu", ["X"], ["R"]), helper.make_node("MaxPool", ["R"], ["Y"], kernel_shape=[2, 2])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2, 7, 7])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
    )
    _save(make_model(graph, 22), case_dir)
    with pytest.raises(ModelError, match=r"found ops \['Relu', 'MaxPool'\]"):
        testdirs.load_test_dir(case_dir)


@pytest.mark.parametrize("node_outputs, graph_outputs", [(["Y"], ["Y", "X"]), (["Y", "I"], ["Y"]), (["Y", "I"], ["I", "Y"])])
def test_refuses_graph_outputs_that_are_not_the_pooling_nodes(case_dir: Path, node_outputs, graph_outputs) -> None:
    """An extra graph output (the input passed through), a dropped or reordered Indices: every
    backend was blamed with a shape-mismatch for what the model, not the backend, got wrong."""
    node = helper.make_node("MaxPool", ["X"], node_outputs, kernel_shape=[2, 2])
    types = {"X": TensorProto.FLOAT, "Y": TensorProto.FLOAT, "I": TensorProto.INT64}
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2, 7, 7])],
        [helper.make_tensor_value_info(name, types[name], None) for name in graph_outputs],
    )
    _save(make_model(graph, 22), case_dir)
    with pytest.raises(ModelError, match=re.escape(
            f"test_case: the graph's outputs {graph_outputs!r} are not its last node's outputs {node_outputs!r}")):
        testdirs.load_test_dir(case_dir)


def test_refuses_a_truncated_pb(case_dir: Path) -> None:
    pb = case_dir / "test_data_set_0" / "input_0.pb"
    pb.write_bytes(pb.read_bytes()[:-7])
    with pytest.raises(ModelError, match=r"input_0\.pb: (not a TensorProto|raw data has)"):
        testdirs.load_test_dir(case_dir)


def test_refuses_a_pb_of_the_wrong_dtype_or_shape(case_dir: Path) -> None:
    pb = case_dir / "test_data_set_0" / "input_0.pb"
    pb.write_bytes(numpy_helper.from_array(np.zeros((1, 2, 7, 7), np.float64), "X").SerializeToString())
    with pytest.raises(ModelError, match=r"holds float64\[1, 2, 7, 7\], the model declares float32\[1, 2, 7, 7\]"):
        testdirs.load_test_dir(case_dir)
    pb.write_bytes(numpy_helper.from_array(np.zeros((1, 2, 6, 7), np.float32), "X").SerializeToString())
    with pytest.raises(ModelError, match=r"holds float32\[1, 2, 6, 7\]"):
        testdirs.load_test_dir(case_dir)


def test_refuses_an_absurd_input_before_allocating(case_dir: Path) -> None:
    model = onnx.load(case_dir / "model.onnx")
    for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim, (1, 2, 2**20, 2**20)):
        dim.dim_value = value
    _save(model, case_dir)
    with pytest.raises(ModelError, match=r"\(1, 2, 1048576, 1048576\) holds more than MAX_INPUT_ELEMENTS"):
        testdirs.load_test_dir(case_dir)


def test_refuses_external_data_outside_the_folder(case_dir: Path) -> None:
    model = onnx.load(case_dir / "model.onnx")
    tensor = model.graph.initializer.add()
    tensor.name, tensor.data_type = "W", TensorProto.FLOAT
    tensor.dims.append(4)
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    _save(model, case_dir)
    with pytest.raises(ModelError, match=r"external data '\.\./\.\./etc/passwd' outside its folder"):
        testdirs.load_test_dir(case_dir)


def test_a_bare_model_gets_oracle_outputs(tmp_path: Path) -> None:
    case = CASES[1]
    (tmp_path / "bare").mkdir()
    _save(build_model(case), tmp_path / "bare")
    stored = testdirs.load_test_dir(tmp_path / "bare")
    assert stored.expected_from == "oracle" and stored.case.label == "bare"
    assert stored.inputs[0].shape == case.input_shape
    np.testing.assert_allclose(stored.outputs[0], oracle.reference_outputs(stored.case, stored.inputs)[0], rtol=1e-6)


def test_an_unexpressible_pooling_node_still_loads_with_its_data(case_dir: Path) -> None:
    model = onnx.load(case_dir / "model.onnx")
    model.graph.node[0].attribute.append(helper.make_attribute("future_knob", 3))
    _save(model, case_dir)
    stored = testdirs.load_test_dir(case_dir)
    assert "future_knob=3" in stored.unexpressible
    assert stored.case.model_bytes == (case_dir / "model.onnx").read_bytes()
    shutil.rmtree(case_dir / "test_data_set_0")
    with pytest.raises(ModelError, match="oracle cannot compute it"):
        testdirs.load_test_dir(case_dir)


# ------------------------------------------------------------------ the seed's golden cases, by hand

GOLDEN = [  # (op, attributes, the tutorial's printed output)
    ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2]}, [[9, 7], [8, 6]]),
    ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2]}, [[4.25, 4.25], [4.25, 3.5]]),
    ("GlobalMaxPool", {}, [[9.0]]),
    ("GlobalAveragePool", {}, [[4.0625]]),
]


@pytest.mark.parametrize(("op", "attrs", "printed"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_hand_written_golden_cases_load(tmp_path: Path, op: str, attrs: dict, printed: list) -> None:
    expected = np.array(printed, np.float32).reshape(1, 1, *np.shape(printed))
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"], **attrs)], "golden",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(expected.shape))],
    )
    directory = tmp_path / f"golden_{op}"
    (directory / "test_data_set_0").mkdir(parents=True)
    _save(make_model(graph, 13), directory)
    data = directory / "test_data_set_0"
    (data / "input_0.pb").write_bytes(numpy_helper.from_array(SEED_INPUT.astype(np.float32), "x").SerializeToString())
    (data / "output_0.pb").write_bytes(numpy_helper.from_array(expected, "y").SerializeToString())

    stored = testdirs.load_test_dir(directory)
    assert (stored.case.op, stored.case.opset, stored.case.input_shape) == (op, 13, (1, 1, 4, 4))
    if attrs:
        assert (stored.case.kernel, stored.case.strides, stored.case.pads) == ((2, 2), (2, 2), (0, 0, 0, 0))
    np.testing.assert_array_equal(stored.inputs[0], SEED_INPUT.astype(np.float32))
    np.testing.assert_array_equal(stored.outputs[0], expected)
    np.testing.assert_array_equal(oracle.reference_outputs(stored.case, stored.inputs)[0], expected)


# ------------------------------------------------------------------ the committed corpus


def _readme_snippet() -> str:
    text = (MODELS / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    snippet = next(b for b in blocks if "load_model_tests" in b)
    return snippet


def test_documented_backend_test_snippet_runs_on_corpus_dirs(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("onnxruntime")
    picked = [
        "test_MaxPool-2d-k2-s2-p0-f32-n4-gseed",
        "test_AveragePool-2d-k2-s2-p0-f32-n4-gseed",
        "test_GlobalAveragePool-2d-f32-n4-gseed",
        "test_MaxPool-2d-k3-s2-p1-ceil-f32-n7-b2c3",
        "test_AveragePool-2d-k3-s2-p1-ceil-cip-f32-n8-b2c3",
    ]
    for name in picked:
        shutil.copytree(MODELS / name, tmp_path / "models" / name)
    wrong = tmp_path / "models" / "test_wrong"  # a copy whose stored output is off by one: must fail
    shutil.copytree(MODELS / picked[0], wrong)
    out = wrong / "test_data_set_0" / "output_0.pb"
    out.write_bytes(numpy_helper.from_array(numpy_helper.to_array(onnx.load_tensor(out)) + 1, "Y").SerializeToString())
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "corpus_snippet"}
    exec(compile(_readme_snippet(), "models/README.md", "exec"), namespace)
    result: unittest.TestResult = namespace["result"]
    assert len(result.passed) == len(picked)  # counted directly: testsRun differs between CPython releases
    assert len(result.skipped) == len(picked) + 1  # the CUDA variants skip on a CPU build
    assert [t.id().split(".")[-1] for t, _ in result.failures] == ["test_wrong_cpu"]
    assert result.errors == []


def test_corpus_is_not_stale(tmp_path: Path) -> None:
    """models/ equals a fresh export of corpus_cases(): regenerate with `python -m poolconform.testdirs`."""
    committed = json.loads((MODELS / "manifest.json").read_text())
    cases = testdirs.corpus_cases()
    fresh_manifest = testdirs._manifest_text([testdirs.manifest_entry(c) for c in sorted(cases, key=testdirs.dir_name)])
    stale = "models/ is stale: run python -m poolconform.testdirs --out models"
    assert (MODELS / "manifest.json").read_text() == fresh_manifest, stale
    on_disk = sorted(p.name for p in MODELS.iterdir() if p.is_dir())
    assert on_disk == [e["dir"] for e in committed["cases"]]
    sample = cases[:: max(1, len(cases) // 40)]  # every file of ~40 directories, byte for byte
    testdirs.export_cases(sample, tmp_path)
    for case in sample:
        name = testdirs.dir_name(case)
        assert tree_hashes(tmp_path / name) == tree_hashes(MODELS / name), name


def test_corpus_holds_the_golden_cases_and_stays_small() -> None:
    total = sum(p.stat().st_size for p in MODELS.rglob("*") if p.is_file())
    assert total < 5 * 2**20, f"models/ holds {total} bytes"
    stored = testdirs.load_test_dir(MODELS / "test_MaxPool-2d-k2-s2-p0-f32-n4-gseed")
    np.testing.assert_array_equal(stored.outputs[0].reshape(2, 2), [[9, 7], [8, 6]])


def test_check_judges_every_data_set_and_a_later_sets_finding_reproduces(tmp_path: Path) -> None:
    """A directory's second data set with wrong stored outputs made no record at all (check
    ran test_data_set_0 only, and exited 0 with a warning). Each set is a record of its own
    now, named DIR/test_data_set_N, and the reproduce line checks that set alone."""
    from conftest import run_cli

    pytest.importorskip("onnxruntime", reason="the check runs onnxruntime-cpu")
    case = make_case("AveragePool", (1, 1, 6, 6), kernel=3, strides=2, pads=1, count_include_pad=True)
    corpus = tmp_path / "corpus"
    directory = corpus / "test_avg"
    testdirs.write_case_dir(case, directory)
    second = directory / "test_data_set_1"
    shutil.copytree(directory / "test_data_set_0", second)
    x = numpy_helper.to_array(onnx.load_tensor(str(second / "input_0.pb"))) * 2  # other inputs...
    onnx.save_tensor(numpy_helper.from_array(x, "x"), str(second / "input_0.pb"))  # ...and set 0's outputs: wrong
    loaded = testdirs.discover([corpus])
    assert [d.name for d in loaded[0].each_data_set()] == ["test_avg", "test_avg/test_data_set_1"]

    proc = run_cli("check", str(corpus), "--backends", "onnxruntime-cpu", "--out", str(tmp_path / "o"))
    assert proc.returncode == 1, proc.stderr
    records = [json.loads(line) for line in (tmp_path / "o" / "results.jsonl").read_text().splitlines()]
    assert {(r["case"], r["backend"], r["status"]) for r in records} == {
        ("test_avg", "onnxruntime-cpu", "pass"), ("test_avg", "stored-data", "pass"),  # set 0 agrees with the spec
        ("test_avg/test_data_set_1", "onnxruntime-cpu", "pass"), ("test_avg/test_data_set_1", "stored-data", "mismatch")}
    (finding,) = json.loads((tmp_path / "o" / "summary.json").read_text())["findings"]
    # the set's folder as check found it (absolute: the corpus is not under the folder check ran in)
    assert finding["reproduce"] == f"poolconform check {second.resolve()}"
    again = run_cli(*finding["reproduce"].split()[1:], "--backends", "onnxruntime-cpu", "--out", str(tmp_path / "r"),
                    cwd=tmp_path)
    assert json.loads((tmp_path / "r" / "results.jsonl").read_text().splitlines()[0])["path"] == "corpus/test_avg/test_data_set_1"
    assert again.returncode == 1, again.stderr
    records = [json.loads(line) for line in (tmp_path / "r" / "results.jsonl").read_text().splitlines()]
    assert {(r["case"], r["backend"], r["status"]) for r in records} == {
        ("test_avg/test_data_set_1", "onnxruntime-cpu", "pass"), ("test_avg/test_data_set_1", "stored-data", "mismatch")}
    # judged against the stored outputs, the backend disagrees on set 1: the line says --against stored
    stored = run_cli("check", str(corpus), "--backends", "onnxruntime-cpu", "--against", "stored",
                     "--out", str(tmp_path / "s"))
    assert stored.returncode == 1, stored.stderr
    (finding,) = json.loads((tmp_path / "s" / "summary.json").read_text())["findings"]
    assert finding["reproduce"] == f"poolconform check {second.resolve()} --against stored --backends onnxruntime-cpu"
    again = run_cli(*finding["reproduce"].split()[1:], "--out", str(tmp_path / "s2"), cwd=tmp_path)
    assert again.returncode == 1, again.stderr
    assert [json.loads(line)["status"] for line in (tmp_path / "s2" / "results.jsonl").read_text().splitlines()] == [
        "mismatch"]
    # judged within a tolerance: the line passes the same --atol and --rtol on
    tolerant = run_cli("check", str(corpus), "--backends", "onnxruntime-cpu", "--against", "stored", "--atol", "0.01",
                       "--rtol", "0.001", "--out", str(tmp_path / "t"))
    assert tolerant.returncode == 1, tolerant.stderr
    (finding,) = json.loads((tmp_path / "t" / "summary.json").read_text())["findings"]
    assert finding["reproduce"] == (f"poolconform check {second.resolve()} --against stored --atol 0.01 --rtol 0.001"
                                    " --backends onnxruntime-cpu")
    again = run_cli(*finding["reproduce"].split()[1:], "--out", str(tmp_path / "t2"), cwd=tmp_path)
    assert again.returncode == 1, again.stderr
    (record,) = [json.loads(line) for line in (tmp_path / "t2" / "results.jsonl").read_text().splitlines()]
    assert record["status"] == "mismatch" and "outside atol 0.01 + rtol 0.001" in record["detail"]
    assert (record["stored_atol"], record["stored_rtol"]) == (0.01, 0.001)
    # the directory named whole beside one of its sets: every set, once
    both = testdirs.discover([directory / "test_data_set_1", directory])
    assert [d.name for d in both[0].each_data_set()] == ["test_avg", "test_avg/test_data_set_1"]


def test_a_folder_named_for_another_case_than_its_model_is_warned_about(tmp_path: Path) -> None:
    """Expectations and --cases match folder names: a copied or hand-edited corpus whose
    folder says k3 while its model is k2 would be gated by the wrong entries, silently."""
    from conftest import run_cli

    pytest.importorskip("onnxruntime", reason="the check runs onnxruntime-cpu")
    case = make_case("MaxPool", (1, 1, 7, 7), kernel=2, strides=2)
    testdirs.write_case_dir(case, tmp_path / "c" / f"test_{case.id}")
    testdirs.write_case_dir(case, tmp_path / "c" / "mine")
    seeded = make_case("MaxPool", (1, 1, 4, 4), kernel=2, strides=2, generator="seed")  # the generator is in the data
    testdirs.write_case_dir(seeded, tmp_path / "c" / f"test_{seeded.id}")
    quiet = run_cli("check", str(tmp_path / "c"), "--backends", "onnxruntime-cpu", "--quiet")
    assert quiet.returncode == 0 and "named for another case" not in quiet.stderr, quiet.stderr
    testdirs.write_case_dir(case, tmp_path / "c" / "test_MaxPool-2d-k3-s2-p0-f32-n7")
    warned = run_cli("check", str(tmp_path / "c"), "--backends", "onnxruntime-cpu", "--quiet")
    assert warned.returncode == 0
    assert ("warning: 1 folder(s) named for another case than their model holds (e.g. "
            "test_MaxPool-2d-k3-s2-p0-f32-n7 holds MaxPool-2d-k2-s2-p0-f32-n7)") in warned.stderr
