"""`poolconform explain`: arrays printed for a real case on real backends; unknown ids suggest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from poolconform.cli import main
from poolconform.commands.explain import format_array

pytest.importorskip("onnxruntime", reason="explain runs onnxruntime-cpu")

MATRIX = '[matrix]\nops = "AveragePool"\nkernel = 3\nstride = 3\ninput_size = 7\nceil_mode = [false, true]\n'
CASE = "AveragePool-2d-k3-s3-p0-ceil-f32-n7"


@pytest.fixture
def matrix(tmp_path: Path) -> Path:
    path = tmp_path / "m.toml"
    path.write_text(MATRIX)
    return path


def test_explain_prints_input_expected_outputs_and_diffs(matrix: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["explain", CASE, "--matrix", str(matrix), "--backends", "onnxruntime-cpu,onnx-reference"])
    out = capsys.readouterr().out
    assert status == 1  # onnx-reference disagrees on this case
    assert out.startswith(f"case {CASE}\n")
    assert "input X float32 shape [1, 1, 7, 7]:" in out
    assert "expected Y (float64 oracle) float64 shape [1, 1, 3, 3]:" in out
    assert "== onnxruntime-cpu" in out and "status pass" in out
    assert "== onnx-reference" in out and "status mismatch: Y[0,0,2,2]" in out
    for backend in ("onnxruntime-cpu", "onnx-reference"):
        assert f"{backend} Y float32 shape [1, 1, 3, 3]:" in out
        assert f"{backend} Y diff (actual - expected) float64 shape [1, 1, 3, 3]:" in out
    # the diff block of onnx-reference holds the error the record reports at [0,0,2,2]
    ref_diff = out.split("onnx-reference Y diff (actual - expected) float64 shape [1, 1, 3, 3]:\n")[1]
    values = np.array([float(v) for v in ref_diff.replace("[", " ").replace("]", " ").split()[:9]])
    assert values.shape == (9,) and abs(values[8]) > 1.0


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
