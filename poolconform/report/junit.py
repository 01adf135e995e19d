"""junit.xml: one testsuite per backend, one testcase per record, for CI test views.

pass -> passed; unsupported -> skipped (the reason); mismatch / shape-mismatch ->
failure; error / crash / timeout -> error. A disagreement covered by an expectation
is skipped with the expectation's reason, so a CI that fails on junit failures stays
green exactly when `poolconform run` exits 0.
"""

from __future__ import annotations

from collections import defaultdict

from junitparser import Error, Failure, JUnitXml, Skipped, TestCase, TestSuite

from poolconform.report.text import printable
from poolconform.results import Record

#: The suite that leads the file: one testcase per finding.
FINDINGS_SUITE = "poolconform findings"


def _clean(text: object) -> str:
    """Names and framework messages may hold characters XML 1.0 cannot carry: escape them visibly."""
    return printable(text or "")


def _message(record: Record) -> str:
    """One line for the CI view: status, the figures that matter for it, the detail."""
    status = record["status"]
    parts = []
    if status == "shape-mismatch":
        parts.append(f"expected shape {record.get('expected_shape')}, got {record.get('actual_shape')}")
    if status == "mismatch" and record.get("max_ulp") is not None:
        parts.append(f"max ULP {record['max_ulp']}, max abs err {record.get('max_abs_err')}")
    if record.get("detail"):
        parts.append(record["detail"])
    return _clean(f"{status}: " + "; ".join(parts) if parts else status)


def testcase(record: Record) -> TestCase:
    """The JUnit view of one record."""
    name = record["case"]
    if record.get("nodes"):  # a `scan` record: the model's nodes beside the case id
        name += f" [node {', '.join(map(str, record['nodes']))}]"
    case = TestCase(_clean(name), _clean(record["backend"]), float(record.get("seconds") or 0.0))
    status = record["status"]
    if status == "pass":
        return case
    result: Skipped | Failure | Error
    if record.get("expected"):
        result = Skipped(_clean(f"expected {status}: {record.get('expected_reason', '')}"))
        result.text = _message(record)
    elif status == "unsupported":
        result = Skipped(_clean(record.get("detail") or "unsupported"))
    elif status in ("mismatch", "shape-mismatch"):
        result = Failure(_message(record), status)
        result.text = _clean(record.get("detail"))
    else:
        result = Error(_message(record), status)
        result.text = _clean(record.get("detail"))
    case.result = [result]
    return case


def finding_case(finding: dict) -> TestCase:
    """The JUnit view of one finding: a failure unless expectations cover every record of it."""
    case = TestCase(_clean(finding["summary"]), FINDINGS_SUITE)
    text = _clean(f"{finding['count']} record(s); minimal case {finding['minimal_case']}: "
                  f"{finding.get('minimal_detail', '')}; reproduce: {finding.get('reproduce', '')}")
    result: Skipped | Failure
    if finding.get("expected"):
        result = Skipped(_clean(f"expected: {finding.get('expected_reason', '')} {finding.get('link', '')}".strip()))
    else:
        result = Failure(_clean(finding["summary"]), finding["status"])
    result.text = text
    case.result = [result]
    return case


def junit_xml(records: list[Record], name: str = "poolconform", findings: list[dict] | None = None) -> str:
    """The whole junit.xml document as text: the findings suite first (when there are
    findings), then one suite per backend; suites and cases in a stable order."""
    by_backend: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_backend[record["backend"]].append(record)
    xml = JUnitXml(name)
    if findings:
        suite = TestSuite(FINDINGS_SUITE)
        suite.add_testcases([finding_case(f) for f in findings])
        xml.add_testsuite(suite)
    for backend in sorted(by_backend):
        suite = TestSuite(_clean(backend))
        # add_testcases recounts once; add_testcase would recount per case (quadratic)
        suite.add_testcases([testcase(r) for r in sorted(by_backend[backend], key=lambda r: r["case"])])
        xml.add_testsuite(suite)
    xml.update_statistics()
    body = xml.tostring()
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    return '<?xml version="1.0" encoding="utf-8"?>\n' + text + "\n"
