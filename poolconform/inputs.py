"""Deterministic inputs for a case: the same id gives the same bytes on every machine.

Each generator (poolconform.generators) is a function (rng, shape, dtype) -> float64
array of values that are exactly representable in the dtype; the seed comes from the case id, not from run
order, so a shard, a resume or a repro script regenerates identical inputs.
"""

from __future__ import annotations

import hashlib

import numpy as np

from poolconform import dtypes
from poolconform.case import PoolCase
from poolconform.errors import CaseError
from poolconform.generators import GENERATORS, SEED_INPUT, Generator

__all__ = ["GENERATORS", "SEED_INPUT", "Generator", "case_seed", "make_inputs"]


def case_seed(case: PoolCase) -> int:
    """A 64-bit seed from the case id, stable across processes and platforms."""
    return int.from_bytes(hashlib.sha256(case.id.encode()).digest()[:8], "little")


def make_inputs(case: PoolCase) -> list[np.ndarray]:
    """The case's input tensors in its dtype (ONNX layout)."""
    try:
        generator = GENERATORS[case.generator]
    except KeyError:
        raise CaseError(f"unknown generator {case.generator!r}; allowed: {', '.join(sorted(GENERATORS))}") from None
    rng = np.random.default_rng(case_seed(case))
    values = generator(rng, case.input_shape, case.dtype)
    return [values.astype(dtypes.numpy_dtype(case.dtype))]
