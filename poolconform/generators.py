"""Special-value input generators: each one built to expose one way pooling goes wrong.

Every generator is `fn(rng, shape, dtype) -> float64 array` whose values are exactly
representable in `dtype` (the caller casts without rounding). They are listed in the
GENERATORS table at the end; a case picks one with its `generator` field.

- ties:      small integers 0..2, so many windows hold several equal maxima (which index Indices returns).
- equal:     one constant everywhere (tie-breaking of Indices; averages that must be exact).
- negative:  values < 0 only (a max that starts from 0 instead of -inf; padding leaking into max).
- large:     magnitudes just under max/8 of the dtype: a window of 9+ elements overflows a dtype accumulator.
- nan:       NaN at every flat index i with i % 7 == 3, normal values elsewhere (NaN propagation).
- inf:       +Inf where i % 11 == 2, -Inf where i % 11 == 7, normal elsewhere (inf arithmetic, inf - inf).
- knownmean: values in [1, 2) that use every significand bit of the dtype; any window sum is exact in
             float64, so the oracle's average is the correctly rounded true mean and any error is the backend's.
"""

from __future__ import annotations

from collections.abc import Callable

import ml_dtypes
import numpy as np
from numpy.typing import ArrayLike

from poolconform import dtypes
from poolconform.errors import CaseError

Generator = Callable[[np.random.Generator, tuple[int, ...], str], np.ndarray]

#: The seed tutorial's 4x4 feature map (ONNX layout 1x1x4x4): the `seed` generator's only input.
SEED_INPUT = np.array(
    [[2, 2, 7, 3], [9, 4, 6, 1], [8, 5, 2, 4], [3, 1, 2, 6]],
    dtype=np.float64,
).reshape(1, 1, 4, 4)
SEED_SHAPE: tuple[int, ...] = SEED_INPUT.shape

#: Flat-index rules of the nan and inf generators (documented, asserted by the tests).
NAN_PERIOD, NAN_OFFSET = 7, 3
INF_PERIOD, POS_INF_OFFSET, NEG_INF_OFFSET = 11, 2, 7

#: Significand bits (implicit bit included) that knownmean values use per float dtype.
#: float64 keeps 16 bits of headroom so sums of up to 65536 values stay exact in float64.
KNOWNMEAN_BITS = {"float16": 11, "bfloat16": 8, "float32": 24, "float64": 37}


def _representable(values: ArrayLike, dtype: str) -> np.ndarray:
    """Round float64 values to the dtype and back, so the cast in make_inputs is exact."""
    return np.asarray(values, dtype=np.float64).astype(dtypes.numpy_dtype(dtype)).astype(np.float64)


def _float_only(name: str, dtype: str, why: str) -> None:
    if not dtypes.is_float(dtype):
        raise CaseError(f"generator {name!r} needs a float dtype, not {dtype!r}: {why}")


def _finite_max(dtype: str) -> float:
    if dtypes.is_float(dtype):
        return float(ml_dtypes.finfo(dtypes.numpy_dtype(dtype)).max)
    return float(np.iinfo(dtypes.numpy_dtype(dtype)).max)


def normal(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Standard normal values (integers: uniform over the dtype's whole range)."""
    if dtype == "uint8":
        return rng.integers(0, 256, size=shape).astype(np.float64)
    if dtype == "int8":
        return rng.integers(-128, 128, size=shape).astype(np.float64)
    return rng.standard_normal(shape)


def seed_rejects(shape: tuple[int, ...]) -> str | None:
    """Why the seed tutorial's map cannot fill an input of this shape (the one place of the rule)."""
    if tuple(shape) == SEED_SHAPE:
        return None
    fits = "x".join(str(v) for v in SEED_SHAPE)
    return f"generator 'seed' is the tutorial's {fits} map; input_shape {tuple(shape)!r} does not fit"


def seed(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """The seed tutorial's 4x4 map, whatever the rng."""
    reason = seed_rejects(shape)
    if reason:
        raise CaseError(reason)
    return SEED_INPUT.copy()


def _normal_values(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    return _representable(rng.standard_normal(shape), dtype)


def ties(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Integers 0, 1, 2: a 2x2 window holds its maximum twice or more in about half the cases."""
    return rng.integers(0, 3, size=shape).astype(np.float64)


def equal(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """The constant 1.5 (5 for integers): every window is all-equal, every average exact."""
    return np.full(shape, 1.5 if dtypes.is_float(dtype) else 5.0)


def negative(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Strictly negative values: a max initialised to 0, or zero padding taking part, shows as 0."""
    if dtype == "uint8":
        raise CaseError(f"generator 'negative' cannot make negative values in dtype {dtype!r}")
    if dtype == "int8":
        return rng.integers(-128, 0, size=shape).astype(np.float64)
    return _representable(-(np.abs(rng.standard_normal(shape)) + 0.5), dtype)


def large(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Positive values in [0.9, 1) * max/8: 9 or more of them sum past the dtype's largest finite.

    The true average stays in range, so an overflow to inf is the backend accumulating in the
    dtype. Integer dtypes (MaxPool only, nothing sums) get the top eighth of their range.
    """
    top = _finite_max(dtype)
    if not dtypes.is_float(dtype):
        low = top - top // 8
        return rng.integers(int(low), int(top) + 1, size=shape).astype(np.float64)
    values = _representable(rng.uniform(0.9, 1.0, size=shape) * (top / 8), dtype)
    return np.minimum(values, _representable(np.float64(top / 8), dtype))


def nan_mask(shape: tuple[int, ...]) -> np.ndarray:
    """Where the nan generator puts NaN: flat index i with i % 7 == 3."""
    return (np.arange(int(np.prod(shape))) % NAN_PERIOD == NAN_OFFSET).reshape(shape)


def inf_masks(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Where the inf generator puts +Inf (i % 11 == 2) and -Inf (i % 11 == 7)."""
    flat = np.arange(int(np.prod(shape))) % INF_PERIOD
    return (flat == POS_INF_OFFSET).reshape(shape), (flat == NEG_INF_OFFSET).reshape(shape)


def nan(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Normal values with NaN at the positions of nan_mask."""
    _float_only("nan", dtype, "integers have no NaN")
    values = _normal_values(rng, shape, dtype)
    values[nan_mask(shape)] = np.nan
    return values


def inf(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Normal values with +Inf and -Inf at the positions of inf_masks."""
    _float_only("inf", dtype, "integers have no infinity")
    values = _normal_values(rng, shape, dtype)
    positive, negative_ = inf_masks(shape)
    values[positive] = np.inf
    values[negative_] = -np.inf
    return values


def knownmean(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Values 1 + j * 2**-(b-1), 0 <= j < 2**(b-1), with b = KNOWNMEAN_BITS[dtype].

    Each value is exact in the dtype and uses all its significand bits, so summing in the
    dtype rounds as soon as two values are added; summing in float64 never rounds (for
    windows up to 2**(53-b) elements). Known exactly: every window's sum, hence the oracle's
    average is the true mean rounded once. Measured: the backend's accumulation error.
    """
    _float_only("knownmean", dtype, "no ONNX averaging operator accepts integer types")
    step_bits = KNOWNMEAN_BITS[dtype] - 1
    j = rng.integers(0, 2**step_bits, size=shape).astype(np.float64)
    return 1.0 + j * 2.0**-step_bits


def generator_rejects(name: str, dtype: str, shape: tuple[int, ...] | None = None) -> str | None:
    """Why generator `name` cannot make inputs of `dtype` (e.g. nan for int8), or of `shape`
    when one is given (seed's 4x4 map), or None when it can."""
    if name not in GENERATORS:
        return f"unknown generator {name!r}; allowed: {', '.join(sorted(GENERATORS))}"
    if name == "seed":
        return seed_rejects(shape) if shape is not None else None  # shape-bound, not dtype-bound
    try:
        GENERATORS[name](np.random.default_rng(0), (1, 1, 1), dtype)
    except CaseError as exc:
        return str(exc)
    return None


SPECIAL_GENERATORS = {
    "ties": ties,
    "equal": equal,
    "negative": negative,
    "large": large,
    "nan": nan,
    "inf": inf,
    "knownmean": knownmean,
}

#: Every generator by name: a plain table, no registration at import.
GENERATORS: dict[str, Generator] = {"normal": normal, "seed": seed, **SPECIAL_GENERATORS}
