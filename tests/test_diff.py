"""`poolconform diff`: regressed / fixed / changed per (case, backend), versions, exit statuses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from poolconform.validation import make_case
from poolconform.cli import main
from poolconform.results import make_record

CASES = [make_case("MaxPool", (1, 1, n, n), kernel=2, strides=2, ceil_mode=True) for n in (4, 5, 7)]


def _run(folder: Path, statuses: dict[str, str], digests: dict[str, str] | None = None, version: str = "1.0",
         backend: str = "onnxruntime-cpu") -> Path:
    folder.mkdir()
    lines = []
    for case in CASES:
        status = statuses.get(case.id, "pass")
        lines.append(json.dumps(make_record(case.id, backend, status, detail=f"{status} detail",
                                            digest=(digests or {}).get(case.id, "d0"), params=case.describe())))
    (folder / "results.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "summary.json").write_text(json.dumps({"backends": {backend: {"version": version}}}))
    return folder


def test_a_regression_a_fix_and_numeric_drift_are_told_apart(tmp_path, capsys):
    a = _run(tmp_path / "a", {CASES[1].id: "mismatch"}, version="1.20")
    b = _run(tmp_path / "b", {CASES[0].id: "shape-mismatch"}, digests={CASES[2].id: "d1"}, version="1.21")
    status = main(["diff", str(a), str(b), "--json", str(tmp_path / "d.json")])
    assert status == 1
    data = json.loads((tmp_path / "d.json").read_text())
    entry = {"case": CASES[0].id, "backend": "onnxruntime-cpu", "before": "pass", "after": "shape-mismatch"}
    assert [{k: e[k] for k in entry} for e in data["regressed"]] == [entry]
    assert [(e["case"], e["before"], e["after"]) for e in data["fixed"]] == [(CASES[1].id, "mismatch", "pass")]
    assert [(e["case"], e["before"], e["after"]) for e in data["changed"]] == [(CASES[2].id, "pass", "pass")]
    assert data["versions"] == {"a": {"onnxruntime-cpu": "1.20"}, "b": {"onnxruntime-cpu": "1.21"}}
    assert [f["cases"] for f in data["regressed_findings"]] == [[CASES[0].id]]
    out = capsys.readouterr().out
    assert "onnxruntime-cpu: 1.20 -> 1.21" in out and "regressed: 1" in out and "fixed: 1" in out


def test_one_sided_entries_are_listed_and_a_lost_backend_fails(tmp_path, capsys):
    a = _run(tmp_path / "a", {CASES[0].id: "mismatch"})
    b = _run(tmp_path / "b", {}, backend="onnx-reference")
    assert main(["diff", str(a), str(b), "--json", str(tmp_path / "d.json")]) == 1  # B never ran onnxruntime-cpu
    data = json.loads((tmp_path / "d.json").read_text())
    assert data["only_in_a"]["backends"] == ["onnxruntime-cpu"] and data["only_in_b"]["backends"] == ["onnx-reference"]
    assert data["regressed"] == data["fixed"] == data["changed"] == []
    assert [(e["backend"], e["before"], e["after"]) for e in data["lost"]] == [
        ("onnxruntime-cpu", "mismatch", "missing"), ("onnxruntime-cpu", "pass", "missing"),
        ("onnxruntime-cpu", "pass", "missing")]
    assert [e["backend"] for e in data["new"]] == ["onnx-reference"] * 3 and data["exit_status"] == 1
    out = capsys.readouterr().out
    assert "lost (in A, missing from B): 3" in out and "diff: FAIL (exit 1): 3 lost" in out


def _write(folder: Path, pairs: list[tuple[str, str]]) -> Path:
    folder.mkdir()
    (folder / "results.jsonl").write_text("".join(json.dumps(make_record(c, b, "pass")) + "\n" for c, b in pairs))
    return folder


def test_a_pair_lost_while_every_case_and_backend_remain_fails(tmp_path, capsys):
    """B keeps every case (on some backend) and every backend (on some case) but lacks one pair:
    the case and backend sets agree, the pairs do not, and that is a lost record (exit 1)."""
    ids = [c.id for c in CASES]
    both = [(c, b) for c in ids for b in ("onnxruntime-cpu", "onnx-reference")]
    a = _write(tmp_path / "a", both)
    b = _write(tmp_path / "b", both[1:])  # (CASES[0], onnxruntime-cpu) is gone
    assert main(["diff", str(a), str(b), "--json", str(tmp_path / "d.json")]) == 1
    data = json.loads((tmp_path / "d.json").read_text())
    assert data["only_in_a"] == data["only_in_b"] == {"cases": [], "backends": []}
    assert [(e["case"], e["backend"], e["before"]) for e in data["lost"]] == [(ids[0], "onnxruntime-cpu", "pass")]
    out = capsys.readouterr().out
    assert f"{ids[0]} on onnxruntime-cpu: pass -> missing" in out and "diff: FAIL (exit 1): 1 lost" in out
    # the reverse: B checks more than A, nothing lost or regressed
    assert main(["diff", str(b), str(a), "--json", str(tmp_path / "r.json")]) == 0
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["lost"] == [] and [(e["case"], e["after"]) for e in data["new"]] == [(ids[0], "pass")]
    assert "new (in B only): 1" in capsys.readouterr().out


def test_an_empty_run_b_loses_everything(tmp_path):
    a = _run(tmp_path / "a", {})
    b = tmp_path / "b"
    b.mkdir()
    (b / "results.jsonl").write_text("")
    assert main(["diff", str(a), str(b), "--json", str(tmp_path / "d.json")]) == 1
    assert len(json.loads((tmp_path / "d.json").read_text())["lost"]) == len(CASES)
    assert main(["diff", str(b), str(a)]) == 0  # an empty A: all new


def test_an_expected_disagreement_is_not_a_regression(tmp_path):
    a = _run(tmp_path / "a", {})
    b = _run(tmp_path / "b", {CASES[0].id: "mismatch"})
    known = tmp_path / "known.toml"
    known.write_text(f'[[expect]]\ncase = "{CASES[0].id}"\nstatus = "mismatch"\nreason = "known"\n')
    assert main(["diff", str(a), str(b)]) == 1
    assert main(["diff", str(a), str(b), "--expectations", str(known)]) == 0


@pytest.mark.parametrize("what", ["missing", "file", "empty-folder", "bad-record"])
def test_unusable_input_is_one_line_and_exit_2(tmp_path, capsys, what):
    a = _run(tmp_path / "a", {})
    b = tmp_path / "b"
    if what == "file":
        b.write_text("x")
    elif what == "empty-folder":
        b.mkdir()
    elif what == "bad-record":
        b.mkdir()
        (b / "results.jsonl").write_text('{"case": 1, "backend": "x", "status": "pass"}\n')
    assert main(["diff", str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("poolconform: error:") and "Traceback" not in err


def test_digests_of_two_algorithms_are_not_called_changed(tmp_path, capsys):
    """A run fingerprinted by an earlier poolconform (12-digit SHA-1 digests) against one with
    SHA-1 digests of the raw bytes: no pair is "changed" for its digest alone, and the output says why;
    a status change is still reported."""
    from poolconform.compare import DIGEST_ALGORITHM, LEGACY_DIGEST_ALGORITHM, output_digest

    new = output_digest([np.arange(4, dtype=np.float32)])
    a = _run(tmp_path / "a", {CASES[0].id: "unsupported"}, digests={c.id: "0123456789ab" for c in CASES})
    b = _run(tmp_path / "b", {}, digests={c.id: new for c in CASES})
    assert main(["diff", str(a), str(b), "--json", str(tmp_path / "d.json")]) == 0
    data = json.loads((tmp_path / "d.json").read_text())
    assert [(e["case"], e["before"], e["after"]) for e in data["changed"]] == [(CASES[0].id, "unsupported", "pass")]
    assert data["digests_not_compared"] == {f"{LEGACY_DIGEST_ALGORITHM} -> {DIGEST_ALGORITHM}": 2}
    assert "outputs not compared: 2 pair(s)" in capsys.readouterr().out
    c = _run(tmp_path / "c", {}, digests={c.id: output_digest([np.arange(4, dtype=np.float64)]) for c in CASES})
    d = _run(tmp_path / "d", {}, digests={c.id: new for c in CASES})
    assert main(["diff", str(c), str(d), "--json", str(tmp_path / "e.json")]) == 0
    assert len(json.loads((tmp_path / "e.json").read_text())["changed"]) == 3  # same algorithm: a dtype change is drift


def test_output_digest_sees_dtype_shape_and_bits_but_not_nan_payloads():
    from poolconform.compare import digest_algorithm, output_digest

    x = np.array([1.0, np.nan, -0.0], dtype=np.float32)
    other_nan = x.copy()
    other_nan.view(np.uint32)[1] |= 1  # another NaN payload: the same answer
    digests = {output_digest([x]), output_digest([other_nan])}
    assert len(digests) == 1 and digest_algorithm(digests.pop()) == "sha1-64-raw"
    variants = [x.astype(np.float64), x.reshape(3, 1), np.array([1.0, np.nan, 0.0], dtype=np.float32),
                np.array([1.0, 2.0, -0.0], dtype=np.float32)]
    assert len({output_digest([v]) for v in variants} | {output_digest([x])}) == 5


def test_a_case_b_no_longer_checks_is_uncovered_and_fails(tmp_path, capsys):
    """pass -> unsupported is lost coverage, and mismatch -> unsupported is not a fix: both are
    `uncovered` and the gate fails; unsupported -> pass is a change, not a failure."""
    a = _run(tmp_path / "a", {CASES[1].id: "mismatch", CASES[2].id: "unsupported"})
    b = _run(tmp_path / "b", {CASES[0].id: "unsupported", CASES[1].id: "unsupported"})
    assert main(["diff", str(a), str(b), "--json", str(tmp_path / "d.json")]) == 1
    data = json.loads((tmp_path / "d.json").read_text())
    assert [(e["case"], e["before"], e["after"]) for e in data["uncovered"]] == [
        (CASES[0].id, "pass", "unsupported"), (CASES[1].id, "mismatch", "unsupported")]
    assert data["fixed"] == [] and data["regressed"] == [] and data["exit_status"] == 1
    assert [(e["case"], e["before"], e["after"]) for e in data["changed"]] == [(CASES[2].id, "unsupported", "pass")]
    out = capsys.readouterr().out
    assert "uncovered (checked in A, unsupported in B): 2" in out and "diff: FAIL (exit 1): 2 uncovered" in out
    assert main(["diff", str(b), str(a)]) == 1  # the reverse: CASES[2] became unsupported


def test_a_failure_of_another_kind_is_a_regression(tmp_path):
    """A mismatch that now crashes was `changed`, exit 0: a new behaviour passed the gate."""
    a = _run(tmp_path / "a", {CASES[1].id: "mismatch"})
    b = _run(tmp_path / "b", {CASES[1].id: "crash"})
    assert main(["diff", str(a), str(b), "--json", str(tmp_path / "d.json")]) == 1
    data = json.loads((tmp_path / "d.json").read_text())
    assert [(e["case"], e["before"].split(":")[0], e["after"].split(":")[0]) for e in data["regressed"]] == [
        (CASES[1].id, "mismatch", "crash")]
    same = _run(tmp_path / "same", {CASES[1].id: "mismatch"}, digests={CASES[1].id: "d9"})
    assert main(["diff", str(a), str(same)]) == 0  # the known failure drifting is only `changed`


def test_a_new_failing_record_fails_the_gate(tmp_path, capsys):
    """A backend B has and A had not, failing on one case: it hid among the `new` entries, exit 0."""
    a = _run(tmp_path / "a", {})
    b = _run(tmp_path / "b", {})
    extra = make_record(CASES[0].id, "onnx-reference", "mismatch", detail="values differ", digest="d2",
                        params=CASES[0].describe())
    with (b / "results.jsonl").open("a") as f:
        f.write(json.dumps(extra) + "\n")
    assert main(["diff", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "new and failing (in B only): 1" in out and "1 new_failing" in out
