"""The parent's memory stays flat as a run grows: jobs keep no arrays once judged, oracle
outputs live in a cache bounded in bytes, records read back share their equal parts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from poolconform import inputs, job as job_module
from poolconform.job import Job, oracle_job
from poolconform.oracle import reference_outputs
from poolconform.results import read_records
from poolconform.validation import make_case


def cases(n: int) -> list:
    return [make_case("AveragePool", (1, 2, 8 + i, 8 + i), kernel=3, strides=1, pads=1) for i in range(n)]


@pytest.fixture(autouse=True)
def fresh_caches():
    job_module.clear_oracle_cache()
    inputs.clear_cache()
    yield
    job_module.clear_oracle_cache()
    inputs.clear_cache()


def test_the_oracle_cache_stays_under_its_byte_limit_and_evicted_outputs_are_remade_equal(monkeypatch):
    limit = 20_000
    monkeypatch.setattr(job_module._oracle_cache, "limit", limit)
    jobs = [oracle_job(c) for c in cases(12)]
    first = [[a.copy() for a in j.expected] for j in jobs]
    assert 0 < job_module._oracle_cache.bytes <= limit
    held = [j for j in jobs if j.cache_key in job_module._oracle_cache]
    assert 0 < len(held) < len(jobs)  # the oldest were evicted
    assert jobs[0].cache_key not in job_module._oracle_cache
    for j, before in zip(jobs, first):  # an evicted job's outputs come back identical
        again = j.expected
        assert len(again) == len(before)
        assert all(np.array_equal(a, b) for a, b in zip(again, before))
        assert job_module._oracle_cache.bytes <= limit


def test_judging_facts_stay_under_their_byte_limit_and_go_with_their_array(monkeypatch):
    """An average's bound and bracket (three times its oracle output) were kept for as long
    as the output lived, uncounted: at 20,000 cases they outgrew the oracle cache itself.
    Bounded now; one dropped is computed again and judges the same."""
    import gc

    from poolconform import compare
    from poolconform.verdict import outcome_record
    from poolconform.worker import Outcome

    def judged(job: Job) -> dict:
        answer = job.expected[0].astype(np.float32)
        answer.flat[0] += 0.5  # one element off: a mismatch, judged with the bound
        return outcome_record(job, "stand-in", Outcome(0, "outputs", [answer]))

    facts = compare._facts
    facts.clear()
    monkeypatch.setattr(facts, "limit", 12_000)
    jobs = [oracle_job(c) for c in cases(12)]
    first = []
    for j in jobs:
        first.append(judged(j))
        assert 0 < facts.bytes <= 12_000
    assert all(r["status"] == "mismatch" for r in first)
    assert 0 < len(facts) < len(jobs)  # the oldest were dropped
    again = [judged(j) for j in jobs]  # dropped facts are computed again, and judge the same
    assert [(r["status"], r["detail"], r["atol"]) for r in again] == [(r["status"], r["detail"], r["atol"]) for r in first]
    held = len(facts)
    job_module.clear_oracle_cache()
    del jobs
    gc.collect()
    assert held > 0 and len(facts) == 0 and facts.bytes == 0  # gone with the oracle outputs


def test_release_frees_outputs_and_inputs_and_the_values_come_back_the_same():
    j = oracle_job(cases(1)[0])
    expected = [a.copy() for a in j.expected]
    assert j.cache_key in job_module._oracle_cache and j.case.id in inputs._cache
    j.release()
    assert j.cache_key not in job_module._oracle_cache
    assert j.case.id not in inputs._cache
    assert job_module._oracle_cache.bytes == 0
    assert np.array_equal(j.expected[0], expected[0])
    assert np.array_equal(j.expected[0], reference_outputs(j.case, inputs.generate_inputs(j.case))[0])


def test_a_job_made_again_finds_its_cases_outputs_and_given_inputs_are_never_shared(monkeypatch):
    case = cases(1)[0]
    first = oracle_job(case).expected
    assert oracle_job(case).expected is first  # a lagging backend's job, made again, computes nothing
    given = Job(case, [np.full(case.input_shape, 3.0, dtype=np.float32)])
    assert given.cache_key is given and not np.array_equal(given.expected[0], first[0])
    assert oracle_job(case).expected is first  # the given inputs' outputs went under their own key
    monkeypatch.setattr(job_module._oracle_cache, "limit", 10 * job_module.ENTRY_OVERHEAD)
    job_module.clear_oracle_cache()
    tiny = [oracle_job(make_case("MaxPool", (1, 1, 2 + i, 2 + i), kernel=2)) for i in range(40)]
    for j in tiny:
        j.expected
    kept = sum(j.cache_key in job_module._oracle_cache for j in tiny)
    assert 0 < kept < 10  # each entry's overhead counts: tiny outputs do not make entries unbounded
    monkeypatch.setattr(inputs._cache, "limit", 10 * inputs.ENTRY_OVERHEAD)
    inputs.clear_cache()
    for j in tiny[:12]:  # up to 13x13: each fits alone
        inputs.make_inputs(j.case)
    assert 0 < len(inputs._cache) < 10  # the same for the inputs kept


def test_given_inputs_and_outputs_are_never_dropped():
    case = cases(1)[0]
    given_in = [np.full(case.input_shape, 7.0, dtype=np.float32)]
    given_out = [np.zeros((1, 2, 8, 8))]  # deliberately not the oracle's: check's stored truth
    j = Job(case, given_in, given_out, expected_from="stored")
    j.release()
    job_module.clear_oracle_cache()
    assert j.expected is given_out
    assert j.inputs is given_in
    assert j.task(3).inputs is given_in


def test_a_run_releases_every_job_it_judged(tmp_path: Path):
    pytest.importorskip("onnxruntime", reason="the run needs a real backend worker")
    from poolconform.backends.base import registry
    from poolconform.runner import RunOptions, run_jobs, start_workers

    jobs = [oracle_job(c) for c in cases(5)]
    options = RunOptions(timeout=120, jobs=1, batch_size=2, log_dir=tmp_path)
    workers = start_workers([registry()["onnxruntime-cpu"]], options)
    records: list[dict] = []
    run_jobs(jobs, workers, options, records.extend)
    assert sorted(r["case"] for r in records) == sorted(j.case.id for j in jobs)
    assert {r["status"] for r in records} == {"pass"}
    assert job_module._oracle_cache.bytes == 0
    assert not any(j.cache_key in job_module._oracle_cache for j in jobs)
    assert not any(j.case.id in inputs._cache for j in jobs)


def test_records_read_back_share_a_cases_equal_params_but_not_unequal_ones(tmp_path: Path):
    params = {"op": "MaxPool", "kernel": [2, 2]}
    rows = [
        {"case": "c1", "backend": "a", "status": "pass", "params": dict(params), "detail": "same words"},
        {"case": "c1", "backend": "b", "status": "mismatch", "params": dict(params), "detail": "same words"},
        {"case": "c1", "backend": "c", "status": "pass", "params": {"op": "MaxPool", "kernel": [3, 3]}},
        {"case": "c2", "backend": "a", "status": "pass", "params": {"op": "AveragePool"}},
    ]
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = read_records(path)
    assert records == rows  # values unchanged
    a, b, c, d = records
    assert a["params"] is b["params"]
    assert c["params"] == {"op": "MaxPool", "kernel": [3, 3]} and c["params"] is not a["params"]
    assert d["params"] == {"op": "AveragePool"}
    assert a["detail"] is b["detail"]


def test_prepared_inputs_are_the_generated_ones_and_large_ones_are_left_alone(monkeypatch):
    """The runner makes a worker's next batch's inputs while the current one computes
    (inputs.prepare_inputs): the later make_inputs copies the kept bytes, which are exactly
    what generating gives; an input too large to keep beside others is not made early."""
    case = cases(1)[0]
    fresh = inputs.generate_inputs(case)
    made = []
    real = inputs.generate_inputs
    monkeypatch.setattr(inputs, "generate_inputs", lambda c: made.append(c.id) or real(c))
    oracle_job(case).prepare()
    assert made == [case.id]
    got = inputs.make_inputs(case)
    assert made == [case.id]  # a copy, not a second generation
    assert all(a.tobytes() == b.tobytes() and a.flags.writeable for a, b in zip(got, fresh))
    big = make_case("MaxPool", (1, 1, 4, 4), kernel=2)
    monkeypatch.setattr(inputs._cache, "limit", 200)  # 4x4 float32 = 64 bytes > 200 // 4
    inputs.prepare_inputs(big)
    assert big.id not in inputs._cache and made == [case.id]
    given = Job(case, [np.zeros(case.input_shape, np.float32)])
    inputs.clear_cache()
    given.prepare()  # given inputs are the job's own: nothing to make
    assert made == [case.id] and case.id not in inputs._cache


def test_inputs_that_cannot_be_made_early_fail_at_the_task_as_before():
    """Preparing is a head start only: a case whose inputs cannot be made (here a generator the
    table does not know) does not stop the run's loop early; the task raises as it did."""
    from poolconform.case import PoolCase
    from poolconform.errors import CaseError

    odd = PoolCase("MaxPool", (1, 1, 4, 4), kernel=(2, 2), strides=(1, 1), pads=(0, 0, 0, 0),
                   dilations=(1, 1), generator="no-such-generator")
    job = Job(odd)
    job.prepare()
    with pytest.raises(CaseError, match="unknown generator"):
        job.task(0)


def test_a_finished_run_gives_back_what_judging_kept_before_its_reports(monkeypatch, tmp_path: Path):
    """Once every record is written, the reports read records, not arrays: the caches of
    inputs, oracle outputs and judging facts are empty when the summary is made, even of
    entries no released job let go (here planted before the run, as a job a lost worker never
    finished leaves them), and the freed heap is handed back (poolconform/memory.py)."""
    from poolconform import compare, pipeline
    from poolconform.cli import main
    from poolconform.memory import trim_heap

    seen: dict[str, int] = {}
    summarize = pipeline.summarize

    def spy(records, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.update(inputs=len(inputs._cache), oracle=len(job_module._oracle_cache), facts=len(compare._facts))
        return summarize(records, *args, **kwargs)

    monkeypatch.setattr(pipeline, "summarize", spy)
    planted = oracle_job(cases(1)[0])
    assert planted.expected is not None and len(inputs._cache) and len(job_module._oracle_cache)
    status = main(["run", "--cases", "MaxPool-2d-k2-s2-p0-f32-n4-gseed", "--cases", "AveragePool-2d-k3-s1-p1-f32-n9",
                   "--backends", "onnx-reference", "--out", str(tmp_path / "out"), "--quiet"])
    assert status == 0 and seen == {"inputs": 0, "oracle": 0, "facts": 0}
    records = read_records(tmp_path / "out" / "results.jsonl")
    assert [r["status"] for r in records] == ["pass", "pass"]
    assert trim_heap() in (True, False)  # glibc here; elsewhere nothing to call, and no error
