"""Adaptive pooling: the window rule, the oracle and its tolerance, the refusals of everything
that reads ONNX, and what each torch exporter does with it (README "Findings", pinned here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from poolconform import adaptive, oracle
from poolconform.backends.base import Unsupported
from poolconform.case_ids import parse_case_id
from poolconform.compare import compare_outputs, element_tolerance
from poolconform.errors import CaseError
from poolconform.inputs import make_inputs
from poolconform.matrix import load_matrix
from poolconform.onnx_export import build_model
from poolconform.validation import make_case
from conftest import usable

ROOT = Path(__file__).resolve().parents[1]


def brute_force(case, x: np.ndarray) -> np.ndarray:
    """Every output element from its own window, by the rule's text, one at a time."""
    out = np.empty(case.input_shape[:2] + case.output_size)
    reduce = np.max if case.op == "AdaptiveMaxPool" else np.mean
    for index in np.ndindex(*out.shape):
        window = tuple(slice(i * n // o, -(-(i + 1) * n // o))
                       for i, n, o in zip(index[2:], case.spatial, case.output_size))
        out[index] = reduce(x[index[:2] + window].astype(np.float64))
    return out


def test_windows_follow_floor_and_ceil_and_overlap_when_o_does_not_divide_n() -> None:
    assert [list(v) for v in adaptive.windows(8, 3)] == [[0, 2, 5], [3, 6, 8]]
    assert [list(v) for v in adaptive.windows(6, 4)] == [[0, 1, 3, 4], [2, 3, 5, 6]]  # [1,3) and [3,5): sizes 2
    assert [list(v) for v in adaptive.windows(3, 5)] == [[0, 0, 1, 1, 2], [1, 2, 2, 3, 3]]  # o > n repeats
    assert [list(v) for v in adaptive.windows(8, 2)] == [[0, 4], [4, 8]]


@pytest.mark.parametrize("op", adaptive.ADAPTIVE_OPS)
@pytest.mark.parametrize("spatial,size", [((8,), (3,)), ((6, 9), (4, 7)), ((5, 7, 4), (2, 3, 5)), ((9,), (9,))])
def test_the_oracle_is_the_rule_element_by_element(op: str, spatial: tuple, size: tuple) -> None:
    case = make_case(op, (2, 3, *spatial), output_size=size)
    x = make_inputs(case)[0]
    expected = oracle.reference_outputs(case, [x])[0]
    assert expected.shape == case.input_shape[:2] + size
    np.testing.assert_allclose(expected, brute_force(case, x), rtol=1e-15, atol=0)


def test_the_oracle_by_hand() -> None:
    case = make_case("AdaptiveAveragePool", (1, 1, 5), output_size=3)  # windows [0,2) [1,4) [3,5)
    x = np.array([[[1.0, 2.0, 4.0, 8.0, 16.0]]], np.float32)
    assert oracle.reference_outputs(case, [x])[0].ravel().tolist() == [1.5, 14 / 3, 12.0]
    assert oracle.window_counts(case).ravel().tolist() == [2, 3, 2]
    biggest = make_case("AdaptiveMaxPool", (1, 1, 5), output_size=3)
    assert oracle.reference_outputs(biggest, [-x])[0].ravel().tolist() == [-1.0, -2.0, -8.0]


def test_the_tolerance_is_per_adaptive_window_and_a_wrong_answer_fails() -> None:
    case = make_case("AdaptiveAveragePool", (1, 1, 7), output_size=3)  # windows of 3, 3, 3 elements
    x = np.array([[[1e6, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]]], np.float32)
    e = oracle.reference_outputs(case, [x])[0]
    bound = element_tolerance(case, e, [x])
    assert bound[0, 0, 0] > 100 * bound[0, 0, 2] > 0  # the huge element widens only its own window's bound
    assert element_tolerance(case.replace(op="AdaptiveMaxPool"), e, [x]).max() == 0  # max is exact
    assert compare_outputs(case, [e], [e.astype(np.float32)], [x]).status == "pass"
    wrong = e.copy()
    wrong[0, 0, 2] += 1e-5  # inside the first window's bound, far outside the third's
    assert compare_outputs(case, [e], [wrong.astype(np.float32)], [x]).status == "mismatch"
    assert e.ravel().tolist() == [(1e6 + 2) / 3, 1.0, 1.0]  # windows [0,3) [2,5) [4,7)
    # A fixed kernel floor(n/o) = 2 at stride 2 (what a naive lowering writes) is not the adaptive window.
    naive = np.array([[[(1e6 + 1) / 2, 1.0, 1.0]]], np.float32)
    assert compare_outputs(case, [e], [naive], [x]).status == "mismatch"


def test_validation_and_ids() -> None:
    case = make_case("AdaptiveMaxPool", (2, 3, 7, 9), output_size=(3, 4), dtype="float16")
    assert case.id == "AdaptiveMaxPool-2d-os3x4-f16-n7x9-b2c3" and parse_case_id(case.id) == case
    for bad in [dict(output_size=0), dict(output_size=(3,)), dict(output_size=3, dtype="int8"),
                dict(output_size=3, kernel=2), dict(output_size=3, context="pad")]:
        with pytest.raises(CaseError):
            make_case("AdaptiveAveragePool", (1, 1, 7, 7), **bad)
    with pytest.raises(CaseError):
        make_case("MaxPool", (1, 1, 7, 7), kernel=2, output_size=(3, 3))


def test_the_matrix_mixes_sizes_that_divide_and_sizes_that_do_not() -> None:
    cases = load_matrix(ROOT / "matrices" / "adaptive.toml").cases
    assert len(cases) == 108 and {c.op for c in cases} == set(adaptive.ADAPTIVE_OPS)
    assert {adaptive.divides(c) for c in cases} == {True, False}
    assert any(o > n for c in cases for n, o in zip(c.spatial, c.output_size))


def test_nothing_that_reads_onnx_runs_it_and_export_declines() -> None:
    case = make_case("AdaptiveAveragePool", (1, 1, 8), output_size=3)
    assert adaptive.onnx_rejects(case) == f"unsupported: {adaptive.ONNX_REFUSAL}"
    assert adaptive.onnx_rejects(make_case("MaxPool", (1, 1, 8), kernel=2)) is None
    with pytest.raises(CaseError, match="not an ONNX operator"):
        build_model(case)


def test_export_of_a_matrix_of_adaptive_cases_is_one_line_and_exit_2(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "poolconform", "export", "--matrix",
                          str(ROOT / "matrices" / "adaptive.toml"), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "adaptive pooling is not an ONNX operator" in run.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_run_classifies_every_record_and_onnx_readers_decline(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="the ONNX-reading backend under test")
    torch = pytest.importorskip("torch", reason="torch-cpu runs adaptive pooling")  # noqa: F841
    run = subprocess.run([sys.executable, "-m", "poolconform", "run", "--backends", "torch-cpu,onnxruntime-cpu",
                          "--cases", "AdaptiveAveragePool-2d-os3x4-f32-n7x9", "--cases",
                          "AdaptiveMaxPool-1d-os5-f32-n3", "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in (tmp_path / "r" / "results.jsonl").read_text().splitlines()]
    assert {(r["backend"], r["status"]) for r in records} == {("torch-cpu", "pass"), ("onnxruntime-cpu", "unsupported")}
    assert all(adaptive.ONNX_REFUSAL in r["detail"] for r in records if r["backend"] == "onnxruntime-cpu")


@pytest.mark.parametrize("op", adaptive.ADAPTIVE_OPS)
def test_torch_cpu_agrees_with_the_oracle_where_o_does_not_divide_n(op: str) -> None:
    backend = usable("torch-cpu", "torch")
    for spatial, size in [((8,), (3,)), ((6, 9), (4, 7)), ((5, 7, 4), (2, 3, 5))]:
        case = make_case(op, (2, 3, *spatial), output_size=size)
        inputs = make_inputs(case)
        result = compare_outputs(case, oracle.reference_outputs(case, inputs), backend.run(case, inputs), inputs)
        assert result.status == "pass", (case.id, result.detail)


def test_keras_runs_its_adaptive_layers_and_tensorflow_declines() -> None:
    from poolconform.backends import keras_backend, tensorflow_backend

    case = make_case("AdaptiveAveragePool", (1, 2, 6, 9), output_size=(4, 7))
    plan = keras_backend.translate(case)
    assert not isinstance(plan, Unsupported) and plan.layer == "AdaptiveAveragePooling2D"
    assert plan.kwargs()["output_size"] == (4, 7)
    refusal = tensorflow_backend.translate(case)
    assert isinstance(refusal, Unsupported) and "no adaptive pooling" in refusal.reason


# What the exporters do (torch 2.13.0, onnxscript 0.7.2, onnxruntime 1.32.0; README "Findings").
def _exported(name: str, case) -> str:
    backend = usable(name, "torch", "onnxruntime")
    inputs = make_inputs(case)
    result = compare_outputs(case, oracle.reference_outputs(case, inputs), backend.run(case, inputs), inputs)
    assert result.status == "pass", (name, case.id, result.detail)
    return backend.note(case) or ""


def _refusal(name: str, case) -> str:
    backend = usable(name, "torch", "onnxruntime")
    assert backend.supports(case) is None  # torch expresses it; the exporter is what refuses
    with pytest.raises(Unsupported) as refused:
        backend.run(case, make_inputs(case))
    return str(refused.value)


def test_torchscript_exporter_lowers_factor_sizes_exactly_and_refuses_the_rest() -> None:
    name = "torch-export->onnxruntime-cpu"
    note = _exported(name, make_case("AdaptiveAveragePool", (2, 3, 8, 8), output_size=(4, 2)))
    assert note.startswith("exported AveragePool{kernel_shape=[2, 4], strides=[2, 4]}")
    assert _exported(name, make_case("AdaptiveAveragePool", (2, 3, 9), output_size=1)).startswith(
        "exported GlobalAveragePool{}")
    assert _exported(name, make_case("AdaptiveMaxPool", (2, 3, 6, 6), output_size=3)).startswith(
        "exported MaxPool{kernel_shape=[2, 2], pads=[0, 0, 0, 0], strides=[2, 2]}")
    for op in adaptive.ADAPTIVE_OPS:
        text = _refusal(name, make_case(op, (2, 3, 8, 8), output_size=3))
        assert "output size that are not factor of input size" in text, text


def test_dynamo_exporter_decomposes_some_and_refuses_others() -> None:
    pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
    name = "torch-dynamo-export->onnxruntime-cpu"
    # 2-D average, 4 of 6 and 7 of 9: no pooling node, an exact GatherND/ReduceMean decomposition.
    note = _exported(name, make_case("AdaptiveAveragePool", (2, 3, 6, 9), output_size=(4, 7)))
    assert note.startswith("exported no pooling op with") and "GatherND" in note
    note = _exported(name, make_case("AdaptiveMaxPool", (2, 3, 8, 8), output_size=4))
    assert note.startswith("exported MaxPool{") and "kernel_shape=[2, 2]" in note
    text = _refusal(name, make_case("AdaptiveMaxPool", (2, 3, 8, 8), output_size=3))
    assert "No ONNX function found" in text and "adaptive_max_pool2d" in text, text
    text = _refusal(name, make_case("AdaptiveAveragePool", (2, 3, 8, 8, 8), output_size=2))  # divides, still refused
    assert "No ONNX function found" in text and "_adaptive_avg_pool3d" in text, text
