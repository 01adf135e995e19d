"""A job: one case, its inputs and the outputs it must produce.

The outputs are the float64 oracle's for `run`, `scan` and `explain`, the stored ones (or
the oracle's) for `check`. Everything is computed when first needed, so the parent makes
a case's inputs and oracle while the worker is already busy with the next case
(docs/speed.md, "Inputs are made where they are used").

A job holds only what it cannot remake. Inputs a case id determines live in the input
cache (poolconform.inputs), and oracle outputs in a cache bounded in bytes
(ORACLE_CACHE_BYTES) shared by every job of the process: a run of 100,000 cases keeps
the oracle outputs of the cases still being judged, not of every case (docs/speed.md,
"Memory as the matrix grows"). The runner releases a job's outputs and inputs once every
backend's answer for it is judged; one evicted before then is simply computed again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, overload

import numpy as np

from poolconform.case import PoolCase
from poolconform.inputs import forget_inputs, make_inputs, prepare_inputs
from poolconform.lru import ByteLRU
from poolconform.oracle import reference_outputs
from poolconform.worker import Task

if TYPE_CHECKING:
    from poolconform.stored_data import Judge

#: Most bytes of oracle outputs one process keeps for jobs that may still need them. What
#: falls out is a lagging backend's, remade once when it gets there: cheap beside that
#: backend's own time on the case.
ORACLE_CACHE_BYTES = 32 * 2**20
#: What one kept entry costs besides its arrays' data (its key, the arrays' headers, the
#: table's slot), counted against the limit: tiny outputs must not make entries unbounded.
ENTRY_OVERHEAD = 2048


#: Oracle outputs by key, bounded in bytes. The key is the case where its id determines the
#: inputs (so a job made again for a lagging backend finds the outputs computed for the
#: others), else the job itself.
_oracle_cache: ByteLRU[Hashable, list[np.ndarray]] = ByteLRU(ORACLE_CACHE_BYTES)


class Job:
    """A case, its inputs and the outputs it must produce, computed when first needed.

    The parent makes a case's inputs once (from its id, or the stored ones of check) and
    ships the bytes with the task: a worker never regenerates them, which would cost more
    than the copy on large inputs and could differ under another numpy (docs/speed.md).
    `judge` replaces the default comparison (`check --against stored --atol/--rtol`);
    `record_fields` are added to every record of the job (`scan`'s node names).
    Given inputs and outputs are held for the job's life; made ones are cached (see above).
    """

    __slots__ = ("case", "expected_from", "judge", "record_fields", "_given_inputs", "_given_expected")

    def __init__(
        self,
        case: PoolCase,
        inputs: list[np.ndarray] | None = None,
        expected: list[np.ndarray] | None = None,
        expected_from: str = "oracle",
        judge: Judge | None = None,
        record_fields: dict[str, Any] | None = None,
    ) -> None:
        self.case = case
        self.expected_from = expected_from
        self.judge = judge
        self.record_fields = record_fields
        self._given_inputs = inputs
        self._given_expected = expected

    @property
    def inputs(self) -> list[np.ndarray]:
        """The given inputs, or the case's own (a fresh copy from the process's input cache)."""
        if self._given_inputs is not None:
            return self._given_inputs
        return make_inputs(self.case)

    @property
    def expected(self) -> list[np.ndarray]:
        """The given outputs, or the oracle's on the inputs (kept in the bounded oracle cache)."""
        if self._given_expected is not None:
            return self._given_expected
        key = self.cache_key
        computed = _oracle_cache.get(key)
        if computed is not None:
            return computed
        computed = reference_outputs(self.case, self.inputs)
        for array in computed:  # shared by every backend's judging (and its memoized tolerance)
            array.flags.writeable = False
        _oracle_cache.keep(key, computed, sum(a.nbytes for a in computed) + ENTRY_OVERHEAD)
        return computed

    @property
    def cache_key(self) -> Hashable:
        """What its oracle outputs are kept under: the case's id, which determines the inputs
        (and the case: poolconform/case.py), unless the inputs were given (then the job itself)."""
        return self.case.id if self._given_inputs is None else self

    def release(self) -> None:
        """Every answer for this job is judged: free its computed oracle outputs and inputs now."""
        _oracle_cache.drop(self.cache_key)
        if self._given_inputs is None:
            forget_inputs(self.case)

    def prepare(self) -> None:
        """Make the inputs now, ahead of the task that ships them (inputs.prepare_inputs).
        Only a head start: inputs that cannot be made are left to the task, which fails as
        it always did, at its own time."""
        if self._given_inputs is None:
            try:
                prepare_inputs(self.case)
            except Exception:  # noqa: BLE001  the task makes them again and reports the failure
                pass

    def task(self, key: int) -> Task:
        """What the worker needs: the case and the parent's own inputs (kept for judging its answer)."""
        return Task(key, self.case, self.inputs)


def oracle_job(case: PoolCase) -> Job:
    """A job whose inputs come from the case id and expected outputs from the float64 oracle."""
    return Job(case)


#: Most jobs a JobList holds at once (the ones a run is working on; others are made again).
JOBS_KEPT = 4096


class JobList(Sequence[Job]):
    """One job per case of a case list, made when first asked for, the `keep` most recently
    used held: a run of 100,000 cases holds the jobs it is working on, not one per case
    (docs/speed.md, "Memory as the matrix grows"). A job asked for again after it was let go
    is made again; its inputs and oracle outputs come back from their caches or are recomputed."""

    def __init__(self, cases: Sequence[PoolCase], make: Callable[[PoolCase], Job] = oracle_job,
                 keep: int = JOBS_KEPT) -> None:
        self.cases = cases
        self._make = make
        self._keep = max(1, keep)
        self._held: OrderedDict[int, Job] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.cases)

    @overload
    def __getitem__(self, index: int) -> Job: ...

    @overload
    def __getitem__(self, index: slice) -> list[Job]: ...

    def __getitem__(self, index: int | slice) -> Job | list[Job]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"job {index} of {len(self)}")
        with self._lock:
            job = self._held.get(index)
            if job is not None:
                self._held.move_to_end(index)
                return job
        job = self._make(self.cases[index])
        with self._lock:
            job = self._held.setdefault(index, job)
            while len(self._held) > self._keep:
                self._held.popitem(last=False)
        return job

    def __iter__(self) -> Iterator[Job]:
        """Every job once, in order, without holding them (each made as it is reached)."""
        for case in self.cases:
            yield self._make(case)


def clear_oracle_cache() -> None:
    """Forget every kept oracle output (tests; a process about to do something else)."""
    _oracle_cache.clear()
