"""Known disagreements: a TOML file of `[[expect]]` entries that keep CI green on purpose.

Each entry names cases and backends by glob, the statuses it tolerates and, always,
why. A matching disagreement is marked `expected` (summarize() then leaves it out of
the exit status); an entry whose cases now pass is reported as fixed, so stale
entries get removed instead of hiding future regressions.

    [[expect]]
    case = "AveragePool-*-ceil-*"
    backend = "onnx-reference"
    status = "mismatch"            # or a list; default: mismatch, shape-mismatch, error
    reason = "onnx.reference keeps windows that start in the right padding"

An entry may also say what the disagreement looks like, so that a worse one fails again:
`max_ulp = N` excuses a mismatch only where the values are off by at most N ULP (a NaN
dropped or produced, a wrong dtype or a wrong index is not such a mismatch), and
`detail = "NaN dropped*"` only a record whose detail matches the glob.

`crash` and `timeout` are excused only by an entry that names them: a catch-all must
never turn a hung or dying backend green. An entry whose case glob covers every record
of a backend is a catch-all and is named in the verdict line (see catch_alls).
The file is read and checked before any case runs (`load_expectations`).
"""

from __future__ import annotations

import difflib
import fnmatch
import reprlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from poolconform.errors import PoolconformError
from poolconform.tomlfile import read_toml, shown_path
from poolconform.findings.triage import VALUE_KINDS, mismatch_kind
from poolconform.results import FAILING, STATUSES, Record, numeric

KEYS = ("case", "backend", "status", "reason", "link", "max_ulp", "detail")
#: Statuses an entry excuses when it lists none: never crash or timeout, which must be named.
DEFAULT_STATUSES = tuple(s for s in FAILING if s not in ("crash", "timeout"))

#: The prefix `export` puts before a case id (see poolconform.testdirs.DIR_PREFIX).
EXPORT_PREFIX = "test_"

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxstring, _REPR.maxother = 3, 8, 60, 60


class ExpectationError(PoolconformError):
    """An expectations file that cannot be used as it is."""


@dataclass(frozen=True)
class Expectation:
    """One tolerated disagreement: case glob, backend glob, statuses, and why."""

    case: str
    backend: str
    statuses: tuple[str, ...]
    reason: str
    #: Where it is written: the file, and the entry's number in it (from 1).
    file: str = ""
    index: int = 0
    #: An upstream issue about the disagreement, shown beside the finding ("" when none).
    link: str = ""
    #: The most ULP an excused mismatch may be off by (None: any mismatch of a listed status).
    max_ulp: float | None = None
    #: A glob the record's detail must match ("" for any detail).
    detail: str = ""

    def excuses(self, record: Record) -> bool:
        """Whether this entry excuses the (covered) record: its status is listed and it looks
        as the entry says (max_ulp, detail)."""
        status = record["status"]
        if status not in self.statuses:
            return False
        detail = record.get("detail") or ""
        if self.detail and not fnmatch.fnmatchcase(detail, self.detail):
            return False
        if self.max_ulp is not None and status == "mismatch":
            ulp = numeric(record.get("max_ulp"))
            if ulp is None or not ulp <= self.max_ulp:
                return False  # unknown, NaN, inf or larger
            if mismatch_kind(detail) not in VALUE_KINDS or detail.startswith("Indices"):
                return False  # ULP say nothing of a NaN, a dtype or an index
        return True

    def covers(self, record: Record) -> bool:
        """Whether this entry names the record's case and backend (status aside)."""
        case = record["case"]
        named = fnmatch.fnmatchcase(case, self.case) or (  # `export` writes case X as folder test_X
            case.startswith(EXPORT_PREFIX) and fnmatch.fnmatchcase(case[len(EXPORT_PREFIX):], self.case))
        return named and fnmatch.fnmatchcase(record["backend"], self.backend)


def load_expectations(path: Path, backends: list[str] | None = None) -> list[Expectation]:
    """Parse and validate an expectations file; every problem is one line naming the entry.

    `backends` are the names a `backend` glob may match (default: every registered
    backend, and `check`'s `stored-data`); a name or glob that matches none is refused
    with a did-you-mean. `NAME@TAG` (NAME run in another environment, README "Backends in
    their own environments") is accepted when NAME matches one of them other than
    `stored-data`, which is never run anywhere, and TAG is not empty.
    """
    where = shown_path(path)
    data = read_toml(path, "expectations file", ExpectationError)
    unknown_tables = [k for k in data if k != "expect"]
    if unknown_tables:
        raise ExpectationError(f"{where}: unknown top-level key {_shown(unknown_tables[0])}{_hint(unknown_tables[0], ('expect',))}")
    entries = data.get("expect", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ExpectationError(f"{where}: 'expect' must be an array of tables, written [[expect]]")
    from poolconform.stored_data import STORED_DATA

    if backends is None:
        from poolconform.backends.base import registry

        backends = [*registry(), STORED_DATA]
    return [_entry(e, where, i, tuple(backends), tuple(b for b in backends if b != STORED_DATA))
            for i, e in enumerate(entries, 1)]


def _shown(value: Any) -> str:
    """A user's value for a message: bounded, so a huge or deeply nested one stays one line."""
    return _REPR.repr(value)


def _hint(key: str, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(allowed)}"


def _check_glob(glob: str, key: str, where: str) -> None:
    """fnmatch reads an unclosed `[` as a literal bracket: almost always a typo."""
    depth_open = glob.rfind("[")
    if depth_open >= 0 and "]" not in glob[depth_open + 1:]:
        raise ExpectationError(f"{where}: {key!r} glob {glob!r} has an unclosed '['")


def _names_a_backend(glob: str, backends: tuple[str, ...], taggable: tuple[str, ...]) -> bool:
    """Whether the backend glob can match a record: a known name, or NAME@TAG with NAME known."""
    if any(fnmatch.fnmatchcase(name, glob) for name in backends):
        return True
    base, at, tag = glob.partition("@")
    return bool(at and tag) and any(fnmatch.fnmatchcase(name, base) for name in taggable)


def _backend_hint(glob: str, backends: tuple[str, ...], taggable: tuple[str, ...]) -> str:
    base, at, tag = glob.partition("@")
    if at and tag:  # a tagged typo: suggest the known NAME with the same tag
        close = difflib.get_close_matches(base, taggable, n=1)
        if close:
            return f"; did you mean {close[0] + at + tag!r}?"
    close = difflib.get_close_matches(glob, backends, n=1)
    known = f"; known: {', '.join(backends)} (and NAME@TAG for NAME in another environment)"
    return f"; did you mean {close[0]!r}?" if close else known


def _entry(raw: dict[str, Any], file: str, index: int, backends: tuple[str, ...],
           taggable: tuple[str, ...] = ()) -> Expectation:
    where = f"{file}: [[expect]] #{index}"
    for key in raw:
        if key not in KEYS:
            raise ExpectationError(f"{where}: unknown key {_shown(key)}{_hint(key, KEYS)}")
    for key in ("case", "reason"):
        if key not in raw:
            raise ExpectationError(f"{where}: missing {key!r} (every entry needs a case glob and a reason)")
    for key in ("case", "backend", "reason", "link"):
        if key in raw and (not isinstance(raw[key], str) or not raw[key].strip()):
            raise ExpectationError(f"{where}: {key!r} must be a non-empty string, got {_shown(raw[key])}")
    _check_glob(raw["case"], "case", where)
    backend = raw.get("backend", "*")
    _check_glob(backend, "backend", where)
    if backends and not _names_a_backend(backend, backends, taggable):
        raise ExpectationError(f"{where}: backend {backend!r} matches no known backend"
                               f"{_backend_hint(backend, backends, taggable)}")
    status = raw.get("status", list(DEFAULT_STATUSES))
    statuses = status if isinstance(status, list) else [status]
    if not statuses:
        raise ExpectationError(f"{where}: 'status' is an empty list; allowed: {', '.join(STATUSES)}")
    for s in statuses:
        if not isinstance(s, str) or s not in STATUSES:
            close = difflib.get_close_matches(s, STATUSES, n=1) if isinstance(s, str) else []
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ExpectationError(f"{where}: unknown status {_shown(s)}{hint}; allowed: {', '.join(STATUSES)}")
    max_ulp = raw.get("max_ulp")
    if max_ulp is not None and (not isinstance(max_ulp, (int, float)) or isinstance(max_ulp, bool)
                                or not 0 <= max_ulp < float("inf")):
        raise ExpectationError(f"{where}: 'max_ulp' must be a finite number >= 0, got {_shown(max_ulp)}")
    if max_ulp is not None and "mismatch" not in statuses:
        raise ExpectationError(f"{where}: 'max_ulp' bounds a mismatch, but 'status' does not list \"mismatch\"")
    detail = raw.get("detail", "")
    if "detail" in raw:
        if not isinstance(detail, str) or not detail.strip():
            raise ExpectationError(f"{where}: 'detail' must be a non-empty glob, got {_shown(detail)}")
        _check_glob(detail, "detail", where)
    return Expectation(raw["case"], backend, tuple(statuses), raw["reason"].strip(), file, index,
                       raw.get("link", "").strip(), None if max_ulp is None else float(max_ulp), detail)


def apply_expectations(records: Iterable[Record], expectations: list[Expectation]) -> list[dict[str, str]]:
    """Mark expected disagreements in place; return the entries that are now fixed.

    A failing record is expected when an entry covers its case and backend and lists
    its status (the first such entry gives the reason). An entry is fixed when it
    covers at least one passing record and no longer excuses any record, and no case it
    names fails in another way: remove it.
    With an exact case id this is "that case now passes"; with a glob, every case it
    names passes or is unsupported.
    """
    marking = Marking(expectations)
    for record in records:
        marking.mark(record)
    return marking.fixed()


class Marking:
    """apply_expectations one record at a time: `mark` each as it is read (a run's records are
    then held compactly with their marks, poolconform/record_table.py), then `fixed`."""

    def __init__(self, expectations: list[Expectation]) -> None:
        self.expectations = expectations
        self._used: set[int] = set()
        self._passing: set[int] = set()
        self._failing: set[int] = set()

    def mark(self, record: Record) -> Record:
        """The record, its marks set (and any it held dropped); returned for use in a generator."""
        record.pop("expected", None)
        record.pop("expected_reason", None)
        record.pop("expected_link", None)
        status = record["status"]
        for i, exp in enumerate(self.expectations):
            if not exp.covers(record):
                continue
            if status == "pass":
                self._passing.add(i)
            elif status in FAILING and not exp.excuses(record):
                self._failing.add(i)  # a case it names still fails, in a way it does not excuse: not fixed
            elif status in FAILING:
                self._used.add(i)
                if "expected" not in record:
                    record["expected"] = True
                    record["expected_reason"] = exp.reason
                    if exp.link:
                        record["expected_link"] = exp.link
        return record

    def fixed(self) -> list[dict[str, str]]:
        return [
            {"case": exp.case, "backend": exp.backend, "reason": exp.reason} | ({"link": exp.link} if exp.link else {})
            for i, exp in enumerate(self.expectations)
            if i in self._passing and i not in self._used and i not in self._failing
        ]


def catch_alls(records: Iterable[Record], expectations: list[Expectation]) -> list[dict[str, Any]]:
    """Entries whose case globs cover every record of some backend: they would excuse any
    regression of that backend, so the verdict names them. An exact case id is never one.

    Each item: `entry` (`#2 in expect.toml`), `case`, `backend` (the backend's name),
    `records` (how many it covers: all of that backend's). Where no entry does alone but
    several glob entries do together (`A*` and `[!A]*`), one item names them all, with
    `together: true`, `entry` listing them and `cases` their globs. One pass over the records.
    """
    globs = [(i, exp) for i, exp in enumerate(expectations) if any(c in exp.case for c in "*?[")]
    total: Counter[str] = Counter()
    union: Counter[str] = Counter()
    covered: dict[str, Counter[int]] = {}
    for record in records:
        backend = record["backend"]
        total[backend] += 1
        hits = [i for i, exp in globs if exp.covers(record)]
        if hits:
            union[backend] += 1
            mine = covered.setdefault(backend, Counter())
            for i in hits:
                mine[i] += 1
    found = []
    for i, exp in globs:
        for name in sorted(total):
            if covered.get(name, Counter())[i] == total[name]:
                found.append({"entry": f"#{exp.index} in {exp.file}", "case": exp.case, "backend": name,
                              "records": total[name]})
    alone = {f["backend"] for f in found}
    for name in sorted(total):
        if name in alone or union[name] != total[name]:
            continue
        parts = [exp for i, exp in globs if covered[name][i]]
        by_file: dict[str, list[str]] = {}
        for exp in parts:
            by_file.setdefault(exp.file, []).append(f"#{exp.index}")
        found.append({"entry": "; ".join(f"{', '.join(marks)} in {file}" for file, marks in by_file.items()),
                      "case": ", ".join(exp.case for exp in parts), "cases": [exp.case for exp in parts],
                      "backend": name, "records": total[name], "together": True})
    return found


def catch_all_line(found: list[dict[str, Any]]) -> str:
    """The verdict's warning: `expectation X covers all N records of backend B; ...` ("" when none)."""
    return "; ".join(
        f"expectations {f['entry']} (cases {', '.join(repr(c) for c in f['cases'])}) together cover all "
        f"{f['records']} records of backend {f['backend']}" if f.get("together") else
        f"expectation {f['entry']} (case {f['case']!r}) covers all {f['records']} records of backend {f['backend']}"
        for f in found
    )


def unmatched(records: Sequence[Record], expectations: list[Expectation]) -> list[dict[str, Any]]:
    """Entries that name no record of a backend that ran: a typo, or a case the run no
    longer holds. An entry about a backend this run did not have (not installed, not
    selected) is not warned about: the same file serves machines with fewer frameworks."""
    ran = {r["backend"] for r in records}
    return [
        {"entry": f"#{exp.index} in {exp.file}", "case": exp.case, "backend": exp.backend}
        for exp in expectations
        if any(fnmatch.fnmatchcase(b, exp.backend) for b in ran) and not any(exp.covers(r) for r in records)
    ]
