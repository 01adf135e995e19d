"""The commands as a user runs them: exit statuses, files, one-line errors."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import ROOT, make_model, run_cli
from poolconform.results import FAILING


def test_run_writes_records_and_summary(tmp_path, tiny_matrix):
    out = tmp_path / "report"
    proc = run_cli("run", "--matrix", str(tiny_matrix), "--backends", "onnxruntime-cpu,onnx-reference",
                   "--out", str(out))
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    cases = {r["case"] for r in records}
    assert len(records) == 2 * len(cases) == summary["records"]
    assert {r["backend"] for r in records} == {"onnxruntime-cpu", "onnx-reference"}
    for r in records:
        for field in ("case", "backend", "status", "expected_shape", "actual_shape", "max_abs_err", "max_ulp",
                      "detail"):
            assert field in r
    ort = [r for r in records if r["backend"] == "onnxruntime-cpu"]
    assert all(r["status"] == "pass" for r in ort), [r for r in ort if r["status"] != "pass"][:2]
    failing = [r for r in records if r["status"] in FAILING]
    assert proc.returncode == (1 if failing else 0), proc.stderr
    assert summary["exit_status"] == proc.returncode
    assert "onnxruntime-cpu" in proc.stdout and "pairwise agreement" in proc.stdout
    assert f"exit {proc.returncode}" in proc.stdout.splitlines()[-1]  # the verdict line says why
    assert summary["agreement"]["onnxruntime-cpu"]["onnx-reference"]["both"] == len(cases)


def _seed_dirs(root: Path) -> Path:
    """The tutorial's four examples as backend-test directories, written by hand."""
    x = np.array([[2, 2, 7, 3], [9, 4, 6, 1], [8, 5, 2, 4], [3, 1, 2, 6]], np.float32).reshape(1, 1, 4, 4)
    examples = [
        ("seed_maxpool", "MaxPool", dict(kernel_shape=[2, 2], strides=[2, 2]), [[9, 7], [8, 6]]),
        ("seed_averagepool", "AveragePool", dict(kernel_shape=[2, 2], strides=[2, 2]), [[4.25, 4.25], [4.25, 3.5]]),
        ("seed_globalmaxpool", "GlobalMaxPool", {}, [[9.0]]),
        ("seed_globalaveragepool", "GlobalAveragePool", {}, [[4.0625]]),
    ]
    for name, op, attrs, y in examples:
        y = np.array(y, np.float32)[None, None]
        graph = helper.make_graph(
            [helper.make_node(op, ["x"], ["y"], **attrs)], name,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(y.shape))],
        )
        d = root / name
        (d / "test_data_set_0").mkdir(parents=True)
        onnx.save(make_model(graph, 13), d / "model.onnx")
        (d / "test_data_set_0" / "input_0.pb").write_bytes(numpy_helper.from_array(x, "x").SerializeToString())
        (d / "test_data_set_0" / "output_0.pb").write_bytes(numpy_helper.from_array(y, "y").SerializeToString())
    return root


def test_check_hand_made_seed_directories_passes_on_both_backends(tmp_path):
    root = _seed_dirs(tmp_path / "seed")
    out_json = tmp_path / "records.json"
    proc = run_cli("check", str(root), "--backends", "onnxruntime-cpu,onnx-reference", "--json", str(out_json))
    assert proc.returncode == 0, proc.stderr
    records = json.loads(out_json.read_text())
    assert len(records) == 12  # 2 backends + the stored data itself, judged once, per directory
    assert {r["case"] for r in records} == {"seed_maxpool", "seed_averagepool", "seed_globalmaxpool",
                                           "seed_globalaveragepool"}
    assert all(r["status"] == "pass" and r["expected_from"] == "oracle" for r in records)
    assert sum(r["backend"] == "stored-data" for r in records) == 4
    assert all(set(r) >= {"case", "backend", "status", "expected_shape", "actual_shape", "max_abs_err", "max_ulp",
                          "detail"} for r in records)


def test_check_reports_a_wrong_stored_output_as_mismatch(tmp_path):
    root = _seed_dirs(tmp_path / "seed")
    bad = np.array([[9, 7], [8, 5]], np.float32)[None, None]
    (root / "seed_maxpool" / "test_data_set_0" / "output_0.pb").write_bytes(
        numpy_helper.from_array(bad, "y").SerializeToString())
    proc = run_cli("check", str(root / "seed_maxpool"), "--backends", "onnxruntime-cpu", "--json",
                   str(tmp_path / "r.json"))
    assert proc.returncode == 1
    # Backends are judged against the spec; the wrong stored value is one finding about the data.
    by_backend = {r["backend"]: r for r in json.loads((tmp_path / "r.json").read_text())}
    assert by_backend["onnxruntime-cpu"]["status"] == "pass"
    record = by_backend["stored-data"]
    assert record["status"] == "mismatch" and "Y[0,0,1,1] expected 6, got 5" in record["detail"]
    assert record["detail"].startswith("stored output_0.pb differs from the spec")
    proc = run_cli("check", str(root / "seed_maxpool"), "--backends", "onnxruntime-cpu", "--against", "stored",
                   "--json", str(tmp_path / "s.json"))
    assert proc.returncode == 1
    (record,) = json.loads((tmp_path / "s.json").read_text())
    assert record["status"] == "mismatch" and "Y[0,0,1,1] expected 5, got 6" in record["detail"]


def _one_line_error(proc, text):
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert text in lines[0], lines[0]


def test_unknown_backend_is_a_usage_error():
    _one_line_error(run_cli("run", "--backends", "onnxruntime-gpu"), "unknown backend 'onnxruntime-gpu'; known:")


def test_require_of_an_unavailable_backend_exits_2(tmp_path, tiny_matrix):
    proc = run_cli("run", "--matrix", str(tiny_matrix), "--backends", "onnxruntime-cpu",
                   "--require", "onnxruntime-cuda", "--out", str(tmp_path / "o"), "--quiet")
    _one_line_error(proc, "required backend unavailable: onnxruntime-cuda")


def test_bad_matrix_file_exits_2(tmp_path):
    f = tmp_path / "m.toml"
    f.write_text("[matrix]\nkernal = 3\n")
    _one_line_error(run_cli("run", "--matrix", str(f)), "did you mean 'kernel'?")


def test_backends_lists_every_backend_with_reasons():
    proc = run_cli("backends", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    for name in ("onnxruntime-cpu", "onnxruntime-cuda", "onnx-reference", "torch-cpu", "torch-cuda",
                 "keras-tensorflow", "keras-jax", "keras-torch", "tensorflow", "openvino-cpu"):
        assert name in rows
        assert rows[name]["available"] or rows[name]["reason"], name
    assert rows["onnxruntime-cpu"]["available"] and rows["onnxruntime-cpu"]["version"]


def test_backends_at_80_columns_keeps_names_whole_and_lists_tagged_environments():
    pytest.importorskip("onnxruntime", reason="the tagged backend is onnxruntime-cpu")
    proc = run_cli("backends", "--backends", "onnxruntime-cpu@again,onnx2tf->litert",
                   "--backend-python", f"onnxruntime-cpu@again={sys.executable}", env={"COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert any(line.startswith("onnxruntime-cpu@again  available  ") for line in lines), lines
    assert any(line.startswith("onnx2tf->litert  ") for line in lines), lines
    listed = json.loads(run_cli("backends", "--json", "--backend-python",
                                f"onnxruntime-cpu@again={sys.executable}").stdout)
    assert "onnxruntime-cpu@again" in {r["name"] for r in listed}


def test_check_runs_a_node_poolconform_cannot_translate_only_on_onnx_readers(tmp_path):
    pytest.importorskip("torch", reason="the framework backend that must decline is torch-cpu")
    from poolconform import testdirs
    from poolconform.validation import make_case

    directory = tmp_path / "test_future"
    testdirs.write_case_dir(make_case("MaxPool", (1, 2, 5, 5), kernel=2), directory)
    model = onnx.load(directory / "model.onnx")
    model.graph.node[0].attribute.append(helper.make_attribute("future_knob", 3))
    (directory / "model.onnx").write_bytes(model.SerializeToString())
    out = tmp_path / "r.json"
    proc = run_cli("check", str(directory), "--backends", "onnxruntime-cpu,torch-cpu", "--json", str(out))
    records = {r["backend"]: r for r in json.loads(out.read_text())}
    assert records["torch-cpu"]["status"] == "unsupported", proc.stderr
    assert "future_knob=3" in records["torch-cpu"]["detail"]
    assert "only backends that read ONNX run it" in records["torch-cpu"]["detail"]
    assert records["onnxruntime-cpu"]["status"] != "unsupported"


def _through_a_closed_pipe(*args: str) -> subprocess.CompletedProcess:
    """`poolconform ARGS | true` in bash: the reader is gone before most of the output is written."""
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "poolconform", *args])
    return subprocess.run(["bash", "-c", f"{command} | true; exit ${{PIPESTATUS[0]}}"], cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=300)


def test_a_broken_pipe_does_not_change_the_exit_status(tmp_path, tiny_matrix):
    # onnx-reference keeps a ceil_mode window that starts in the padding: a disagreement, exit 1
    disagreeing = _through_a_closed_pipe("explain", "MaxPool-2d-k2-s1-p1-ceil-f32-n5-b2c3",
                                         "--backends", "onnxruntime-cpu,onnx-reference")
    assert disagreeing.returncode == 1, disagreeing.stderr
    assert "Traceback" not in disagreeing.stderr and "Broken pipe" not in disagreeing.stderr, disagreeing.stderr
    agreeing = _through_a_closed_pipe("run", "--matrix", str(tiny_matrix), "--backends", "onnxruntime-cpu",
                                      "--out", str(tmp_path / "o"))
    assert agreeing.returncode == 0, agreeing.stderr
    assert "Traceback" not in agreeing.stderr and "Broken pipe" not in agreeing.stderr, agreeing.stderr
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["exit_status"] == 0


def test_a_run_where_no_backend_computed_anything_is_not_green(tmp_path):
    pytest.importorskip("torch", reason="needs torch-cpu, which cannot express asymmetric pads")
    out = tmp_path / "o"
    proc = run_cli("run", "--backends", "torch-cpu", "--cases", "AveragePool-2d-k3-s1-p0_0_1_1-f32-n5",
                   "--out", str(out))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "nothing verified" in proc.stdout and "Traceback" not in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cases"] == 1 and summary["records"] == 1  # counts stay counts
    assert summary["selected_cases"] == ["AveragePool-2d-k3-s1-p0_0_1_1-f32-n5"]
    assert summary["exit_status"] == 2 and "unsupported" in summary["nothing_verified"]
    assert "poolconform run: 1 cases, 1 records" in proc.stdout


@pytest.mark.parametrize(("name", "value"), [
    ("POOLCONFORM_ORT_INTRA_OP_THREADS", "99999999999"),  # was an onnxruntime `error` finding, exit 1
    ("POOLCONFORM_ORT_INTRA_OP_THREADS", "abc"),  # was silently ignored
    ("POOLCONFORM_ORACLE_THREADS", "-2"),  # was read only once a case was large enough
    ("POOLCONFORM_SHRINK_SECONDS", "nan"),
])
def test_a_bad_environment_number_is_one_line_before_any_work(monkeypatch, capsys, tmp_path, name, value) -> None:
    from poolconform.cli import main

    monkeypatch.setenv(name, value)
    status = main(["run", "--cases", "MaxPool-2d-k2-s2-p0-f32-n4-gseed", "--backends", "onnx-reference",
                   "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and name in err[0], err
    assert not (tmp_path / "out").exists()  # refused before the run touched anything


@pytest.mark.parametrize("command", ["run", "bench", "backends", "explain"])
def test_a_backend_list_that_names_nothing_is_refused(command, capsys) -> None:
    """`--backends ,` (or an unset shell variable's "") meant every backend: a 27 s surprise."""
    from poolconform.cli import main

    with pytest.raises(SystemExit) as exited:
        main([command, "--backends", ","] + (["MaxPool-2d-k2-s2-p0-f32-n4-gseed"] if command == "explain" else []))
    assert exited.value.code == 2
    assert "--backends: names nothing" in capsys.readouterr().err
