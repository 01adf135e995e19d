"""Expectations: file validation, marking, fixed entries, and the exit status of a real run."""

from __future__ import annotations

import json
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
backend = "ref"
status = "mismatch"
reason = "ceil windows"
[[expect]]
case = "Max-1"
backend = "ref"
reason = "fixed upstream"
[[expect]]
case = "Max-2"
backend = "ref"
status = "error"
reason = "wrong status listed"
"""))
    records = [
        make_record("Avg-1-ceil", "ref", "mismatch"),
        make_record("Avg-2-ceil", "ref", "pass"),
        make_record("Avg-1-ceil", "ort", "mismatch"),
        make_record("Max-1", "ref", "pass"),
        make_record("Max-2", "ref", "mismatch"),
    ]
    fixed = apply_expectations(records, entries)
    assert [r.get("expected", False) for r in records] == [True, False, False, False, False]
    assert records[0]["expected_reason"] == "ceil windows"
    # the glob still excuses Avg-1-ceil, so only the exact entry whose case passes is fixed
    assert fixed == [{"case": "Max-1", "backend": "ref", "reason": "fixed upstream"}]


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
    assert len(entries) >= 3 and all(e.reason and e.case.startswith("test_") for e in entries)
