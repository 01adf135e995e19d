"""Drive jobs through backend workers, one loop for the whole run.

Each worker has a pump thread that only waits on the worker's pipe: it runs the batch
the loop hands it and posts every outcome back as an event. The loop, in the calling
thread, is the only place that decides: it feeds events to the Scheduler (plain state,
poolconform/scheduler.py), starts the batches and helper workers the scheduler asks for,
judges each outcome as it arrives (the parent's oracle and comparison overlap the
worker's next case), and hands every finished batch's records to the sink, which writes
them durably. As in pytest-xdist's DSession, threads carry messages; one loop decides.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
from array import array
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from poolconform.backends.base import BackendSpec
from poolconform.job import Job
from poolconform.results import Record
from poolconform.scheduler import Scheduler
from poolconform.verdict import outcome_record
from poolconform.worker import BackendInfo, BackendWorker, kill_all_workers


@dataclass
class RunOptions:
    timeout: float = 60.0
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    batch_size: int = 64
    log_dir: Path | None = None
    env: dict[str, str] | None = None
    #: Set to stop the run early (Ctrl-C, a failed write): no new batch starts, workers are killed.
    stop: threading.Event = field(default_factory=threading.Event)


def new_worker(spec: BackendSpec, options: RunOptions) -> BackendWorker:
    """A worker for `spec` under the run's options (not started)."""
    return BackendWorker(
        spec,
        env=options.env,
        log_path=(options.log_dir / f"{spec.name.replace('>', '')}.log") if options.log_dir else None,
        start_timeout=max(300.0, options.timeout),
        stop=options.stop,
    )


def start_workers(specs: list[BackendSpec], options: RunOptions) -> dict[str, BackendWorker]:
    """Spawn every backend's worker at once (imports overlap) and learn availability."""
    workers = {spec.name: new_worker(spec, options) for spec in specs}
    if options.log_dir:
        options.log_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, len(workers))) as pool:
        try:
            list(pool.map(BackendWorker.start, workers.values()))
        except BaseException:  # Ctrl-C where no handler is installed: don't wait for imports
            options.stop.set()
            kill_all_workers()
            raise
    return workers


#: What a pump posts to the loop: (kind, worker id, payload). Kinds: "started" (the
#: BackendInfo), "outcome" (an Outcome), "batch-done" (None), "failed" (the exception).
Event = tuple[str, int, Any]
#: What the loop sends a pump: "start", a batch of tasks, or None (close the worker and end).
Command = Any


class _Pump:
    """One worker's thread: does what the loop sends, posts what happens. Decides nothing."""

    def __init__(self, wid: int, worker: BackendWorker, events: queue.SimpleQueue[Event], timeout: float) -> None:
        self.wid = wid
        self.worker = worker
        self._events = events
        self._timeout = timeout
        self._inbox: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._serve, name=f"poolconform-pump-{worker.spec.name}", daemon=True)
        self.thread.start()

    def send(self, command: Command) -> None:
        self._inbox.put(command)

    def _serve(self) -> None:
        # Ctrl-C is for the loop's thread: delivered there, it wakes the loop at once.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            while (command := self._inbox.get()) is not None:
                if command == "start":
                    self._events.put(("started", self.wid, self.worker.start()))
                    continue
                for outcome in self.worker.run(command, self._timeout):
                    self._events.put(("outcome", self.wid, outcome))
                self._events.put(("batch-done", self.wid, None))
        except BaseException as exc:  # a bug, or a write the worker needed: the loop raises it
            self._events.put(("failed", self.wid, exc))
        finally:
            self.worker.close()


class _Loop:
    """The run's one decision loop: events in, scheduler consulted, commands and records out."""

    def __init__(self, jobs: Sequence[Job], workers: dict[str, BackendWorker], options: RunOptions,
                 sink: Callable[[list[Record]], None], pending: dict[str, Sequence[int]]) -> None:
        self.jobs = jobs
        self.options = options
        self.sink = sink
        self.events: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self.scheduler = Scheduler(pending, options.jobs, options.batch_size,
                                   {name: w.start_seconds for name, w in workers.items() if w.start_seconds is not None})
        self.pumps: dict[int, _Pump] = {}
        self.backend: dict[int, str] = {}
        self.specs = {name: workers[name].spec for name in pending}
        self.helpers: dict[str, list[BackendWorker]] = {name: [] for name in pending}
        self.records: dict[int, list[Record]] = {}
        #: Answers still to judge per job; at 0 its oracle outputs are released (poolconform/job.py).
        self.unjudged = np.zeros(len(jobs), np.int32)  # 4 bytes a case, not a list of ints
        for keys in pending.values():
            self.unjudged[np.asarray(keys, np.int64)] += 1  # a backend's keys are distinct
        for name in pending:
            self._add_pump(workers[name], name)

    def _add_pump(self, worker: BackendWorker, backend: str) -> int:
        wid = len(self.pumps)
        self.pumps[wid] = _Pump(wid, worker, self.events, self.options.timeout)
        self.backend[wid] = backend
        return wid

    def run(self) -> None:
        self.scheduler.add_workers(dict(self.backend))
        self._decide()
        while not self.scheduler.finished:
            try:
                kind, wid, payload = self.events.get(timeout=1.0)
            except queue.Empty:
                self._decide()  # nothing happened; a stop may have been requested
                continue
            written = self._handle(kind, wid, payload)
            self._decide()
            if written:
                self.sink(written)  # after the next batch has started: the write overlaps it

    def _handle(self, kind: str, wid: int, payload: Any) -> list[Record] | None:
        if kind == "outcome":
            job = self.jobs[payload.key]
            record = outcome_record(job, self.backend[wid], payload)
            self.records.setdefault(wid, []).append(record)
            self.unjudged[payload.key] -= 1
            if self.unjudged[payload.key] <= 0:
                job.release()
            self.scheduler.mark_done(wid, payload.key, payload.seconds)
        elif kind == "batch-done":
            self.scheduler.batch_done(wid)
            return self.records.pop(wid, [])
        elif kind == "started":
            if payload.unavailable is None:
                self.scheduler.helper_ready(wid)
            else:
                self.scheduler.helper_failed(wid)
                self.pumps[wid].send(None)
        elif kind == "failed":
            raise payload
        return None

    def _decide(self) -> None:
        """Ask the scheduler what to do now, and do it."""
        if self.options.stop.is_set():
            self.scheduler.stop()
        started = self.scheduler.schedule()
        for wid, keys in started:
            self.pumps[wid].send([self.jobs[key].task(key) for key in keys])
        for fed in {self.backend[wid] for wid, _ in started}:
            # the next batch's inputs, made while this one computes: a worker that finishes then
            # gets its next batch at once instead of waiting for the parent's generator
            for key in self.scheduler.upcoming(fed):
                self.jobs[key].prepare()
        for wid in self.scheduler.to_close():
            self.pumps[wid].send(None)
        while (backend := self.scheduler.helper_wanted(len(self.pumps))) is not None:
            helper = new_worker(self.specs[backend], self.options)
            self.helpers[backend].append(helper)
            self.pumps[self._add_pump(helper, backend)].send("start")

    def close(self) -> None:
        """Close every worker and wait for every pump (they end once their worker is closed)."""
        for pump in self.pumps.values():
            pump.send(None)
        for pump in self.pumps.values():
            pump.thread.join()


def run_jobs(
    jobs: Sequence[Job],
    workers: dict[str, BackendWorker],
    options: RunOptions,
    sink: Callable[[list[Record]], None],
    skip: Collection[tuple[str, str]] = (),
) -> dict[str, BackendInfo]:
    """Run every job on every available worker; `skip` holds (case, backend) already done.

    Each backend's batches form a backlog; see poolconform/scheduler.py for who runs
    what, when helper workers start and how many batches compute at once. `jobs` may
    make each job when asked for (poolconform.job.JobList): nothing here holds them all.
    """
    names = [name for name, worker in workers.items() if worker.info.unavailable is None]
    pending = pending_keys(jobs, names, skip)
    loop = _Loop(jobs, workers, options, sink, pending)
    try:
        try:
            loop.run()
        except BaseException:
            options.stop.set()  # a failed write, a bug, Ctrl-C without a handler: stop the workers, now
            kill_all_workers()
            raise
    finally:
        loop.close()
        for worker in workers.values():
            worker.close()
    infos = {name: w.info for name, w in workers.items()}
    for name, helpers in loop.helpers.items():
        infos[name].restarts += sum(h.info.restarts for h in helpers)
        infos[name].extra["workers"] = str(1 + len(helpers))
    return infos


def pending_keys(jobs: Sequence[Job], backends: list[str], done: Collection[tuple[str, str]]) -> dict[str, Sequence[int]]:
    """Each backend's job keys without a record in `done`, in order: a range when nothing is
    done (a fresh run), else arrays of 4 bytes a key."""
    if not done:
        return {name: range(len(jobs)) for name in backends}
    keys = {name: array("i") for name in backends}
    for key, job in enumerate(jobs):
        case = job.case.id
        for name in backends:
            if (case, name) not in done:
                keys[name].append(key)
    return dict(keys)
