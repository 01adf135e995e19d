"""junit.xml: one testsuite per backend, one testcase per record, for CI test views.

pass -> passed; unsupported -> skipped (the reason); mismatch / shape-mismatch ->
failure; error / crash / timeout -> error. A disagreement covered by an expectation
is skipped with the expectation's reason, so a CI that fails on junit failures stays
green exactly when `poolconform run` exits 0.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

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


def junit_xml(records: Sequence[Record], name: str = "poolconform", findings: list[dict] | None = None) -> str:
    """The whole junit.xml document as text: the findings suite first (when there are
    findings), then one suite per backend; suites and cases in a stable order.

    Each suite is built and serialised on its own, then let go: a large run's testcase
    elements (and its records as dicts) are never all held at once (docs/speed.md)."""
    parts: list[str] = []
    totals = JUnitXml(name)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    seconds: float = 0  # as JUnitXml.update_statistics starts it
    for suite in _suites(records, findings):
        suite.update_statistics()  # add_testcases recounts once; add_testcase would per case (quadratic)
        for key in counts:
            counts[key] += getattr(suite, key)
        seconds += suite.time or 0.0
        body = suite.tostring()
        parts.append(body.decode("utf-8") if isinstance(body, bytes) else body)
    for key, value in counts.items():  # in the order JUnitXml.update_statistics sets them
        setattr(totals, key, value)
    totals.time = round(seconds, 3)
    head = totals.tostring()
    head = (head.decode("utf-8") if isinstance(head, bytes) else head).rstrip()
    if not head.endswith("/>"):
        raise AssertionError(f"unexpected empty <testsuites> element: {head[:80]!r}")
    text = head[:-2].rstrip() + ">" + "".join(parts) + "</testsuites>"
    return '<?xml version="1.0" encoding="utf-8"?>\n' + text + "\n"


def _suites(records: Sequence[Record], findings: list[dict] | None) -> Iterator[TestSuite]:
    """The findings suite, then one suite per backend (one pass over the records each)."""
    if findings:
        suite = TestSuite(FINDINGS_SUITE)
        suite.add_testcases([finding_case(f) for f in findings])
        yield suite
    for backend in sorted({r["backend"] for r in records}):
        suite = TestSuite(_clean(backend))
        mine = sorted((r for r in records if r["backend"] == backend), key=lambda r: r["case"])
        suite.add_testcases([testcase(r) for r in mine])
        yield suite
