"""Behaviour the frameworks really differ on comes out as named findings, not normalised away.

Each test runs the real framework and asserts what poolconform reports about it. They pin
today's versions' behaviour: when a release changes it, the test says so.
"""

import numpy as np
import pytest

from poolconform.validation import make_case
from poolconform.compare import compare_outputs
from poolconform.oracle import reference_outputs


def _judge(backend, case, x):
    x = np.asarray(x, dtype=np.float64)
    expected = reference_outputs(case, [x])
    actual = backend.run(case, [x.astype(np.float32)])
    return actual, compare_outputs(case, expected, actual, [x])


@pytest.fixture(scope="module")
def ort():
    pytest.importorskip("onnxruntime")
    from poolconform.backends.onnxruntime_backend import OnnxRuntimeCPU

    return OnnxRuntimeCPU()


@pytest.fixture(scope="module")
def torch_cpu():
    pytest.importorskip("torch")
    from poolconform.backends.torch_backend import TorchCPU

    return TorchCPU()


@pytest.mark.parametrize("op", ["MaxPool", "GlobalMaxPool"])
def test_nan_inside_a_max_window_onnxruntime_drops_it_torch_keeps_it(ort, torch_cpu, op):
    case = make_case(op, (1, 1, 4), kernel=2, strides=2) if op == "MaxPool" else make_case(op, (1, 1, 4))
    x = [[[1.0, np.nan, 3.0, 4.0]]]
    _, ort_result = _judge(ort, case, x)
    assert ort_result.status == "mismatch" and ort_result.detail.startswith("NaN dropped")
    _, torch_result = _judge(torch_cpu, case, x)
    assert torch_result.status == "pass"


def test_window_of_only_padding_is_named(ort):
    # kernel 2 dilated by 2 over one element with pads 1: the window reads positions -1 and 1.
    case = make_case("MaxPool", (1, 1, 1), kernel=2, strides=1, pads=1, dilations=2)
    actual, result = _judge(ort, case, [[[5.0]]])
    assert actual[0].item() == np.finfo(np.float32).min
    assert result.status == "mismatch" and "for an empty window" in result.detail


def test_float32_average_near_the_maximum_overflows_in_both(ort, torch_cpu):
    case = make_case("GlobalAveragePool", (1, 1, 8, 8))
    x = np.full((1, 1, 8, 8), 3e38)
    for backend in (ort, torch_cpu):
        actual, result = _judge(backend, case, x)
        assert np.isinf(actual[0]).all(), backend.name
        assert result.status == "mismatch" and "expected 3e+38, got inf" in result.detail
