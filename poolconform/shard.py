"""Stable 1/N slices of a case list (`--shard K/N`), and the identity `merge` checks them by.

A shard keeps the cases whose id hashes to K, so every job agrees without talking to the
others. Each shard records who it is (`identity`): the digest of the whole matrix, K, N,
the digest of its own cases, the backends chosen and the poolconform version. `merge`
(poolconform/commands/merge.py) refuses a set of shards unless those prove it holds
every K of one run, with every case on every backend that ran.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from poolconform import __version__
from poolconform.case import PoolCase
from poolconform.case_list import CaseList
from poolconform.errors import PoolconformError

#: The summary.json key that holds a shard's identity.
IDENTITY_KEY = "sharding"


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


def select(cases: Sequence[PoolCase], k: int, n: int) -> CaseList:
    """The cases of shard K/N, in matrix order (still made when read: poolconform/case_list.py)."""
    listed = cases if isinstance(cases, CaseList) else CaseList.of(cases)
    return listed.where(lambda c: shard_of(c.id, n) == k)


def ids_digest(ids: Iterable[str]) -> str:
    """Digest of a set of case ids (order and repeats ignored): ids describe their cases fully."""
    return hashlib.sha256("\n".join(sorted(set(ids))).encode()).hexdigest()[:16]


def identity(matrix: Sequence[PoolCase], k: int, n: int, backends: Iterable[str]) -> dict[str, object]:
    """What shard K/N of `matrix` is, for its summary.json under IDENTITY_KEY."""
    ids = {c.id for c in matrix}
    mine = {i for i in ids if shard_of(i, n) == k}
    return {
        "k": k,
        "n": n,
        "matrix_digest": ids_digest(ids),
        "matrix_cases": len(ids),
        "cases": len(mine),
        "cases_digest": ids_digest(mine),
        "backends": sorted(set(backends)),
        "version": __version__,
    }
