"""Expectations: file validation, marking, fixed entries, and the exit status of a real run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from poolconform.cli import main
from poolconform.errors import PoolconformError
from poolconform.expectations import apply_expectations, load_expectations
from poolconform.results import make_record

DISAGREEING = "AveragePool-2d-k3-s3-p0-ceil-f32-n7"  # onnx.reference keeps a window in the padding


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "expect.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ('[[expect]]\ncase = "a"\nreson = "x"\n', "unknown key 'reson'; did you mean 'reason'?"),
    ('[[expect]]\ncase = "a"\nbackend = "b"\n', "missing 'reason'"),
    ('[[expect]]\nbackend = "b"\nreason = "r"\n', "missing 'case'"),
    ('[[expect]]\ncase = "a"\nreason = "r"\nstatus = "fail"\n',
     "unknown status 'fail'; allowed: pass, mismatch, shape-mismatch, unsupported, error, crash, timeout"),
    ('[[expect]]\ncase = "a"\nreason = "r"\nstatus = ["mismatch", "bad"]\n', "unknown status 'bad'"),
    ('[[expect]]\ncase = "a"\nreason = ""\n', "'reason' must be a non-empty string"),
    ('[expect]\ncase = "a"\n', "must be an array of tables"),
    ('[[expects]]\ncase = "a"\n', "unknown top-level key 'expects'; did you mean 'expect'?"),
    ("[[expect]\ncase = ", "is not valid TOML"),
])
def test_bad_files_are_one_clear_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PoolconformError) as info:
        load_expectations(write(tmp_path, text))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PoolconformError, match="does not exist"):
        load_expectations(tmp_path / "nope.toml")


def test_entries_parse_with_defaults(tmp_path: Path) -> None:
    entries = load_expectations(write(tmp_path, '[[expect]]\ncase = "Max*"\nreason = "  known  "\n'))
    assert len(entries) == 1
    assert (entries[0].case, entries[0].backend, entries[0].reason) == ("Max*", "*", "known")
    assert "mismatch" in entries[0].statuses and "pass" not in entries[0].statuses


def test_apply_marks_and_reports_fixed(tmp_path: Path) -> None:
    entries = load_expectations(write(tmp_path, """
[[expect]]
case = "Avg-*-ceil"
backend = "onnx-reference"
status = "mismatch"
reason = "ceil windows"
[[expect]]
case = "Max-1"
backend = "onnx-reference"
reason = "fixed upstream"
[[expect]]
case = "Max-2"
backend = "onnx-reference"
status = "error"
reason = "wrong status listed"
"""))
    records = [
        make_record("Avg-1-ceil", "onnx-reference", "mismatch"),
        make_record("Avg-2-ceil", "onnx-reference", "pass"),
        make_record("Avg-1-ceil", "onnxruntime-cpu", "mismatch"),
        make_record("Max-1", "onnx-reference", "pass"),
        make_record("Max-2", "onnx-reference", "mismatch"),
    ]
    fixed = apply_expectations(records, entries)
    assert [r.get("expected", False) for r in records] == [True, False, False, False, False]
    assert records[0]["expected_reason"] == "ceil windows"
    # the glob still excuses Avg-1-ceil, so only the exact entry whose case passes is fixed
    assert fixed == [{"case": "Max-1", "backend": "onnx-reference", "reason": "fixed upstream"}]


def test_expectations_flip_a_real_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime", reason="the run uses onnxruntime-cpu")
    matrix = tmp_path / "m.toml"
    matrix.write_text('[matrix]\nops = "AveragePool"\nkernel = 3\nstride = 3\ninput_size = 7\nceil_mode = [false, true]\n')
    common = ["run", "--matrix", str(matrix), "--backends", "onnxruntime-cpu,onnx-reference"]
    assert main([*common, "--out", str(tmp_path / "plain"), "--quiet"]) == 1
    plain = json.loads((tmp_path / "plain" / "summary.json").read_text())
    assert [(w["case"], w["backend"]) for w in plain["worst"]] == [(DISAGREEING, "onnx-reference")]
    expect = write(tmp_path, f"""
[[expect]]
case = "{DISAGREEING}"
backend = "onnx-reference"
status = "mismatch"
reason = "onnx.reference keeps a window that starts in the right padding"
[[expect]]
case = "AveragePool-2d-k3-s3-p0-f32-n7"
backend = "onnx*"
reason = "stale entry: this case passes"
""")
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "expected"), "--expectations", str(expect)]) == 0
    err = capsys.readouterr().err
    summary = json.loads((tmp_path / "expected" / "summary.json").read_text())
    assert summary["unexpected"] == 0 and summary["exit_status"] == 0
    assert summary["fixed"] == [{"case": "AveragePool-2d-k3-s3-p0-f32-n7", "backend": "onnx*",
                                 "reason": "stale entry: this case passes"}]
    assert "fixed: AveragePool-2d-k3-s3-p0-f32-n7 on onnx* now passes" in err
    junit = (tmp_path / "expected" / "junit.xml").read_text()
    assert "<failure" not in junit and "expected mismatch: onnx.reference keeps a window" in junit
    assert "Fixed expectations" in (tmp_path / "expected" / "summary.md").read_text()


def test_shipped_known_findings_file_loads_and_names_real_cases():
    from pathlib import Path

    from poolconform.expectations import load_expectations
    from poolconform.matrix import load_matrix

    root = Path(__file__).resolve().parent.parent
    entries = load_expectations(root / "expectations" / "known-findings.toml")
    assert len(entries) >= 4 and all(e.reason for e in entries)
    ids = [c.id for c in load_matrix().cases]
    import fnmatch

    for entry in entries:
        assert any(fnmatch.fnmatchcase(i, entry.case) for i in ids), entry.case


def test_shipped_onnx_suite_findings_file_loads():
    from pathlib import Path

    from poolconform.expectations import load_expectations

    root = Path(__file__).resolve().parent.parent
    entries = load_expectations(root / "expectations" / "onnx-suite-findings.toml")
    # The 4-decimal literal entry is gone: check judges stored data once, as data (stored-data).
    assert len(entries) >= 2 and all(e.reason and e.case.startswith("test_") for e in entries)


@pytest.mark.parametrize("text, message", [
    ('[[expect]]\ncase = "a"\nreason = "r"\nstatus = "timout"\n', "unknown status 'timout' (did you mean 'timeout'?)"),
    ('[[expect]]\ncase = "a"\nreason = "r"\nbackend = "onnxruntime-cpi"\n',
     "backend 'onnxruntime-cpi' matches no known backend; did you mean 'onnxruntime-cpu'?"),
    ('[[expect]]\ncase = "a"\nreason = "r"\nbackend = "onnxrutnime-*"\n', "backend 'onnxrutnime-*' matches no known backend"),
    ('[[expect]]\ncase = "Max[12*"\nreason = "r"\n', "'case' glob 'Max[12*' has an unclosed '['"),
    ('[[expect]]\ncase = "a"\nreason = "r"\nstatus = [["x"]]\n', "unknown status ['x']"),
    ("[[expect]]\ncase = " + "[" * 5000 + "]" * 5000 + "\n", "is nested too deeply to parse"),
    ("[[expect]]\ncase = " + "[" * 200 + "]" * 200 + "\nreason = 'r'\n", "'case' must be a non-empty string"),
])
def test_typos_and_hostile_files_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PoolconformError) as info:
        load_expectations(write(tmp_path, text))
    assert message in str(info.value)
    assert "\n" not in str(info.value) and len(str(info.value)) < 400


def test_crash_and_timeout_are_excused_only_when_named(tmp_path: Path) -> None:
    entries = load_expectations(write(tmp_path, '[[expect]]\ncase = "*"\nreason = "catch-all"\n'))
    assert "crash" not in entries[0].statuses and "timeout" not in entries[0].statuses
    records = [make_record(f"c{i}", "onnxruntime-cpu", s) for i, s in enumerate(("timeout", "crash", "error", "mismatch"))]
    apply_expectations(records, entries)
    assert [bool(r.get("expected")) for r in records] == [False, False, True, True]
    named = load_expectations(write(tmp_path, '[[expect]]\ncase = "*"\nstatus = ["timeout", "crash"]\nreason = "r"\n'))
    apply_expectations(records, named)
    assert [bool(r.get("expected")) for r in records] == [True, True, False, False]


def test_catch_alls_name_entries_that_cover_every_record_of_a_backend(tmp_path: Path) -> None:
    from poolconform.expectations import catch_all_line, catch_alls

    entries = load_expectations(write(tmp_path, """
[[expect]]
case = "*"
backend = "onnx-reference"
reason = "everything on onnx-reference"
[[expect]]
case = "Max-1"
backend = "torch-cpu"
reason = "one exact case: never a catch-all"
[[expect]]
case = "Avg-*"
reason = "covers some records of each backend"
"""))
    records = [make_record(c, b, "mismatch") for c in ("Max-1", "Avg-1") for b in ("onnx-reference", "torch-cpu")]
    records.append(make_record("Max-1", "onnxruntime-cpu", "pass"))
    found = catch_alls(records, entries)
    assert found == [{"entry": f"#1 in {tmp_path / 'expect.toml'}", "case": "*", "backend": "onnx-reference", "records": 2}]
    assert catch_all_line(found).endswith("(case '*') covers all 2 records of backend onnx-reference")
    assert catch_alls(records[:1] + records[2:3], entries[1:2]) == []  # torch-cpu's only record, but an exact id


def test_glob_entries_that_cover_a_backend_together_are_a_catch_all_too(tmp_path: Path) -> None:
    """`A*` and `[!A]*` each cover part of a backend and together all of it: as wide as `*`,
    and no single entry was named."""
    from poolconform.expectations import catch_all_line, catch_alls

    entries = load_expectations(write(tmp_path, """
[[expect]]
case = "A*"
backend = "torch-cpu"
reason = "a"
[[expect]]
case = "Max-1"
backend = "torch-cpu"
reason = "an exact id is never part of a catch-all"
[[expect]]
case = "[!A]*"
backend = "torch-cpu"
reason = "the rest"
"""))
    records = [make_record(c, "torch-cpu", "mismatch") for c in ("A1", "A2", "B1")]
    records.append(make_record("A1", "onnxruntime-cpu", "mismatch"))
    found = catch_alls(iter(records), entries)  # one pass: records may come from a file
    where = tmp_path / "expect.toml"
    assert found == [{"entry": f"#1, #3 in {where}", "case": "A*, [!A]*", "cases": ["A*", "[!A]*"],
                      "backend": "torch-cpu", "records": 3, "together": True}]
    assert catch_all_line(found) == (f"expectations #1, #3 in {where} (cases 'A*', '[!A]*') together cover all 3 "
                                     "records of backend torch-cpu")
    alone = catch_alls(records[:2] + records[3:], entries)  # B1 gone: A* covers torch-cpu by itself
    assert [(f["case"], f.get("together")) for f in alone] == [("A*", None)]
    assert catch_alls(records[:1] + records[2:3], entries)[0]["together"]


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "poolconform", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)


def test_timeouts_under_a_catch_all_exit_1_and_the_verdict_names_it(tmp_path: Path) -> None:
    """0 passes, 4 timeouts, `case = "*"`: a gate that goes green here is worse than none."""
    pytest.importorskip("onnxruntime", reason="the run uses onnxruntime-cpu")
    matrix = tmp_path / "m.toml"
    matrix.write_text('[matrix]\nops = ["MaxPool", "AveragePool"]\nkernel = [2, 3]\n')
    star = write(tmp_path, '[[expect]]\ncase = "*"\nreason = "everything"\n')
    common = ["run", "--matrix", str(matrix), "--backends", "onnxruntime-cpu", "--timeout", "0.000001"]
    result = _cli(tmp_path, *common, "--out", str(tmp_path / "a"), "--expectations", str(star))
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["counts"]["timeout"] == 4 and summary["counts"]["pass"] == 0
    assert result.returncode == 1 and summary["unexpected"] == 4
    verdict = next(line for line in result.stdout.splitlines() if line.startswith("verdict:"))
    assert "exit 1" in verdict and "covers all 4 records of backend onnxruntime-cpu" in verdict
    # naming timeout explicitly excuses them (exit 0), and the verdict still says it is a catch-all
    named = tmp_path / "named.toml"
    named.write_text('[[expect]]\ncase = "*"\nstatus = "timeout"\nreason = "slow box"\n')
    result = _cli(tmp_path, *common, "--out", str(tmp_path / "b"), "--expectations", str(named))
    assert result.returncode == 0, result.stderr
    assert "covers all 4 records of backend onnxruntime-cpu" in result.stdout
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["catch_all_expectations"][0]["records"] == 4


@pytest.mark.parametrize("command", ["run", "check"])
def test_a_bad_expectations_file_stops_before_anything_runs(tmp_path: Path, command: str) -> None:
    bad = write(tmp_path, '[[expect]]\ncase = "*"\nbackend = "onnxruntime-cpi"\nreason = "r"\n')
    out = tmp_path / "out"
    # run: the whole default matrix would take minutes; check: the path does not even exist
    args = ["run"] if command == "run" else ["check", str(tmp_path / "no-such-dir")]
    result = _cli(tmp_path, *args, "--backends", "onnxruntime-cpu", "--out", str(out), "--expectations", str(bad))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert lines == [f"poolconform: error: {bad}: [[expect]] #1: backend 'onnxruntime-cpi' matches no known backend; "
                     "did you mean 'onnxruntime-cpu'?"]
    assert not (out / "results.jsonl").exists()


# --------------------------------------------------------------------------- NAME@TAG backends
# A backend run in another environment (README "Backends in their own environments") keeps its
# full name, `onnxruntime-cpu@1.23`, in every record: an entry may name it, and names only it.

def test_a_tagged_backend_name_is_accepted_and_names_only_that_run(tmp_path: Path) -> None:
    entries = load_expectations(write(tmp_path, """
[[expect]]
case = "Avg-1"
backend = "onnxruntime-cpu@1.23"
status = "mismatch"
reason = "the 1.23 release"
[[expect]]
case = "Avg-2"
backend = "onnx*@*"
status = "mismatch"
reason = "any tagged onnx backend"
"""))
    assert [e.backend for e in entries] == ["onnxruntime-cpu@1.23", "onnx*@*"]
    records = [
        make_record("Avg-1", "onnxruntime-cpu@1.23", "mismatch"),
        make_record("Avg-1", "onnxruntime-cpu", "mismatch"),  # the plain backend is another run
        make_record("Avg-1", "onnxruntime-cpu@1.22", "mismatch"),
        make_record("Avg-2", "onnx-reference@new", "mismatch"),
        make_record("Avg-2", "onnx-reference", "mismatch"),
    ]
    apply_expectations(records, entries)
    assert [bool(r.get("expected")) for r in records] == [True, False, False, True, False]


@pytest.mark.parametrize("backend, message", [
    ("onnxrutime-cpu@1.23", "matches no known backend; did you mean 'onnxruntime-cpu@1.23'?"),
    ("bogus@1.23", "backend 'bogus@1.23' matches no known backend; known: onnxruntime-cpu,"),
    ("onnxruntime-cpu@", "backend 'onnxruntime-cpu@' matches no known backend"),
    ("@1.23", "backend '@1.23' matches no known backend"),
    ("stored-data@x", "backend 'stored-data@x' matches no known backend"),  # stored outputs run nowhere
])
def test_a_tagged_name_of_an_unknown_backend_is_refused(tmp_path: Path, backend: str, message: str) -> None:
    with pytest.raises(PoolconformError) as info:
        load_expectations(write(tmp_path, f'[[expect]]\ncase = "*"\nbackend = "{backend}"\nreason = "r"\n'))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_tagged_entry_excuses_a_real_run_in_another_environment(tmp_path: Path) -> None:
    """onnx-reference@env under this interpreter: its disagreement fails the run until an entry
    naming `onnx-reference@env` excuses it; an entry for plain onnx-reference does not."""
    pytest.importorskip("onnx", reason="the run uses onnx-reference")
    common = ["run", "--cases", DISAGREEING, "--backends", "onnx-reference@env",
              "--backend-python", f"onnx-reference@env={sys.executable}", "--quiet"]
    entry = '[[expect]]\ncase = "{case}"\nbackend = "{backend}"\nstatus = "mismatch"\nreason = "window in padding"\n'
    tagged, plain = tmp_path / "tagged.toml", tmp_path / "plain.toml"
    tagged.write_text(entry.format(case=DISAGREEING, backend="onnx-reference@env"))
    plain.write_text(entry.format(case=DISAGREEING, backend="onnx-reference"))
    assert main([*common, "--out", str(tmp_path / "p"), "--expectations", str(plain)]) == 1
    assert main([*common, "--out", str(tmp_path / "t"), "--expectations", str(tagged)]) == 0
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    assert summary["exit_status"] == 0 and summary["unexpected"] == 0
    [record] = [json.loads(line) for line in (tmp_path / "t" / "results.jsonl").read_text().splitlines()]
    assert (record["backend"], record["status"]) == ("onnx-reference@env", "mismatch")
    junit = (tmp_path / "t" / "junit.xml").read_text()
    assert "<failure" not in junit and "expected mismatch: window in padding" in junit


def test_an_entry_is_not_fixed_while_a_case_it_names_fails_another_way(tmp_path):
    """An entry for shape-mismatch over cases that now mismatch was reported fixed: 'remove
    this entry' while its cases still fail."""
    from poolconform.expectations import apply_expectations, load_expectations
    from poolconform.results import make_record

    path = tmp_path / "e.toml"
    path.write_text("[[expect]]\ncase = \"A*\"\nbackend = \"onnx-reference\"\nstatus = \"shape-mismatch\"\nreason = \"r\"\n")
    entries = load_expectations(path)
    records = [make_record("A1", "onnx-reference", "pass"), make_record("A2", "onnx-reference", "mismatch")]
    assert apply_expectations(records, entries) == []
    assert apply_expectations([make_record("A1", "onnx-reference", "pass")], entries) != []  # all pass: fixed


def _mismatch(case: str, ulp: object, detail: str) -> dict:
    record = make_record(case, "torch-cpu", "mismatch", detail=detail)
    record["max_ulp"] = ulp
    return record


def test_max_ulp_and_detail_excuse_only_the_disagreement_they_describe(tmp_path: Path) -> None:
    """A known 1-ULP rounding must not excuse a backend that later drops NaN, returns the wrong
    dtype, a wrong index or values far off: each of those fails again, and the entry is not
    reported fixed while they do."""
    entries = load_expectations(write(tmp_path, """
[[expect]]
case = "A*"
backend = "torch-cpu"
status = "mismatch"
max_ulp = 2
reason = "rounds the mean once more"
[[expect]]
case = "N*"
backend = "torch-cpu"
status = "mismatch"
detail = "NaN dropped:*"
reason = "max ignores NaN"
"""))
    assert entries[0].max_ulp == 2.0 and entries[1].detail == "NaN dropped:*"
    values = "Y[0, 0, 1, 1] expected 0.1, got 0.10000001; 1 of 4 element(s) differ (tolerance 1e-08)"
    records = [
        _mismatch("A1", 1.0, values),  # the known disagreement
        _mismatch("A2", 2, values),  # at the bound
        _mismatch("A3", 3.0, values),  # worse
        _mismatch("A4", "inf", "NaN dropped: Y[0, 0, 0, 0] expected NaN (NaN in window), got 1"),
        _mismatch("A5", 0.0, "dtype float64, expected float32"),
        _mismatch("A6", 0.0, "Indices[0, 0, 0, 0] expected 1, got 0; 1 of 4 element(s) differ"),
        _mismatch("A7", None, values),  # no figure: nothing says it is within the bound
        _mismatch("N1", "inf", "NaN dropped: Y[0, 0, 0, 0] expected NaN (NaN in window), got 3"),
        _mismatch("N2", 0.5, values),
    ]
    fixed = apply_expectations(records, entries)
    assert {r["case"] for r in records if r.get("expected")} == {"A1", "A2", "N1"}
    assert fixed == []
    # once only passing and in-bound records remain, the first entry is not fixed (it still excuses A1)
    again = [make_record("A1", "torch-cpu", "pass"), _mismatch("A2", 1.0, values)]
    assert apply_expectations(again, entries) == [] and again[1]["expected"]


@pytest.mark.parametrize("extra, message", [
    ("max_ulp = -1", "'max_ulp' must be a finite number >= 0, got -1"),
    ("max_ulp = inf", "'max_ulp' must be a finite number >= 0, got inf"),
    ("max_ulp = nan", "'max_ulp' must be a finite number >= 0, got nan"),
    ('max_ulp = "2"', "'max_ulp' must be a finite number >= 0, got '2'"),
    ("max_ulp = true", "'max_ulp' must be a finite number >= 0, got True"),
    ('max_ulp = 2\nstatus = "error"', "'max_ulp' bounds a mismatch, but 'status' does not list \"mismatch\""),
    ('detail = ""', "'detail' must be a non-empty glob, got ''"),
    ("detail = 3", "'detail' must be a non-empty glob, got 3"),
    ('detail = "NaN [dropped"', "'detail' glob 'NaN [dropped' has an unclosed '['"),
])
def test_a_bad_max_ulp_or_detail_is_one_line(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(PoolconformError) as info:
        load_expectations(write(tmp_path, f'[[expect]]\ncase = "a"\nreason = "r"\n{extra}\n'))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_findings_expect_snippet_pins_it_and_a_worse_answer_fails_again(tmp_path: Path) -> None:
    """The snippet a finding prints, pasted as it is, turns the run green; the same entry
    with a tighter max_ulp than the run saw does not (the pin is what it says)."""
    pytest.importorskip("onnxruntime", reason="the run uses onnxruntime-cpu")
    matrix = tmp_path / "m.toml"
    matrix.write_text('[matrix]\nops = "AveragePool"\nkernel = 3\nstride = 3\ninput_size = 7\nceil_mode = [false, true]\n')
    common = ["run", "--matrix", str(matrix), "--backends", "onnxruntime-cpu,onnx-reference", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "plain")]) == 1
    (finding,) = json.loads((tmp_path / "plain" / "summary.json").read_text())["findings"]
    assert finding["max_ulp"] > 1e6 and f"max_ulp = {int(finding['max_ulp'])}" in finding["expect"]
    pasted = write(tmp_path, finding["expect"])
    assert main([*common, "--out", str(tmp_path / "pasted"), "--expectations", str(pasted)]) == 0
    tight = tmp_path / "tight.toml"
    tight.write_text(finding["expect"].replace(f"max_ulp = {int(finding['max_ulp'])}", "max_ulp = 4"))
    assert main([*common, "--out", str(tmp_path / "tight"), "--expectations", str(tight)]) == 1
