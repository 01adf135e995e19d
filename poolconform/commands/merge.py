"""`poolconform merge DIR... --out DIR`: join `run --shard K/N` outputs into one report.

A merge is refused (exit 2, one line naming what is missing) unless the folders prove
they hold one whole run: every shard K of the same N and the same matrix digest, each
shard with a record for every one of its cases on every backend that ran. Without that
proof a merged "every backend agrees" would be a false green. `--allow-partial` writes
the report anyway, marked partial everywhere, and then never exits 0.

The merged report has the content of the unsharded run: records deduplicated by
(case, backend) (a later DIR wins), written sorted by (case, backend) so the file is
the same whatever order shards finished in; the summary recomputed with summarize(),
backend info and dropped counts taken from the shards' summary.json. --out is written
under `run`'s protection (poolconform.outdir): locked, no symlinked names written through.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poolconform import outdir, shard as sharding
from poolconform.errors import PoolconformError
from poolconform.pipeline import write_reports
from poolconform.report.summary import summarize
from poolconform.report.terminal import print_summary
from poolconform.record_table import MARKS, RecordTable
from poolconform.results import RESULTS_FILE, Record, read_records, write_atomic
from poolconform.worker import BackendInfo


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge", help="join the report folders of sharded runs into one report",
                       description="Join the --out folders of `poolconform run --shard K/N` jobs into one report "
                                   "with the content of the unsharded run. Exit 2 unless the folders hold every "
                                   "shard of one run; exit 1 when the merged run has an unexpected disagreement.")
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="shard report folders (each with results.jsonl)")
    p.add_argument("--out", type=outdir.out_folder, required=True, metavar="DIR", help="folder for the merged report")
    p.add_argument("--expectations", type=Path, metavar="FILE",
                   help="re-apply this expectations file to the merged records (and report fixed entries)")
    p.add_argument("--allow-partial", action="store_true",
                   help="merge even when shards or records are missing: the report is marked partial and "
                        "the exit status is never 0")
    p.add_argument("--quiet", action="store_true", help="print only the verdict line (and errors)")
    p.set_defaults(handler=main)


@dataclass
class Shard:
    """One shard folder, read and type-checked."""

    folder: Path
    records: Sequence[Record]
    summary: dict[str, Any]
    identity: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.identity['k']}/{self.identity['n']}"


def _bad(path: Path, what: str) -> PoolconformError:
    return PoolconformError(f"{str(path)!r}: {what}")


def _check_summary(path: Path, summary: Any) -> dict[str, Any]:
    """The fields merge reads, with the types it needs (one line naming the first bad one)."""
    if not isinstance(summary, dict):
        raise _bad(path, f"must hold a JSON object, not {type(summary).__name__}")
    backends = summary.get("backends", {})
    if not isinstance(backends, dict) or not all(isinstance(v, dict) for v in backends.values()):
        raise _bad(path, "'backends' must be an object of objects")
    for name, raw in backends.items():
        for key in ("unavailable", "version", "device", "python"):
            if raw.get(key) is not None and not isinstance(raw[key], str):
                raise _bad(path, f"backends.{name}.{key} must be a string or null, not {raw[key]!r:.40}")
        restarts = raw.get("restarts", 0)
        if restarts is not None and (isinstance(restarts, bool) or not isinstance(restarts, int)):
            raise _bad(path, f"backends.{name}.restarts must be an integer, not {restarts!r:.40}")
    dropped = summary.get("dropped", {})
    if not isinstance(dropped, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in dropped.values()):
        raise _bad(path, "'dropped' must be an object of integers")
    seconds = summary.get("seconds", 0)
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float))):
        raise _bad(path, f"'seconds' must be a number, not {seconds!r:.40}")
    if "matrix" in summary and not isinstance(summary["matrix"], str):
        raise _bad(path, "'matrix' must be a string")
    return summary


def _check_identity(path: Path, summary: dict[str, Any]) -> dict[str, Any]:
    ident = summary.get(sharding.IDENTITY_KEY)
    if ident is None:
        raise _bad(path, f"no shard identity ({sharding.IDENTITY_KEY!r}): merge joins only the --out folders of "
                         "`poolconform run --shard K/N`")
    ints = ("k", "n", "cases", "matrix_cases")
    strs = ("matrix_digest", "cases_digest", "version")
    if (not isinstance(ident, dict)
            or not all(isinstance(ident.get(f), int) and not isinstance(ident.get(f), bool) for f in ints)
            or not all(isinstance(ident.get(f), str) for f in strs)
            or not isinstance(ident.get("backends"), list)
            or not all(isinstance(b, str) for b in ident["backends"])
            or not 1 <= ident["k"] <= ident["n"] or not 0 <= ident["cases"] <= ident["matrix_cases"]):
        raise _bad(path, f"{sharding.IDENTITY_KEY!r} is not a shard identity (k, n, cases, matrix_cases, "
                         "matrix_digest, cases_digest, backends, version)")
    return ident


def read_shard(folder: Path) -> Shard:
    """One shard's records, summary.json and identity; one line when any is unreadable or a
    run is still writing the folder (outdir.reading, which reads a folder without a lock file,
    or no folder, as it is)."""
    with outdir.reading(folder):
        return _read_shard(folder)


def _read_shard(folder: Path) -> Shard:
    if not folder.exists():
        raise PoolconformError(f"shard folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise PoolconformError(f"shard folder {str(folder)!r} is not a folder")
    results = folder / RESULTS_FILE
    if not results.is_file():
        raise PoolconformError(f"{str(folder)!r} has no {RESULTS_FILE}: is it the --out folder of a poolconform run?")
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        raise _bad(folder, "has no summary.json: did its run finish? (finish it with `run --resume`)")
    try:
        raw = json.loads(summary_path.read_text(encoding="utf-8"))
    except (ValueError, OSError, RecursionError) as exc:
        raise _bad(summary_path, f"is not valid JSON: {str(exc)[:120]}") from None
    summary = _check_summary(summary_path, raw)
    identity = _check_identity(summary_path, summary)
    records = read_records(results)  # refuses, naming the line, a record it cannot use
    return Shard(folder, records, summary, identity)


def missing_parts(shards: list[Shard]) -> list[str]:
    """What the set lacks to be one whole run ([] when complete); raises when shards are of different runs."""
    first = shards[0].identity
    for s in shards[1:]:
        for key, what in (("matrix_digest", "matrices"), ("n", "shard counts N"), ("backends", "backend lists"),
                          ("version", "poolconform versions"), ("matrix_cases", "matrix sizes")):
            if s.identity[key] != first[key]:
                raise PoolconformError(
                    f"shards come from different runs: {str(shards[0].folder)!r} ({shards[0].label}) and "
                    f"{str(s.folder)!r} ({s.label}) differ in their {what} ({first[key]!r} vs {s.identity[key]!r})"
                )
    n = first["n"]
    by_k: dict[int, Shard] = {}
    for s in shards:
        seen = by_k.setdefault(s.identity["k"], s)
        if seen is not s:  # which one is the shard? Merging both would let the later one's records win
            differ = "but hold different cases" if seen.identity != s.identity else "(two runs of the same shard)"
            raise PoolconformError(f"{str(seen.folder)!r} and {str(s.folder)!r} both claim shard {s.label} {differ}: "
                                   "give one folder per shard")
    missing = [f"missing shards {', '.join(f'{k}/{n}' for k in range(1, n + 1) if k not in by_k)}"] if len(by_k) < n else []
    held = sum(s.identity["cases"] for s in by_k.values())
    if not missing and held != first["matrix_cases"]:  # every K is there, so their cases must add up
        raise PoolconformError(f"the shards' cases add up to {held}, not the matrix's {first['matrix_cases']}: "
                               "a shard's summary.json was edited or comes from another run")
    ran_anywhere = {name for s in shards for name, info in (s.summary.get("backends") or {}).items()
                    if info.get("unavailable") is None}
    for k in sorted(by_k):
        s = by_k[k]
        if s.summary.get("interrupted"):
            missing.append(f"shard {s.label} was interrupted (finish it with `run --resume`)")
        infos = s.summary.get("backends") or {}
        for name in first["backends"]:
            info = infos.get(name)
            if name in ran_anywhere and (info is None or info.get("unavailable") is not None):
                why = info.get("unavailable") if info else "not listed"
                missing.append(f"{name} did not run in shard {s.label} ({why})")
                continue
            if name not in ran_anywhere:
                continue
            cases = {r["case"] for r in s.records if r["backend"] == name}
            if sharding.ids_digest(cases) != s.identity["cases_digest"]:
                missing.append(f"shard {s.label} holds {len(cases)} of its {s.identity['cases']} cases on {name}")
        foreign = sorted({r["case"] for r in s.records if sharding.shard_of(r["case"], n) != k})
        if foreign:
            missing.append(f"shard {s.label} holds {len(foreign)} case(s) of other shards, e.g. {foreign[0]!r}")
        strays = sorted({r["backend"] for r in s.records} - set(first["backends"]))
        if strays:
            missing.append(f"shard {s.label} has records of backends it did not select ({', '.join(strays)})")
    return missing


def merge_backends(summaries: list[dict[str, Any]]) -> dict[str, BackendInfo]:
    """One BackendInfo per backend: available if any shard had it, restarts added up."""
    infos: dict[str, BackendInfo] = {}
    for summary in summaries:
        for name, raw in (summary.get("backends") or {}).items():
            info = infos.setdefault(name, BackendInfo(name, unavailable=raw.get("unavailable")))
            if raw.get("unavailable") is None:
                info.unavailable = None
            for attr in ("version", "device"):
                value = raw.get(attr) or ""
                have = getattr(info, attr)
                if value and value not in have.split(", "):
                    setattr(info, attr, f"{have}, {value}" if have else value)
            info.restarts += int(raw.get("restarts") or 0)
            info.python = info.python or raw.get("python")
    return infos


def merge_dropped(summaries: list[dict[str, Any]]) -> dict[str, int]:
    """Every shard expands the whole matrix, so each reports the same drops: keep the largest."""
    dropped: dict[str, int] = {}
    for summary in summaries:
        for reason, count in (summary.get("dropped") or {}).items():
            dropped[reason] = max(dropped.get(reason, 0), int(count))
    return dropped


def merge(dirs: list[Path], expectations: Path | None = None,
          allow_partial: bool = False) -> tuple[Sequence[Record], dict[str, Any]]:
    """Merged records (sorted) and their recomputed summary; PoolconformError when the set is not whole.

    With `allow_partial`, a set that lacks parts gives a summary with `partial` (what is
    missing) and an exit_status of at least 1.
    """
    shards = [read_shard(folder) for folder in _distinct(dirs)]
    missing = missing_parts(shards)
    if missing and not allow_partial:
        raise PoolconformError(f"incomplete set of shards: {'; '.join(missing)} "
                               "(give every shard folder, or --allow-partial for a report marked partial)")
    summaries = [s.summary for s in shards]
    records = RecordTable()
    for s in shards:
        for record in s.records:
            records.add(record)  # folders hold disjoint cases (missing_parts refuses a shard given twice)
        s.records = ()  # held once, in the merged table
    records.sort_by_key()
    if not records and not missing:  # a run always has a record: no backend at all is refused by run
        raise PoolconformError("the shards hold no record at all: nothing was checked")
    extra: dict[str, Any] = {}
    matrices = {s["matrix"] for s in summaries if "matrix" in s}
    if len(matrices) == 1:
        extra["matrix"] = matrices.pop()
    extra["seconds"] = round(sum(float(s.get("seconds") or 0) for s in summaries), 3)
    extra["merged"] = {"from": [str(d) for d in dirs], "shards": [s.summary.get("shard") for s in shards],
                       "matrix_digest": shards[0].identity["matrix_digest"]}
    if expectations is not None:
        from poolconform.expectations import apply_expectations, load_expectations

        fixed = apply_expectations(records, load_expectations(expectations))
        if fixed:
            extra["fixed"] = fixed
    summary = summarize(records, merge_backends(summaries), dropped=merge_dropped(summaries), extra=extra)
    if missing:
        summary["partial"] = {"missing": missing}
        summary["exit_status"] = max(1, summary["exit_status"])  # a partial report is never a green
    return records, summary


def _unmarked(record: Record) -> Record:
    """The record as judged, without the marks --expectations set on it for the reports: the
    merged results.jsonl holds what an unsharded run's does (marks are not records' facts)."""
    return {k: v for k, v in record.items() if k not in MARKS} if not MARKS.isdisjoint(record) else record


def _distinct(dirs: list[Path]) -> list[Path]:
    """The folders, each once: the same folder named twice (a path and its alias) is one shard."""
    kept: list[Path] = []
    for folder in dirs:
        if not any(folder.exists() and k.exists() and folder.samefile(k) for k in kept):
            kept.append(folder)
    return kept


def _check_out(out: Path, dirs: list[Path]) -> None:
    """The merged report goes to a folder of its own: never over a file, never into a shard."""
    if out.exists() and not out.is_dir():
        raise PoolconformError(f"--out {str(out)!r} is a file, not a folder")
    if any(d.exists() and out.exists() and d.samefile(out) for d in dirs):
        raise PoolconformError(f"--out {str(out)!r} is one of the shard folders; merging there would overwrite it")


def main(args: argparse.Namespace) -> int:
    _check_out(args.out, args.dirs)
    records, summary = merge(args.dirs, args.expectations, args.allow_partial)  # a refusal writes nothing
    outdir.prepare(args.out)  # as `run` does: a folder, no symlinked names to write through
    lock = outdir.OutLock(args.out)  # a run or another merge into --out now is refused, naming it
    try:
        write_atomic(args.out / RESULTS_FILE, (json.dumps(_unmarked(r)) + "\n" for r in records))  # streamed
        write_reports(args.out, records, summary)
    finally:
        lock.release()
    partial = summary.get("partial")
    from poolconform.report.terminal import console as report_console, verdict

    console = report_console()
    if args.quiet:  # the verdict line only
        console.print(verdict(summary), soft_wrap=True)
    else:
        kind = "PARTIAL merge" if partial else "merge"
        print_summary(summary, console, title=f"poolconform {kind} ({len(args.dirs)} folders)")
        for entry in summary.get("fixed", []):
            print(f"fixed: {entry['case']} on {entry['backend']} now passes: remove this expectation entry",
                  file=sys.stderr)
        print(f"wrote {args.out}/ ({len(records)} records from {len(args.dirs)} folders)", file=sys.stderr)
    if partial and args.quiet:  # even with --quiet: this report must not be read as a whole run
        print(f"poolconform: PARTIAL report (exit 1): {'; '.join(partial['missing'])}", file=sys.stderr)
    return summary["exit_status"]
