"""The per-element tolerance model: wrong answers fail, right ones (real ORT) pass, nothing raises.

Each wrong answer below passed the old scalar tolerance `eps * W * max|x|` (issue 11).
"""

import numpy as np
import pytest

from poolconform import dtypes
from poolconform.validation import make_case
from poolconform.compare import compare_outputs, element_tolerance, tolerance
from poolconform.inputs import make_inputs
from poolconform.oracle import reference_outputs


def _judge(case, actual, inputs=None):
    inputs = inputs if inputs is not None else make_inputs(case)
    return compare_outputs(case, reference_outputs(case, inputs), actual, inputs)


def _sequential_sum_in(x: np.ndarray, dtype) -> np.ndarray:
    """Mean over the spatial axes, each plane summed left to right in `dtype`: the bug of
    ncnn #3561 and candle, written out independently of the oracle's own simulation."""
    planes = x.reshape(x.shape[0], x.shape[1], -1)
    total = np.zeros(planes.shape[:2], dtype=dtype)
    for k in range(planes.shape[-1]):
        total = (total + planes[..., k]).astype(dtype)
    return (total / dtype(planes.shape[-1])).astype(dtype).reshape(x.shape[:2] + (1,) * (x.ndim - 2))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_all_zeros_fail_global_average_17x17_in_16_bit(dtype):
    case = make_case("GlobalAveragePool", (1, 2, 17, 17), dtype=dtype)
    x = make_inputs(case)
    expected = reference_outputs(case, x)[0]
    assert np.abs(expected).max() > 0.07  # the truth is far from 0 ...
    assert tolerance(case, expected, x) < 1e-3  # ... and the bound is a few ULP, not 1.03 / 6.67
    result = _judge(case, [np.zeros_like(x[0], shape=expected.shape)], x)
    assert result.status == "mismatch" and "got 0" in result.detail


def test_float16_accumulated_mean_of_4096_values_is_a_named_mismatch():
    case = make_case("GlobalAveragePool", (1, 1, 64, 64), dtype="float16")
    x = [np.full(case.input_shape, 1.5, dtype=np.float16)]
    narrow = _sequential_sum_in(x[0], np.float16)
    assert float(narrow.ravel()[0]) == 1.0  # the sum stalls at 4096
    result = _judge(case, [narrow], x)
    assert result.status == "mismatch"
    assert "expected 1.5, got 1" in result.detail
    assert "consistent with float16 accumulation" in result.detail
    # The same values summed in float32, as ORT, PyTorch and TensorFlow do, pass.
    wide = _sequential_sum_in(x[0].astype(np.float32), np.float32).astype(np.float16)
    assert _judge(case, [wide], x).status == "pass"


def test_float16_accumulation_of_ordinary_data_fails_and_says_why():
    case = make_case("GlobalAveragePool", (1, 4, 32, 32), dtype="float16")
    rng = np.random.default_rng(7)
    x = [(1 + rng.random(case.input_shape)).astype(np.float16)]  # sums reach ~1500: float16 spacing 1
    result = _judge(case, [_sequential_sum_in(x[0], np.float16)], x)
    assert result.status == "mismatch" and "consistent with float16 accumulation" in result.detail
    wide = _sequential_sum_in(x[0].astype(np.float32), np.float32).astype(np.float16)
    assert _judge(case, [wide], x).status == "pass"


def test_all_zeros_are_not_blamed_on_narrow_accumulation():
    case = make_case("GlobalAveragePool", (1, 2, 17, 17), dtype="float16")
    x = make_inputs(case)
    result = _judge(case, [np.zeros((1, 2, 1, 1), np.float16)], x)
    assert result.status == "mismatch" and "accumulation" not in result.detail


def test_a_huge_element_widens_only_its_own_window():
    case = make_case("AveragePool", (1, 1, 4), kernel=2, strides=2)
    x = [np.array([[[1e30, 0.0, 1.0, 1.0]]], dtype=np.float32)]
    expected = reference_outputs(case, x)
    np.testing.assert_allclose(expected[0].ravel(), [5e29, 1.0])
    bound = element_tolerance(case, expected[0], x).ravel()
    assert bound[0] > 1e22 and bound[1] < 1e-6
    result = compare_outputs(case, expected, [np.array([[[5e29, 0.0]]], dtype=np.float32)], x)
    assert result.status == "mismatch" and "Y[0,0,1] expected 1, got 0" in result.detail


@pytest.mark.parametrize("ulps", [17, 51])
def test_lppool2d_errors_of_tens_of_ulp_fail(ulps):
    case = make_case("LpPool", (1, 2, 6, 6), kernel=3, strides=1, p=2)
    x = make_inputs(case)
    expected = reference_outputs(case, x)[0]
    y = expected.astype(np.float32)
    off = y.copy()
    off.flat[5] = y.flat[5] + np.float32(ulps) * np.spacing(y.flat[5])
    assert dtypes.ulp_distance(off.astype(np.float64), expected, "float32").max() >= ulps - 1
    result = _judge(case, [off], x)
    assert result.status == "mismatch" and "1 of 32 element(s) differ" in result.detail
    assert _judge(case, [y], x).status == "pass"


@pytest.mark.parametrize(
    "case",
    [
        make_case("LpPool", (1, 2, 9), kernel=3, strides=1, p=2, opset=18),
        make_case("LpPool", (2, 3, 11), kernel=2, strides=2, pads=1, p=3, opset=18),
        make_case("LpPool", (1, 2, 7), kernel=3, strides=1, p=1, opset=18),
        make_case("LpPool", (1, 2, 6, 7), kernel=3, strides=2, pads=1, p=2, opset=18),
        make_case("LpPool", (1, 2, 6, 7), kernel=[2, 3], strides=1, p=3, opset=18),
        make_case("GlobalLpPool", (1, 3, 17, 17), p=3, opset=18),
        make_case("GlobalLpPool", (1, 2, 40), p=2, opset=18),
        make_case("LpPool", (1, 2, 9), kernel=3, strides=1, p=2, dtype="float16", opset=11),
        make_case("LpPool", (1, 2, 9), kernel=3, strides=1, p=3, dtype="float16", opset=11),
        make_case("AveragePool", (1, 2, 16, 16), kernel=3, strides=1, pads=1, dtype="float16"),
        make_case("GlobalAveragePool", (1, 2, 16, 16), dtype="float16"),
    ],
    ids=lambda c: c.id,
)
def test_onnxruntime_passes_real_lp_and_average_cases(case):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    from poolconform.backends.onnxruntime_backend import OnnxRuntimeCPU

    x = make_inputs(case)
    result = _judge(case, OnnxRuntimeCPU().run(case, x), x)
    assert result.status == "pass", result.detail


@pytest.mark.parametrize("op", ["LpPool", "GlobalLpPool", "AveragePool", "GlobalAveragePool"])
def test_large_float64_inputs_with_p3_do_not_raise(op):
    kw = {"kernel": 3, "strides": 2} if not op.startswith("Global") else {}
    if "Lp" in op:
        kw["p"] = 3
    case = make_case(op, (1, 2, 17, 17), dtype="float64", generator="large", **kw)
    x = make_inputs(case)
    expected = reference_outputs(case, x)
    bound = element_tolerance(case, expected[0], x)
    assert np.isfinite(bound).all() and (bound > 0).all()
    assert (bound < np.abs(expected[0]) * 1e-12).all()  # relative to its own window, not astronomic
    assert compare_outputs(case, expected, [expected[0].copy()], x).status == "pass"
    assert compare_outputs(case, expected, [expected[0] * (1 + 1e-9)], x).status == "mismatch"


@pytest.mark.parametrize("dtype", ["float16", "int8", "uint8"])
def test_a_wider_output_dtype_is_a_mismatch(dtype):
    case = make_case("MaxPool", (1, 2, 6, 6), kernel=2, strides=2, dtype=dtype, opset=22)
    x = make_inputs(case)
    expected = reference_outputs(case, x)
    result = compare_outputs(case, expected, [expected[0].astype(np.float64)], x)
    assert result.status == "mismatch"
    assert result.detail == f"dtype float64, expected {dtype}"
    assert compare_outputs(case, expected, [expected[0].astype(dtypes.numpy_dtype(dtype))], x).status == "pass"


def test_indices_must_be_int64():
    case = make_case("MaxPool", (1, 2, 6, 6), kernel=2, strides=2, with_indices=True)
    x = make_inputs(case)
    values, indices = reference_outputs(case, x)
    good = compare_outputs(case, [values, indices], [values.astype(np.float32), indices.astype(np.int64)], x)
    assert good.status == "pass"
    bad = compare_outputs(case, [values, indices], [values.astype(np.float32), indices.astype(np.int32)], x)
    assert bad.status == "mismatch" and bad.detail == "Indices dtype int32, expected int64"


def test_a_float64_average_for_a_float16_model_is_a_mismatch_even_when_more_accurate():
    case = make_case("AveragePool", (1, 2, 6, 6), kernel=3, strides=1, dtype="float16")
    x = make_inputs(case)
    expected = reference_outputs(case, x)
    result = compare_outputs(case, expected, [expected[0]], x)
    assert result.status == "mismatch" and result.detail == "dtype float64, expected float16"


def test_empty_window_note_only_for_a_window_without_elements():
    case = make_case("MaxPool", (1, 1, 4), kernel=2, strides=2)
    x = [np.full(case.input_shape, -np.inf, dtype=np.float32)]
    expected = reference_outputs(case, x)
    lowest = np.full((1, 1, 2), np.finfo(np.float32).min, dtype=np.float32)
    result = compare_outputs(case, expected, [lowest], x)
    assert result.status == "mismatch" and "empty window" not in result.detail
    assert "expected -inf, got -3.40282347e+38" in result.detail


def test_no_bound_is_infinite_even_where_the_model_bounds_nothing():
    # Summing 4096 float16 values in float16: W u = 2, so gamma_W would be infinite; it is capped at 1.
    case = make_case("GlobalAveragePool", (1, 2, 64, 64), dtype="float16")
    x = make_inputs(case)
    expected = reference_outputs(case, x)[0]
    narrow = element_tolerance(case, expected, x, accumulate="float16")
    mean_abs = np.abs(x[0].astype(np.float64)).mean(axis=(2, 3), keepdims=True)
    assert np.isfinite(narrow).all() and (narrow <= mean_abs * 1.01 + 1e-3).all()
    assert (element_tolerance(case, expected, x) < 1e-3).all()  # the float32 model stays tight
