"""Reports under --out from a real run: report.html, junit.xml, summary.md, $GITHUB_STEP_SUMMARY."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml

from poolconform.cli import main
from poolconform.record_table import RecordTable
from poolconform.report.junit import FINDINGS_SUITE, junit_xml
from poolconform.report.markdown import render_markdown
from poolconform.report.summary import summarize
from poolconform.results import make_record, read_records

pytest.importorskip("onnxruntime", reason="the report run uses onnxruntime-cpu")

BACKENDS = ("onnxruntime-cpu", "onnx-reference")
#: AveragePool k3 s3 ceil on n7 is where onnx.reference really disagrees (a window in the padding).
MATRIX = """[matrix]
ops = ["AveragePool", "MaxPool", "GlobalAveragePool"]
kernel = 3
stride = 3
input_size = 7
ceil_mode = [false, true]
"""


@pytest.fixture(scope="module")
def run_out(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, Path]:
    """One real run on two backends; returns (out dir, exit status, step summary file)."""
    tmp = tmp_path_factory.mktemp("reports")
    matrix = tmp / "m.toml"
    matrix.write_text(MATRIX)
    step = tmp / "step_summary.md"
    step.write_text("previous step\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GITHUB_STEP_SUMMARY", str(step))
        status = main(["run", "--matrix", str(matrix), "--backends", ",".join(BACKENDS),
                       "--out", str(tmp / "out"), "--quiet"])
    return tmp / "out", status, step


def test_run_writes_every_report(run_out: tuple[Path, int, Path]) -> None:
    out, status, step = run_out
    assert status == 1  # onnx-reference disagrees on the ceil AveragePool case
    for name in ("results.jsonl", "summary.json", "report.html", "junit.xml", "summary.md"):
        assert (out / name).stat().st_size > 0, name
    markdown = (out / "summary.md").read_text()
    assert step.read_text() == "previous step\n" + markdown + "\n"


def test_reports_from_records_waiting_in_a_file_are_the_same_bytes(run_out: tuple[Path, int, Path], tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A large run's records are read back into a table that spills to a file (a chunk every
    SPILL_ROWS rows): every report made from it must be what the records held in memory give."""
    from poolconform.pipeline import write_reports

    out = run_out[0]
    monkeypatch.setenv("POOLCONFORM_SHRINK_SECONDS", "0")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.setattr("poolconform.record_table.SPILL_ROWS", 3)
    written = {}
    for spill in (False, True):
        records = read_records(out / "results.jsonl", spill=spill)
        assert bool(records._chunks) == spill and len(records) == 10
        folder = tmp_path / str(spill)
        folder.mkdir()
        write_reports(folder, records, summarize(records))
        written[spill] = {name: (folder / name).read_bytes()
                          for name in ("summary.json", "findings.json", "summary.md", "junit.xml", "report.html")}
    assert written[True] == written[False]
    assert b"<failure" in written[True]["junit.xml"]  # the disagreement is in it


def test_junit_has_one_testcase_per_record(run_out: tuple[Path, int, Path]) -> None:
    out, _, _ = run_out
    records = read_records(out / "results.jsonl")
    xml = JUnitXml.fromfile(str(out / "junit.xml"))
    suites = {suite.name: list(suite) for suite in xml}
    assert next(iter(xml)).name == FINDINGS_SUITE  # findings lead the file
    findings = json.loads((out / "findings.json").read_text())
    disagreeing = [f for f in findings if f["status"] != "unsupported"]
    assert [c.name for c in suites.pop(FINDINGS_SUITE)] == [f["summary"] for f in disagreeing]
    assert sorted(suites) == sorted(BACKENDS)
    ids = sorted((case.classname, case.name) for cases in suites.values() for case in cases)
    assert ids == sorted((r["backend"], r["case"]) for r in records)
    failures = [c for cases in suites.values() for c in cases if any(isinstance(r, Failure) for r in c.result)]
    assert [(c.classname, c.name) for c in failures] == [
        (r["backend"], r["case"]) for r in records if r["status"] in ("mismatch", "shape-mismatch")]
    assert ("onnx-reference", "AveragePool-2d-k3-s3-p0-ceil-f32-n7") in [(c.classname, c.name) for c in failures]
    assert xml.failures == len(failures) + len(disagreeing) and xml.errors == 0 and xml.skipped == 0
    assert xml.tests == len(records) + len(disagreeing)


def test_junit_maps_every_status() -> None:
    statuses = ["pass", "mismatch", "shape-mismatch", "unsupported", "error", "crash", "timeout"]
    records = [make_record(f"case-{s}", "b", s, detail=f"why {s}") for s in statuses]
    records.append(make_record("case-known", "b", "mismatch", detail="differs", expected=True,
                               expected_reason="known bug 123"))
    xml = JUnitXml.fromstring(junit_xml(records).split("\n", 1)[1])
    kinds = {}
    for case in next(iter(xml)):
        kinds[case.name] = [type(r).__name__ for r in case.result], [r.message for r in case.result]
    assert kinds["case-pass"] == ([], [])
    assert kinds["case-mismatch"][0] == ["Failure"]
    assert kinds["case-shape-mismatch"][0] == ["Failure"]
    assert kinds["case-unsupported"] == (["Skipped"], ["why unsupported"])
    for s in ("error", "crash", "timeout"):
        assert kinds[f"case-{s}"][0] == ["Error"] and f"why {s}" in kinds[f"case-{s}"][1][0]
    assert kinds["case-known"] == (["Skipped"], ["expected mismatch: known bug 123"])
    assert (xml.failures, xml.errors, xml.skipped, xml.tests) == (2, 3, 2, 8)


def test_html_is_self_contained(run_out: tuple[Path, int, Path]) -> None:
    out, _, _ = run_out
    html = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<script" not in html.lower()
    assert html.count('<svg class="grid"') == 2 * len(BACKENDS) + 1  # AveragePool, MaxPool per backend; global
    assert "<img" not in html and 'aria-label="error as a fraction of the tolerance"' in html
    for backend in BACKENDS:
        assert backend in html
    assert "AveragePool-2d-k3-s3-p0-ceil-f32-n7" in html  # the disagreement table lists it


def test_markdown_summary(run_out: tuple[Path, int, Path]) -> None:
    out, _, _ = run_out
    text = (out / "summary.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert f"**poolconform: FAIL**: {summary['unexpected']} unexpected" in text
    for backend in BACKENDS:
        row = next(line for line in text.splitlines() if line.startswith(f"| {backend} |"))
        assert f"| {summary['by_backend'][backend]['pass']} |" in row
    findings = json.loads((out / "findings.json").read_text())
    assert text.index("### Findings") < text.index("| backend |")  # findings lead the page
    assert f"| {findings[0]['summary']} | mismatch | 1 | `{findings[0]['minimal_case']}` |" in text
    assert "Pairwise agreement" in text


def test_markdown_lists_fixed_and_expected() -> None:
    records = [make_record("a", "x", "mismatch", detail="d | e", expected=True, expected_reason="r"),
               make_record("b", "x", "pass")]
    summary = summarize(records, extra={"fixed": [{"case": "b", "backend": "x", "reason": "old bug"}]})
    text = render_markdown(records, summary)
    assert "**poolconform: OK**" in text and "1 expected disagreement" in text
    assert "mismatch (expected)" in text
    assert "| `b` | x | old bug |  |" in text


def test_findings_json_leads_with_the_real_disagreement(run_out: tuple[Path, int, Path]) -> None:
    out, _, _ = run_out
    findings = json.loads((out / "findings.json").read_text())
    assert [(f["backend"], f["status"], f["count"]) for f in findings] == [("onnx-reference", "mismatch", 1)]
    f = findings[0]
    assert f["cases"] == ["AveragePool-2d-k3-s3-p0-ceil-f32-n7"] and f["expected"] is False
    assert f["summary"].startswith("onnx-reference: values differ") and "\n" not in f["summary"]
    assert f["shrunk"] and f["minimal_case"] == "AveragePool-1d-k3-s3-p0-ceil-f32-n4"  # shrunk by re-running
    assert 'backend = "onnx-reference"' in f["expect"] and 'status = "mismatch"' in f["expect"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["findings"][0]["minimal_case"] == f["minimal_case"]  # one truth in every report
    html = (out / "report.html").read_text()
    assert html.index('<h2 id="findings">') < html.index('<h2 id="backends">') and f["minimal_case"] in html


HOSTILE = "evil\x01\x1b[2Jname"


def test_control_characters_are_escaped_in_every_report() -> None:
    import io

    from rich.console import Console

    from poolconform.report.html import render_html
    from poolconform.report.terminal import print_summary

    records = [make_record(HOSTILE, "onnxruntime-cpu", "error", detail="boom \x1b[31m 12"),
               make_record("ok", "onnxruntime-cpu", "pass")]
    summary = summarize(records)
    xml_text = junit_xml(records, findings=summary["findings"])
    assert "\x1b" not in xml_text and "\x01" not in xml_text
    JUnitXml.fromstring(xml_text.split("\n", 1)[1])  # valid XML
    assert "evil\\x01\\x1b[2Jname" in xml_text
    for text in (render_markdown(records, summary), render_html(records, summary)):
        assert "\x1b" not in text and "\x01" not in text
    console = Console(file=io.StringIO(), width=80, color_system=None)
    print_summary(summary, console)
    shown = console.file.getvalue()
    assert "\x1b" not in shown and "evil\\x01\\x1b[2Jname" in shown
    assert max(len(line) for line in shown.splitlines()) <= 80


def test_agreement_counts_equal_outputs_as_agreeing_and_missing_digests_as_not() -> None:
    """Where a case has a disagreement, two backends agree when both pass or their outputs
    have one digest (kept as numbers: a broken backend makes every case such a case)."""
    from poolconform.report.summary import agreement

    def rec(case, backend, status, digest):
        record = make_record(case, backend, status)
        record["digest"] = digest
        return record

    records = [
        rec("c1", "a", "mismatch", "00ff00ff00ff00ff"), rec("c1", "b", "mismatch", "00ff00ff00ff00ff"),
        rec("c1", "c", "pass", "1111111111111111"),
        rec("c2", "a", "mismatch", "edited by hand"), rec("c2", "b", "mismatch", "edited by hand"),
        rec("c2", "c", "mismatch", "edited too"),
        rec("c3", "a", "mismatch", None), rec("c3", "b", "mismatch", None), rec("c3", "c", "pass", None),
        rec("c4", "a", "pass", "2"), rec("c4", "b", "pass", "3"), rec("c4", "c", "unsupported", None),
    ]
    table = agreement(records)
    assert table["a"]["b"] == {"both": 4, "agree": 3}  # c1, c2 same digest; c3 none; c4 both pass
    assert table["a"]["c"] == {"both": 3, "agree": 0} and table["b"]["c"] == {"both": 3, "agree": 0}
    assert table["c"]["c"] == {"both": 3, "agree": 3}  # itself: by passing (c1, c3) or by its digest (c2)


def test_report_html_lists_the_worst_disagreements_and_counts_them_all() -> None:
    """report.html lists the 200 worst disagreements and says how many more there are: it kept
    every one in a sorted list (a broken backend's 89,600 records: about 140 MB more)."""
    import re

    from poolconform.report.html import render_html

    records = [make_record(f"case-{i:03d}", "torch-cpu", "mismatch", detail=f"off {i}") for i in range(250)]
    records[137]["status"] = "crash"  # sorts first (disagreement_order), wherever it stands
    records.append(make_record("case-ok", "torch-cpu", "pass"))
    html = render_html(records, summarize(records))
    assert "Disagreements (250)</h2>" in html and "50 more in results.jsonl and junit.xml." in html
    section = html[html.index('id="disagreements"'):]
    listed = re.findall(r"case-[0-9]{3}", section[:section.index("more in results.jsonl")])
    assert len(set(listed)) == 200 and listed[0] == "case-137"


def test_junit_written_in_pieces_is_what_junitparser_writes_for_the_whole_tree(monkeypatch, tmp_path: Path) -> None:
    """junit.xml is serialised a chunk of testcases at a time (so a large run never holds
    every element): the text must be exactly junitparser's for the same suites."""
    from junitparser import TestSuite

    from poolconform.report import junit

    monkeypatch.setattr(junit, "_CHUNK", 3)  # several chunks per suite
    monkeypatch.setattr(junit, "_BLOCK", 7)  # read back in blocks that end inside "é" (two bytes)
    monkeypatch.setattr("poolconform.record_table.SPILL_ROWS", 4)
    statuses = ["pass", "mismatch", "shape-mismatch", "unsupported", "error", "crash", "timeout"]
    records = [make_record(f"case-{i % 11}", f"backend-{i % 3}<&>", statuses[i % 7], detail=f"d{i} <x>",
                           max_ulp=float(i), seconds=0.001 * i if i % 4 else None) for i in range(40)]
    records[5].update(expected=True, expected_reason="known")
    records[6].update(detail='</testcase><testcase name="forged">')  # cut where each testcase starts: not here
    records[8].update(detail="moyenne arrondie à l'entier pair, écart é" * 3)
    records.append(make_record('<testcase name="x"/>', "backend-0<&>", "pass"))
    findings = [{"summary": "s", "count": 2, "minimal_case": "case-1", "status": "mismatch", "expected": False}]
    whole = JUnitXml("poolconform")
    first = TestSuite(FINDINGS_SUITE)
    first.add_testcases([junit.finding_case(f) for f in findings])
    whole.add_testsuite(first)
    for backend in sorted({r["backend"] for r in records}):
        suite = TestSuite(junit._clean(backend))
        suite.add_testcases([junit.testcase(r) for r in sorted((r for r in records if r["backend"] == backend),
                                                                key=lambda r: r["case"])])
        whole.add_testsuite(suite)
    whole.update_statistics()
    expected = '<?xml version="1.0" encoding="utf-8"?>\n' + whole.tostring().decode("utf-8") + "\n"
    assert junit_xml(records, findings=findings) == expected
    assert "".join(junit.junit_parts(records, findings=findings)) == expected
    spilled = RecordTable(records, spill=tmp_path)  # records read back from a file
    assert spilled._chunks and junit_xml(spilled, findings=findings) == junit_xml(RecordTable(records),
                                                                                findings=findings)
    # A large run's suites come from one pass per group of backends (a backend over the limit
    # alone in its group): the same bytes as one pass.
    read_back = junit_xml(spilled, findings=findings)
    monkeypatch.setattr(junit, "INDEXED_RECORDS", 15)  # 41 records: 14, 14 and 13 a backend
    assert [sorted(g) for g in junit._groups({"b": 14, "a": 14, "c": 20, "d": 1})] == [["a"], ["b"], ["c"], ["d"]]
    assert junit_xml(records, findings=findings) == expected and junit_xml(spilled, findings=findings) == read_back
    monkeypatch.setattr(junit, "INDEXED_RECORDS", 28)
    assert [sorted(g) for g in junit._groups({"b": 14, "a": 14, "c": 20, "d": 1})] == [["a", "b"], ["c", "d"]]
    assert junit_xml(records, findings=findings) == expected
    empty = JUnitXml("poolconform")
    empty.update_statistics()
    assert junit_xml([]) == '<?xml version="1.0" encoding="utf-8"?>\n' + empty.tostring().decode("utf-8") + "\n"


def test_reports_without_their_writers_warn_and_keep_the_summary(tmp_path: Path) -> None:
    """A source tree run without its dependencies (ci/gpu-check.sh on a machine that lacks
    junitparser) writes summary.json and says which reports are missing and why."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['junitparser'] = None\n"  # import junitparser now raises ImportError
        "from pathlib import Path\n"
        "from poolconform.pipeline import write_reports\n"
        "from poolconform.report.summary import summarize\n"
        "from poolconform.results import make_record\n"
        f"out = Path({str(tmp_path)!r})\n"
        "records = [make_record('MaxPool-1d-k2-s2-p0-f32-n4-gseed', 'onnx-reference', 'pass')]\n"
        "write_reports(out, records, summarize(records))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "'junitparser' is not installed" in lines[0] and "junit.xml" in lines[0]


@pytest.mark.parametrize(("records", "extra", "exit_status", "words"), [
    # every record unsupported: exit 2, and no report may say OK
    ([make_record("MaxPool-1d-k2-s2-p0-f32-n4-gseed", "x", "unsupported", detail="no")], {}, 2, "NOTHING VERIFIED"),
    # an empty shard: exit 0, but no report may say the frameworks agree
    ([], {"shard": "2/3"}, 0, "NOTHING CHECKED"),
])
def test_every_report_states_the_verdict_the_exit_status_gives(records, extra, exit_status, words) -> None:
    from poolconform.report.html import render_html
    from poolconform.report.terminal import verdict

    summary = summarize(records, extra=extra)
    assert summary["exit_status"] == exit_status
    terminal, markdown, html = verdict(summary), render_markdown(records, summary), render_html(records, summary)
    assert f"exit {exit_status}" in terminal and "agrees" not in terminal
    assert f"**poolconform: {words}**" in markdown and "**poolconform: OK**" not in markdown
    assert f'class="verdict fail">{words}:' in html and 'class="verdict ok"' not in html
    if extra:
        assert "shard 2/3" in terminal and "shard 2/3" in markdown
    # junit.xml: an error testcase where the exit status is not 0, so a CI view is never green then
    from poolconform.report.junit import junit_xml

    xml = junit_xml(records, findings=summary.get("findings"), summary=summary)
    assert ('<testsuite name="poolconform verdict"' in xml) == (exit_status != 0)
    assert (' errors="1"' in xml.split(">", 2)[1]) == (exit_status != 0)


def test_a_step_summary_that_cannot_be_written_is_a_warning_naming_the_variable(tmp_path, monkeypatch, capsys) -> None:
    """GITHUB_STEP_SUMMARY pointing at a folder: every report is still written, and the line
    names the variable, not --out (which was blamed before, with exit 2)."""
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path))
    status = main(["run", "--cases", "MaxPool-2d-k2-s2-p0-f32-n4-gseed", "--backends", "onnx-reference",
                   "--out", str(tmp_path / "out"), "--quiet"])
    assert status == 0 and (tmp_path / "out" / "report.html").exists()
    assert "warning: GITHUB_STEP_SUMMARY=" in capsys.readouterr().err


def test_a_catch_all_expectation_is_named_in_summary_md_and_report_html() -> None:
    """The terminal warned about an entry excusing every record of a backend; summary.md
    said only OK and report.html nothing."""
    from poolconform.report.html import render_html

    records = [make_record("MaxPool-1d-k2-s2-p0-f32-n4-gseed", "x", "mismatch", expected=True, expected_reason="r")]
    wide = [{"entry": "#1 in e.toml", "case": "*", "backend": "x", "records": 1}]
    summary = summarize(records, extra={"catch_all_expectations": wide})
    assert "**warning**: expectation #1 in e.toml" in render_markdown(records, summary)
    assert "WARNING: expectation #1 in e.toml" in render_html(records, summary)
