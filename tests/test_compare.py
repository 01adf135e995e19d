"""Comparison: shape first, then values; NaN by position; figures on every result."""

import numpy as np

from poolconform import dtypes
from poolconform.validation import make_case
from poolconform.compare import compare_outputs, element_tolerance, tolerance
from poolconform.inputs import make_inputs
from poolconform.oracle import reference_outputs


def _setup(op="AveragePool", **kw):
    case = make_case(op, (1, 2, 6, 6), kernel=3, strides=1, **kw)
    x = make_inputs(case)
    return case, x, reference_outputs(case, x)


def test_exact_float32_result_passes_with_zero_figures():
    case, x, expected = _setup("MaxPool")
    result = compare_outputs(case, expected, [expected[0].astype(np.float32)], x)
    assert result.status == "pass" and result.max_abs_err == 0 and result.max_ulp == 0


def test_shape_is_judged_before_values():
    case, x, expected = _setup()
    result = compare_outputs(case, expected, [np.zeros((1, 2, 3, 3), np.float32)], x)
    assert result.status == "shape-mismatch"
    assert "(1, 2, 3, 3)" in result.detail and "(1, 2, 4, 4)" in result.detail


def test_averaging_tolerance_is_per_element_and_a_wrong_divisor_fails():
    case, x, expected = _setup()
    bound = element_tolerance(case, expected[0], x)
    assert bound.shape == expected[0].shape and (bound > 0).all() and bound.max() < 1e-5
    assert tolerance(case, expected[0], x) == bound.max()
    noisy = expected[0] + bound * 0.9 * np.sign(np.random.default_rng(0).standard_normal(bound.shape))
    assert compare_outputs(case, expected, [noisy.astype(np.float32)], x).status == "pass"
    wrong = (expected[0] * 9 / 8).astype(np.float32)  # divided by 8 instead of 9
    result = compare_outputs(case, expected, [wrong], x)
    assert result.status == "mismatch" and result.max_ulp > 1000
    assert "expected" in result.detail and "element(s) differ" in result.detail


def test_max_is_exact_one_ulp_off_fails():
    case, x, expected = _setup("MaxPool")
    y = expected[0].astype(np.float32)
    y.flat[3] = np.nextafter(y.flat[3], np.float32(np.inf))
    result = compare_outputs(case, expected, [y], x)
    assert result.status == "mismatch" and result.max_ulp == 1


def test_nan_dropped_is_named():
    case, x, expected = _setup("MaxPool")
    e = [expected[0].copy()]
    e[0].flat[0] = np.nan
    actual = expected[0].astype(np.float32)
    result = compare_outputs(case, e, [actual], x)
    assert result.status == "mismatch" and result.detail.startswith("NaN dropped")
    both = compare_outputs(case, e, [e[0].astype(np.float32)], x)
    assert both.status == "pass"


def test_ulp_distance_counts_representable_values():
    a = np.array([1.0, -1.0, 0.0])
    b = np.array([np.nextafter(np.float32(1), np.float32(2)), -1.0, -0.0])
    assert list(dtypes.ulp_distance(a, b.astype(np.float64), "float32")) == [1, 0, 0]
    assert dtypes.ulp_distance(np.array([1.0]), np.array([1.0078125]), "bfloat16")[0] == 1


def test_an_extra_output_is_a_shape_mismatch():
    """A backend that appends an array: zip() used to drop it and judge the rest."""
    case, x, expected = _setup("MaxPool")
    right = expected[0].astype(np.float32)
    result = compare_outputs(case, expected, [right, np.zeros(3, np.float32)], x)
    assert result.status == "shape-mismatch" and "returned 2 output(s), expected 1" in result.detail


def test_an_average_passes_only_as_one_of_the_two_values_around_the_exact_one():
    """The exact mean rounded either way passes; the next value beyond (1.5 ULP from the exact
    mean of an exact float16 tie) used to pass as "1 ULP from the rounded value"."""
    case = make_case("AveragePool", (1, 1, 2), kernel=2, strides=1, dtype="float16")
    x = [np.array([[[-0.25244140625, -0.252197265625]]], np.float16)]  # two neighbours: the mean is a tie
    expected = reference_outputs(case, x)
    e = float(expected[0].ravel()[0])
    low, high = (float(v[0]) for v in dtypes.bracket(np.array([e]), "float16"))
    assert low < e < high
    for value, status in ((low, "pass"), (high, "pass"),
                          (float(np.nextafter(np.float16(high), np.float16(1))), "mismatch"),
                          (float(np.nextafter(np.float16(low), np.float16(-1))), "mismatch")):
        got = compare_outputs(case, expected, [np.full((1, 1, 1), value, np.float16)], x)
        assert got.status == status, (value, got)


def test_an_infinite_average_is_not_matched_by_the_largest_finite_value():
    """inf against the type's largest finite was 0 ULP for float64 and 1 for the others, so
    the "rounded either way" rule let it pass on every averaging op."""
    for dtype in ("float64", "float32", "float16"):
        case = make_case("AveragePool", (1, 1, 2), kernel=2, strides=1, dtype=dtype)
        np_type = dtypes.numpy_dtype(dtype)
        x = [np.array([[[np.inf, 1.0]]], np_type)]
        expected = reference_outputs(case, x)
        assert np.isposinf(expected[0]).all()
        largest = np.full((1, 1, 1), np.finfo(np_type).max, np_type)
        assert compare_outputs(case, expected, [largest], x).status == "mismatch", dtype
        assert compare_outputs(case, expected, [np.full((1, 1, 1), np.inf, np_type)], x).status == "pass"
