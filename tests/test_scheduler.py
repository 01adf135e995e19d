"""The run's scheduling rules, without processes: the Scheduler is plain state."""

from __future__ import annotations

import random

import pytest

from poolconform.scheduler import HELP_MIN_SECONDS, Scheduler, batches_of


def finish(s: Scheduler, worker: int, keys: list[int], seconds: float = 0.01) -> None:
    for key in keys:
        s.mark_done(worker, key, seconds)
    assert s.batch_done(worker) == []


def test_batches_cover_every_key_once_in_order():
    assert list(batches_of(list(range(7)), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batches_of([], 3)) == []
    assert list(batches_of([4, 5], 0)) == [[4], [5]]  # a size below 1 means one key a batch


def test_at_most_slots_batches_run_at_once():
    s = Scheduler({"a": range(10), "b": range(10), "c": range(10)}, slots=2, batch_size=5)
    s.add_workers({0: "a", 1: "b", 2: "c"})
    first = s.schedule()
    assert [w for w, _ in first] == [0, 1]  # ties (nothing measured) go first come first served
    assert s.schedule() == []  # no slot free
    finish(s, 0, first[0][1])
    assert [w for w, _ in s.schedule()] == [2]


def test_a_free_slot_goes_to_the_backend_with_most_work_left():
    s = Scheduler({"fast": range(40), "slow": range(40)}, slots=1, batch_size=10)
    s.add_workers({0: "fast", 1: "slow"})
    (w, batch), = s.schedule()
    assert w == 0
    finish(s, 0, batch, seconds=0.001)  # fast: 30 cases x 1 ms left; slow: unmeasured, so infinite
    (w, batch), = s.schedule()
    assert w == 1
    finish(s, 1, batch, seconds=1.0)  # slow: 30 cases x 1 s left
    assert [w for w, _ in s.schedule()] == [1]
    assert s.backlogs["slow"].estimate() == pytest.approx(30.0)
    assert s.backlogs["fast"].estimate() == pytest.approx(0.03)


def test_a_dry_worker_is_closed_once_and_the_run_finishes():
    s = Scheduler({"a": range(3), "b": []}, slots=4, batch_size=2)
    s.add_workers({0: "a", 1: "b"})
    assert s.to_close() == [1]  # nothing to do on b (all skipped by --resume)
    assert s.to_close() == []
    for _ in range(2):
        (w, batch), = s.schedule()
        assert not s.finished
        finish(s, w, batch)
    assert s.to_close() == [0]
    assert s.finished and s.schedule() == []


def slow_measured(s: Scheduler, worker: int, seconds: float) -> None:
    """Run one batch of `worker` at `seconds` per case."""
    (w, batch), = [(w, b) for w, b in s.schedule() if w == worker]
    finish(s, w, batch, seconds)


def test_a_helper_is_wanted_only_after_a_worker_runs_dry():
    s = Scheduler({"ort": range(4), "ref": range(400)}, slots=2, batch_size=4, start_seconds={"ref": 0.5})
    s.add_workers({0: "ort", 1: "ref"})
    started = dict(s.schedule())
    finish(s, 1, started[1], seconds=1.0)  # ref: 396 s of work left, far over 3 x 0.5 s
    assert s.helper_wanted(2) is None  # both places are taken while ort still works
    finish(s, 0, started[0], seconds=0.001)
    assert s.to_close() == [0]
    assert s.helper_wanted(2) == "ref"
    assert s.helper_wanted(3) is None  # the place went to worker 2
    assert not s.finished  # a helper is starting
    s.helper_ready(2)
    assert s.backlogs["ref"].active == 2
    assert {w for w, _ in s.schedule()} == {1, 2}


def test_no_helper_for_little_work_or_an_expensive_start():
    s = Scheduler({"ort": range(2), "ref": range(8)}, slots=2, batch_size=2, start_seconds={"ref": 10.0})
    s.add_workers({0: "ort", 1: "ref"})
    started = dict(s.schedule())
    finish(s, 1, started[1], seconds=2.0)  # 6 cases x 2 s = 12 s left: under 3 x 10 s of start-up
    finish(s, 0, started[0])
    assert s.to_close() == [0]
    assert s.helper_wanted(2) is None
    assert s.helper_wanted(2) is None  # the place was given up, since every open backlog is measured


def test_the_helper_threshold_is_at_least_help_min_seconds():
    s = Scheduler({"ort": range(1), "ref": range(1 + 40)}, slots=2, batch_size=1, start_seconds={"ref": 0.0})
    s.add_workers({0: "ort", 1: "ref"})
    started = dict(s.schedule())
    finish(s, 1, started[1], seconds=HELP_MIN_SECONDS / 40 * 0.9)  # 40 cases left: 0.9 x HELP_MIN_SECONDS
    finish(s, 0, started[0])
    assert s.helper_wanted(2) is None


def test_a_place_waits_while_the_work_left_is_unknown():
    s = Scheduler({"ort": range(1), "ref": range(100)}, slots=2, batch_size=1, start_seconds={"ref": 0.1})
    s.add_workers({0: "ort", 1: "ref"})
    started = dict(s.schedule())
    finish(s, 0, started[0])
    assert s.helper_wanted(2) is None  # ref measured nothing yet: wait, do not give up
    finish(s, 1, started[1], seconds=1.0)
    assert s.helper_wanted(2) == "ref"


def test_a_helper_that_fails_to_start_frees_its_place():
    s = Scheduler({"ort": range(1), "ref": range(100)}, slots=2, batch_size=1, start_seconds={"ref": 0.1})
    s.add_workers({0: "ort", 1: "ref"})
    started = dict(s.schedule())
    finish(s, 0, started[0])
    finish(s, 1, started[1], seconds=1.0)
    assert s.helper_wanted(2) == "ref"
    s.helper_failed(2)
    assert s.helper_wanted(3) == "ref"  # the place is free again
    with pytest.raises(ValueError, match="not starting"):
        s.helper_ready(2)


def test_stop_starts_nothing_and_finishes_once_running_batches_end():
    s = Scheduler({"a": range(10), "b": range(10)}, slots=1, batch_size=5)
    s.add_workers({0: "a", 1: "b"})
    (w, batch), = s.schedule()
    s.mark_done(w, batch[0], 0.1)
    s.stop()
    assert s.to_close() == [1]  # the idle worker is closed at once
    assert s.schedule() == [] and s.helper_wanted(9) is None
    assert not s.finished
    assert s.batch_done(w) == batch[1:]  # the keys that got no outcome: no record is made for them
    assert s.to_close() == [w]
    assert s.finished


def test_wrong_reports_are_refused():
    s = Scheduler({"a": range(4)}, slots=1, batch_size=2)
    s.add_workers({0: "a"})
    (w, batch), = s.schedule()
    with pytest.raises(ValueError, match="not running case 3"):
        s.mark_done(w, 3, 0.1)
    with pytest.raises(ValueError, match="no batch running"):
        s.batch_done(7)
    with pytest.raises(ValueError, match="added twice"):
        s.add_workers({0: "a"})
    with pytest.raises(ValueError, match="no backlog for backend 'zz'"):
        s.add_workers({5: "zz"})


@pytest.mark.parametrize("seed", range(20))
def test_a_simulated_run_gives_every_key_exactly_one_outcome(seed):
    """Random durations, random event order, helpers that sometimes fail: each (backend,
    key) is run exactly once, never more than `slots` batches at once, and the run ends."""
    rng = random.Random(seed)
    backends = {f"b{i}": range(rng.randint(0, 60)) for i in range(rng.randint(1, 4))}
    slots = rng.randint(1, 4)
    s = Scheduler(backends, slots=slots, batch_size=rng.randint(1, 9),
                  start_seconds={n: rng.uniform(0, 2) for n in backends})
    backend_of = {i: name for i, name in enumerate(backends)}
    s.add_workers(dict(backend_of))
    running: dict[int, list[int]] = {}
    starting: list[int] = []
    done: list[tuple[str, int]] = []
    closed: set[int] = set()
    failed: set[int] = set()
    for _ in range(100_000):
        for w, batch in s.schedule():
            assert w not in running and w not in closed
            running[w] = list(batch)
        assert len(running) <= slots
        for w in s.to_close():
            assert w not in closed and w not in running
            closed.add(w)
        while (backend := s.helper_wanted(len(backend_of))) is not None:
            starting.append(len(backend_of))
            backend_of[len(backend_of)] = backend
        if s.finished:
            break
        if starting and rng.random() < 0.3:
            w = starting.pop(rng.randrange(len(starting)))
            if rng.random() < 0.8:
                s.helper_ready(w)
            else:
                s.helper_failed(w)
                failed.add(w)
            continue
        w = rng.choice(sorted(running))
        if running[w]:
            key = running[w].pop(0)
            s.mark_done(w, key, rng.choice([0.001, 0.5, 3.0]))
            done.append((backend_of[w], key))
        else:
            del running[w]
            assert s.batch_done(w) == []
    assert s.finished and not running and not starting
    assert sorted(done) == sorted((n, k) for n, keys in backends.items() for k in keys)
    assert closed | failed == set(backend_of) and not closed & failed  # every started worker closed once


def test_upcoming_names_the_next_batch_without_starting_it():
    """What the runner prepares inputs for while a batch computes: the backend's next batch,
    the one schedule() will start, and nothing once the backlog is empty or the run stops."""
    s = Scheduler({"a": range(5)}, slots=1, batch_size=2)
    s.add_workers({0: "a"})
    assert s.upcoming("a") == [0, 1]
    [(worker, batch)] = s.schedule()
    assert batch == [0, 1] and s.upcoming("a") == [2, 3]
    finish(s, worker, batch)
    assert s.schedule() == [(0, [2, 3])] and s.upcoming("a") == [4]
    s.stop()
    assert s.upcoming("a") == []
