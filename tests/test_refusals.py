"""Clear refusals: a bad matrix, option or model is one line on stderr and exit 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from poolconform.validation import make_case
from poolconform.cli import main
from poolconform.testdirs import write_case_dir

from conftest import make_model

REPO = Path(__file__).resolve().parents[1]
GOOD = "[matrix]\nops = ['MaxPool']\nkernel = 2\ninput_size = 4\n"


def refusal(argv: list[str], capsys) -> str:
    """Run the CLI in-process; assert exit 2 with exactly one stderr line and return it."""
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        status = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    return lines[0]


def matrix_file(tmp_path: Path, text: str | bytes, name: str = "m.toml") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


MATRIX_REFUSALS = [
    ("kernel = 0", ["'kernel'", "0 must be >= 1"]),
    ("kernel = [2, -3]", ["'kernel'", "-3 must be >= 1"]),
    ("stride = 0", ["'stride'", "must be >= 1"]),
    ("pads = -1", ["'pads'", "must be >= 0"]),
    ("ops = ['MaxPool', 'AvgPool']", ["unknown op 'AvgPool'", "allowed: MaxPool, AveragePool"]),
    ("kernal = 3", ["unknown matrix key 'kernal'", "did you mean 'kernel'?"]),
    ("zzz = 3", ["unknown matrix key 'zzz'", "allowed: ops, rank, kernel"]),
    ("kernel = '3'", ["'kernel'", "'3' must be an integer or a list of integers"]),
    ("kernel = 2.5", ["'kernel'", "2.5 must be an integer"]),
    ("kernel = [[2, 'a']]", ["'kernel'", "must be a list of integers"]),
    ("ceil_mode = 1", ["'ceil_mode'", "1 must be true or false"]),
    ("ops = 3", ["'ops'", "3 must be a string"]),
    ("dtype = 'float8'", ["unknown dtype 'float8'", "allowed: float32"]),
    ("rank = 4", ["rank must be 1, 2 or 3, got 4"]),
    ("kernel = []", ["'kernel' is an empty list"]),
    ("batch = 9999999999", ["'batch'", "too large (at most 2147483647)"]),
    ("input_size = 4096\nrank = 3\nkernel = 1", ["input of 68719476736 elements", "limit 16777216"]),
    ("kernel = [1,2,3,4,5,6,7,8,9,10]\nstride = [1,2,3,4,5,6,7,8,9,10]\ninput_size = [4,5,6,7,8,9,10,11,12,13]\n"
     "pads = [0,1,2,3,4,5,6,7,8,9]\ndilation = [1,2,3,4,5,6,7,8,9,10]",
     ["400000 combinations", "more than the limit 100000"]),
    # every combination dropped: an empty run checks nothing, so it is a config error
    ("ops = ['MaxPool', 'AveragePool']\nkernel = 9\ninput_size = 4",
     ["expands to no case", "all 2 combinations were dropped", "2 kernel larger than padded input"]),
    ("ops = ['MaxPool']\nkernel = 2\npads = 2", ["expands to no case", "pad not smaller than the window"]),
]


@pytest.mark.parametrize("body, expected", MATRIX_REFUSALS, ids=[b.split("\n")[-1] for b, _ in MATRIX_REFUSALS])
def test_bad_matrix_values_are_refused(tmp_path, capsys, body, expected):
    path = matrix_file(tmp_path, f"[matrix]\n{body}\n")
    line = refusal(["run", "--matrix", str(path), "--out", str(tmp_path / "out")], capsys)
    assert line.startswith("poolconform: error: ")
    for part in expected:
        assert part in line, line
    assert not (tmp_path / "out").exists()  # refused before anything ran


@pytest.mark.parametrize(
    "content, expected",
    [
        ("this is = = not toml\n", "is not valid TOML"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary", "is not text (UTF-8)"),
        ("[other]\na = 1\n", "has no [matrix] table (found 'other')"),
        ("matrix = 3\n", "[matrix] must be a table of keys"),
        ("", "has no [matrix] table (found nothing)"),
    ],
    ids=["not-toml", "binary", "no-matrix-table", "matrix-not-a-table", "empty-file"],
)
def test_files_that_are_not_matrices_are_refused(tmp_path, capsys, content, expected):
    path = matrix_file(tmp_path, content)
    assert expected in refusal(["run", "--matrix", str(path)], capsys)


def test_missing_directory_and_bad_pyproject_matrix_paths(tmp_path, capsys):
    assert "does not exist" in refusal(["run", "--matrix", str(tmp_path / "nope.toml")], capsys)
    assert "is a directory" in refusal(["run", "--matrix", str(tmp_path)], capsys)
    pyproject = matrix_file(tmp_path, "tool = 3\n", "pyproject.toml")
    assert "has no [tool.poolconform.matrix] table" in refusal(["run", "--matrix", str(pyproject)], capsys)


@pytest.mark.parametrize("shard", ["0/4", "5/4", "x/y", "1/0", "3", "-1/4"])
def test_malformed_shard_is_refused(tmp_path, capsys, shard):
    path = matrix_file(tmp_path, GOOD)
    line = refusal(["run", "--matrix", str(path), f"--shard={shard}", "--backends", "onnxruntime-cpu",
                    "--out", str(tmp_path / "out")], capsys)
    assert f"--shard {shard!r} must be K/N with 1 <= K <= N" in line


@pytest.mark.parametrize("value", ["0", "-1", "nan", "soon"])
def test_bad_timeout_is_refused(tmp_path, capsys, value):
    path = matrix_file(tmp_path, GOOD)
    line = refusal(["run", "--matrix", str(path), f"--timeout={value}"], capsys)
    assert "argument --timeout" in line and repr(value) in line


def test_unknown_backend_names_are_refused_with_the_known_ones(tmp_path, capsys):
    path = matrix_file(tmp_path, GOOD)
    line = refusal(["run", "--matrix", str(path), "--backends", "onnxruntime-cpu,onnxrt,torch"], capsys)
    assert "unknown backend 'onnxrt', 'torch'" in line
    known = line.split("known: ", 1)[1]
    assert {"onnxruntime-cpu", "onnxruntime-cuda", "onnx-reference", "torch-cpu"} <= set(known.replace(",", " ").split())
    line = refusal(["run", "--matrix", str(path), "--require", "cuda"], capsys)
    assert "unknown backend 'cuda'" in line


def test_requiring_an_unavailable_backend_is_refused(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-cuda may be available on this machine")
    path = matrix_file(tmp_path, GOOD)
    line = refusal(["run", "--matrix", str(path), "--backends", "onnxruntime-cpu", "--require", "onnxruntime-cuda",
                    "--out", str(tmp_path / "out"), "--quiet"], capsys)
    assert "required backend unavailable: onnxruntime-cuda: CUDAExecutionProvider" in line
    assert not (tmp_path / "out" / "results.jsonl").exists()


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "--matrix", "BINARY"], "is not text (UTF-8)"),
        (["run", "--backends", "nope"], "unknown backend 'nope'"),
        (["run", "--shard", "0/4"], "--shard '0/4'"),
        (["run", "--timeout", "0"], "argument --timeout: '0' must be > 0"),
        (["run", "--matrix", "EMPTY"], "expands to no case"),
    ],
    ids=["binary-matrix", "unknown-backend", "shard", "timeout", "all-dropped"],
)
def test_refusals_from_a_fresh_interpreter_are_one_line(tmp_path, args, expected):
    """End to end: no import-time warnings or tracebacks sneak onto stderr."""
    matrix_file(tmp_path, b"\xff\xfe\x00binary", "BINARY")
    matrix_file(tmp_path, "[matrix]\nops = ['MaxPool']\nkernel = 9\ninput_size = 4\n", "EMPTY")
    result = subprocess.run([sys.executable, "-m", "poolconform", *args, "--out", str(tmp_path / "out")],
                            cwd=tmp_path, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert result.stdout == ""


# ---- check: hostile backend-test directories --------------------------------------------------


def _good_dir(directory: Path) -> None:
    write_case_dir(make_case("MaxPool", (1, 1, 4, 4), kernel=2, strides=2), directory)


def _hostile_dirs(root: Path) -> dict[str, str]:
    """Backend-test directories that must each end in one clear error line; name -> expected text."""
    expected = {}
    _good_dir(root / "good")

    (root / "not_onnx").mkdir()
    (root / "not_onnx" / "model.onnx").write_bytes(b"\x00\xffthis is not a protobuf\xff" * 10)
    expected["not_onnx"] = "model.onnx is not an ONNX model"

    _good_dir(root / "truncated_pb")
    pb = root / "truncated_pb" / "test_data_set_0" / "input_0.pb"
    pb.write_bytes(pb.read_bytes()[:-7])
    expected["truncated_pb"] = "input_0.pb: not a TensorProto (truncated or corrupt"

    _good_dir(root / "external_data")
    model = onnx.load(root / "external_data" / "model.onnx")
    weight = numpy_helper.from_array(np.zeros(4, np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="../../../etc/passwd")
    model.graph.initializer.append(weight)
    onnx.save(model, root / "external_data" / "model.onnx")
    expected["external_data"] = "points at external data '../../../etc/passwd' outside its folder"

    (root / "absurd_size").mkdir()
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 1_000_000, 1_000_000])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 1, 1])
    node = helper.make_node("GlobalMaxPool", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [x], [y])
    onnx.save(make_model(graph, 22),
              root / "absurd_size" / "model.onnx")
    expected["absurd_size"] = "more than MAX_INPUT_ELEMENTS"

    _good_dir(root / "absurd_tensor")
    tensor = TensorProto(name="x", data_type=TensorProto.FLOAT, dims=[1, 1, 4_000_000_000, 4])
    (root / "absurd_tensor" / "test_data_set_0" / "input_0.pb").write_bytes(tensor.SerializeToString())
    expected["absurd_tensor"] = "tensor shape (1, 1, 4000000000, 4) is negative or over"

    (root / "not_pooling").mkdir()
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(make_model(graph, 22),
              root / "not_pooling" / "model.onnx")
    expected["not_pooling"] = "expected one pooling node (MaxPool, AveragePool, LpPool"
    return expected


def test_check_reports_each_hostile_model_in_one_line_and_checks_the_rest(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    expected = _hostile_dirs(tmp_path / "models")
    out = tmp_path / "records.json"
    status = main(["check", str(tmp_path / "models"), "--backends", "onnxruntime-cpu", "--json", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert status == 1  # the broken models are error records; the good one still ran
    records = {r["case"]: r for r in json.loads(out.read_text())}
    assert records["good"]["status"] == "pass"
    for name, text in expected.items():
        record = records[name]
        assert record["status"] == "error", record
        assert record["detail"].startswith(f"cannot load: {name}") and text in record["detail"], record
        assert "\n" not in record["detail"]


def test_check_refuses_paths_that_hold_no_model(tmp_path, capsys):
    line = refusal(["check", str(tmp_path / "missing")], capsys)
    assert "is neither a backend-test directory nor a folder holding them" in line
    (tmp_path / "empty").mkdir()
    line = refusal(["check", str(tmp_path / "empty")], capsys)
    assert "no backend-test directory (a folder with model.onnx)" in line
    assert "at least one PATH" in refusal(["check"], capsys)


def _cli(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "poolconform", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize(
    "body, expected",
    [
        ("generator = 'nromal'", "unknown generator 'nromal' (did you mean 'normal'?); allowed: "),
        ("storage_order = 2\nindices = true", "storage_order must be 0 or 1, got 2"),
        ("ops = ['LpPool']\np = -1", "p must be >= 1, got -1"),
        ("opset = 2", "opset must be one the exporter can write (1, 5-"),
        ("kernel = " + "[" * 5000 + "]" * 5000, "is nested too deeply to parse"),
    ],
    ids=["generator", "storage_order", "p", "opset", "nested-5000"],
)
def test_matrix_typos_and_hostile_nesting_are_one_line_from_the_cli(tmp_path, body, expected):
    """Refused like an op or dtype typo (exit 2, one line), never dropped as 'impossible' or a traceback."""
    matrix = matrix_file(tmp_path, f"[matrix]\nops = ['MaxPool']\n{body}\n".replace("ops = ['MaxPool']\nops", "ops"))
    result = _cli(tmp_path, "run", "--matrix", str(matrix), "--backends", "onnxruntime-cpu", "--out", str(tmp_path / "out"))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("poolconform: error: ") and expected in lines[0], lines
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_a_matrix_path_with_a_non_utf8_byte_runs_and_is_recorded_escaped(tmp_path):
    """A file named with byte 0xff used to fail writing report.html after the whole run."""
    pytest.importorskip("onnxruntime", reason="the run uses onnxruntime-cpu")
    name = b"m\xff.toml"
    with open(bytes(tmp_path) + b"/" + name, "wb") as f:
        f.write(GOOD.encode())
    out = tmp_path / "out"
    result = subprocess.run([sys.executable.encode(), b"-m", b"poolconform", b"run", b"--matrix", name,
                             b"--backends", b"onnxruntime-cpu", b"--out", bytes(out)],
                            cwd=tmp_path, capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert b"Traceback" not in result.stderr
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["matrix"] == "m\\xff.toml"
    assert "m\\xff.toml" in (out / "report.html").read_text(encoding="utf-8")


def test_a_refused_run_leaves_the_previous_records_in_out(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-cuda may be available on this machine")
    path = matrix_file(tmp_path, GOOD)
    out = tmp_path / "out"
    assert main(["run", "--matrix", str(path), "--backends", "onnxruntime-cpu", "--out", str(out), "--quiet"]) == 0
    before = (out / "results.jsonl").read_bytes()
    assert before
    refusal(["run", "--matrix", str(path), "--backends", "onnxruntime-cpu", "--require", "onnxruntime-cuda",
             "--out", str(out), "--quiet"], capsys)
    assert (out / "results.jsonl").read_bytes() == before  # nothing ran, nothing lost
