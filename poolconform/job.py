"""A job: one case, its inputs and the outputs it must produce.

The outputs are the float64 oracle's for `run`, `scan` and `explain`, the stored ones (or
the oracle's) for `check`. Everything is computed when first needed, so the parent makes
a case's inputs and oracle while the worker is already busy with the next case
(docs/speed.md, "Inputs are made where they are used").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from poolconform.case import PoolCase
from poolconform.inputs import make_inputs
from poolconform.oracle import reference_outputs
from poolconform.worker import Task

if TYPE_CHECKING:
    from poolconform.stored_data import Judge


class Job:
    """A case, its inputs and the outputs it must produce, computed when first needed.

    Inputs a case's id determines (every matrix case) are not shipped to workers: each
    worker regenerates the same bytes itself. Stored inputs (check) travel with the task.
    `judge` replaces the default comparison (`check --against stored --atol/--rtol`);
    `record_fields` are added to every record of the job (`scan`'s node names).
    """

    __slots__ = ("case", "expected_from", "judge", "record_fields", "_inputs", "_expected", "_stored_inputs")

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
        self._stored_inputs = inputs is not None
        self._inputs = inputs
        self._expected = expected

    @property
    def inputs(self) -> list[np.ndarray]:
        if self._inputs is None:
            self._inputs = make_inputs(self.case)
        return self._inputs

    @property
    def expected(self) -> list[np.ndarray]:
        if self._expected is None:
            self._expected = reference_outputs(self.case, self.inputs)
        return self._expected

    def task(self, key: int) -> Task:
        """What the worker needs: the case, plus the inputs only when they are stored ones."""
        return Task(key, self.case, self._inputs if self._stored_inputs else None)


def oracle_job(case: PoolCase) -> Job:
    """A job whose inputs come from the case id and expected outputs from the float64 oracle."""
    return Job(case)
