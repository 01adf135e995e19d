"""junit.xml: one testsuite per backend, one testcase per record, for CI test views.

pass -> passed; unsupported -> skipped (the reason); mismatch / shape-mismatch ->
failure; error / crash / timeout -> error. A disagreement covered by an expectation
is skipped with the expectation's reason, so a CI that fails on junit failures stays
green exactly when `poolconform run` exits 0.
"""

from __future__ import annotations

import codecs
import os
import sys
import tempfile
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import IO

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

    The root's counts come first in the file but are known last, so the suites are
    serialised into an unnamed temporary file and read back from it; the testcases are
    serialised in record order into another and copied from there in case order. Neither
    the testcases nor the records are ever all held at once: a large run's junit.xml costs
    about 40 bytes a record of index, for at most INDEXED_RECORDS records at a time (or one
    backend's), and one string per case (docs/speed.md). The text
    is what junitparser writes for the same tree."""
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    seconds: float = 0  # as JUnitXml.update_statistics starts it
    with tempfile.TemporaryFile(prefix="poolconform-junit-") as suites:
        verdict = verdict_case(summary) if summary is not None else None
        if verdict is not None:
            seconds += _suite(suites, totals, VERDICT_SUITE, [verdict])
        if findings:
            seconds += _suite(suites, totals, FINDINGS_SUITE, (finding_case(f) for f in findings))
        seconds += _backend_suites(suites, totals, records)
        root = JUnitXml(name)
        for key, value in totals.items():  # in the order JUnitXml.update_statistics sets them
            setattr(root, key, value)
        root.time = round(seconds, 3)
        yield '<?xml version="1.0" encoding="utf-8"?>\n'
        if not suites.tell():
            yield _text(root.tostring()) + "\n"
            return
        yield _open(root)
        suites.seek(0)
        text = codecs.getincrementaldecoder("utf-8")()  # a block may end inside a character
        while block := suites.read(_BLOCK):
            yield text.decode(block)
        yield text.decode(b"", final=True) + "</testsuites>\n"


def _suite(out: IO[bytes], totals: dict[str, int], name: str, cases: Iterable[TestCase]) -> float:
    """Write one <testsuite> of `cases`, in the order given, to `out` (its statistics as
    TestSuite.update_statistics counts them); add its counts to `totals`; return its time."""
    counts = _counts()
    seconds: float = 0
    body: list[str] = []
    chunk: list[TestCase] = []
    for case in cases:
        _count(counts, case)
        if case.time is not None:
            seconds += case.time
        chunk.append(case)
        if len(chunk) == _CHUNK:
            body.append(_serialised(chunk))
            chunk = []
    if chunk:
        body.append(_serialised(chunk))
    return _write_suite(out, totals, name, counts, seconds, body)


class _Spooled:
    """One backend's testcases, serialised in record order into a shared scratch file: per
    testcase its case id (interned: one string per case), time and place there."""

    def __init__(self) -> None:
        self.counts = _counts()
        self.cases: list[str] = []
        self.times = array("d")
        self.offsets = array("q")
        self.lengths = array("q")
        self.waiting: list[tuple[str, TestCase]] = []  # made, not yet serialised


#: Records whose testcases one pass over the records indexes at most (about 40 bytes each:
#: the case id, time and place in the scratch file), unless one backend alone has more.
#: A larger run makes one pass per group of backends that fits (and one to count them).
INDEXED_RECORDS = 1 << 18


def _backend_suites(out: IO[bytes], totals: dict[str, int], records: Sequence[Record]) -> float:
    """Write one suite per backend (in name order), its testcases in case order, to `out`.

    One pass over the records makes each record's testcase and serialises them _CHUNK at a
    time into a scratch file; the suites are then copied from it in case order (a stable
    sort, as sorting the records was). No testcase is held longer than its chunk. Up to
    INDEXED_RECORDS records, one pass serves every backend; past that, a first pass counts
    each backend's records and then each group of backends that fits (in name order) has a
    pass of its own, so the index a large run's junit.xml holds at once stays bounded."""
    if len(records) <= INDEXED_RECORDS:
        return _suites_of(out, totals, records, None)
    per_backend: dict[str, int] = {}
    for r in records:
        per_backend[r["backend"]] = per_backend.get(r["backend"], 0) + 1
    seconds: float = 0
    for group in _groups(per_backend):
        seconds += _suites_of(out, totals, records, group)
    return seconds


def _groups(per_backend: dict[str, int]) -> list[frozenset[str]]:
    """Backends in name order, cut into runs of at most INDEXED_RECORDS records (a backend
    with more is a run of its own)."""
    groups: list[frozenset[str]] = []
    group: list[str] = []
    held = 0
    for name in sorted(per_backend):
        if group and held + per_backend[name] > INDEXED_RECORDS:
            groups.append(frozenset(group))
            group, held = [], 0
        group.append(name)
        held += per_backend[name]
    if group:
        groups.append(frozenset(group))
    return groups


def _suites_of(out: IO[bytes], totals: dict[str, int], records: Sequence[Record],
               backends: frozenset[str] | None) -> float:
    """The suites of `backends` (None: every backend), in name order, in one pass over the records."""
    spooled: dict[str, _Spooled] = {}
    seconds: float = 0
    with tempfile.TemporaryFile(prefix="poolconform-junit-") as scratch:

        def flush(backend: _Spooled) -> None:
            texts = _serialised_each([case for _, case in backend.waiting])
            for (key, case), text in zip(backend.waiting, texts):
                data = text.encode("utf-8")
                backend.cases.append(key)
                backend.times.append(case.time or 0.0)
                backend.offsets.append(scratch.tell())
                backend.lengths.append(len(data))
                scratch.write(data)
            backend.waiting.clear()

        for r in records:
            if backends is not None and r["backend"] not in backends:
                continue
            backend = spooled.get(r["backend"])
            if backend is None:
                backend = spooled[r["backend"]] = _Spooled()
            case = testcase(r)
            _count(backend.counts, case)
            backend.waiting.append((sys.intern(r["case"]), case))
            if len(backend.waiting) == _CHUNK:
                flush(backend)
        for backend in spooled.values():
            if backend.waiting:
                flush(backend)
        scratch.flush()
        fd = scratch.fileno()
        for name in sorted(spooled):
            backend = spooled.pop(name)
            order = sorted(range(len(backend.cases)), key=backend.cases.__getitem__)
            time: float = 0
            for i in order:  # summed in case order, as the suite always was
                time += backend.times[i]
            body = (os.pread(fd, backend.lengths[i], backend.offsets[i]).decode("utf-8") for i in order)
            seconds += _write_suite(out, totals, _clean(name), backend.counts, time, body)
    return seconds


def _counts() -> dict[str, int]:
    return dict.fromkeys(("tests", "errors", "failures", "skipped"), 0)  # TestSuite's attribute order


def _count(counts: dict[str, int], case: TestCase) -> None:
    counts["tests"] += 1
    for entry in case.result:
        kind = "failures" if isinstance(entry, Failure) else "errors" if isinstance(entry, Error) else (
            "skipped" if isinstance(entry, Skipped) else None)
        if kind:
            counts[kind] += 1


def _write_suite(out: IO[bytes], totals: dict[str, int], name: str, counts: dict[str, int], seconds: float,
                 body: Iterable[str]) -> float:
    """The suite's start tag (now that its counts are known), its testcases' text, its end tag."""
    suite = TestSuite(name)
    for key, value in counts.items():
        setattr(suite, key, value)
        totals[key] += value
    suite.time = round(seconds, 3)
    out.write(_open(suite).encode("utf-8"))
    for text in body:
        out.write(text.encode("utf-8"))
    out.write(b"</testsuite>")
    return suite.time


#: Bytes of the spooled suites read back at a time.
_BLOCK = 1 << 20

#: Testcases of one backend serialised together (one call per testcase would cost more than
#: making them; each backend holds up to this many waiting, so few: 2,048 held 15 MB more).
_CHUNK = 256


def _serialised(cases: list[TestCase]) -> str:
    """The testcases' XML, one after another: serialised inside a bare container element
    whose own tags are then cut off (the children's text is the same either way)."""
    container = cases[0]._elem.makeelement("c", {})
    container.extend(case._elem for case in cases)
    text = _text(JUnitXml.fromelem(container).tostring())
    if not (text.startswith("<c>") and text.endswith("</c>")):
        raise AssertionError(f"unexpected container text: {text[:20]!r}...{text[-20:]!r}")
    return text[3:-4]


def _serialised_each(cases: list[TestCase]) -> list[str]:
    """Each testcase's XML: the chunk serialised at once, cut where each testcase starts.
    XML escapes every `<` inside text and attribute values, so "<testcase" starts
    exactly the elements; if the count is off all the same, each is serialised alone."""
    text = _serialised(cases)
    pieces = ["<testcase" + piece for piece in text.split("<testcase")[1:]]
    if len(pieces) == len(cases) and "".join(pieces) == text:
        return pieces
    return [_serialised([case]) for case in cases]


def _open(element: JUnitXml | TestSuite) -> str:
    """The start tag of an element that has no children yet (serialised as `<tag ... />`)."""
    text = _text(element.tostring()).rstrip()
    if not text.endswith("/>"):
        raise AssertionError(f"expected an empty element, got {text[:80]!r}")
    return text[:-2].rstrip() + ">"


def _text(body: str | bytes) -> str:
    return body.decode("utf-8") if isinstance(body, bytes) else body
