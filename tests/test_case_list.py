"""Lazy cases and jobs: a matrix is held as one number per case and its cases made when read,
equal to what expanding into a list gave; jobs are made when asked for and only the recent
ones held; a backlog cuts its batches as they are taken."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from poolconform import shard
from poolconform.case_ids import parse_case_id
from poolconform.case_list import CaseList
from poolconform.commands.options import select_cases
from poolconform.errors import PoolconformError
from poolconform.job import Job, JobList
from poolconform.matrix import expand, expand_all, load_matrix
from poolconform.scheduler import Batches
from poolconform.validation import make_case

TABLE = {"ops": ["MaxPool", "AveragePool", "GlobalMaxPool"], "kernel": [1, 2, 3], "stride": [1, 2],
         "pads": [0, 1], "input_size": [4, 5, 6]}


def test_cases_read_back_are_the_validated_distinct_cases_in_product_order():
    cases = expand(TABLE).cases
    assert isinstance(cases, CaseList)
    listed = list(cases)
    ids = [c.id for c in listed]
    assert len(ids) == len(set(ids)) == len(cases)
    # the global op ignores kernel, stride and pads: one case per input size, where it first came
    assert sum(1 for c in listed if c.op == "GlobalMaxPool") == 3
    assert [cases[i] for i in range(len(cases))] == listed  # indexing makes the same cases
    assert cases[-1] == listed[-1]
    assert cases[2:5] == listed[2:5] and isinstance(cases[2:5], CaseList)
    # product order: the last key varies fastest
    first = [c for c in listed if c.op == "MaxPool"][:3]
    assert [c.spatial for c in first] == [(4, 4), (5, 5), (6, 6)]
    assert cases == listed and cases != listed[::-1]
    # read back unchecked, yet each is the validated case its id names
    assert all(parse_case_id(c.id) == c for c in listed)


def test_several_tables_and_the_golden_cases_are_joined_without_repeats():
    small = dict(TABLE, ops=["MaxPool"], kernel=[2])
    both = expand_all([small, dict(small, stride=[2, 3])]).cases
    ids = [c.id for c in both]
    assert len(ids) == len(set(ids))
    assert ids[: len(expand(small).cases)] == [c.id for c in expand(small).cases]
    default = load_matrix().cases
    golden = [c for c in default if c.generator == "seed"]
    assert [c.id for c in default][:4] == [c.id for c in golden][:4]


def test_a_large_matrix_holds_a_few_bytes_a_case_not_its_case_objects():
    table = {"ops": ["MaxPool", "AveragePool"], "kernel": [1, 2, 3, 4], "stride": [1, 2, 3, 4],
             "input_size": list(range(8, 40)), "ceil_mode": [False, True], "channels": [1, 2, 3]}
    tracemalloc.start()
    try:
        cases = expand(table).cases
        gc.collect()  # what is garbage is not held
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(cases) > 5000
    # a PoolCase with its id costs about 1 KB; a code costs 8 bytes (the value lists come on top)
    assert held / len(cases) < 32, f"{held / len(cases):.0f} bytes a case"
    assert len({c.id for c in cases}) == len(cases)


def test_a_selection_and_a_shard_stay_lazy_and_keep_matrix_order():
    cases = expand(TABLE).cases
    picked = select_cases(cases, ["AveragePool*", "MaxPool-2d-k4-s1-p0-f32-n9"])
    assert isinstance(picked, CaseList)
    assert [c.op for c in picked][:-1] == ["AveragePool"] * (len(picked) - 1)
    assert picked[-1].id == "MaxPool-2d-k4-s1-p0-f32-n9"  # an id no matrix holds comes last
    assert [c.id for c in picked][:-1] == [c.id for c in cases if c.op == "AveragePool"]
    exact = cases[7].id
    assert [c.id for c in select_cases(cases, [exact, exact])] == [exact]
    with pytest.raises(PoolconformError, match="matches none"):
        select_cases(cases, ["Lp*"])
    with pytest.raises(PoolconformError, match="neither a case of the matrix nor a valid id"):
        select_cases(cases, ["not-an-id"])
    shards = [shard.select(cases, k, 3) for k in (1, 2, 3)]
    assert all(isinstance(s, CaseList) for s in shards)
    assert sorted(c.id for s in shards for c in s) == sorted(c.id for c in cases)
    assert shard.select(list(cases), 2, 3) == shards[1]


def test_jobs_are_made_when_asked_for_and_only_the_recent_ones_held():
    cases = CaseList.of(make_case("MaxPool", (1, 1, 4 + i, 4 + i), kernel=2) for i in range(10))
    made: list[str] = []

    def make(case):
        made.append(case.id)
        return Job(case)

    jobs = JobList(cases, make, keep=3)
    assert len(jobs) == 10 and made == []
    first = jobs[0]
    assert jobs[0] is first and jobs[-10] is first and made == [cases[0].id]
    for i in (1, 2, 3):  # four jobs asked for, three held: the first is let go
        jobs[i]
    again = jobs[0]
    assert again is not first and again.case == first.case
    assert made.count(cases[0].id) == 2
    with pytest.raises(IndexError):
        jobs[10]
    assert [j.case for j in jobs] == list(cases)


def test_batches_are_cut_as_they_are_taken():
    batches = Batches(range(10**6), 64)
    assert len(batches) == 15625 and batches.peek() == list(range(64))
    assert batches.popleft() == list(range(64)) and batches.peek()[0] == 64
    tail = Batches(range(5), 2)
    assert [tail.popleft(), tail.popleft(), tail.popleft()] == [[0, 1], [2, 3], [4]]
    assert not tail and tail.peek() == [] and len(tail) == 0
    with pytest.raises(IndexError):
        tail.popleft()
