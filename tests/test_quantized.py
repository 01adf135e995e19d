"""Quantized pooling: dequantize -> float oracle -> requantize, ±1, and what ONNX Runtime does."""

from __future__ import annotations

import numpy as np
import pytest

from poolconform.case_ids import parse_case_id
from poolconform.compare import compare_outputs
from poolconform.errors import CaseError
from poolconform.inputs import make_inputs
from poolconform.onnx_export import build_model
from poolconform.oracle import reference_outputs
from poolconform.validation import make_case


def test_the_oracle_dequantizes_pools_and_requantizes_with_ties_to_even() -> None:
    case = make_case("AveragePool", (1, 1, 4), kernel=2, strides=2, dtype="uint8", quant=(0.5, 10, 1.0, 0))
    x = [np.array([[[10, 13, 20, 21]]], dtype=np.uint8)]  # real 0, 1.5, 5, 5.5 -> means 0.75, 5.25
    assert reference_outputs(case, x)[0].ravel().tolist() == [1.0, 5.0]
    clipped = case.replace(quant=(0.5, 10, 0.001, 250))
    assert reference_outputs(clipped, x)[0].ravel().tolist() == [255.0, 255.0]  # saturates


def test_plus_minus_one_passes_only_at_a_rounding_boundary_and_two_never() -> None:
    """±1 is allowed where the unrounded value lies at k + 1/2 (a float32 or fixed-point
    backend may round it the other way), nowhere else: +1 on every element passed before."""
    case = make_case("AveragePool", (1, 1, 4), kernel=2, strides=2, dtype="uint8", quant=(0.5, 10, 1.0, 0))
    x = [np.array([[[10, 13, 20, 21]]], dtype=np.uint8)]  # means 0.75 and 5.25: far from a boundary
    e = reference_outputs(case, x)
    for delta in (1, -1, 2):
        assert compare_outputs(case, e, [np.clip(e[0] + delta, 0, 255).astype(np.uint8)], x).status == "mismatch"
    tie = [np.array([[[10, 12, 20, 24]]], dtype=np.uint8)]  # real 0, 1, 5, 7: means 0.5 and 6.0
    et = reference_outputs(case, tie)
    assert et[0].ravel().tolist() == [0.0, 6.0]  # 0.5 rounds to even
    assert compare_outputs(case, et, [np.array([[[1, 6]]], np.uint8)], tie).status == "pass"  # the tie, other way
    assert compare_outputs(case, et, [np.array([[[0, 7]]], np.uint8)], tie).status == "mismatch"  # 6.0 is exact
    assert compare_outputs(case, et, [np.array([[[2, 6]]], np.uint8)], tie).status == "mismatch"
    exact = parse_case_id("MaxPool-2d-k2-s2-p0-q0p05_3_0p05_3-u8-n6")  # requantized to itself: exact
    xe = make_inputs(exact)
    ee = reference_outputs(exact, xe)
    assert compare_outputs(exact, ee, [np.clip(ee[0] + 1, 0, 255).astype(np.uint8)], xe).status == "mismatch"


@pytest.mark.parametrize("quant, dtype, why", [
    ((0.05, 3, 0.1, 7), "float32", "uint8 or int8"),
    ((0.05, 200, 0.1, 7), "int8", "x_zero_point"),
    ((0.00001, 3, 0.1, 7), "uint8", "x_scale"),
])
def test_quant_values_outside_the_rules_are_refused(quant, dtype, why) -> None:
    with pytest.raises(CaseError, match=why):
        make_case("AveragePool", (1, 1, 6), kernel=2, dtype=dtype, quant=quant)


@pytest.mark.parametrize("text", [
    "AveragePool-2d-k3-s2-p1-cip-q0p02_128_0p03_120-u8-n7-b2c3", "AveragePool-1d-k2-s1-p1-q0p05_3_0p1_7-i8-n5",
    "GlobalAveragePool-2d-q0p05_3_0p1_7-i8-n5-b2c3", "MaxPool-2d-k3-s2-p1-q0p05_3_0p1_7-u8-n7",
])
def test_onnxruntime_quantized_pooling_agrees_within_one(text: str) -> None:
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    case = parse_case_id(text)
    x = make_inputs(case)
    session = ort.InferenceSession(build_model(case).SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"X": x[0]})
    assert got[0].dtype == np.dtype(case.dtype)
    verdict = compare_outputs(case, reference_outputs(case, x), got, x)
    assert verdict.status == "pass", verdict.detail


def test_finding_onnxruntime_qlinearaveragepool_rejects_dilations() -> None:
    """README Findings: QLinearAveragePool (com.microsoft) has no dilations attribute in ORT 1.32."""
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    case = parse_case_id("AveragePool-1d-k2-s1-p0-d2-q0p05_0_0p05_0-u8-n5")
    with pytest.raises(Exception, match="dilations"):
        ort.InferenceSession(build_model(case).SerializeToString(), providers=["CPUExecutionProvider"])
