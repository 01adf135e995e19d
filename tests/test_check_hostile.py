"""`check` judged against the spec, the stored data judged once, and hostile folders.

Every hostile folder ends as one `error` record (never a hang), the valid folder beside
it is still checked, and ids stay unique and printable.
"""

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnx
import pytest

from conftest import run_cli
from poolconform.validation import make_case
from poolconform.inputs import make_inputs
from poolconform.stored_data import STORED_DATA, literal_precision_explains
from poolconform.testdirs import discover, expected_outputs, write_case_dir

pytest.importorskip("onnxruntime", reason="check needs at least onnxruntime-cpu")

AVG = make_case("AveragePool", (1, 1, 5, 5), kernel=3, strides=2, pads=1, ceil_mode=True)
MAX = make_case("MaxPool", (1, 2, 6, 6), kernel=2, strides=2)


def _records(path: Path) -> list[dict]:
    return json.loads(path.read_text())


def _check(*args: str) -> tuple[int, list[dict], str]:
    out = Path(args[-1])
    proc = run_cli("check", *args[:-1], "--json", str(out), timeout=300)
    return proc.returncode, (_records(out) if out.exists() else []), proc.stderr


def _rounded_dir(root: Path, decimals: int = 4) -> Path:
    """ONNX Runtime's style of test data: expected values typed to 4 decimals (0.4124 for 0.41245)."""
    exact = expected_outputs(AVG, make_inputs(AVG))[0]
    write_case_dir(AVG, root / "test_rounded", outputs=[np.round(exact.astype(np.float64), decimals).astype(np.float32)])
    return root / "test_rounded"


def test_rounded_literals_are_one_excused_data_finding_and_backends_pass(tmp_path):
    _rounded_dir(tmp_path / "models")
    rc, records, err = _check(str(tmp_path / "models"), "--backends", "onnxruntime-cpu,onnx-reference",
                              str(tmp_path / "r.json"))
    assert rc == 0, err
    by_backend = {r["backend"]: r for r in records}
    assert by_backend["onnxruntime-cpu"]["status"] == "pass"
    assert by_backend["onnx-reference"]["status"] == "pass"
    data = [r for r in records if r["backend"] == STORED_DATA]
    assert len(data) == 1 and data[0]["status"] == "mismatch" and data[0]["expected"] is True
    assert data[0]["detail"].startswith("stored output_0.pb differs from the spec by up to ")
    assert "4 decimals" in data[0]["detail"] and data[0]["max_ulp"] > 100


def test_wrong_stored_data_fails_once_not_on_every_backend(tmp_path):
    exact = expected_outputs(AVG, make_inputs(AVG))[0]
    wrong = exact.copy()
    wrong[0, 0, 1, 1] += 0.5
    write_case_dir(AVG, tmp_path / "m" / "test_wrong", outputs=[wrong])
    rc, records, _ = _check(str(tmp_path / "m"), "--backends", "onnxruntime-cpu", str(tmp_path / "r.json"))
    assert rc == 1
    assert [(r["backend"], r["status"], r.get("expected")) for r in records if r["status"] != "pass"] == [
        (STORED_DATA, "mismatch", None)]
    # --against stored makes the data the truth: now the backend is blamed, within the stated tolerance.
    rc, records, _ = _check(str(tmp_path / "m"), "--backends", "onnxruntime-cpu", "--against", "stored",
                            "--atol", "1e-6", str(tmp_path / "s.json"))
    assert rc == 1
    assert [(r["backend"], r["status"]) for r in records] == [("onnxruntime-cpu", "mismatch")]
    assert "atol 1e-06" in records[0]["detail"]
    rc, records, _ = _check(str(tmp_path / "m"), "--backends", "onnxruntime-cpu", "--against", "stored",
                            "--atol", "0.6", str(tmp_path / "t.json"))
    assert rc == 0 and records[0]["status"] == "pass"


def test_atol_without_against_stored_is_a_usage_error(tmp_path):
    write_case_dir(MAX, tmp_path / "test_max")
    proc = run_cli("check", str(tmp_path / "test_max"), "--atol", "1e-3")
    assert proc.returncode == 2 and "--against stored" in proc.stderr and "Traceback" not in proc.stderr


def test_literal_precision_never_excuses_zeros_or_coarse_data():
    spec = np.array([0.41245, 3.605551, -0.28404442], np.float32)
    assert literal_precision_explains(np.array([0.4124, 3.6056, -0.2841], np.float32), spec) == 4
    assert literal_precision_explains(np.zeros(3, np.float32), spec) is None  # all zeros
    assert literal_precision_explains(np.array([0.4, 3.6, -0.3], np.float32), spec) is None  # 1 decimal
    assert literal_precision_explains(np.array([0.4124, 3.6156, -0.2841], np.float32), spec) is None  # 0.01 off
    assert literal_precision_explains(np.array([np.nan, 3.6056, -0.2841], np.float32), spec) is None


def _hostile(root: Path) -> dict[str, Path]:
    """Folders that used to hang or kill check, beside one valid folder."""
    write_case_dir(MAX, root / "test_valid")
    folders = {}
    fifo = root / "test_fifo"
    write_case_dir(MAX, fifo)
    os.remove(fifo / "test_data_set_0" / "input_0.pb")
    os.mkfifo(fifo / "test_data_set_0" / "input_0.pb")
    folders["fifo"] = fifo
    zero = root / "test_devzero"
    write_case_dir(MAX, zero)
    os.remove(zero / "test_data_set_0" / "input_0.pb")
    os.symlink("/dev/zero", zero / "test_data_set_0" / "input_0.pb")
    folders["devzero"] = zero
    huge = root / "test_huge"
    write_case_dir(MAX, huge)
    with open(huge / "test_data_set_0" / "input_0.pb", "ab") as f:
        f.truncate(64 * 2**20)  # a sparse 64 MiB file for a 72-element input
    folders["huge"] = huge
    flt = root / "test_float_kernel"
    write_case_dir(MAX, flt)
    model = onnx.load(flt / "model.onnx")
    attr = next(a for a in model.graph.node[0].attribute if a.name == "kernel_shape")
    attr.Clear()
    attr.CopyFrom(onnx.helper.make_attribute("kernel_shape", 2.0))
    (flt / "model.onnx").write_bytes(model.SerializeToString())
    folders["float"] = flt
    ctrl = root / "test_ctrl\x01\x1b[31m"
    write_case_dir(MAX, ctrl)
    (ctrl / "model.onnx").write_bytes(b"not a model")
    folders["ctrl"] = ctrl
    return folders


def test_each_hostile_folder_is_one_error_record_and_the_valid_one_is_checked(tmp_path):
    _hostile(tmp_path / "m")
    out = tmp_path / "report"
    rc, records, err = _check(str(tmp_path / "m"), "--backends", "onnxruntime-cpu", "--out", str(out),
                              str(tmp_path / "r.json"))
    assert rc == 1, err
    errors = {r["case"]: r for r in records if r["status"] == "error"}
    assert all(r["backend"] == STORED_DATA for r in errors.values())
    assert set(errors) == {"test_fifo", "test_devzero", "test_huge", "test_float_kernel", "test_ctrl\\x01\\x1b[31m"}
    assert "not a regular file" in errors["test_fifo"]["detail"]
    assert "not a regular file" in errors["test_devzero"]["detail"]
    assert "larger than" in errors["test_huge"]["detail"]
    assert "kernel_shape" in errors["test_float_kernel"]["detail"] and "FLOAT" in errors["test_float_kernel"]["detail"]
    valid = [(r["backend"], r["status"]) for r in records if r["case"] == "test_valid"]
    assert sorted(valid) == [("onnxruntime-cpu", "pass"), (STORED_DATA, "pass")]
    text = (out / "results.jsonl").read_text() + (tmp_path / "r.json").read_text()
    assert "\x1b" not in text and "\x01" not in text
    ET.parse(out / "junit.xml")  # valid XML despite the control characters in the folder name


def test_check_a_b_with_equal_folder_names_keeps_every_record(tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    write_case_dir(MAX, a / "test_same")
    write_case_dir(MAX, b / "test_same")
    # A's model computes an average where its stored outputs are maxima: against them, A disagrees.
    model = onnx.load(a / "test_same" / "model.onnx")
    model.graph.node[0].op_type = "AveragePool"
    (a / "test_same" / "model.onnx").write_bytes(model.SerializeToString())
    rc, records, _ = _check(str(a), str(b), "--backends", "onnxruntime-cpu", "--against", "stored",
                            str(tmp_path / "r.json"))
    ids = sorted({r["case"] for r in records})
    assert ids == [f"{a.as_posix()}/test_same", f"{b.as_posix()}/test_same"]
    assert len(records) == 2
    assert rc == 1  # A disagrees with its stored outputs; B's pass must not hide it


def test_discover_names_are_unique_even_for_equal_roots(tmp_path):
    for parent in ("x", "y"):
        write_case_dir(MAX, tmp_path / parent / "A" / "test_same")
    found = discover([tmp_path / "x" / "A", tmp_path / "y" / "A", tmp_path / "x" / "A"])
    names = [f.name if hasattr(f, "name") else None for f in found]
    assert len(found) == 2 and len(set(names)) == 2  # the same folder given twice is checked once


def test_zero_batch_and_channels_run_and_zero_spatial_is_refused(tmp_path):
    for n, c in ((0, 3), (2, 0)):
        case = make_case("AveragePool", (n, c, 5, 5), kernel=2, strides=2)
        write_case_dir(case, tmp_path / "m" / f"test_b{n}c{c}")
    rc, records, err = _check(str(tmp_path / "m"), "--backends", "onnx-reference,onnxruntime-cpu",
                              str(tmp_path / "r.json"))
    status = {(r["case"], r["backend"]): r["status"] for r in records}
    assert status[("test_b0c3", "onnx-reference")] == "pass" and status[("test_b0c3", "onnxruntime-cpu")] == "pass"
    assert status[("test_b2c0", "onnx-reference")] == "pass"
    assert status[("test_b0c3", STORED_DATA)] == "pass"
    # ONNX Runtime refuses C = 0 ("Only N can be zero"): a framework finding, not a refusal of ours.
    assert status[("test_b2c0", "onnxruntime-cpu")] == "error"
    with pytest.raises(Exception, match="spatial"):
        make_case("MaxPool", (1, 1, 0, 4), kernel=1)


def test_auto_pad_empty_string_is_notset_on_every_backend(tmp_path):
    case = make_case("AveragePool", (1, 1, 6, 6), kernel=3, strides=1, pads=1)
    directory = tmp_path / "test_empty_auto_pad"
    write_case_dir(case, directory)
    model = onnx.load(directory / "model.onnx")
    model.graph.node[0].attribute.append(onnx.helper.make_attribute("auto_pad", ""))
    (directory / "model.onnx").write_bytes(model.SerializeToString())
    assert make_case("MaxPool", (1, 1, 4, 4), kernel=2, auto_pad="").auto_pad == "NOTSET"
    backends = "onnxruntime-cpu,onnx-reference"
    try:
        import torch  # noqa: F401

        backends += ",torch-cpu"
    except ImportError:
        pass
    rc, records, err = _check(str(directory), "--backends", backends, str(tmp_path / "r.json"))
    assert rc == 0, err
    assert {r["status"] for r in records} == {"pass"}, records
