"""Drive jobs through backend workers and turn outcomes into records.

A Job is a case with its inputs and the outputs it must produce: the oracle's for
`run`, the stored ones for `check`. Each backend's worker is driven from its own
thread (the threads only wait on pipes); at most `jobs` workers compute at a time.
Records reach the sink in batches, which writes them durably before moving on.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
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
from poolconform.worker import BackendInfo, BackendWorker, Outcome, Task, kill_all_workers


class Job:
    """A case, its inputs and the outputs it must produce, computed when first needed.

    Inputs a case's id determines (every matrix case) are not shipped to workers: each
    worker regenerates the same bytes itself, and the parent computes them and the
    oracle's outputs only when the first outcome arrives, while the worker goes on with
    the next case. Stored inputs (check) travel with the task.
    """

    __slots__ = ("case", "expected_from", "_inputs", "_expected", "_stored_inputs")

    def __init__(
        self,
        case: PoolCase,
        inputs: list[np.ndarray] | None = None,
        expected: list[np.ndarray] | None = None,
        expected_from: str = "oracle",
    ) -> None:
        self.case = case
        self.expected_from = expected_from
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


@dataclass
class RunOptions:
    timeout: float = 60.0
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    batch_size: int = 64
    log_dir: Path | None = None
    env: dict[str, str] | None = None
    #: Set to stop the run early (Ctrl-C, a failed write): no new batch starts, workers are killed.
    stop: threading.Event = field(default_factory=threading.Event)


def oracle_job(case: PoolCase) -> Job:
    """A job whose inputs come from the case id and expected outputs from the float64 oracle."""
    return Job(case)


def _new_worker(spec: BackendSpec, options: RunOptions) -> BackendWorker:
    return BackendWorker(
        spec,
        env=options.env,
        log_path=(options.log_dir / f"{spec.name.replace('>', '')}.log") if options.log_dir else None,
        start_timeout=max(300.0, options.timeout),
        stop=options.stop,
    )


def start_workers(specs: list[BackendSpec], options: RunOptions) -> dict[str, BackendWorker]:
    """Spawn every backend's worker at once (imports overlap) and learn availability."""
    workers = {spec.name: _new_worker(spec, options) for spec in specs}
    if options.log_dir:
        options.log_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, len(workers))) as pool:
        try:
            list(pool.map(_timed_start, workers.values()))
        except BaseException:  # Ctrl-C where no handler is installed: don't wait for imports
            options.stop.set()
            kill_all_workers()
            raise
    return workers


#: Seconds each worker took to start (framework import), the price of a helper worker.
_START_SECONDS: weakref.WeakKeyDictionary[BackendWorker, float] = weakref.WeakKeyDictionary()


def _timed_start(worker: BackendWorker) -> BackendInfo:
    started = time.perf_counter()
    info = worker.start()
    _START_SECONDS[worker] = time.perf_counter() - started
    return info


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
    common.update(getattr(job, "record_fields", None) or {})  # e.g. `scan`'s node names
    if outcome.kind != "outputs":
        return make_record(case.id, backend, outcome.kind, expected_shape=expected_shape,
                           detail=outcome.message, **common)
    judge = getattr(job, "judge", None) or compare.compare_outputs
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


class _Gate:
    """At most `slots` batches compute at once; a free slot goes to the waiting backend with
    the most estimated work left (longest-remaining-first keeps the slowest off the tail)."""

    def __init__(self, slots: int, remaining: Callable[[str], float]) -> None:
        self._slots = max(1, slots)
        self._remaining = remaining
        self._waiting: list[str] = []
        self._cond = threading.Condition()

    def acquire(self, name: str) -> None:
        with self._cond:
            self._waiting.append(name)
            while self._slots == 0 or max(self._waiting, key=self._remaining) != name:
                self._cond.wait()
            self._waiting.remove(name)
            self._slots -= 1

    def release(self) -> None:
        with self._cond:
            self._slots += 1
            self._cond.notify_all()


class _Backlog:
    """One backend's batches still to run, and how long its cases have taken so far."""

    def __init__(self, worker: BackendWorker, chunks: list[list[tuple[int, Job]]]) -> None:
        self.worker = worker
        self.chunks = chunks
        self.cases_left = sum(len(c) for c in chunks)
        self.seconds = 0.0
        self.measured = 0
        self.start_seconds = _START_SECONDS.get(worker, HELP_MIN_SECONDS)
        self.helpers: list[BackendWorker] = []
        self.active = 0  # workers currently taking batches from this backlog

    def estimate(self) -> float:
        """Seconds of work left; unknown (nothing measured yet) counts as infinite."""
        if not self.cases_left:
            return 0.0
        if not self.measured:
            return float("inf")
        return self.cases_left * self.seconds / self.measured

    def worth_helping(self) -> bool:
        """A second worker pays when the work left dwarfs what starting one costs."""
        if not self.measured or not self.chunks:
            return False
        per_worker = self.estimate() / max(1, self.active)
        return per_worker > max(HELP_MIN_SECONDS, 3 * self.start_seconds)


#: Never spawn a helper worker for less than this much estimated work.
HELP_MIN_SECONDS = 5.0


def _chunks(items: list, size: int) -> list[list]:
    return [items[start : start + size] for start in range(0, len(items), max(1, size))]


def run_jobs(
    jobs: list[Job],
    workers: dict[str, BackendWorker],
    options: RunOptions,
    sink: Callable[[list[Record]], None],
    skip: Iterable[tuple[str, str]] = (),
) -> dict[str, BackendInfo]:
    """Run every job on every available worker; `skip` holds (case, backend) already done.

    Each backend's batches form a backlog. A driver thread whose backlog runs dry closes
    its worker and, while fewer than `jobs` drivers are busy, spawns a helper worker for
    the backend with the most estimated work left, so idle cores take a share of it.
    """
    done = set(skip)
    lock = threading.Lock()  # serialises the sink
    measured = threading.Condition()  # guards backlogs and the busy count; notified per outcome
    backlogs = {
        name: _Backlog(w, _chunks([(i, job) for i, job in enumerate(jobs) if (job.case.id, name) not in done],
                                  options.batch_size))
        for name, w in workers.items() if w.info.unavailable is None
    }
    gate = _Gate(options.jobs, lambda name: backlogs[name].estimate())
    busy = [len(backlogs)]

    def take(name: str) -> list[tuple[int, Job]] | None:
        if options.stop.is_set():
            return None
        with measured:
            backlog = backlogs[name]
            return backlog.chunks.pop(0) if backlog.chunks else None

    def work(name: str, worker: BackendWorker) -> None:
        backlog = backlogs[name]
        with measured:
            backlog.active += 1
        try:
            _work(name, worker, backlog)
        finally:
            with measured:
                backlog.active -= 1

    def _work(name: str, worker: BackendWorker, backlog: _Backlog) -> None:
        while (chunk := take(name)) is not None:
            tasks = [job.task(i) for i, job in chunk]
            records = []
            gate.acquire(name)
            try:
                for outcome in worker.run(tasks, options.timeout):
                    records.append(outcome_record(jobs[outcome.key], name, outcome))
                    with measured:
                        backlog.cases_left -= 1
                        backlog.seconds += outcome.seconds
                        backlog.measured += 1
                        measured.notify_all()
            finally:
                gate.release()
            with lock:
                sink(records)

    def pick_backlog_to_help() -> str | None:
        """The backlog an idle driver should help with, once estimates exist; None to stop."""
        with measured:
            busy[0] -= 1
            while busy[0] < options.jobs and not options.stop.is_set():
                open_ = [b for b in backlogs.values() if b.chunks]
                if not open_:
                    return None
                candidates = [(b.estimate() / max(1, b.active), n) for n, b in backlogs.items() if b.worth_helping()]
                if candidates:
                    busy[0] += 1
                    return max(candidates)[1]
                if all(b.measured for b in open_):
                    return None  # every open backlog is known and too small to be worth a worker
                measured.wait(0.25)
            return None

    def drive(name: str) -> None:
        work(name, backlogs[name].worker)
        backlogs[name].worker.close()
        while (target := pick_backlog_to_help()) is not None:
            helper = _new_worker(backlogs[target].worker.spec, options)
            with measured:
                backlogs[target].helpers.append(helper)
            if helper.start().unavailable is None:
                work(target, helper)
            helper.close()

    try:
        with ThreadPoolExecutor(max_workers=max(1, len(backlogs))) as pool:
            futures = [pool.submit(drive, name) for name in backlogs]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                options.stop.set()  # one driver failed (a write, a bug): stop the others, now
                kill_all_workers()
                raise
    finally:
        for worker in workers.values():
            worker.close()
        for backlog in backlogs.values():
            for helper in backlog.helpers:
                helper.close()
    infos = {name: w.info for name, w in workers.items()}
    for name, backlog in backlogs.items():
        infos[name].restarts += sum(h.info.restarts for h in backlog.helpers)
        infos[name].extra["workers"] = str(1 + len(backlog.helpers))
    return infos
