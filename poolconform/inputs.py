"""Deterministic inputs for a case: the same id gives the same bytes on every machine.

Each generator (poolconform.generators) is a function (rng, shape, dtype) -> float64
array of values that are exactly representable in the dtype; the seed comes from the case id, not from run
order, so a shard, a resume or a repro script regenerates identical inputs.

A process makes a case's inputs once: they are kept in a cache keyed by case id and bounded
in bytes (CACHE_BYTES), so a process that needs them again (the judging of each backend's
answer, bench's repeats, a shrink) pays a copy (about 20x cheaper than the generator on a
large normal input) instead of the generator, and a 100,000-case run does not keep every
input alive (docs/speed.md). Callers get their own writable copies: a backend that writes
into its input cannot change what the next one, or the oracle, sees.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from poolconform import dtypes
from poolconform.case import PoolCase
from poolconform.errors import CaseError
from poolconform.generators import GENERATORS, SEED_INPUT, Generator
from poolconform.lru import ByteLRU

__all__ = ["CACHE_BYTES", "GENERATORS", "SEED_INPUT", "Generator", "case_seed", "clear_cache", "forget_inputs",
           "make_inputs", "prepare_inputs"]

#: Most bytes of inputs one process keeps for reuse (least recently used go first).
CACHE_BYTES = 32 * 2**20
#: What one kept entry costs besides its arrays' data (the id, the arrays' headers, the
#: table's slot), counted against CACHE_BYTES: tiny inputs must not make entries unbounded.
ENTRY_OVERHEAD = 512

_cache: ByteLRU[str, list[np.ndarray]] = ByteLRU(CACHE_BYTES)


def case_seed(case: PoolCase) -> int:
    """A 64-bit seed from the case id, stable across processes and platforms."""
    return int.from_bytes(hashlib.sha256(case.id.encode()).digest()[:8], "little")


def generate_inputs(case: PoolCase) -> list[np.ndarray]:
    """The case's input tensors in its dtype (ONNX layout), freshly made and writable."""
    try:
        generator = GENERATORS[case.generator]
    except KeyError:
        raise CaseError(f"unknown generator {case.generator!r}; allowed: {', '.join(sorted(GENERATORS))}") from None
    rng = np.random.default_rng(case_seed(case))
    values = generator(rng, case.input_shape, case.dtype)
    return [values.astype(dtypes.numpy_dtype(case.dtype))]


def make_inputs(case: PoolCase) -> list[np.ndarray]:
    """The case's input tensors (writable copies of what this process made once)."""
    hit = _cache.get(case.id)
    if hit is not None:
        return [a.copy() for a in hit]
    inputs = generate_inputs(case)
    if _size(inputs) <= _cache.limit:
        _keep(case, [a.copy() for a in inputs])
    return inputs


def prepare_inputs(case: PoolCase) -> None:
    """Make the case's inputs now and keep them, so that a later make_inputs is a copy: the
    runner calls it for a worker's next batch while the worker computes the current one
    (docs/speed.md). Inputs too large to keep alongside others are left to make_inputs."""
    if case.id in _cache or math.prod(case.input_shape) * dtypes.numpy_dtype(case.dtype).itemsize > _cache.limit // 4:
        return
    _keep(case, generate_inputs(case))


def _keep(case: PoolCase, arrays: list[np.ndarray]) -> None:
    """Keep a case's inputs (read-only), dropping the least recently used beyond CACHE_BYTES."""
    for array in arrays:
        array.flags.writeable = False
    if case.id not in _cache:
        _cache.keep(case.id, arrays, _size(arrays))


def _size(arrays: list[np.ndarray]) -> int:
    return sum(a.nbytes for a in arrays) + ENTRY_OVERHEAD


def forget_inputs(case: PoolCase) -> None:
    """Drop one case's kept inputs: its last user is done with them (poolconform.job.Job.release)."""
    _cache.drop(case.id)


def clear_cache() -> None:
    """Forget every kept input (tests; a process about to do something else)."""
    _cache.clear()
