"""Drive jobs through backend workers and turn outcomes into records.

A Job is a case with its inputs and the outputs it must produce: the oracle's for
`run`, the stored ones for `check`. Each backend's worker is driven from its own
thread (the threads only wait on pipes); at most `jobs` workers compute at a time.
Records reach the sink in batches, which writes them durably before moving on.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from poolconform import compare, shapes
from poolconform.backends.base import BackendSpec
from poolconform.case import PoolCase
from poolconform.inputs import make_inputs
from poolconform.oracle import reference_outputs
from poolconform.results import Record, make_record
from poolconform.worker import BackendInfo, BackendWorker, Outcome, Task


@dataclass
class Job:
    case: PoolCase
    inputs: list[np.ndarray]
    expected: list[np.ndarray]
    expected_from: str = "oracle"


@dataclass
class RunOptions:
    timeout: float = 60.0
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    batch_size: int = 64
    log_dir: Path | None = None
    env: dict[str, str] | None = None


def oracle_job(case: PoolCase) -> Job:
    """A job whose expected outputs come from the float64 oracle."""
    inputs = make_inputs(case)
    return Job(case, inputs, reference_outputs(case, inputs))


def start_workers(specs: list[BackendSpec], options: RunOptions) -> dict[str, BackendWorker]:
    """Spawn every backend's worker at once (imports overlap) and learn availability."""
    workers = {
        spec.name: BackendWorker(
            spec,
            env=options.env,
            log_path=(options.log_dir / f"{spec.name.replace('>', '')}.log") if options.log_dir else None,
            start_timeout=max(300.0, options.timeout),
        )
        for spec in specs
    }
    if options.log_dir:
        options.log_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, len(workers))) as pool:
        list(pool.map(lambda w: w.start(), workers.values()))
    return workers


def outcome_record(job: Job, backend: str, outcome: Outcome) -> Record:
    """Classify one outcome into a record with every figure DESIGN.md promises."""
    case = job.case
    expected_shape = list(job.expected[0].shape)
    common = dict(
        op=case.op,
        dtype=case.dtype,
        opset=case.opset,
        params=case.describe(),
        seconds=round(outcome.seconds, 6),
        expected_from=job.expected_from,
    )
    if outcome.kind != "outputs":
        return make_record(case.id, backend, outcome.kind, expected_shape=expected_shape,
                           detail=outcome.message, **common)
    result = compare.compare_outputs(case, job.expected, outcome.outputs or [], job.inputs)
    detail = "; ".join(part for part in (result.detail, outcome.note) if part)
    if result.status == "shape-mismatch" and not case.is_global and case.rank >= 1:
        seed = shapes.seed_output_size(case.spatial[0], case.kernel[0], case.strides[0])
        if result.actual_shape and len(result.actual_shape) > 2 and result.actual_shape[2] == seed:
            detail += f"; matches the seed's wrong (n - f + 1) / s = {seed:g}"
    return make_record(
        case.id, backend, result.status,
        expected_shape=result.expected_shape, actual_shape=result.actual_shape,
        max_abs_err=result.max_abs_err, max_rel_err=result.max_rel_err, max_ulp=result.max_ulp,
        detail=detail, atol=result.atol, digest=result.digest, note=outcome.note, **common,
    )


def run_jobs(
    jobs: list[Job],
    workers: dict[str, BackendWorker],
    options: RunOptions,
    sink: Callable[[list[Record]], None],
    skip: Iterable[tuple[str, str]] = (),
) -> dict[str, BackendInfo]:
    """Run every job on every available worker; `skip` holds (case, backend) already done."""
    done = set(skip)
    lock = threading.Lock()
    gate = threading.Semaphore(max(1, options.jobs))

    def drive(worker: BackendWorker) -> None:
        name = worker.spec.name
        todo = [(i, job) for i, job in enumerate(jobs) if (job.case.id, name) not in done]
        for start in range(0, len(todo), options.batch_size):
            chunk = todo[start : start + options.batch_size]
            tasks = [Task(i, job.case, job.inputs) for i, job in chunk]
            with gate:
                records = [outcome_record(jobs[o.key], name, o) for o in worker.run(tasks, options.timeout)]
            with lock:
                sink(records)

    usable = [w for w in workers.values() if w.info.unavailable is None]
    try:
        with ThreadPoolExecutor(max_workers=max(1, len(usable))) as pool:
            for future in [pool.submit(drive, w) for w in usable]:
                future.result()
    finally:
        for worker in workers.values():
            worker.close()
    return {name: w.info for name, w in workers.items()}
