"""Which worker runs which batch next: the run's scheduling as plain state.

Like pytest-xdist's schedulers, this object starts no process and no thread. The
runner's loop tells it what happened (a worker is ready, a case finished, a batch
ended) and asks what to do next (`schedule`: which idle worker runs which batch;
`helper_wanted`: which backend deserves one more worker; `to_close`: which workers
are done), so every rule below is tested without processes (tests/test_scheduler.py).

The rules (docs/speed.md, "The slowest backend is not left to finish alone"):
- each backend's cases form a backlog of batches, taken only by that backend's workers;
- at most `slots` batches compute at once; a free slot goes to the idle worker whose
  backend has the most estimated work left (cases left x measured seconds per case,
  infinite while nothing is measured), first come first served on ties;
- a worker whose backlog is empty is closed. While fewer than `slots` workers are busy,
  its place may go to a *helper worker* for the backend with the most work left per
  worker, when that work exceeds three times the backend's start-up time (and
  HELP_MIN_SECONDS); a place nobody is worth helping with is given up;
- once stopped, no batch starts, no helper is wanted and every idle worker is closed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

#: Never spawn a helper worker for less than this much estimated work (seconds).
HELP_MIN_SECONDS = 5.0

#: A worker's id, picked by the caller (the runner numbers its workers).
WorkerId = int


@dataclass
class Backlog:
    """One backend's batches still to start, and how long its cases have taken so far."""

    batches: Batches
    cases_left: int
    start_seconds: float = HELP_MIN_SECONDS
    seconds: float = 0.0
    measured: int = 0
    #: Workers ready to take this backlog's batches (helpers included, starting ones not).
    active: int = 0

    def estimate(self) -> float:
        """Seconds of work left; unknown (nothing measured yet) counts as infinite."""
        if not self.cases_left:
            return 0.0
        if not self.measured:
            return float("inf")
        return self.cases_left * self.seconds / self.measured

    def worth_helping(self) -> bool:
        """A second worker pays when the work left dwarfs what starting one costs."""
        if not self.measured or not self.batches:
            return False
        per_worker = self.estimate() / max(1, self.active)
        return per_worker > max(HELP_MIN_SECONDS, 3 * self.start_seconds)


class Batches:
    """A backlog's job keys, cut into batches as they are taken: a backlog of 100,000 keys
    holds the keys as given (a range, an array), not a list per batch."""

    def __init__(self, keys: Sequence[int], size: int) -> None:
        self._keys = keys
        self._size = max(1, size)
        self._next = 0

    def __len__(self) -> int:
        return -(-(len(self._keys) - self._next) // self._size)

    def __bool__(self) -> bool:
        return self._next < len(self._keys)

    def __iter__(self) -> Iterator[list[int]]:
        """The batches not yet taken (without taking them)."""
        for start in range(self._next, len(self._keys), self._size):
            yield self._batch(start)

    def peek(self) -> list[int]:
        """The next batch's keys, not taken ([] when none is left)."""
        return self._batch(self._next) if self else []

    def popleft(self) -> list[int]:
        """Take the next batch."""
        if not self:
            raise IndexError("no batch left")
        batch = self._batch(self._next)
        self._next += self._size
        return batch

    def _batch(self, start: int) -> list[int]:
        return [int(k) for k in self._keys[start : start + self._size]]


def batches_of(keys: Sequence[int], size: int) -> Batches:
    """`keys` cut into batches of `size` (the last one shorter)."""
    return Batches(keys, size)


class Scheduler:
    """The scheduling state of one run; see the module docstring for its rules."""

    def __init__(self, pending: Mapping[str, Sequence[int]], slots: int, batch_size: int,
                 start_seconds: Mapping[str, float] | None = None) -> None:
        """`pending[backend]`: the job keys still to run on that backend, in order;
        `start_seconds[backend]`: what starting one of its workers costs."""
        start_seconds = start_seconds or {}
        self.backlogs = {
            name: Backlog(batches_of(keys, batch_size), len(keys), start_seconds.get(name, HELP_MIN_SECONDS))
            for name, keys in pending.items()
        }
        self.slots = max(1, slots)
        self.stopped = False
        self._backend: dict[WorkerId, str] = {}  # ready or starting workers
        self._running: dict[WorkerId, set[int]] = {}  # batches in flight: their keys still without an outcome
        self._waiting: list[WorkerId] = []  # idle ready workers, in the order they became idle
        self._starting: set[WorkerId] = set()
        self._closing: list[WorkerId] = []
        self._busy = 0  # workers holding a place: ready and not yet dry, or starting
        self._seekers = 0  # places freed by dry workers that a helper may still take

    # -- what happened -------------------------------------------------------------

    def add_workers(self, workers: Mapping[WorkerId, str]) -> None:
        """The run's first workers, one per backend, already started: {worker: backend}."""
        for worker, backend in workers.items():
            if worker in self._backend:
                raise ValueError(f"worker {worker!r} was added twice")
            if backend not in self.backlogs:
                raise ValueError(f"no backlog for backend {backend!r}; known: {sorted(self.backlogs)!r}")
        self._busy += len(workers)  # all hold a place before any gives it up, as when they start together
        for worker, backend in workers.items():
            self._ready(worker, backend)

    def helper_ready(self, worker: WorkerId) -> None:
        """A helper worker that `helper_wanted` asked for has started."""
        if worker not in self._starting:
            raise ValueError(f"worker {worker!r} is not starting")
        self._starting.remove(worker)
        self._ready(worker, self._backend[worker])

    def helper_failed(self, worker: WorkerId) -> None:
        """A helper worker failed to start: its place is free again."""
        if worker not in self._starting:
            raise ValueError(f"worker {worker!r} is not starting")
        self._starting.remove(worker)
        self._backend.pop(worker)
        self._free_place()

    def mark_done(self, worker: WorkerId, key: int, seconds: float) -> None:
        """`worker` finished case `key` of its batch in `seconds` (any outcome)."""
        running = self._running.get(worker)
        if running is None or key not in running:
            raise ValueError(f"worker {worker!r} is not running case {key!r}")
        running.remove(key)
        backlog = self.backlogs[self._backend[worker]]
        backlog.cases_left -= 1
        backlog.seconds += seconds
        backlog.measured += 1

    def batch_done(self, worker: WorkerId) -> list[int]:
        """`worker`'s batch ended; returns the keys it gave no outcome for (stopped, killed)."""
        if worker not in self._running:
            raise ValueError(f"worker {worker!r} has no batch running")
        unfinished = sorted(self._running.pop(worker))
        self._idle(worker)
        return unfinished

    def stop(self) -> None:
        """No batch starts from now on; idle workers are closed, running batches end."""
        self.stopped = True
        self._seekers = 0
        for worker in self._waiting:
            self._retire(worker)
        self._waiting.clear()

    # -- what to do next -----------------------------------------------------------

    def schedule(self) -> list[tuple[WorkerId, list[int]]]:
        """Batches to start now, as (worker, job keys): free slots go to the idle workers
        whose backends have the most estimated work left."""
        started: list[tuple[WorkerId, list[int]]] = []
        while not self.stopped and self._waiting and len(self._running) < self.slots:
            worker = max(self._waiting, key=lambda w: self.backlogs[self._backend[w]].estimate())
            self._waiting.remove(worker)
            batch = self.backlogs[self._backend[worker]].batches.popleft()
            self._running[worker] = set(batch)
            started.append((worker, batch))
            self._retire_dry_waiters()
        return started

    def upcoming(self, backend: str) -> list[int]:
        """The job keys of the backend's next batch, not yet started ([] when none is left)."""
        return [] if self.stopped else self.backlogs[backend].batches.peek()

    def helper_wanted(self, worker: WorkerId) -> str | None:
        """The backend that the new worker `worker` should start for, or None for no helper.

        A yes counts `worker` as starting: report it with `helper_ready` or `helper_failed`.
        """
        if self.stopped or self._busy >= self.slots:
            self._seekers = 0
            return None
        if not self._seekers:
            return None
        open_ = [b for b in self.backlogs.values() if b.batches]
        candidates = [(b.estimate() / max(1, b.active), n) for n, b in self.backlogs.items() if b.worth_helping()]
        if not candidates:
            if all(b.measured for b in open_):
                self._seekers = 0  # every open backlog is known and too small to be worth a worker
            return None
        backend = max(candidates)[1]
        self._seekers -= 1
        self._busy += 1
        self._starting.add(worker)
        self._backend[worker] = backend
        return backend

    def to_close(self) -> list[WorkerId]:
        """Workers with nothing left to do, each listed once: close them."""
        closing, self._closing = self._closing, []
        return closing

    @property
    def finished(self) -> bool:
        """Nothing runs, nothing starts, and no idle worker has a batch to take."""
        return not self._running and not self._starting and not self._waiting

    # -- internals -----------------------------------------------------------------

    def _ready(self, worker: WorkerId, backend: str) -> None:
        self._backend[worker] = backend
        self.backlogs[backend].active += 1
        self._idle(worker)

    def _idle(self, worker: WorkerId) -> None:
        if self.stopped or not self.backlogs[self._backend[worker]].batches:
            self._retire(worker)
        else:
            self._waiting.append(worker)

    def _retire_dry_waiters(self) -> None:
        dry = [w for w in self._waiting if not self.backlogs[self._backend[w]].batches]
        for worker in dry:
            self._waiting.remove(worker)
            self._retire(worker)

    def _retire(self, worker: WorkerId) -> None:
        """`worker` has no batch left: close it and free its place."""
        self.backlogs[self._backend.pop(worker)].active -= 1
        self._closing.append(worker)
        self._free_place()

    def _free_place(self) -> None:
        self._busy -= 1
        if self._busy < self.slots and not self.stopped:
            self._seekers += 1

