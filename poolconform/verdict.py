"""The verdict on one outcome: what a backend answered for a job, as a record.

Shared by every path that judges a backend's answer (`run`, `check`, `scan`, `explain`
and the shrinking of findings), so a case gets the same status and detail wherever it
is judged.
"""

from __future__ import annotations

from typing import Any

from poolconform import compare, shapes
from poolconform.job import Job
from poolconform.results import Record, make_record
from poolconform.worker import Outcome


def outcome_record(job: Job, backend: str, outcome: Outcome) -> Record:
    """Classify one outcome into a record with every figure the README promises."""
    case = job.case
    expected_shape = list(job.expected[0].shape)
    common: dict[str, Any] = dict(
        op=case.op,
        dtype=case.dtype,
        opset=case.opset,
        params=case.describe(),
        seconds=round(outcome.seconds, 6),
        expected_from=job.expected_from,
    )
    common.update(job.record_fields or {})  # e.g. `scan`'s node names
    if outcome.kind != "outputs":
        return make_record(case.id, backend, outcome.kind, expected_shape=expected_shape,
                           detail=outcome.message, **common)
    judge = job.judge or compare.compare_outputs
    result = judge(case, job.expected, outcome.outputs or [], job.inputs)
    note = "; ".join(part for part in (outcome.note, shapes.empty_window_note(case)) if part) or outcome.note
    detail = "; ".join(part for part in (result.detail, note) if part)
    if result.status == "shape-mismatch" and shapes.seed_formula_explains(case, result.actual_shape):
        detail += "; matches the seed tutorial's wrong (n - f + 1) / s, computed with integer division"
    return make_record(
        case.id, backend, result.status,
        expected_shape=result.expected_shape, actual_shape=result.actual_shape,
        max_abs_err=result.max_abs_err, max_rel_err=result.max_rel_err, max_ulp=result.max_ulp,
        detail=detail, atol=result.atol, digest=result.digest, note=note, **common,
    )
