"""Raw TensorFlow against the float64 oracle: golden values, a sweep, argmax Indices, reasons."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import SEED_PRINTED, run_and_compare, sweep_against_oracle

tf = pytest.importorskip("tensorflow")

from poolconform.backends.base import Unsupported  # noqa: E402
from poolconform.backends.tensorflow_backend import TensorFlow, nhwc_argmax_to_onnx  # noqa: E402
from poolconform.case import PoolCase  # noqa: E402
from poolconform.validation import make_case  # noqa: E402
from poolconform.errors import CaseError  # noqa: E402
from poolconform.inputs import make_inputs  # noqa: E402
from poolconform.oracle import reference_outputs  # noqa: E402


@pytest.fixture(scope="module")
def backend() -> TensorFlow:
    return TensorFlow()


@pytest.mark.parametrize(("op", "expected"), list(SEED_PRINTED.items()))
def test_seed_golden_cases(backend, op, expected):
    kw = {"kernel": 2, "strides": 2} if op in ("MaxPool", "AveragePool") else {}
    case = make_case(op, (1, 1, 4, 4), generator="seed", **kw)
    assert backend.supports(case) is None
    (y,) = backend.run(case, make_inputs(case))
    assert y.shape == (1, 1) + np.array(expected).shape
    np.testing.assert_array_equal(y[0, 0], np.array(expected, dtype=np.float32))


def sweep_cases() -> list[PoolCase]:
    """Hundreds of small cases: kernel 1-4, stride 1-3, sizes 5-9, pads 0/1, every flag."""
    cases = []
    grid = itertools.product(
        ("MaxPool", "AveragePool"), (1, 2, 3), (1, 2, 3, 4), (1, 2, 3), (0, 1), (False, True), (False, True), (1, 2),
    )
    for i, (op, rank, k, s, p, ceil, cip, d) in enumerate(grid):
        if op == "MaxPool" and cip:
            continue
        n = 5 + i % 5 if rank < 3 else 5 + i % 2
        shape = (2, 3) + (n,) * rank if i % 3 else (1, 1) + (n,) * rank
        try:
            cases.append(make_case(op, shape, kernel=k, strides=s, pads=p, dilations=d, ceil_mode=ceil,
                                   count_include_pad=cip))
        except CaseError:
            continue
    for i, (op, rank, auto_pad) in enumerate(
        itertools.product(("MaxPool", "AveragePool"), (1, 2, 3), ("VALID", "SAME_UPPER", "SAME_LOWER"))
    ):
        for k, s in ((3, 1), (2, 1), (3, 2), (4, 3)):
            cases.append(make_case(op, (2, 2) + (6 + i % 2,) * rank, kernel=k, strides=s, auto_pad=auto_pad))
    for rank in (1, 2, 3):
        for op in ("GlobalMaxPool", "GlobalAveragePool", "GlobalLpPool", "LpPool"):
            kw = {"kernel": 2} if op == "LpPool" else {}
            cases.append(make_case(op, (2, 3) + (5,) * rank, **kw))
    return cases


def test_sweep_matches_oracle_or_says_why_not(backend):
    cases = sweep_cases()
    assert len(cases) > 400
    supported, failures = sweep_against_oracle(backend, cases)
    assert failures == []
    # tf.nn has no ceil_mode, Lp pooling, count_include_pad or padded dilation: fewer cases fit.
    assert supported > 0.35 * len(cases), f"only {supported} of {len(cases)} cases supported"


@pytest.mark.parametrize("storage_order", [0, 1])
@pytest.mark.parametrize(
    ("shape", "kernel", "strides", "auto_pad"),
    [((2, 3, 6, 7), 3, 2, "VALID"), ((2, 3, 7, 5), 3, 1, "SAME_UPPER"), ((3, 2, 8, 8), 2, 2, "SAME_UPPER")],
)
def test_argmax_indices_match_onnx_flattening(backend, shape, kernel, strides, auto_pad, storage_order):
    case = make_case("MaxPool", shape, kernel=kernel, strides=strides, auto_pad=auto_pad, with_indices=True,
                     storage_order=storage_order)
    assert backend.supports(case) is None
    inputs = make_inputs(case)
    values, indices = backend.run(case, inputs)
    expected_values, expected_indices = reference_outputs(case, inputs)
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_array_equal(values.astype(np.float64), expected_values)
    assert "NCHW" in backend.note(case)


def test_argmax_conversion_by_hand():
    # N=1, H=2, W=3, C=2; TF flattens ((b*H + y)*W + x)*C + c.
    # channel 0 chose (y=1, x=0): TF 6; channel 1 chose (y=0, x=1): TF 3.
    argmax = np.array([[[[6, 3]]]])  # NHWC (1, 1, 1, 2)
    row = nhwc_argmax_to_onnx(argmax, (1, 2, 2, 3), storage_order=0)
    np.testing.assert_array_equal(row.ravel(), [1 * 3 + 0, 6 + 0 * 3 + 1])  # (b*C + c)*H*W + y*W + x
    column = nhwc_argmax_to_onnx(argmax, (1, 2, 2, 3), storage_order=1)
    np.testing.assert_array_equal(column.ravel(), [0 * 2 + 1, 6 + 1 * 2 + 0])  # ... + x*H + y


@pytest.mark.parametrize(
    ("case", "words"),
    [
        (make_case("AveragePool", (1, 1, 7, 7), kernel=3, strides=2, pads=[0, 0, 1, 1]), "explicit pads"),
        (make_case("MaxPool", (1, 1, 6, 6, 6), kernel=3, pads=[1, 0, 0, 0, 1, 1]), "explicit pads"),
        (make_case("MaxPool", (1, 1, 7, 7), kernel=3, strides=2, pads=[0, 1, 1, 0], with_indices=True),
         "'SAME' or 'VALID'"),
        (make_case("AveragePool", (1, 1, 7, 7), kernel=3, auto_pad="SAME_UPPER", count_include_pad=True),
         "excludes padding"),
        (make_case("MaxPool", (1, 1, 8, 8), kernel=3, strides=2, ceil_mode=True), "no ceil_mode"),
        (make_case("MaxPool", (1, 1, 9, 9), kernel=2, strides=2, dilations=2), "strides 1"),
        (make_case("MaxPool", (1, 1, 9), kernel=2, dilations=2, auto_pad="SAME_UPPER"), "'SAME' with dilations"),
        (make_case("MaxPool", (1, 1, 9, 9), kernel=2, dilations=2, pads=[1, 0, 0, 0]), "documents only"),
        (make_case("LpPool", (1, 1, 6, 6), kernel=2), "no Lp pooling"),
        # ONNX itself has no int8 AveragePool (make_case refuses it); a hand-built case still gets a reason.
        (make_case("AveragePool", (1, 1, 6, 6), kernel=2).replace(dtype="int8"), "not 'int8'"),
        (make_case("MaxPool", (1, 1, 6, 6, 6), kernel=2, dtype="float64"), "not 'float64'"),
        (make_case("MaxPool", (1, 1, 6, 6, 6), kernel=2, with_indices=True), "2-D only"),
    ],
    ids=lambda v: v.id if isinstance(v, PoolCase) else v,
)
def test_unsupported_reasons(backend, case, words):
    reason = backend.supports(case)
    assert reason is not None and reason.startswith("unsupported: ") and words in reason
    assert "\n" not in reason
    with pytest.raises(Unsupported):  # run() refuses too, never emulates
        backend.run(case, make_inputs(case))


@pytest.mark.parametrize("rank", [1, 2])
def test_explicit_asymmetric_pads_on_max_pool(backend, rank):
    pads = [0, 1] if rank == 1 else [1, 0, 0, 2]
    case = make_case("MaxPool", (2, 3) + (7,) * rank, kernel=3, strides=2, pads=pads, generator="negative")
    assert backend.supports(case) is None
    assert "explicit paddings" in backend.note(case)
    _, result = run_and_compare(backend, case)
    assert result.status == "pass", result.detail


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
def test_onnx_pads_equal_to_same_run_as_same(backend, op):
    case = make_case(op, (2, 3, 8, 8), kernel=3, strides=2, pads=[0, 0, 1, 1])  # SAME_UPPER's pads
    assert backend.supports(case) is None
    assert "'SAME'" in backend.note(case) and "NHWC via transpose" in backend.note(case)
    _, result = run_and_compare(backend, case)
    assert result.status == "pass", result.detail


def test_ceil_mode_without_effect_runs_in_floor_mode(backend):
    case = make_case("AveragePool", (1, 2, 7, 7), kernel=3, strides=2, ceil_mode=True)  # (7-3)/2 exact
    assert backend.supports(case) is None
    assert "ceil_mode" in backend.note(case)
    assert run_and_compare(backend, case)[1].status == "pass"


def test_dilation_with_unit_strides_runs_through_tf_nn_pool(backend):
    case = make_case("MaxPool", (2, 3, 9, 9), kernel=2, dilations=[2, 3])
    assert "tf.nn.pool" in backend.note(case)
    assert run_and_compare(backend, case)[1].status == "pass"


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64", "int8", "uint8"])
def test_dtypes_run_in_their_own_type(backend, dtype):
    case = make_case("MaxPool", (2, 3, 7, 7), kernel=3, strides=2, auto_pad="SAME_UPPER", dtype=dtype)
    (y,), result = run_and_compare(backend, case)
    assert y.dtype.name == dtype
    assert result.status == "pass", result.detail


def test_version_is_the_real_tensorflow_version(backend):
    assert backend.available() is None
    assert backend.version() == tf.__version__
