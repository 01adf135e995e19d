"""Special-value generators: the values have the property each one promises, in every dtype."""

from __future__ import annotations

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

from poolconform import dtypes
from poolconform.case import DTYPES
from poolconform.validation import make_case
from poolconform.errors import CaseError
from poolconform.generators import KNOWNMEAN_BITS, SPECIAL_GENERATORS, generator_rejects, inf_masks, nan_mask
from poolconform.inputs import GENERATORS, make_inputs
from poolconform.oracle import reference_outputs

FLOATS = [d for d in DTYPES if dtypes.is_float(d)]
SHAPE = (2, 3, 7, 6)


def _values(generator: str, dtype: str, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    case = make_case("MaxPool", shape, kernel=2, dtype=dtype, generator=generator)
    (x,) = make_inputs(case)
    assert x.dtype == dtypes.numpy_dtype(dtype) and x.shape == shape
    return x.astype(np.float64)


def _windows(x: np.ndarray, k: int) -> np.ndarray:
    """All k x k stride-1 windows of an (N, C, H, W) array, flattened: (..., k*k)."""
    w = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))
    return w.reshape(*w.shape[:4], k * k)


def test_every_special_generator_is_registered() -> None:
    assert set(SPECIAL_GENERATORS) <= set(GENERATORS)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("generator", sorted(SPECIAL_GENERATORS))
def test_values_are_exact_in_the_dtype_and_deterministic(generator: str, dtype: str) -> None:
    rng_shape = SHAPE
    try:
        raw = SPECIAL_GENERATORS[generator](np.random.default_rng(5), rng_shape, dtype)
    except CaseError as exc:
        assert not dtypes.is_float(dtype) or generator == "negative", exc
        assert repr(dtype) in str(exc)
        return
    assert raw.dtype == np.float64
    roundtrip = raw.astype(dtypes.numpy_dtype(dtype)).astype(np.float64)
    np.testing.assert_array_equal(roundtrip, raw)  # NaN positions compare equal here
    again = SPECIAL_GENERATORS[generator](np.random.default_rng(5), rng_shape, dtype)
    np.testing.assert_array_equal(again, raw)
    first, second = _values(generator, dtype), _values(generator, dtype)
    assert first.tobytes() == second.tobytes()


@pytest.mark.parametrize("generator", ["nan", "inf", "knownmean"])
@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_integer_dtypes_are_refused_with_a_reason(generator: str, dtype: str) -> None:
    with pytest.raises(CaseError, match=f"generator '{generator}' needs a float dtype, not '{dtype}'"):
        _values(generator, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ties_put_repeated_maxima_in_windows(dtype: str) -> None:
    windows = _windows(_values("ties", dtype), 2)
    repeated = (windows == windows.max(axis=-1, keepdims=True)).sum(axis=-1) >= 2
    assert repeated.mean() > 0.3
    assert set(np.unique(windows)) <= {0.0, 1.0, 2.0}


@pytest.mark.parametrize("dtype", DTYPES)
def test_equal_is_constant(dtype: str) -> None:
    x = _values("equal", dtype)
    assert np.all(x == x.flat[0])


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16", "int8"])
def test_negative_is_strictly_negative(dtype: str) -> None:
    x = _values("negative", dtype)
    assert np.all(x < 0)
    assert len(np.unique(x)) > 10


def test_negative_refuses_uint8() -> None:
    with pytest.raises(CaseError, match="'uint8'"):
        _values("negative", "uint8")


@pytest.mark.parametrize("dtype", FLOATS)
def test_large_overflows_a_dtype_accumulator_but_not_the_mean(dtype: str) -> None:
    x = _values("large", dtype)
    top = float(ml_dtypes.finfo(dtypes.numpy_dtype(dtype)).max)
    assert np.all(x <= top / 8) and np.all(x >= 0.89 * top / 8)
    np_type = dtypes.numpy_dtype(dtype)
    windows = _windows(x, 3).reshape(-1, 9)
    with np.errstate(over="ignore"):
        running = windows[:, 0].astype(np_type)
        for j in range(1, 9):
            running = (running + windows[:, j].astype(np_type)).astype(np_type)
    assert np.all(np.isinf(running))
    means = windows.astype(np.longdouble).sum(axis=1) / 9
    assert np.all(np.isfinite(means.astype(np_type)))


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_large_integers_sit_in_the_top_eighth(dtype: str) -> None:
    x = _values("large", dtype)
    top = np.iinfo(dtypes.numpy_dtype(dtype)).max
    assert x.min() >= top - top // 8 and x.max() <= top


@pytest.mark.parametrize("dtype", FLOATS)
def test_nan_sits_exactly_at_the_documented_positions(dtype: str) -> None:
    x = _values("nan", dtype)
    mask = nan_mask(SHAPE)
    np.testing.assert_array_equal(np.isnan(x), mask)
    assert mask.reshape(-1)[3] and mask.reshape(-1)[10] and not mask.reshape(-1)[4]
    assert np.all(np.isfinite(x[~mask]))


@pytest.mark.parametrize("dtype", FLOATS)
def test_inf_sits_exactly_at_the_documented_positions(dtype: str) -> None:
    x = _values("inf", dtype)
    positive, negative = inf_masks(SHAPE)
    np.testing.assert_array_equal(x == np.inf, positive)
    np.testing.assert_array_equal(x == -np.inf, negative)
    assert positive.reshape(-1)[2] and negative.reshape(-1)[7]
    assert np.all(np.isfinite(x[~(positive | negative)]))


@pytest.mark.parametrize("dtype", FLOATS)
def test_knownmean_window_sums_are_exact_in_float64(dtype: str) -> None:
    x = _values("knownmean", dtype, (1, 2, 9, 9))
    assert np.all((x >= 1) & (x < 2))
    step = Fraction(1, 2 ** (KNOWNMEAN_BITS[dtype] - 1))
    for window in _windows(x, 7).reshape(-1, 49)[:20]:
        exact = sum(Fraction(v) for v in window)
        assert all(Fraction(v) % step == 0 for v in window)
        assert Fraction(float(np.sum(window))) == exact


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_knownmean_exposes_accumulation_in_the_dtype(dtype: str) -> None:
    x = _values("knownmean", dtype, (1, 1, 9, 9))
    np_type = dtypes.numpy_dtype(dtype)
    windows = _windows(x, 7).reshape(-1, 49)
    running = windows[:, 0].astype(np_type)
    for j in range(1, 49):
        running = (running + windows[:, j].astype(np_type)).astype(np_type)
    assert np.any(running.astype(np.float64) != windows.sum(axis=1))


def test_oracle_mean_of_knownmean_is_the_correctly_rounded_exact_mean() -> None:
    case = make_case("AveragePool", (1, 1, 9, 9), kernel=7, dtype="float16", generator="knownmean")
    (x,) = make_inputs(case)
    (y,) = reference_outputs(case, [x])
    windows = _windows(x.astype(np.float64), 7).reshape(-1, 49)
    exact = [float(sum(Fraction(v) for v in w) / 49) for w in windows]
    np.testing.assert_array_equal(np.asarray(y, dtype=np.float64).reshape(-1), exact)


def test_onnxruntime_max_over_negative_padding_stays_negative() -> None:
    """A real backend on the 'negative' generator: padded windows must not report 0."""
    ort = pytest.importorskip("onnxruntime")
    from poolconform.onnx_export import model_bytes

    case = make_case("MaxPool", (1, 2, 5, 5), kernel=3, pads=1, generator="negative")
    (x,) = make_inputs(case)
    session = ort.InferenceSession(model_bytes(case), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"X": x})
    assert np.all(y < 0)
    np.testing.assert_array_equal(y, np.asarray(reference_outputs(case, [x])[0], dtype=np.float32))


def test_generator_rejects_answers_before_any_input_is_made() -> None:
    assert generator_rejects("nan", "float16") is None
    assert generator_rejects("normal", "int8") is None
    assert "'int8'" in (generator_rejects("inf", "int8") or "")
    assert "'uint8'" in (generator_rejects("negative", "uint8") or "")
    assert "allowed:" in (generator_rejects("nope", "float32") or "")
