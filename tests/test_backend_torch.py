"""torch-cpu against the float64 oracle: golden values, a sweep, Indices, dtypes, reasons."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import SEED_PRINTED, run_and_compare, sweep_against_oracle

torch = pytest.importorskip("torch")

from poolconform.backends.base import Unsupported  # noqa: E402
from poolconform.backends.torch_backend import TorchCPU, TorchCUDA, onnx_indices  # noqa: E402
from poolconform.case import PoolCase  # noqa: E402
from poolconform.validation import make_case  # noqa: E402
from poolconform.errors import CaseError  # noqa: E402
from poolconform.inputs import make_inputs  # noqa: E402
from poolconform.oracle import reference_outputs  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Run torch as the worker does (one thread): tiny ops otherwise pay for thread wake-ups."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def backend() -> TorchCPU:
    return TorchCPU()


@pytest.mark.parametrize(("op", "expected"), list(SEED_PRINTED.items()))
def test_seed_golden_cases(backend, op, expected):
    kw = {"kernel": 2, "strides": 2} if op in ("MaxPool", "AveragePool") else {}
    case = make_case(op, (1, 1, 4, 4), generator="seed", **kw)
    assert backend.supports(case) is None
    (y,) = backend.run(case, make_inputs(case))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y[0, 0], np.array(expected, dtype=np.float32))


def sweep_cases() -> list[PoolCase]:
    """Hundreds of small cases: kernel 1-4, stride 1-3, sizes 5-9, pads 0/1, every flag."""
    cases = []
    grid = itertools.product(
        ("MaxPool", "AveragePool", "LpPool"), (1, 2, 3), (1, 2, 3, 4), (1, 2, 3), (0, 1), (False, True),
        (False, True), (1, 2),
    )
    for i, (op, rank, k, s, p, ceil, cip, d) in enumerate(grid):
        if (op != "AveragePool" and cip) or (op != "MaxPool" and d != 1) or (op == "LpPool" and ceil):
            continue  # LpPool + ceil_mode is a torch finding: test_lp_pool_findings
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
        for k, s in ((3, 1), (2, 1), (3, 2)):
            cases.append(make_case(op, (2, 2) + (6 + i % 2,) * rank, kernel=k, strides=s, auto_pad=auto_pad))
    for rank in (1, 2, 3):
        for op in ("GlobalMaxPool", "GlobalAveragePool", "GlobalLpPool"):
            cases.append(make_case(op, (2, 3) + (5,) * rank))
    return cases


def test_sweep_matches_oracle_or_says_why_not(backend):
    cases = sweep_cases()
    assert len(cases) > 400
    supported, failures = sweep_against_oracle(backend, cases)
    assert failures == []
    assert supported > 0.6 * len(cases), f"only {supported} of {len(cases)} cases supported"


@pytest.mark.parametrize("storage_order", [0, 1])
@pytest.mark.parametrize(
    ("shape", "kernel", "strides", "pads", "dilations"),
    [
        ((2, 3, 9), 3, 2, 1, 1),
        ((2, 3, 6, 7), 3, 2, 1, 1),
        ((2, 3, 7, 6), 2, 1, 0, 2),
        ((1, 2, 5, 4, 6), 3, 1, 1, 1),
    ],
)
def test_indices_match_onnx_flattening(backend, shape, kernel, strides, pads, dilations, storage_order):
    case = make_case("MaxPool", shape, kernel=kernel, strides=strides, pads=pads, dilations=dilations,
                     with_indices=True, storage_order=storage_order)
    inputs = make_inputs(case)
    values, indices = backend.run(case, inputs)
    expected_values, expected_indices = reference_outputs(case, inputs)
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_array_equal(values.astype(np.float64), expected_values)
    assert "whole-tensor" in backend.note(case)


def test_onnx_indices_adds_plane_offsets_and_transposes_column_major():
    per_plane = np.array([[[[5]], [[0]]], [[[3]], [[1]]]])  # (N=2, C=2, 1, 1) in a 2x3 plane
    np.testing.assert_array_equal(onnx_indices(per_plane, (2, 3), 0).ravel(), [5, 6, 15, 19])
    # row-major 5 = (1, 2) -> column-major 2*2 + 1 = 5; 3 = (1, 0) -> 1; 1 = (0, 1) -> 2
    np.testing.assert_array_equal(onnx_indices(per_plane, (2, 3), 1).ravel(), [5, 6, 13, 20])


@pytest.mark.parametrize(
    ("case", "words"),
    [
        (make_case("AveragePool", (1, 1, 7, 7), kernel=2, dilations=2), "has no dilation"),
        (make_case("LpPool", (1, 1, 7), kernel=2, dilations=2), "has no dilation"),
        (make_case("MaxPool", (1, 1, 7, 7), kernel=3, pads=[0, 1, 1, 1]), "symmetric"),
        (make_case("AveragePool", (1, 1, 6), kernel=2, auto_pad="SAME_UPPER"), "symmetric"),
        (make_case("MaxPool", (1, 1, 7, 7), kernel=3, pads=2), "at most half the kernel"),
        (make_case("MaxPool", (1, 1, 9), kernel=2, dilations=3, pads=2), "at most half the kernel"),
        (make_case("LpPool", (1, 1, 7, 7), kernel=3, pads=1), "has no padding"),
    ],
    ids=lambda v: v.id if isinstance(v, PoolCase) else v,
)
def test_unsupported_reasons(backend, case, words):
    reason = backend.supports(case)
    assert reason is not None and reason.startswith("unsupported: ") and words in reason
    assert "\n" not in reason
    with pytest.raises(Unsupported):  # run() refuses too: no attribute is silently dropped
        backend.run(case, make_inputs(case))


def test_same_with_symmetric_pads_runs_as_explicit_padding(backend):
    case = make_case("AveragePool", (2, 3, 7, 7), kernel=3, strides=1, auto_pad="SAME_LOWER",
                     count_include_pad=True)
    assert backend.supports(case) is None
    assert "padding=(1, 1)" in backend.note(case)
    _, result = run_and_compare(backend, case)
    assert result.status == "pass", result.detail


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool", "GlobalAveragePool"])
def test_float_dtypes_run_in_their_own_type(backend, dtype, op):
    kw = {"kernel": 3, "strides": 2, "pads": 1} if op != "GlobalAveragePool" else {}
    case = make_case(op, (2, 3, 7, 7), dtype=dtype, **kw)
    (y,), result = run_and_compare(backend, case)
    assert y.dtype.name == dtype
    assert result.status == "pass", result.detail


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_int8_max_pool_is_exact_or_the_framework_says_why(backend, rank):
    """No silent upcast: either torch pools int8 itself, exactly, or its own error surfaces."""
    case = make_case("MaxPool", (1, 2) + (6,) * rank, kernel=2, strides=2, dtype="int8")
    try:
        (y,), result = run_and_compare(backend, case)
    except RuntimeError as exc:
        assert "not implemented for 'Char'" in str(exc)
        return
    assert y.dtype == np.int8
    assert result.status == "pass", result.detail


def test_lp_pool_findings_are_run_as_torch_computes_them(backend):
    """torch.lp_pool sums x**p without abs and rescales ceil-mode partial windows by the full
    kernel: the backend must show that, not repair it (findings in torch 2.13)."""
    signed = make_case("LpPool", (1, 2, 8), kernel=2, strides=2, p=1)
    inputs = make_inputs(signed)
    (y,) = backend.run(signed, inputs)
    x = inputs[0].astype(np.float64).reshape(1, 2, 4, 2)
    np.testing.assert_allclose(y, x.sum(axis=-1), rtol=1e-5, atol=1e-6)  # signed sum, not sum(|x|)
    assert run_and_compare(backend, signed)[1].status == "mismatch"
    overhang = make_case("LpPool", (1, 1, 5), kernel=2, strides=2, ceil_mode=True)
    assert backend.supports(overhang) is None
    assert run_and_compare(backend, overhang)[1].status == "mismatch"


def test_global_ops_name_the_torch_call(backend):
    assert backend.note(make_case("GlobalMaxPool", (1, 1, 4, 4))) == "F.adaptive_max_pool2d(x, 1)"
    assert "lp_pool3d" in backend.note(make_case("GlobalLpPool", (1, 1, 3, 3, 3)))


def test_version_and_cuda_availability():
    assert TorchCPU().version().startswith(torch.__version__.split("+")[0])
    reason = TorchCUDA().available()
    if torch.cuda.is_available():
        assert reason is None
    else:
        assert reason is not None and "torch.cuda.is_available() is False" in reason


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_oracle_on_a_small_sweep():
    cuda = TorchCUDA()
    for case in sweep_cases()[::7]:
        if cuda.supports(case) is None:
            assert run_and_compare(cuda, case)[1].status == "pass", case.id
