"""Converters that live in their own environments (README "Converters"): onnx2tf->litert and
onnx2torch, each run through `--backend-python` in the environment that `ci/converter-envs.sh`
builds from envs/*.txt, judged by the oracle like any backend. The findings pinned here are the
ones the README states for these versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from poolconform.envs import env_root, interpreter_of
from conftest import load, run_cli

pytestmark = pytest.mark.slow

# MaxPool k2 s2 p1 ceil_mode on 5x5: ONNX and ORT keep the last window, which starts in the right
# padding's column (output 4x4); torch's rule drops it (3x3).
CEIL_PAST_END = "MaxPool-2d-k2-s2-p1-ceil-f32-n5-b2c3"


def env_python(name: str) -> str:
    python = interpreter_of(env_root() / name)
    if not python.is_file():
        pytest.skip(f"environment {name!r} is not built in {env_root()} (ci/converter-envs.sh builds it from envs/{name}.txt)")
    return str(python)


def run_in_env(tmp_path: Path, backend: str, env: str, matrix: str) -> tuple[str, dict[str, dict]]:
    """Run `matrix` on `backend` in environment `env` (skipped when not built): the version its
    worker reported, and the records by case id."""
    python = env_python(env)
    (tmp_path / "m.toml").write_text(matrix)
    out = tmp_path / "out"
    result = run_cli("run", "--matrix", str(tmp_path / "m.toml"), "--backends", backend,
                     "--backend-python", f"{backend}={python}", "--out", str(out), "--timeout", "300", timeout=900)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    version = json.loads((out / "summary.json").read_text())["backends"][backend]["version"]
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return version, {record["case"]: record for record in records}


def test_outside_their_environment_they_say_how_to_build_it():
    import importlib.util

    if importlib.util.find_spec("onnx2tf") is not None:
        pytest.skip("onnx2tf is installed in this interpreter: there is no refusal to check here")
    reason = load("onnx2tf->litert").available()
    assert reason.startswith("onnx2tf is not installed in ") and "poolconform env create onnx2tf" in reason
    assert "\n" not in reason


@pytest.mark.timeout(900)
def test_onnx2torch_refuses_opset_22_and_drops_the_ceil_window_that_starts_in_padding(tmp_path):
    version, records = run_in_env(tmp_path, "onnx2torch", "onnx2torch", (
        "[[matrix]]\nops = [\"MaxPool\", \"AveragePool\", \"GlobalMaxPool\"]\nkernel = 2\nstride = 2\n"
        "input_size = 5\npads = [0, 1]\nceil_mode = [false, true]\nbatch = 2\nchannels = 3\nopset = 18\n"
        "[[matrix]]\nops = [\"MaxPool\"]\nkernel = 2\nstride = 2\ninput_size = 5\nbatch = 2\nchannels = 3\nopset = 22\n"
        "[[matrix]]\nops = [\"MaxPool\", \"AveragePool\"]\nkernel = 2\nstride = 2\ninput_size = 6\nbatch = 1\n"
        "channels = 2\nopset = 19\n"))
    assert version.startswith("1.5.15 on torch 2.14.1"), version
    by_id = {k.removesuffix("-o18"): r for k, r in records.items() if r["opset"] == 18}
    assert by_id["MaxPool-2d-k2-s2-p0-f32-n5-b2c3"]["status"] == "pass"
    assert by_id["AveragePool-2d-k2-s2-p1-f32-n5-b2c3"]["status"] == "pass"
    ceil = by_id[CEIL_PAST_END]
    assert ceil["status"] == "shape-mismatch", ceil
    assert "(2, 3, 3, 3)" in ceil["detail"] and "(2, 3, 4, 4)" in ceil["detail"], ceil["detail"]
    assert by_id["GlobalMaxPool-2d-f32-n5-b2c3"]["status"] == "unsupported"
    assert "GlobalMaxPool" in by_id["GlobalMaxPool-2d-f32-n5-b2c3"]["detail"]
    opset19 = {r["op"]: r for r in records.values() if r["opset"] == 19}
    assert opset19["MaxPool"]["status"] == "pass"  # MaxPool-12 is still the newest below 22
    assert opset19["AveragePool"]["status"] == "unsupported" and "version=19" in opset19["AveragePool"]["detail"]
    opset22 = [r for r in records.values() if r["opset"] == 22]
    assert opset22 and all(r["status"] == "unsupported" and "version=22" in r["detail"] for r in opset22)


@pytest.mark.timeout(900)
def test_onnx2tf_litert_agrees_in_nchw_after_transposing_back(tmp_path):
    version, records = run_in_env(tmp_path, "onnx2tf->litert", "onnx2tf", (
        "[[matrix]]\nops = [\"MaxPool\", \"AveragePool\"]\nkernel = 2\nstride = 2\ninput_size = 5\npads = 1\n"
        "ceil_mode = true\ncount_include_pad = true\nbatch = 2\nchannels = 3\n"
        "[[matrix]]\nops = [\"GlobalAveragePool\"]\nrank = 1\ninput_size = 8\nbatch = 2\nchannels = 3\n"
        "[[matrix]]\nops = [\"MaxPool\"]\nindices = true\nkernel = 2\nstride = 2\ninput_size = 6\nbatch = 1\nchannels = 2\n"
        "[[matrix]]\nops = [\"AveragePool\"]\nkernel = 3\nstride = 1\ninput_size = 7\nauto_pad = \"SAME_LOWER\"\n"
        "batch = 1\nchannels = 2\n"
        "[[matrix]]\nops = [\"AveragePool\"]\nkernel = 2\nstride = 1\ninput_size = 7\ndilation = 2\nbatch = 1\nchannels = 2\n"
        "[[matrix]]\nops = [\"MaxPool\"]\nkernel = 2\nstride = 2\ninput_size = 6\ndtype = \"float16\"\nbatch = 1\nchannels = 2\n"))
    assert version == "1.29.24 on TensorFlow 2.19.0, LiteRT 2.1.0", version
    statuses = {case: r["status"] for case, r in records.items()}
    indices, same_lower = "MaxPool-2d-k2-s2-p0-idx-f32-n6-b1c2", "AveragePool-2d-k3-s1-samelower-f32-n7-b1c2"
    dilated, half = "AveragePool-2d-k2-s1-p0-d2-f32-n7-b1c2", "MaxPool-2d-k2-s2-p0-f16-n6-b1c2"
    wrong = {indices: "mismatch", same_lower: "mismatch", dilated: "shape-mismatch", half: "mismatch"}
    assert statuses == {**{case: "pass" for case in records}, **wrong} and len(records) == 7, statuses
    # SAME_LOWER averages divide by the whole window, padding included: 0.674667561 * 4/9 at a corner
    assert "Y[0,0,6,0] expected 0.674667561, got 0.299852282" in records[same_lower]["detail"]
    assert records[dilated]["detail"].startswith("output Y has shape (1, 2, 6, 6), expected (1, 2, 5, 5)")  # dilation dropped
    assert records[half]["detail"].startswith("dtype float32, expected float16")  # a float16 model becomes float32
    assert "poolconform cast the inputs (float16 to float32) as the .tflite declares" in records[half]["note"]
    notes = {r["note"] for r in records.values()}
    assert all("poolconform transposed the input to channels-last and the output back" in n for n in notes), notes
    # The values are right; the Indices count positions in the NHWC tensor, (h*W + w)*C + c, not
    # ONNX's NCHW ones: NCHW 38 is c=1, h=0, w=2 of 2x6x6, and (0*6 + 2)*2 + 1 = 5.
    assert "Indices[0,1,0,1] expected 38, got 5" in records[indices]["detail"], records[indices]["detail"]
    assert records[indices]["max_abs_err"] == 33  # on Y it is 0: only Indices differ
