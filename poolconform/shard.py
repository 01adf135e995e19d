"""Stable 1/N slices of a case list: `--shard K/N` keeps the cases whose id hashes to K."""

from __future__ import annotations

import hashlib

from poolconform.case import PoolCase
from poolconform.errors import PoolconformError


def parse_shard(text: str) -> tuple[int, int]:
    """`K/N` with 1 <= K <= N."""
    k, sep, n = text.partition("/")
    try:
        k_i, n_i = int(k), int(n)
    except ValueError:
        k_i = n_i = 0
    if not sep or not 1 <= k_i <= n_i:
        raise PoolconformError(f"--shard {text!r} must be K/N with 1 <= K <= N, e.g. 2/4")
    return k_i, n_i


def shard_of(case_id: str, n: int) -> int:
    """1-based shard of a case: depends on its id only, so every job agrees."""
    return int.from_bytes(hashlib.sha256(case_id.encode()).digest()[:8], "little") % n + 1


def select(cases: list[PoolCase], k: int, n: int) -> list[PoolCase]:
    return [c for c in cases if shard_of(c.id, n) == k]
