"""`poolconform diff RUN_A RUN_B`: what changed between two output folders (e.g. a framework upgrade).

For each (case, backend) in both runs: `regressed` (a pass, an expected disagreement or
an unsupported case became an unexpected disagreement), `fixed` (the reverse), `changed`
(another status otherwise, or the same status with another output digest: numeric drift).
Digests are compared only where both records' digests come from one algorithm (a run of
an earlier poolconform fingerprinted outputs another way): other pairs are counted and
named in the output, never reported as changed.
A (case, backend) in A but not in B is `lost`: B checked less than A (a backend that did
not run, an interrupted or narrowed run), so a gate must not pass it. One in B only is `new`.
A pair that A checked (any status but unsupported) and B calls unsupported is `uncovered`:
B checked less too (an upgrade that refuses a case it used to run), and a failing case
that became unsupported is not fixed. It fails the gate like a lost record.
Pairs are compared, not case and backend sets: B may hold every case and every backend and
still lack one pair. Both sides' versions are printed; the regressions are grouped as
findings. Exit 1 when anything regressed, was lost or uncovered, else 0 (new records alone are fine).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from poolconform.compare import digest_algorithm
from poolconform.errors import PoolconformError
from poolconform.findings import triage
from poolconform.findings.triage import signature
from poolconform.report.text import printable
from poolconform.record_table import RecordTable
from poolconform.results import FAILING, RESULTS_FILE, Record, read_records

#: Entries printed per list; --json holds them all.
SHOWN = 20
#: The status shown for the side of a lost or new entry that has no record.
MISSING = "missing"
#: What B says of a case it does not check.
UNSUPPORTED = "unsupported"
#: The lists that fail the gate, in the order the verdict line names them.
FAILING_LISTS = ("regressed", "new_failing", "lost", "uncovered")


def exit_status(result: dict[str, Any]) -> int:
    """1 when B regressed, lost a record of A or stopped checking a case A checked (a gate must
    pass none of them), else 0."""
    return 1 if any(result[k] for k in FAILING_LISTS) else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diff", help="compare two runs' output folders: regressed, fixed, changed",
                       description="Compare the records of two --out folders per (case, backend). "
                                   "Exit 1 when anything regressed, a record of RUN_A is missing from RUN_B "
                                   "(lost) or a case RUN_A checked is unsupported in RUN_B (uncovered), 0 "
                                   "otherwise, 2 on unusable input.")
    p.add_argument("run_a", type=Path, metavar="RUN_A", help="the earlier run's --out folder")
    p.add_argument("run_b", type=Path, metavar="RUN_B", help="the later run's --out folder")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the whole comparison as JSON")
    p.add_argument("--expectations", type=Path, metavar="FILE",
                   help="known disagreements, applied to both runs (an expected disagreement is not a regression)")
    p.set_defaults(handler=main)


def load_run(folder: Path) -> tuple[Sequence[Record], dict[str, str]]:
    """A run's records and backend versions; one clear line when the folder is not a run."""
    path = folder / RESULTS_FILE
    if not folder.is_dir():
        raise PoolconformError(f"{str(folder)!r} is not a folder (expected a poolconform --out folder)")
    if not path.is_file():
        raise PoolconformError(f"{str(folder)!r} holds no {RESULTS_FILE}: not a poolconform --out folder")
    records = read_records(path)
    for number, r in enumerate(records, 1):
        if not isinstance(r.get("case"), str) or not isinstance(r.get("backend"), str) or not isinstance(
                r.get("status"), str):
            raise PoolconformError(f"{str(path)!r}: record {number} has no string case, backend and status")
    versions: dict[str, str] = {}
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        for name, info in (summary.get("backends") or {}).items():
            if isinstance(info, dict) and isinstance(info.get("version"), str):
                versions[str(name)] = info["version"]
    except (OSError, ValueError, AttributeError):
        pass  # versions are shown when known; the records are what is compared
    return records, versions


def _bad(record: Record) -> bool:
    return record["status"] in FAILING and not record.get("expected")


def _facts(records: Sequence[Record]) -> dict[tuple[str, str], tuple[str, bool, Any, int]]:
    """(status, counts as bad, digest, position) per (case, backend): what the comparison
    reads, so two large runs are compared without holding their records as dicts."""
    return {(r["case"], r["backend"]): (r["status"], _bad(r), r.get("digest"), i) for i, r in enumerate(records)}


def compare_runs(a: Sequence[Record], b: Sequence[Record]) -> dict[str, Any]:
    """The comparison as plain data (what --json writes)."""
    before, after = _facts(a), _facts(b)
    out: dict[str, Any] = {"regressed": [], "fixed": [], "changed": [], "uncovered": []}
    incomparable: dict[str, int] = {}
    for key in sorted(before.keys() & after.keys()):
        (status_a, bad_a, digest_a, where_a), (status_b, bad_b, digest_b, where) = before[key], after[key]
        if status_a == status_b and bad_a == bad_b and digest_a == digest_b:
            continue  # the same answer: nothing to list (most pairs)
        entry = {"case": key[0], "backend": key[1], "before": status_a, "after": status_b,
                 "detail": b[where].get("detail") or ""}
        if status_b == UNSUPPORTED and status_a != UNSUPPORTED:
            out["uncovered"].append(entry)
        elif not bad_a and bad_b:
            out["regressed"].append(entry)
        elif bad_a and bad_b and (status_a != status_b or signature(a[where_a]) != signature(b[where])):
            # a failure of another kind (a mismatch that now crashes, values that differ that now
            # drop a NaN): a new behaviour, not the known one drifting
            entry["before"] = f"{status_a}: {signature(a[where_a])}"
            entry["after"] = f"{status_b}: {signature(b[where])}"
            out["regressed"].append(entry)
        elif bad_a and not bad_b:
            out["fixed"].append(entry)
        elif status_a != status_b:
            out["changed"].append(entry)
        elif digest_a != digest_b:
            algorithms = (digest_algorithm(digest_a), digest_algorithm(digest_b))
            if algorithms[0] == algorithms[1] or None in algorithms:
                out["changed"].append(entry)
            else:
                pair = f"{algorithms[0]} -> {algorithms[1]}"
                incomparable[pair] = incomparable.get(pair, 0) + 1
    out["digests_not_compared"] = incomparable
    out["lost"] = [{"case": k[0], "backend": k[1], "before": before[k][0], "after": MISSING, "detail": ""}
                   for k in sorted(before.keys() - after.keys())]
    out["new"] = [{"case": k[0], "backend": k[1], "before": MISSING, "after": after[k][0],
                   "detail": b[after[k][3]].get("detail") or ""} for k in sorted(after.keys() - before.keys())]
    # A disagreement on a pair the baseline did not have is one nobody vetted: it fails the
    # gate as a regression does, listed first (it hid among the new pairs, exit 0).
    out["new_failing"] = [e for k, e in zip(sorted(after.keys() - before.keys()), out["new"]) if after[k][1]]
    cases_a, cases_b = {case for case, _ in before}, {case for case, _ in after}
    backends_a, backends_b = {backend for _, backend in before}, {backend for _, backend in after}
    out["only_in_a"] = {"cases": sorted(cases_a - cases_b), "backends": sorted(backends_a - backends_b)}
    out["only_in_b"] = {"cases": sorted(cases_b - cases_a), "backends": sorted(backends_b - backends_a)}
    regressed = {(e["case"], e["backend"]) for e in out["regressed"]}
    subset = RecordTable(r for r in b if r["status"] == "pass" or (r["case"], r["backend"]) in regressed)
    out["regressed_findings"] = [{k: f[k] for k in ("backend", "status", "count", "summary", "cases", "minimal_case")}
                                 for f in triage(subset)]
    return out


def _print_list(title: str, entries: list[dict[str, Any]]) -> None:
    print(f"{title}: {len(entries)}")
    for e in entries[:SHOWN]:
        print(f"  {printable(e['case'])} on {printable(e['backend'])}: {e['before']} -> {e['after']}")
    if len(entries) > SHOWN:
        print(f"  ... and {len(entries) - SHOWN} more (--json FILE lists all)")


def check_json_target(path: Path, runs: Sequence[Path]) -> None:
    """Refuse a --json path that is, or lies inside, a compared folder: writing it there would
    overwrite or add to the very run being compared (e.g. `--json RUN_A/results.jsonl`)."""
    try:
        written = {path.resolve(), path.parent.resolve() / path.name}  # the link itself and where it points
        folders = [run.resolve() for run in runs]
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise PoolconformError(f"--json {str(path)!r}: cannot resolve the path: {exc}") from None
    for run, folder in zip(runs, folders):
        if any(w == folder or folder in w.parents for w in written):
            raise PoolconformError(f"--json {str(path)!r} lies inside the compared folder {str(run)!r}; "
                                   "write the comparison outside both runs")


def main(args: argparse.Namespace) -> int:
    if args.json is not None:
        from poolconform.commands.output_file import check_output_file

        check_json_target(args.json, (args.run_a, args.run_b))
        check_output_file(args.json, "--json")
    a, versions_a = load_run(args.run_a)
    b, versions_b = load_run(args.run_b)
    if args.expectations is not None:
        from poolconform.expectations import apply_expectations, load_expectations

        entries = load_expectations(args.expectations)
        apply_expectations(a, entries)
        apply_expectations(b, entries)
        from poolconform.expectations import catch_all_line, catch_alls, unmatched

        wide = catch_alls(b, entries)  # as run warns: such an entry excuses any regression of its backend
        if wide:
            print(f"poolconform diff: warning: {catch_all_line(wide)}", file=sys.stderr)
        for entry in unmatched(b, entries):
            print(f"poolconform diff: warning: expectation {entry['entry']} (case {entry['case']!r}, backend "
                  f"{entry['backend']!r}) matches no record of run B", file=sys.stderr)
    result = compare_runs(a, b)
    result["versions"] = {"a": versions_a, "b": versions_b}
    print(f"poolconform diff {printable(args.run_a)} -> {printable(args.run_b)}")
    for name in sorted(versions_a.keys() | versions_b.keys()):
        va, vb = versions_a.get(name, "-"), versions_b.get(name, "-")
        print(f"  {printable(name)}: {printable(va)}" + (f" -> {printable(vb)}" if va != vb else " (same)"))
    _print_list("regressed", result["regressed"])
    _print_list("new and failing (in B only)", result["new_failing"])
    for f in result["regressed_findings"][:SHOWN]:
        print(f"  finding: {printable(f['summary'])} ({f['count']}); minimal case {printable(f['minimal_case'])}")
    if len(result["regressed_findings"]) > SHOWN:
        print(f"  ... and {len(result['regressed_findings']) - SHOWN} more finding(s) (--json FILE lists all)")
    _print_list("fixed", result["fixed"])
    _print_list("changed", result["changed"])
    for pair, count in result["digests_not_compared"].items():
        print(f"outputs not compared: {count} pair(s) with the same status whose digests come from two "
              f"algorithms ({pair}); rerun both with one poolconform to see numeric drift")
    _print_list("lost (in A, missing from B)", result["lost"])
    _print_list("uncovered (checked in A, unsupported in B)", result["uncovered"])
    _print_list("new (in B only)", result["new"])
    for side in ("a", "b"):
        only = result[f"only_in_{side}"]
        if only["cases"] or only["backends"]:
            print(f"only in {side.upper()}: {len(only['cases'])} case(s), backends: "
                  f"{', '.join(map(printable, only['backends'])) or 'none'}")
    status = exit_status(result)
    result["exit_status"] = status
    why = [f"{len(result[k])} {k}" for k in FAILING_LISTS if result[k]]
    print(f"diff: FAIL (exit 1): {', '.join(why)}" if status
          else "diff: OK (exit 0): nothing regressed, new and failing, lost or uncovered")
    if args.json:  # after the comparison is printed: a failed write loses the file alone
        from poolconform.commands.output_file import write_output_file

        write_output_file(args.json, json.dumps(result, indent=2) + "\n", "--json")
    return status
