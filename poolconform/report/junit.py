"""junit.xml: one testsuite per backend, one testcase per record, for CI test views.

pass -> passed; unsupported -> skipped (the reason); mismatch / shape-mismatch ->
failure; error / crash / timeout -> error. A disagreement covered by an expectation
is skipped with the expectation's reason, so a CI that fails on junit failures stays
green exactly when `poolconform run` exits 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

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


def junit_xml(records: Sequence[Record], name: str = "poolconform", findings: list[dict] | None = None,
              summary: dict | None = None) -> str:
    """The whole junit.xml document as text: a verdict suite where the run's verdict is not
    a judgement of its records (see verdict_case), the findings suite (when there are
    findings), then one suite per backend; suites and cases in a stable order."""
    return "".join(junit_parts(records, name, findings, summary))


#: The suite of the one testcase that carries a verdict the records alone do not show.
VERDICT_SUITE = "poolconform verdict"


def verdict_case(summary: dict) -> TestCase | None:
    """An error testcase when the run exits non-zero for a reason no record's testcase shows
    (every record unsupported, Ctrl-C, a partial merge): a CI view must not be green while
    the run is not. None otherwise."""
    from poolconform.report.headline import headline

    kind = headline(summary)
    why = {"nothing-verified": lambda: f"nothing verified: {summary['nothing_verified']}",
           "interrupted": lambda: f"interrupted: {summary['interrupted']}",
           "partial": lambda: "partial report: " + "; ".join(summary["partial"]["missing"])}.get(kind)
    if why is None:
        return None
    case = TestCase(_clean(kind), VERDICT_SUITE)
    error = Error(_clean(why()), kind)
    error.text = _clean(f"poolconform exits {summary.get('exit_status')}: {why()}")
    case.result = [error]
    return case


def junit_parts(records: Sequence[Record], name: str = "poolconform",
                findings: list[dict] | None = None, summary: dict | None = None) -> Iterator[str]:
    """junit.xml in pieces, for writing without one string of the whole file.

    Each testcase is serialised as soon as it is made, and a backend's records are read
    one at a time in case order: a large run's testcase elements (and its records as
    dicts) are never all held at once (docs/speed.md). The text is what junitparser
    writes for the same tree."""
    parts: list[str] = []
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    seconds: float = 0  # as JUnitXml.update_statistics starts it
    verdict = verdict_case(summary) if summary is not None else None
    if verdict is not None:
        seconds += _suite(parts, totals, VERDICT_SUITE, [verdict])
    if findings:
        seconds += _suite(parts, totals, FINDINGS_SUITE, (finding_case(f) for f in findings))
    for backend in sorted({r["backend"] for r in records}):
        order = sorted((r["case"], i) for i, r in enumerate(records) if r["backend"] == backend)
        seconds += _suite(parts, totals, _clean(backend), (testcase(records[i]) for _, i in order))
    root = JUnitXml(name)
    for key, value in totals.items():  # in the order JUnitXml.update_statistics sets them
        setattr(root, key, value)
    root.time = round(seconds, 3)
    yield '<?xml version="1.0" encoding="utf-8"?>\n'
    if not parts:
        yield _text(root.tostring()) + "\n"
        return
    yield _open(root)
    yield from parts
    yield "</testsuites>\n"


def _suite(parts: list[str], totals: dict[str, int], name: str, cases: Iterable[TestCase]) -> float:
    """Append one <testsuite> (its statistics as TestSuite.update_statistics counts them) to
    `parts`, add its counts to `totals`; return its time."""
    counts = dict.fromkeys(("tests", "errors", "failures", "skipped"), 0)  # TestSuite's attribute order
    seconds: float = 0
    body: list[str] = []
    chunk: list[TestCase] = []
    for case in cases:
        counts["tests"] += 1
        if case.time is not None:
            seconds += case.time
        for entry in case.result:
            kind = "failures" if isinstance(entry, Failure) else "errors" if isinstance(entry, Error) else (
                "skipped" if isinstance(entry, Skipped) else None)
            if kind:
                counts[kind] += 1
        chunk.append(case)
        if len(chunk) == _CHUNK:
            body.append(_serialised(chunk))
            chunk = []
    if chunk:
        body.append(_serialised(chunk))
    suite = TestSuite(name)
    for key, value in counts.items():
        setattr(suite, key, value)
        totals[key] += value
    suite.time = round(seconds, 3)
    parts.append(_open(suite) + "".join(body) + "</testsuite>")
    return suite.time


#: Testcases serialised together (one call per testcase would cost more than making them).
_CHUNK = 2048


def _serialised(cases: list[TestCase]) -> str:
    """The testcases' XML, one after another: serialised inside a bare container element
    whose own tags are then cut off (the children's text is the same either way)."""
    container = cases[0]._elem.makeelement("c", {})
    container.extend(case._elem for case in cases)
    text = _text(JUnitXml.fromelem(container).tostring())
    if not (text.startswith("<c>") and text.endswith("</c>")):
        raise AssertionError(f"unexpected container text: {text[:20]!r}...{text[-20:]!r}")
    return text[3:-4]


def _open(element: JUnitXml | TestSuite) -> str:
    """The start tag of an element that has no children yet (serialised as `<tag ... />`)."""
    text = _text(element.tostring()).rstrip()
    if not text.endswith("/>"):
        raise AssertionError(f"expected an empty element, got {text[:80]!r}")
    return text[:-2].rstrip() + ">"


def _text(body: str | bytes) -> str:
    return body.decode("utf-8") if isinstance(body, bytes) else body
