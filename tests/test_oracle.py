"""The float64 oracle against ONNX Runtime's values, and the seed's golden examples."""

import itertools

import numpy as np
import pytest
from conftest import SEED_PRINTED

from poolconform.case import make_case
from poolconform.compare import compare_outputs
from poolconform.errors import CaseError
from poolconform.inputs import SEED_INPUT, make_inputs
from poolconform.matrix import golden_cases
from poolconform.oracle import reference_outputs



@pytest.mark.parametrize("case", golden_cases(), ids=lambda c: c.id)
def test_oracle_reproduces_the_seed_examples_exactly(case):
    (y,) = reference_outputs(case, make_inputs(case))
    np.testing.assert_array_equal(y[0, 0], np.array(SEED_PRINTED[case.op]))
    np.testing.assert_array_equal(make_inputs(case)[0].astype(np.float64), SEED_INPUT)


def test_oracle_matches_onnxruntime_over_a_sweep():
    pytest.importorskip("onnxruntime")
    from poolconform.backends.onnxruntime_backend import OnnxRuntimeCPU

    ort = OnnxRuntimeCPU()
    checked = 0
    for op, rank, k, s, p, d, ceil, cip in itertools.product(
        ("MaxPool", "AveragePool", "LpPool"), (1, 2, 3), (1, 2, 3), (1, 2), (0, 1), (1, 2), (False, True), (False, True)
    ):
        if (op != "AveragePool" and cip) or (op == "LpPool" and (ceil or d > 1)) or p >= k:
            continue
        shape = (2, 3) + (6, 7, 5)[:rank]
        try:
            case = make_case(op, shape, kernel=k, strides=s, pads=p, dilations=d, ceil_mode=ceil,
                             count_include_pad=cip, opset=22 if op != "LpPool" else 18)
        except CaseError:
            continue
        x = make_inputs(case)
        result = compare_outputs(case, reference_outputs(case, x), ort.run(case, x), x)
        assert result.status == "pass", (case.id, result.detail)
        checked += 1
    assert checked > 300


@pytest.mark.parametrize("storage_order", [0, 1])
def test_indices_flatten_over_batch_and_channel_like_onnxruntime(storage_order):
    pytest.importorskip("onnxruntime")
    from poolconform.backends.onnxruntime_backend import OnnxRuntimeCPU

    case = make_case("MaxPool", (2, 3, 5, 6), kernel=[2, 3], strides=[2, 1], pads=[1, 0, 1, 1], with_indices=True,
                     storage_order=storage_order)
    x = make_inputs(case)
    values, indices = reference_outputs(case, x)
    ort_values, ort_indices = OnnxRuntimeCPU().run(case, x)
    np.testing.assert_array_equal(indices, ort_indices)
    assert indices.max() >= 5 * 6 * 5  # batch and channel are part of the flat index
    np.testing.assert_array_equal(values, ort_values)


def test_empty_window_and_nan_semantics_are_explicit():
    # n=1, kernel 2 dilated by 2, pads 1: the only window reads positions -1 and 1, both padding.
    case = make_case("MaxPool", (1, 1, 1), kernel=2, strides=1, pads=1, dilations=2)
    (y,) = reference_outputs(case, [np.array([[[5.0]]])])
    assert y.shape == (1, 1, 1) and np.isneginf(y[0, 0, 0])
    avg = case.replace(op="AveragePool")
    (y,) = reference_outputs(avg, [np.array([[[5.0]]])])
    assert np.isnan(y[0, 0, 0])  # 0 / 0 elements
    case = make_case("MaxPool", (1, 1, 4), kernel=2, strides=2)
    (y,) = reference_outputs(case, [np.array([[[1.0, np.nan, 3.0, 4.0]]])])
    assert np.isnan(y[0, 0, 0]) and y[0, 0, 1] == 4.0  # NaN propagates, like IEEE max
