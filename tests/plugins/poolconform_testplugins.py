"""Test-only backends that misbehave on purpose, loaded through the real `poolconform.backends`
entry-point group (tests/test_containment.py writes a throwaway *.dist-info for them).

Each answers with the oracle's outputs (so ordinary cases pass) except on the cases
named in $POOLCONFORM_TESTPLUGIN_TRIGGER (comma-separated case ids), where it aborts the
process, hangs, or raises MemoryError. Nothing here is imported by poolconform itself.
"""

from __future__ import annotations

import os
import time

import numpy as np

from poolconform.case import PoolCase
from poolconform.oracle import reference_outputs

TRIGGER_ENV = "POOLCONFORM_TESTPLUGIN_TRIGGER"


def triggered(case: PoolCase) -> bool:
    """Whether this case is one the test chose for misbehaviour."""
    return case.id in {s.strip() for s in os.environ.get(TRIGGER_ENV, "").split(",") if s.strip()}


class EchoBackend:
    """A well-behaved third-party backend: the oracle's values in the case's dtype."""

    name = "test-echo"

    def available(self) -> str | None:
        return None

    def supports(self, case: PoolCase) -> str | None:
        return None

    def run(self, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        outputs = reference_outputs(case, inputs)
        return [outputs[0].astype(case.dtype)] + outputs[1:]


class AbortBackend(EchoBackend):
    """Calls os.abort() (SIGABRT, like a failed C++ assert) on the chosen cases."""

    name = "test-abort"

    def run(self, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        if triggered(case):
            os.abort()
        return super().run(case, inputs)


class HangBackend(EchoBackend):
    """Sleeps forever on the chosen cases, like a deadlocked kernel."""

    name = "test-hang"

    def run(self, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        while triggered(case):
            time.sleep(3600)
        return super().run(case, inputs)


class OomBackend(EchoBackend):
    """Raises MemoryError on the chosen cases, as a framework that cannot allocate does."""

    name = "test-oom"

    def run(self, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        if triggered(case):
            raise MemoryError(f"cannot allocate 7.11 PiB for case {case.id!r}")
        return super().run(case, inputs)
