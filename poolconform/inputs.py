"""Deterministic inputs for a case: the same id gives the same bytes on every machine.

Each generator is a function (rng, shape, dtype) -> float64 array of values that are
exactly representable in the dtype; the seed comes from the case id, not from run
order, so a shard, a resume or a repro script regenerates identical inputs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from poolconform import dtypes
from poolconform.case import PoolCase
from poolconform.errors import CaseError

#: The seed tutorial's 4x4 feature map (ONNX layout 1x1x4x4).
SEED_INPUT = np.array(
    [[2, 2, 7, 3], [9, 4, 6, 1], [8, 5, 2, 4], [3, 1, 2, 6]],
    dtype=np.float64,
).reshape(1, 1, 4, 4)

Generator = Callable[[np.random.Generator, tuple[int, ...], str], np.ndarray]


def _normal(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    if dtype == "uint8":
        return rng.integers(0, 256, size=shape).astype(np.float64)
    if dtype == "int8":
        return rng.integers(-128, 128, size=shape).astype(np.float64)
    return rng.standard_normal(shape)


def _seed(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    if shape != SEED_INPUT.shape:
        raise CaseError(f"generator 'seed' is the tutorial's 1x1x4x4 map; input_shape {shape!r} does not fit")
    return SEED_INPUT.copy()


GENERATORS: dict[str, Generator] = {
    "normal": _normal,
    "seed": _seed,
}


def register_generator(name: str, fn: Generator) -> None:
    """Add a generator (poolconform.generators registers the special-value ones)."""
    GENERATORS[name] = fn


def case_seed(case: PoolCase) -> int:
    """A 64-bit seed from the case id, stable across processes and platforms."""
    return int.from_bytes(hashlib.sha256(case.id.encode()).digest()[:8], "little")


def make_inputs(case: PoolCase) -> list[np.ndarray]:
    """The case's input tensors in its dtype (ONNX layout)."""
    import poolconform.generators  # noqa: F401  registers the special-value generators

    try:
        generator = GENERATORS[case.generator]
    except KeyError:
        raise CaseError(f"unknown generator {case.generator!r}; allowed: {', '.join(sorted(GENERATORS))}") from None
    rng = np.random.default_rng(case_seed(case))
    values = generator(rng, case.input_shape, case.dtype)
    return [values.astype(dtypes.numpy_dtype(case.dtype))]
