"""Known disagreements: a TOML file of `[[expect]]` entries that keep CI green on purpose.

Each entry names cases and backends by glob, the statuses it tolerates and, always,
why. A matching disagreement is marked `expected` (summarize() then leaves it out of
the exit status); an entry whose cases now pass is reported as fixed, so stale
entries get removed instead of hiding future regressions.

    [[expect]]
    case = "AveragePool-*-ceil-*"
    backend = "onnx-reference"
    status = "mismatch"            # or a list; default: every failing status
    reason = "onnx.reference keeps windows that start in the right padding"
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from poolconform.errors import PoolconformError
from poolconform.tomlfile import read_toml
from poolconform.results import FAILING, STATUSES, Record

KEYS = ("case", "backend", "status", "reason")


class ExpectationError(PoolconformError):
    """An expectations file that cannot be used as it is."""


@dataclass(frozen=True)
class Expectation:
    """One tolerated disagreement: case glob, backend glob, statuses, and why."""

    case: str
    backend: str
    statuses: tuple[str, ...]
    reason: str

    def covers(self, record: Record) -> bool:
        """Whether this entry names the record's case and backend (status aside)."""
        return fnmatch.fnmatchcase(record["case"], self.case) and fnmatch.fnmatchcase(record["backend"], self.backend)


def load_expectations(path: Path) -> list[Expectation]:
    """Parse and validate an expectations file; every problem is one line naming the entry."""
    where = str(path)
    data = read_toml(path, "expectations file", ExpectationError)
    unknown_tables = [k for k in data if k != "expect"]
    if unknown_tables:
        raise ExpectationError(f"{where}: unknown top-level key {unknown_tables[0]!r}{_hint(unknown_tables[0], ('expect',))}")
    entries = data.get("expect", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ExpectationError(f"{where}: 'expect' must be an array of tables, written [[expect]]")
    return [_entry(e, f"{where}: [[expect]] #{i}") for i, e in enumerate(entries, 1)]


def _hint(key: str, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(allowed)}"


def _entry(raw: dict[str, Any], where: str) -> Expectation:
    for key in raw:
        if key not in KEYS:
            raise ExpectationError(f"{where}: unknown key {key!r}{_hint(key, KEYS)}")
    for key in ("case", "reason"):
        if key not in raw:
            raise ExpectationError(f"{where}: missing {key!r} (every entry needs a case glob and a reason)")
    for key in ("case", "backend", "reason"):
        if key in raw and (not isinstance(raw[key], str) or not raw[key].strip()):
            raise ExpectationError(f"{where}: {key!r} must be a non-empty string, got {raw[key]!r}")
    status = raw.get("status", list(FAILING))
    statuses = status if isinstance(status, list) else [status]
    if not statuses:
        raise ExpectationError(f"{where}: 'status' is an empty list; allowed: {', '.join(STATUSES)}")
    for s in statuses:
        if s not in STATUSES:
            raise ExpectationError(f"{where}: unknown status {s!r}; allowed: {', '.join(STATUSES)}")
    return Expectation(raw["case"], raw.get("backend", "*"), tuple(statuses), raw["reason"].strip())


def apply_expectations(records: list[Record], expectations: list[Expectation]) -> list[dict[str, str]]:
    """Mark expected disagreements in place; return the entries that are now fixed.

    A failing record is expected when an entry covers its case and backend and lists
    its status (the first such entry gives the reason). An entry is fixed when it
    covers at least one passing record and no longer excuses any record: remove it.
    With an exact case id this is "that case now passes"; with a glob, every case it
    names passes or is unsupported.
    """
    used: set[int] = set()
    passing: set[int] = set()
    for record in records:
        record.pop("expected", None)
        record.pop("expected_reason", None)
        for i, exp in enumerate(expectations):
            if not exp.covers(record):
                continue
            if record["status"] == "pass":
                passing.add(i)
            elif record["status"] in FAILING and record["status"] in exp.statuses:
                used.add(i)
                if "expected" not in record:
                    record["expected"] = True
                    record["expected_reason"] = exp.reason
    return [
        {"case": exp.case, "backend": exp.backend, "reason": exp.reason}
        for i, exp in enumerate(expectations)
        if i in passing and i not in used
    ]
