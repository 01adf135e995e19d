"""Triage: disagreeing records become one finding per behaviour, with a pattern, a snippet, a minimal case."""

from __future__ import annotations

import pytest

from poolconform.validation import make_case
from poolconform.expectations import apply_expectations, load_expectations, unmatched
from poolconform.findings import build_findings
from poolconform.findings.features import case_tests
from poolconform.findings.triage import normalise_message, triage, unsupported_groups
from poolconform.results import make_record


def _record(case, backend, status, detail="", **extra):
    return make_record(case.id, backend, status, detail=detail, params=case.describe(), **extra)


def _grid():
    for op in ("MaxPool", "AveragePool"):
        for k in (1, 2, 3):
            for s in (1, 2, 3):
                for n in (4, 5, 7):
                    for p in (0, 1):
                        for ceil in (False, True):
                            for cip in ((False, True) if op == "AveragePool" else (False,)):
                                try:
                                    yield make_case(op, (1, 1, n, n), kernel=k, strides=s, pads=p, ceil_mode=ceil,
                                                    count_include_pad=cip)
                                except Exception:  # noqa: BLE001  impossible combinations
                                    continue


def _planted(case):
    """A made-up backend with two behaviours: MaxPool keeps a ceil window past the input's end,
    AveragePool with count_include_pad and padding fails with an error that names sizes."""
    tests = case_tests(case.describe())
    if case.op == "MaxPool" and ("ceil_window_in_pad", True) in tests:
        return "shape-mismatch", dict(expected_shape=[1, 1, 2], actual_shape=[1, 1, 3])
    if case.op == "AveragePool" and case.count_include_pad and any(case.pads):
        return "error", dict(detail=f"RuntimeError: bad window {case.kernel} at size {case.spatial[0]}")
    return "pass", {}


@pytest.fixture(scope="module")
def planted():
    records = []
    for case in _grid():
        status, extra = _planted(case)
        records.append(_record(case, "fake", status, **extra))
        records.append(_record(case, "other", "pass"))
    return records


def test_each_planted_behaviour_is_one_finding_with_its_pattern(planted):
    findings = triage(planted)
    shape = [f for f in findings if f["status"] == "shape-mismatch"]
    errors = [f for f in findings if f["status"] == "error"]
    assert len(shape) == 1 and len(errors) == 1 and len(findings) == 2
    want_shape = sorted(r["case"] for r in planted if r["backend"] == "fake" and r["status"] == "shape-mismatch")
    assert sorted(shape[0]["cases"]) == want_shape and shape[0]["count"] == len(want_shape) > 5
    assert {tuple(t) for t in shape[0]["rule"]} == {("op", "MaxPool"), ("ceil_window_in_pad", True)}
    assert shape[0]["summary"] == ("fake: output shape larger by 1 when MaxPool, "
                                   "the last ceil_mode window starts past the input's end")
    # errors differing only in numbers group into one finding
    assert errors[0]["signature"] == "RuntimeError: bad window (#) at size #"
    # count_include_pad implies AveragePool here: the shortest rule that separates wins
    assert {tuple(t) for t in errors[0]["rule"]} == {("count_include_pad", True), ("padded", True)}
    # the minimal member is the smallest input
    assert errors[0]["minimal_case"].endswith("-n4")


def test_every_disagreement_lands_in_exactly_one_finding(planted):
    findings = triage(planted)
    members = [(f["backend"], c) for f in findings for c in f["cases"]]
    failing = [(r["backend"], r["case"]) for r in planted if r["status"] != "pass"]
    assert sorted(members) == sorted(failing)


def test_cases_no_pattern_separates_are_still_reported():
    case = make_case("MaxPool", (1, 1, 4, 4), kernel=2)
    twin = case.replace(label="twin")  # same params, another id: no test can separate them
    records = [_record(case, "b", "mismatch", detail="Y[0] expected 1, got 2"), _record(twin, "b", "pass")]
    records[1]["case"] = "twin"
    [finding] = triage(records)
    assert finding["cases"] == [case.id] and finding["rule"] == []
    assert "share no pattern" in finding["summary"]


def test_expected_findings_are_marked_and_sorted_last(planted):
    records = [dict(r) for r in planted]
    for r in records:
        if r["status"] == "error":
            r["expected"], r["expected_reason"], r["expected_link"] = True, "known", "https://example.org/1"
    findings = triage(records)
    assert [f["status"] for f in findings] == ["shape-mismatch", "error"]
    assert findings[1]["expected"] and findings[1]["link"] == "https://example.org/1"
    assert not findings[0]["expected"] and findings[0]["unexpected"] == findings[0]["count"]


def test_messages_lose_numbers_and_shapes_but_keep_words():
    a = normalise_message("Invalid input shape (1, 3, 224, 224) at node 0x7f3a; got 1.5e-3 for pool2d")
    b = normalise_message("Invalid input shape (2, 1, 7, 7) at node 0x11; got -4 for pool2d")
    assert a == b == "Invalid input shape (#) at node #; got # for pool2d"


def test_unsupported_records_group_by_reason_template():
    cases = [make_case("MaxPool", (1, 1, n), kernel=2, dilations=d) for n, d in ((4, 2), (5, 3), (6, 2))]
    records = [_record(c, "keras", "unsupported", detail=f"Keras pooling has no dilation ({c.dilations[0]})")
               for c in cases]
    [group] = unsupported_groups(records)
    assert group["count"] == 3 and group["reason"] == "Keras pooling has no dilation (#)"
    assert group["minimal_case"] == cases[0].id and group["expected"] is False
    assert triage(records) == []  # unsupported is not a disagreement


def test_the_snippet_pastes_into_an_expectations_file_and_covers_the_finding(planted, tmp_path):
    findings = build_findings(planted)
    path = tmp_path / "expect.toml"
    path.write_text("\n".join(f["expect"] for f in findings))
    entries = load_expectations(path, backends=["fake", "other"])
    records = [dict(r) for r in planted]
    apply_expectations(records, entries)
    assert all(r.get("expected") for r in records if r["status"] != "pass")
    assert build_findings(records)[0]["expected"]
    assert unmatched(records, entries) == []


def test_expectations_match_export_folder_names_and_carry_links(tmp_path):
    path = tmp_path / "e.toml"
    path.write_text('[[expect]]\ncase = "MaxPool-*-ceil-*"\nbackend = "openvino-cpu"\nstatus = "shape-mismatch"\n'
                    'reason = "keeps the window"\nlink = "https://github.com/openvinotoolkit/openvino/issues/1"\n'
                    '[[expect]]\ncase = "Typo-*"\nreason = "matches nothing"\n')
    entries = load_expectations(path)
    exported = make_record("test_MaxPool-2d-k1-s2-p0-ceil-f32-n4", "openvino-cpu", "shape-mismatch")
    other = make_record("test_MaxPool-2d-k2-s2-p0-f32-n4", "openvino-cpu", "shape-mismatch")
    apply_expectations([exported, other], entries)
    assert exported["expected"] and exported["expected_link"].endswith("/issues/1")
    assert not other.get("expected")  # the glob still has to match after the prefix
    assert [u["case"] for u in unmatched([exported, other], entries)] == ["Typo-*"]


def test_a_fixed_entry_keeps_its_link(tmp_path):
    path = tmp_path / "e.toml"
    path.write_text('[[expect]]\ncase = "A"\nreason = "r"\nlink = "https://example.org/2"\n')
    fixed = apply_expectations([make_record("A", "onnx-reference", "pass")], load_expectations(path))
    assert fixed == [{"case": "A", "backend": "*", "reason": "r", "link": "https://example.org/2"}]


def test_shrink_reaches_a_smaller_case_the_backend_still_gets_wrong():
    pytest.importorskip("onnx", reason="the shrink re-runs onnx-reference")
    from poolconform.findings.shrink import case_of, shrink_findings
    from poolconform.job import oracle_job
    from poolconform.runner import RunOptions, start_workers
    from poolconform.verdict import outcome_record
    from poolconform.backends.base import resolve_backend_names
    from poolconform.worker import Task

    bad = make_case("AveragePool", (2, 3, 7, 7), kernel=3, strides=3, ceil_mode=True)
    good = make_case("AveragePool", (2, 3, 7, 7), kernel=3, strides=3)
    records = [_record(bad, "onnx-reference", "mismatch", detail="Y[0] expected 1, got 2; 1 of 1 element(s) differ"),
               _record(good, "onnx-reference", "pass")]
    findings = build_findings(records)
    shrink_findings(findings, records, budget=60)
    [f] = findings
    assert f["shrunk"] and f["minimal_case"] != bad.id
    worker = start_workers(resolve_backend_names(["onnx-reference"]), RunOptions(timeout=30, jobs=1))["onnx-reference"]
    try:
        rebuilt = case_of({"case": f["minimal_case"], "params": _params_of(f["minimal_case"], bad)})
        assert rebuilt is not None
        outcome = next(iter(worker.run([Task(0, rebuilt, None)], 30)))
        record = outcome_record(oracle_job(rebuilt), "onnx-reference", outcome)
    finally:
        worker.close()
    assert record["status"] == "mismatch"
    assert rebuilt.input_shape[0] * rebuilt.input_shape[1] == 1
    assert sum(rebuilt.input_shape) < sum(bad.input_shape)


def _params_of(case_id, start):
    """The params of the shrunk case: searched among start's shrink neighbourhood by id."""
    from poolconform.findings.shrink import DIMENSIONS, _variants

    seen, frontier = {start.id: start}, [start]
    while frontier:
        nxt = []
        for c in frontier:
            for dim in DIMENSIONS:
                for v in _variants(c, dim):
                    if v.id not in seen:
                        seen[v.id] = v
                        nxt.append(v)
        if case_id in seen:
            return seen[case_id].describe()
        frontier = nxt[:2000]
    raise AssertionError(f"{case_id} is not reachable from {start.id}")


def test_an_entry_about_a_backend_that_did_not_run_is_not_called_unmatched(tmp_path):
    path = tmp_path / "e.toml"
    path.write_text('[[expect]]\ncase = "MaxPool-*"\nbackend = "openvino-cpu"\nreason = "not installed here"\n'
                    '[[expect]]\ncase = "Typo-*"\nbackend = "onnxruntime-cpu"\nreason = "a typo"\n')
    entries = load_expectations(path)
    ran = [make_record("MaxPool-2d-k2-s2-p0-f32-n4", "onnxruntime-cpu", "pass")]
    assert [u["case"] for u in unmatched(ran, entries)] == ["Typo-*"]


def test_scattered_disagreements_stop_at_max_rules_and_keep_every_record():
    """A backend wrong on scattered cases (every other input size, no shared attribute) would
    cost one full rule search per record: after MAX_RULES findings the rest make one, and no
    record is lost."""
    from poolconform.findings.triage import MAX_RULES

    cases = [make_case("MaxPool", (1, 1, n, n), kernel=2) for n in range(4, 4 + 2 * (MAX_RULES + 8))]
    records = [_record(c, "b", "mismatch" if i % 2 else "pass", detail="Y[0] expected 1, got 2")
               for i, c in enumerate(cases)]
    findings = triage(records)
    failing = sorted(r["case"] for r in records if r["status"] == "mismatch")
    assert sorted(c for f in findings for c in f["cases"]) == failing
    assert len(findings) == MAX_RULES + 1
    rest = [f for f in findings if f["rule"] == []]
    assert len(rest) == 1 and rest[0]["count"] == len(failing) - MAX_RULES
    assert f"not split into more than {MAX_RULES} patterns" in rest[0]["summary"]
    assert all(f["count"] == 1 and f["rule"] for f in findings if f is not rest[0])


def test_shrinking_stops_as_soon_as_the_stop_event_is_set():
    """Ctrl-C while findings are shrunk: the shrinking of the current finding ends at its next
    question to the backend, and no later finding is shrunk."""
    import threading

    pytest.importorskip("onnx", reason="the shrink re-runs onnx-reference")
    from poolconform.findings import shrink
    from poolconform.findings.shrink import shrink_findings

    bad = make_case("AveragePool", (2, 3, 7, 7), kernel=3, strides=3, ceil_mode=True)
    records = [_record(bad, "onnx-reference", "mismatch", detail="Y[0] expected 1, got 2; 1 of 1 element(s) differ")]
    findings = build_findings(records)
    stop = threading.Event()
    asked: list[int] = []
    real = shrink._keeps_for

    def keeps_for(finding, run):
        keeps = real(finding, run)

        def counted(cases):
            asked.append(len(cases))
            stop.set()  # as if Ctrl-C came during the first question
            return keeps(cases)

        return counted

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shrink, "_keeps_for", keeps_for)
        shrink_findings(findings, records, budget=60, stop=stop)
    assert len(asked) == 1  # one question, then the stop was seen
    assert not findings[0].get("shrunk")


def test_the_reproduce_line_of_a_stored_data_or_folder_finding_is_a_command_that_runs():
    """`explain` takes case ids, and stored-data is no backend: check's findings named
    `poolconform explain test_nan --backends stored-data`, which exits 2."""
    from poolconform.findings import reproduce_command

    case = "MaxPool-2d-k2-s2-p0-f32-n4-gseed"
    assert reproduce_command({"backend": "stored-data", "minimal_case": case}) == f"poolconform check test_{case}"
    assert reproduce_command({"backend": "onnxruntime-cpu", "minimal_case": "test_nan"}) == (
        "poolconform check test_nan --backends onnxruntime-cpu")
    assert reproduce_command({"backend": "onnxruntime-cpu", "minimal_case": case}) == (
        f"poolconform explain {case} --backends onnxruntime-cpu")


def test_a_finding_points_at_a_case_that_fails_the_run_not_an_excused_one():
    """A finding of excused and unexcused records named an excused case as its minimal case
    (the smallest), so its reproduce line showed something the run did not fail on."""
    small = make_case("MaxPool", (1, 1, 4, 4), kernel=2, strides=1, ceil_mode=True)
    large = make_case("MaxPool", (1, 1, 9, 9), kernel=2, strides=1, ceil_mode=True)
    detail = "Y[0] expected 1, got 2; 1 of 1 element(s) differ"
    records = [_record(small, "onnx-reference", "mismatch", detail=detail, expected=True, expected_reason="r"),
               _record(large, "onnx-reference", "mismatch", detail=detail)]
    [finding] = build_findings(records)
    assert finding["minimal_case"] == large.id and finding["unexpected"] == 1 and not finding["expected"]
