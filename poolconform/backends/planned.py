"""Backends that translate a case into their framework's own call: one plan, three uses.

A subclass writes two methods, side by side with its siblings (as Keras 3's per-backend
nn.py files do): `translate(case) -> Plan | Unsupported`, pure arithmetic on the case that
imports no framework, and `execute(case, plan, inputs)`, the framework call. The base class
caches the plan per case and derives from it `supports` (the refusal), `note` (the plan's
own line on what was translated) and `run`, so the three can never disagree; `poolconform
repro` and the capability table read the same `plan()`.
"""

from __future__ import annotations

import functools
from typing import Generic, Protocol, TypeVar

import numpy as np

from poolconform.backends.base import BaseBackend, Unsupported
from poolconform.case import PoolCase

#: Plans cached per backend; a run holds a few thousand distinct cases at most.
PLAN_CACHE_SIZE = 4096


class Plan(Protocol):
    """What every plan carries besides its framework's arguments."""

    @property
    def note(self) -> str:
        """How the ONNX attributes were mapped, "" when one to one."""


P = TypeVar("P", bound=Plan)


class PlannedBackend(BaseBackend, Generic[P]):
    """A backend whose `supports`, `note` and `run` all follow from one cached `plan(case)`."""

    def __init__(self) -> None:
        self._plan = functools.lru_cache(maxsize=PLAN_CACHE_SIZE)(self.translate)

    def translate(self, case: PoolCase) -> P | Unsupported:
        """The framework call that computes `case` exactly, or why there is none."""
        raise NotImplementedError

    def execute(self, case: PoolCase, plan: P, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Run the plan on the inputs; outputs in ONNX layout and order."""
        raise NotImplementedError

    def plan(self, case: PoolCase) -> P | Unsupported:
        """`translate(case)`, computed once per case."""
        return self._plan(case)

    def supports(self, case: PoolCase) -> str | None:
        plan = self.plan(case)
        return plan.reason if isinstance(plan, Unsupported) else None

    def note(self, case: PoolCase) -> str | None:
        plan = self.plan(case)
        return None if isinstance(plan, Unsupported) else (plan.note or None)

    def run(self, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        plan = self.plan(case)
        if isinstance(plan, Unsupported):  # never run a case the framework would silently misread
            raise Unsupported(plan.reason)  # a fresh one: the cached plan keeps no traceback
        return self.execute(case, plan, inputs)
