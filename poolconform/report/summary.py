"""summary.json: counts, backends, pairwise agreement, findings and the worst disagreements.

Findings (poolconform/findings/) group the disagreements by behaviour; `unsupported`
groups what backends cannot express by reason template.

Every other report (terminal, HTML, Markdown) reads this one structure, so they cannot
disagree with each other.
"""

from __future__ import annotations

import itertools
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from poolconform import __version__
from poolconform.findings import build_findings, unsupported_groups
from poolconform.results import FAILING, PSEUDO_BACKENDS, STATUSES, Record, numeric
from poolconform.worker import BackendInfo

#: Statuses where the backend produced outputs (so two backends can be compared).
RAN = ("pass", "mismatch", "shape-mismatch")


def agreement(records: Sequence[Record]) -> dict[str, dict[str, dict[str, int]]]:
    """For each pair of backends: cases both ran, and how many they agree on.

    Two backends agree on a case when both pass against the expected outputs or both
    produced identical outputs (same digest): "torch and ORT agree, Keras is alone".
    """
    bit: dict[str, int] = {}
    ran_by_case: dict[str, int] = {}  # case -> mask of the backends that ran it (a bit per backend)
    mixed: set[str] = set()  # cases with a record that ran and did not pass: digests decide there
    for r in records:
        backend = bit.setdefault(r["backend"], len(bit))
        if r["status"] in RAN:
            case = sys.intern(r["case"])  # one string per case, whichever chunk a record is read back from
            ran_by_case[case] = ran_by_case.get(case, 0) | 1 << backend
            if r["status"] != "pass":
                mixed.add(case)
    names = sorted(bit)
    table: dict[str, dict[str, dict[str, int]]] = {a: {b: {"both": 0, "agree": 0} for b in names} for a in names}
    # Cases where every backend that ran it passed: all pairs agree; counted once per set of backends.
    for mask, cases in Counter(m for case, m in ran_by_case.items() if case not in mixed).items():
        ran = [name for name in names if mask >> bit[name] & 1]
        for a, b in itertools.product(ran, ran):
            table[a][b]["both"] += cases
            table[a][b]["agree"] += cases
    if not mixed:
        return table
    # Per mixed case and backend: ran, passed, and the digest as a number (a broken backend makes
    # every case mixed: arrays of a few bytes a record, not a dict of strings per case).
    row = {case: i for i, case in enumerate(mixed)}
    shape = (len(row), len(bit))
    did_run, passed = np.zeros(shape, bool), np.zeros(shape, bool)
    kind, value = np.zeros(shape, np.int8), np.zeros(shape, np.uint64)
    other: dict[str, int] = {}  # a digest that is not 16 hex digits (an edited file): numbered
    for r in records:
        i = row.get(r["case"])
        if i is not None and r["status"] in RAN:
            j = bit[r["backend"]]
            did_run[i, j], passed[i, j] = True, r["status"] == "pass"
            kind[i, j], value[i, j] = _digest_number(r.get("digest"), other)
    for a, b in itertools.product(names, names):
        ja, jb = bit[a], bit[b]
        both = did_run[:, ja] & did_run[:, jb]
        same = (kind[:, ja] != 0) & (kind[:, ja] == kind[:, jb]) & (value[:, ja] == value[:, jb])
        table[a][b]["both"] += int(both.sum())
        table[a][b]["agree"] += int((both & ((passed[:, ja] & passed[:, jb]) | same)).sum())
    return table


def _digest_number(digest: Any, other: dict[str, int]) -> tuple[int, int]:
    """(kind, value): (0, 0) for no digest, (1, its value) for up to 16 hex digits (what runs
    write), (2, a number per distinct text) for anything else; equal digests, equal pairs."""
    if not isinstance(digest, str):
        return 0, 0
    if 0 < len(digest) <= 16:
        try:
            return 1, int(digest, 16)
        except ValueError:
            pass
    return 2, other.setdefault(digest, len(other) + 1)


def _first_two(entry: tuple[tuple, int, dict[str, Any]]) -> tuple[tuple, int]:
    """The order of `worst`: rank, then the record's position (as a stable sort kept them)."""
    return entry[0], entry[1]


def _worst_row(r: Record) -> dict[str, Any]:
    return {k: r.get(k) for k in ("case", "backend", "status", "max_abs_err", "max_ulp", "detail")} | {
        "expected": bool(r.get("expected"))}


def summarize(
    records: Sequence[Record],
    infos: dict[str, BackendInfo] | None = None,
    *,
    dropped: dict[str, int] | None = None,
    extra: dict[str, Any] | None = None,
    worst: int = 15,
) -> dict[str, Any]:
    """The whole run in one JSON-ready dict."""
    counts: Counter[str] = Counter()
    by_backend: dict[str, dict[str, int]] = {}
    cases: set[str] = set()
    shown: list[tuple[tuple, int, dict[str, Any]]] = []  # (rank, position, row): the worst disagreements so far
    unexpected = 0
    computed = False  # a backend computed something (not every record is unsupported or a pseudo-backend's)
    for number, r in enumerate(records):  # one pass: a large run's records are read back from a file
        status = r["status"]
        counts[status] += 1
        by_backend.setdefault(r["backend"], {s: 0 for s in STATUSES})[status] += 1
        cases.add(sys.intern(r["case"]))  # one string per case for every table the reports make
        if status in FAILING:
            unexpected += not r.get("expected")
            if worst > 0:  # the worst few only, not a list of every one: a broken backend's are all
                rank = (bool(r.get("expected")),
                        -(numeric(r.get("max_ulp")) or float("inf") if status == "mismatch" else 0),
                        status, r["backend"], r["case"])
                shown.append((rank, number, _worst_row(r)))
                if len(shown) >= 4 * worst:
                    shown.sort(key=_first_two)
                    del shown[worst:]
        if not computed and status != "unsupported" and r["backend"] not in PSEUDO_BACKENDS:
            computed = True
    case_count = len(cases)
    del cases  # a string per case: not held while the tables below make their own
    summary: dict[str, Any] = {
        "tool": {"name": "poolconform", "version": __version__},
        "cases": case_count,
        "records": sum(counts.values()),
        "counts": {s: counts.get(s, 0) for s in STATUSES},
        "by_backend": dict(sorted(by_backend.items())),
        "backends": {
            name: {"version": i.version, "device": i.device, "unavailable": i.unavailable, "restarts": i.restarts}
            | ({"python": i.python} if i.python else {})
            for name, i in sorted((infos or {}).items())
        },
        "dropped": dict(dropped or {}),
        "agreement": agreement(records),
        "findings": build_findings(records, {n: i.python for n, i in (infos or {}).items() if i.python}),
        "unsupported": unsupported_groups(records),
        "worst": [row for _, _, row in sorted(shown, key=_first_two)[:worst]],
        "unexpected": unexpected,
        "exit_status": 1 if unexpected else 0,
    }
    if counts and not unexpected and not computed:
        # No backend computed anything: a green would vouch for nothing (exit 2, as a selection error).
        # No record at all is an empty shard (`--shard K/N` of a short matrix): merge judges the whole.
        summary["nothing_verified"] = f"all {summary['records']} record(s) are unsupported"
        summary["exit_status"] = 2
    if extra:
        summary.update(extra)
    return summary
