"""`poolconform explain`: a summary naming the disagreeing backend first, then the arrays, within
COLUMNS, for real cases on real backends; unknown ids suggest."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from poolconform.case_ids import parse_case_id
from poolconform.cli import main
from poolconform.commands.explain import BackendResult, format_array, measure_gap, summary_lines
from poolconform.inputs import make_inputs
from poolconform.oracle import reference_outputs

pytest.importorskip("onnxruntime", reason="explain runs onnxruntime-cpu")

MATRIX = '[matrix]\nops = "AveragePool"\nkernel = 3\nstride = 3\ninput_size = 7\nceil_mode = [false, true]\n'
CASE = "AveragePool-2d-k3-s3-p0-ceil-f32-n7"
#: onnx-reference averages the ceil-mode overhang window wrongly: both outputs of this case differ.
SMALL = "AveragePool-1d-k3-s3-p0-ceil-f32-n4"
BACKENDS = "onnxruntime-cpu,onnx-reference"


@pytest.fixture
def matrix(tmp_path: Path) -> Path:
    path = tmp_path / "m.toml"
    path.write_text(MATRIX)
    return path


def _block(out: str, title: str) -> np.ndarray:
    """The numbers printed under an array title."""
    body = out.split(title + "\n")[1].split("\n\n")[0]
    numbers = []
    for line in body.splitlines():
        if not line.startswith(("[", " ")):
            break
        numbers += [float(v) for v in line.replace("[", " ").replace("]", " ").split()]
    return np.array(numbers)


def test_summary_names_the_disagreeing_backend_before_any_array(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["explain", SMALL, "--backends", BACKENDS])
    out = capsys.readouterr().out
    assert status == 1
    lines = out.splitlines()
    first_array = next(i for i, line in enumerate(lines) if line.startswith("input X"))
    summary = lines[:first_array]
    assert lines[0].startswith(f"case {SMALL}: onnx-reference disagrees (1 of 2")
    assert len(summary) <= 24  # one screen
    rows = [line.split() for line in summary if line.startswith(("onnx-reference ", "onnxruntime-cpu "))]
    assert [r[0] for r in rows] == ["onnx-reference", "onnxruntime-cpu"]  # disagreeing first, though run second
    ref, ort = rows
    assert ref[1:3] == ["mismatch", "Y[0,0,0]"] and float(ref[5]) > 1e3  # far beyond the tolerance
    assert ort[1:3] == ["pass", "-"] and float(ort[5]) <= 1.0
    # the figures agree with the arrays printed after them
    diff = _block(out, "onnx-reference Y diff (actual - expected) float64 shape [1, 1, 2]:")
    assert diff.shape == (2,) and abs(diff[0]) > 0.1
    assert float(ref[3]) == pytest.approx(np.abs(diff).max(), rel=1e-2)
    assert "onnx-reference: Y[0,0,0] expected" in "\n".join(summary)


def test_explain_prints_input_expected_outputs_and_diffs(matrix: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["explain", CASE, "--matrix", str(matrix), "--backends", BACKENDS])
    out = capsys.readouterr().out
    assert status == 1  # onnx-reference disagrees on this case
    assert out.startswith(f"case {CASE}: onnx-reference disagrees")
    assert "input X float32 shape [1, 1, 7, 7]:" in out
    assert "expected Y (float64 oracle) float64 shape [1, 1, 3, 3]:" in out
    assert "== onnxruntime-cpu: pass" in out
    # where and by how much onnx-reference is wrong depends on its release; that it is wrong does not
    assert "== onnx-reference: mismatch" in out and re.search(r"onnx-reference: Y\[0,0,\d,\d\] expected", out)
    assert out.index("== onnx-reference") < out.index("== onnxruntime-cpu")
    for backend in ("onnxruntime-cpu", "onnx-reference"):
        assert f"{backend} Y float32 shape [1, 1, 3, 3]:" in out
        assert f"{backend} Y diff (actual - expected) float64 shape [1, 1, 3, 3]:" in out
    # the diff block of onnx-reference holds the largest error the summary reports
    values = _block(out, "onnx-reference Y diff (actual - expected) float64 shape [1, 1, 3, 3]:")
    assert values.shape == (9,) and np.abs(values).max() > 0.1


@pytest.mark.parametrize("columns", [80, 40])
def test_every_line_fits_columns(columns: int, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A batch of 2x3 channels gives float64 diffs ~14 characters wide and a long params line."""
    monkeypatch.setenv("COLUMNS", str(columns))
    case = f"{CASE}-b2c3"
    assert main(["explain", case, "--backends", BACKENDS]) == 1
    lines = capsys.readouterr().out.splitlines()
    too_wide = [line for line in lines if len(line) > columns]
    assert not too_wide, too_wide
    assert len(lines) > 100 and "onnx-reference disagrees" in " ".join(lines[:2])
    if columns == 40:  # no table fits: one wrapped line per backend, names whole
        text = " ".join(line.strip() for line in lines[:20])
        assert re.search(r"onnx-reference: mismatch; first diff Y\[0,0,0,0\], max abs err \d\.\d+, max ULP", text)
        assert "onnxruntime-cpu: pass; max abs err" in text
    else:
        assert any(line.split()[:3] == ["onnx-reference", "mismatch", "Y[0,0,0,0]"] for line in lines[:8])


def test_summary_orders_failing_passing_then_not_run() -> None:
    case = parse_case_id(SMALL)
    results = [
        BackendResult("torch-cuda", "not run", "torch.cuda.is_available() is False"),
        BackendResult("onnxruntime-cpu", "pass", "", {"max_abs_err": 0.0, "max_ulp": 0.0}),
        BackendResult("keras-jax", "crash", "worker exited with signal 11"),
    ]
    from poolconform.commands.explain import _rank

    lines = summary_lines(case, sorted(results, key=_rank), width=120)
    assert lines[0] == f"case {SMALL}: keras-jax disagrees (1 of 2 that ran)"
    names = [line.split()[0] for line in lines[2:5]]
    assert names == ["keras-jax", "onnxruntime-cpu", "torch-cuda"]
    assert "torch-cuda: torch.cuda.is_available() is False" in lines


def test_measure_gap_finds_the_first_element_beyond_the_tolerance() -> None:
    case = parse_case_id("AveragePool-2d-k3-s3-p0-ceil-f32-n7")
    inputs = make_inputs(case)
    expected = reference_outputs(case, inputs)
    actual = expected[0].astype(np.float32)
    gap = measure_gap(case, expected, [actual], inputs)
    assert gap is not None and gap.first is None and gap.ratio is not None and gap.ratio <= 1.0
    actual[0, 0, 1, 2] += 0.5
    actual[0, 0, 2, 0] += 1.0
    gap = measure_gap(case, expected, [actual], inputs)
    assert gap is not None and gap.first == (0, 0, 1, 2) and gap.ratio > 1e5
    assert measure_gap(case, expected, [actual[..., :2]], inputs) is None  # shapes differ
    exact = parse_case_id("MaxPool-2d-k3-s3-p0-ceil-f32-n7")
    x = make_inputs(exact)
    y = reference_outputs(exact, x)
    wrong = y[0].astype(np.float32)
    wrong[0, 0, 0, 1] = np.nextafter(wrong[0, 0, 0, 1], np.float32(np.inf))  # 1 ULP off an exact op
    gap = measure_gap(exact, y, [wrong], x)
    assert gap is not None and gap.first == (0, 0, 0, 1) and gap.ratio == float("inf")


def test_invalid_id_names_the_token_and_suggests(matrix: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["explain", CASE.replace("ceil", "cel"), "--matrix", str(matrix), "--backends", "onnxruntime-cpu"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1
    assert f"did you mean '{CASE}'" in err
    assert "token 'cel'" in err


def test_big_arrays_say_they_are_truncated() -> None:
    text = format_array("x", np.zeros((1, 1, 30, 30), np.float32), full=False)
    assert "truncated: 900 elements" in text and "..." in text
    assert "truncated" not in format_array("x", np.zeros((1, 1, 30, 30), np.float32), full=True)
