"""The context axis: Pad -> pool, symbolic shapes, MaxPool -> MaxUnpool, judged by the oracle."""

from __future__ import annotations

import numpy as np
import pytest

from poolconform.case_ids import parse_case_id
from poolconform.compare import compare_outputs
from poolconform.contexts import graph_output_shape, translation_rejects
from poolconform.errors import CaseError
from poolconform.inputs import make_inputs
from poolconform.onnx_export import build_model
from poolconform.oracle import reference_outputs
from poolconform.testdirs import export_cases, load_test_dir
from poolconform.validation import make_case


def test_maxpool_after_a_constant_pad_of_negative_inputs_sees_the_zeros() -> None:
    case = make_case("MaxPool", (1, 1, 3, 3), kernel=2, pads=1, context="pad", generator="negative")
    x = make_inputs(case)
    y = reference_outputs(case, x)[0]
    assert y.shape == (1, 1, 4, 4)
    assert (y[0, 0, 0, :] == 0).all() and (y[0, 0, :, 0] == 0).all()  # every border window holds a 0
    single = reference_outputs(case.replace(context="single"), x)[0]
    assert (single < 0).all()  # the pads attribute never wins a max: the two graphs differ


@pytest.mark.parametrize("mode", ["edge", "reflect"])
def test_edge_and_reflect_pads_are_computed_exactly(mode: str) -> None:
    case = make_case("AveragePool", (1, 1, 4), kernel=2, pads=(1, 1), context="pad", pad_mode=mode)
    x = [np.array([[[1.0, 2.0, 4.0, 8.0]]], dtype=np.float32)]
    padded = [1, 1, 2, 4, 8, 8] if mode == "edge" else [2, 1, 2, 4, 8, 4]
    want = [(a + b) / 2 for a, b in zip(padded, padded[1:])]
    assert reference_outputs(case, x)[0].ravel().tolist() == want


def test_unpool_scatters_the_maxima_to_their_flat_indices() -> None:
    case = make_case("MaxPool", (1, 2, 4), kernel=2, strides=2, context="unpool")
    x = [np.array([[[1, 5, 3, 2], [9, 0, 0, 7]]], dtype=np.float32)]
    assert reference_outputs(case, x)[0].tolist() == [[[0, 5, 3, 0], [9, 0, 0, 7]]]
    oshape = make_case("MaxPool", (1, 1, 5), kernel=2, strides=2, context="unpool", unpool_shape=True)
    assert graph_output_shape(oshape) == (1, 1, 5)
    with pytest.raises(CaseError, match="without output_shape"):  # default shape 4 would misplace index 4
        make_case("MaxPool", (1, 1, 5), kernel=2, strides=2, context="unpool")


@pytest.mark.parametrize("text", [
    "MaxPool-2d-k3-s1-p1-pad-f32-n5-gnegative", "AveragePool-2d-k3-s2-p1-pad-reflect-f32-n5-b2c3",
    "MaxPool-2d-k2-s2-p0-unpool-f32-n6-b2c3", "MaxPool-2d-k2-s1-p1-unpool-oshape-f32-n5",
    "AveragePool-2d-k3-s2-p1-ceil-dyn-f32-n7-b2c3",
])
def test_onnxruntime_runs_each_context_and_agrees_with_the_oracle(text: str) -> None:
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    case = parse_case_id(text)
    model = build_model(case)
    if case.context == "dynamic":
        dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
        assert all(dims) and len(dims) == 2 + case.rank  # symbolic N, C and spatial sizes
    x = make_inputs(case)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"X": x[0]})
    verdict = compare_outputs(case, reference_outputs(case, x), got, x)
    assert verdict.status == "pass", verdict.detail
    assert list(got[0].shape) == list(graph_output_shape(case))


def test_a_pad_folded_into_the_pool_is_caught() -> None:
    """What an optimizer that fuses Pad into pads would return is a mismatch, not a pass."""
    case = parse_case_id("MaxPool-2d-k3-s1-p1-pad-f32-n5-gnegative")
    x = make_inputs(case)
    fused = reference_outputs(case.replace(context="single"), x)
    assert compare_outputs(case, reference_outputs(case, x), fused, x).status == "mismatch"


def test_translating_backends_decline_contexts_in_one_line() -> None:
    case = parse_case_id("MaxPool-2d-k3-s1-p1-pad-edge-f32-n5")
    why = translation_rejects(case)
    assert why and why.startswith("unsupported: the pad context") and "\n" not in why
    assert translation_rejects(case, {"single", "pad"}) is None
    assert translation_rejects(case.replace(context="single", pad_mode="constant")) is None


def test_export_and_check_read_context_models_back(tmp_path) -> None:
    cases = [parse_case_id(t) for t in ("MaxPool-2d-k3-s1-p1-pad-edge-f32-n5", "MaxPool-2d-k2-s2-p0-unpool-f32-n6",
                                        "AveragePool-2d-k2-s1-p0-dyn-f32-n5", "AveragePool-2d-k2-s2-p0-q0p05_3_0p1_7-u8-n6")]
    export_cases(cases, tmp_path)
    for case in cases:
        stored = load_test_dir(tmp_path / f"test_{case.id}")
        assert stored.case == case and stored.unexpressible is None
        assert np.array_equal(stored.outputs[0], reference_outputs(case, stored.inputs)[0].astype(stored.outputs[0].dtype))


def test_finding_onnxruntime_refuses_an_unpool_output_shape_below_its_default() -> None:
    """README Findings: ORT 1.32 refuses MaxUnpool's output_shape smaller than (out-1)*s+k-pads,
    though every Index lies inside it (a ceil_mode pool of an odd input)."""
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    case = parse_case_id("MaxPool-1d-k2-s2-p0-ceil-unpool-oshape-f32-n5")
    session = ort.InferenceSession(build_model(case).SerializeToString(), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="output_shape is smaller than minimum required"):
        session.run(None, {"X": make_inputs(case)[0]})
