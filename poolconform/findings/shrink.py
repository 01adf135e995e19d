"""Minimal cases: shrink a finding's smallest member while its backend still shows the behaviour.

Greedy, one dimension at a time (batch and channels, rank, input size, kernel, stride,
dilation, pads), smallest candidate first; a candidate is kept when that backend, and
only that backend, gives it the finding's status and signature and the finding's pattern
still holds. Re-runs go through the ordinary worker API, in one worker per backend.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from poolconform.case import PoolCase
from poolconform.validation import validate_case
from poolconform.errors import PoolconformError
from poolconform.findings.features import case_tests
from poolconform.findings.triage import signature
from poolconform.results import Record

#: Seconds all shrinking of one run may take (worker start-up aside), and per re-run.
BUDGET_SECONDS = 30.0
CASE_TIMEOUT = 10.0
#: Statuses not worth re-running: each candidate would wait out the timeout.
NOT_SHRUNK = ("timeout",)

Keeps = Callable[[list[PoolCase]], list[bool]]


def case_of(record: Record) -> PoolCase | None:
    """The case a matrix record ran, rebuilt from its params; None when its id is not that case's."""
    params = record.get("params")
    if not isinstance(params, dict):
        return None
    names = {f.name for f in dataclasses.fields(PoolCase)}
    kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items() if k in names}
    try:
        case = PoolCase(**kwargs)
        validate_case(case)
    except (PoolconformError, TypeError, ValueError):
        return None
    return case if case.id == record["case"] else None


def _smaller(values: tuple[int, ...], floor: int) -> Iterator[tuple[int, ...]]:
    """Per axis, every smaller value up to 16, then a few larger steps; smallest first."""
    for axis, v in enumerate(values):
        for w in sorted({*range(floor, min(v, 17)), v // 2, (3 * v) // 4, v - 1}):
            if floor <= w < v:
                yield values[:axis] + (w,) + values[axis + 1:]


#: The dimensions shrunk, in order: the ones that make a case easiest to read go first.
DIMENSIONS = ("batch", "rank", "input", "kernel", "strides", "dilations", "pads")


def _variants(case: PoolCase, dimension: str) -> list[PoolCase]:
    """Smaller cases along one dimension, smallest first."""
    n, c = case.input_shape[:2]
    rank = case.rank
    if dimension == "batch":
        return [case.replace(input_shape=(bn, bc) + case.spatial) for bn, bc in ((1, 1), (1, c), (n, 1))
                if (bn, bc) != (n, c)]
    if dimension == "rank":
        group = []
        for axis in range(rank if rank > 1 else 0):
            keep = [a for a in range(rank) if a != axis]

            def pick(t: tuple[int, ...]) -> tuple[int, ...]:
                return tuple(t[a] for a in keep)

            axes = {} if case.is_global else dict(kernel=pick(case.kernel), strides=pick(case.strides),
                                                  dilations=pick(case.dilations),
                                                  pads=pick(case.pads[:rank]) + pick(case.pads[rank:]))
            group.append(case.replace(input_shape=case.input_shape[:2] + pick(case.spatial), **axes))
        return group
    if dimension == "input":
        return [case.replace(input_shape=case.input_shape[:2] + s) for s in _smaller(case.spatial, 1)]
    if case.is_global:
        return []
    floor = 0 if dimension == "pads" else 1
    return [case.replace(**{dimension: v}) for v in _smaller(getattr(case, dimension), floor)]


def _valid(case: PoolCase) -> bool:
    try:
        validate_case(case)
    except PoolconformError:
        return False
    return True


def shrink_case(case: PoolCase, keeps: Keeps, deadline: float, passes: int = 4) -> PoolCase:
    """The smallest case reachable from `case` by single-dimension steps that `keeps` accepts."""
    for _ in range(passes):
        changed = False
        for dimension in DIMENSIONS:
            if time.monotonic() > deadline:
                return case
            group = [v for v in _variants(case, dimension) if _valid(v)]
            if not group:
                continue
            for variant, kept in zip(group, keeps(group)):
                if kept:
                    case, changed = variant, True
                    break
        if not changed:
            break
    return case


def _keeps_for(finding: dict[str, Any], run: Callable[[list[PoolCase]], list[Record]]) -> Keeps:
    rule = {(name, value) for name, value in finding.get("rule") or []}

    def keeps(cases: list[PoolCase]) -> list[bool]:
        return [r["status"] == finding["status"] and signature(r) == finding["signature"]
                and rule <= case_tests(r.get("params")) for r in run(cases)]

    return keeps


def shrink_findings(findings: list[dict[str, Any]], records: Sequence[Record], *,
                    log_dir: Path | None = None, budget: float = BUDGET_SECONDS,
                    stop: threading.Event | None = None) -> None:
    """Set each finding's `minimal_case` (and `minimal_detail`, `shrunk`) by re-running its
    backend, until the budget is spent or `stop` is set (Ctrl-C: the run's own event, so the
    workers are stopped as a run's are and the reports follow at once)."""
    stop = stop or threading.Event()
    from poolconform.backends.base import resolve_backend_names
    from poolconform.job import oracle_job
    from poolconform.runner import RunOptions, start_workers
    from poolconform.verdict import outcome_record
    from poolconform.worker import Task

    wanted = {(f["minimal_case"], f["backend"]) for f in findings}
    by_case = {key: r for r in records if (key := (r["case"], r["backend"])) in wanted}
    todo: dict[str, list[tuple[dict[str, Any], PoolCase]]] = {}
    for f in findings:
        case = case_of(by_case.get((f["minimal_case"], f["backend"])) or {})
        if case is not None and f["status"] not in NOT_SHRUNK:
            todo.setdefault(f["backend"], []).append((f, case))
    specs = []
    for backend, pairs in todo.items():
        python = pairs[0][0].get("python")  # the backend's own environment, where it ran
        try:
            specs += resolve_backend_names([backend], {backend: python} if python else None)
        except PoolconformError:
            continue  # a NAME@TAG backend whose interpreter is not known here
    # Every backend's worker at once, so their imports overlap (one after another they took
    # as long as the shrinking itself on the full matrix).
    workers = start_workers(specs, RunOptions(timeout=CASE_TIMEOUT, jobs=1, log_dir=log_dir, stop=stop))
    deadline = time.monotonic() + budget
    try:
        for spec in specs:
            worker, backend = workers[spec.name], spec.name
            if worker.info.unavailable:
                continue

            def run(cases: list[PoolCase], worker: Any = worker, backend: str = backend) -> list[Record]:
                jobs = [oracle_job(c) for c in cases]
                outcomes = {o.key: o for o in worker.run([Task(i, c, None) for i, c in enumerate(cases)], CASE_TIMEOUT)}
                return [outcome_record(j, backend, outcomes[i]) if i in outcomes else {"status": "stopped"}
                        for i, j in enumerate(jobs)]

            for finding, case in todo[backend]:
                if time.monotonic() > deadline or stop.is_set():
                    break
                keeps = _keeps_for(finding, run)

                def until_stopped(cases: list[PoolCase], keeps: Callable[[list[PoolCase]], list[bool]] = keeps,
                                  ) -> list[bool]:
                    return [False] * len(cases) if stop.is_set() else keeps(cases)

                minimal = shrink_case(case, until_stopped, deadline)
                if stop.is_set():
                    break
                if minimal != case:
                    record = run([minimal])[0]
                    finding.update(minimal_case=minimal.id, minimal_detail=record.get("detail") or "", shrunk=True)
            worker.close()  # done with it: its process goes now, not at the end
    finally:
        for worker in workers.values():
            worker.close()
