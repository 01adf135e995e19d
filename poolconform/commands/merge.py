"""`poolconform merge DIR... --out DIR`: join `run --shard K/N` outputs into one report.

The merged report has the content of the unsharded run: records deduplicated by
(case, backend) (a later DIR wins), written sorted by (case, backend) so the file is
the same whatever order shards finished in; the summary recomputed with summarize(),
backend info and dropped counts taken from the shards' summary.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from poolconform.errors import PoolconformError
from poolconform.pipeline import write_reports
from poolconform.report.summary import summarize
from poolconform.report.terminal import print_summary
from poolconform.results import RESULTS_FILE, Record, read_records, record_key, write_atomic
from poolconform.worker import BackendInfo


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge", help="join the report folders of sharded runs into one report",
                       description="Join the --out folders of `poolconform run --shard K/N` jobs into one report "
                                   "with the content of the unsharded run. Exit 1 when the merged run has an "
                                   "unexpected disagreement.")
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="shard report folders (each with results.jsonl)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the merged report")
    p.add_argument("--expectations", type=Path, metavar="FILE",
                   help="re-apply this expectations file to the merged records (and report fixed entries)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(handler=main)


def record_order(record: Record) -> tuple[str, str]:
    """The merged results.jsonl order: by case id, then backend."""
    return record_key(record)


def read_shard(folder: Path) -> tuple[list[Record], dict[str, Any]]:
    """One shard's records and summary.json (empty when the shard wrote none)."""
    if not folder.exists():
        raise PoolconformError(f"shard folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise PoolconformError(f"shard folder {str(folder)!r} is not a folder")
    results = folder / RESULTS_FILE
    if not results.is_file():
        raise PoolconformError(f"{str(folder)!r} has no {RESULTS_FILE}: is it the --out folder of a poolconform run?")
    summary_path = folder / "summary.json"
    summary: dict[str, Any] = {}
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise PoolconformError(f"{str(summary_path)!r} is not valid JSON: {exc}") from None
    return read_records(results), summary


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
    return infos


def merge_dropped(summaries: list[dict[str, Any]]) -> dict[str, int]:
    """Every shard expands the whole matrix, so each reports the same drops: keep the largest."""
    dropped: dict[str, int] = {}
    for summary in summaries:
        for reason, count in (summary.get("dropped") or {}).items():
            dropped[reason] = max(dropped.get(reason, 0), int(count))
    return dropped


def merge(dirs: list[Path], expectations: Path | None = None) -> tuple[list[Record], dict[str, Any]]:
    """Merged records (sorted) and their recomputed summary."""
    by_key: dict[tuple[str, str], Record] = {}
    summaries = []
    for folder in dirs:
        records, summary = read_shard(folder)
        summaries.append(summary)
        for record in records:
            by_key[record_key(record)] = record
    records = sorted(by_key.values(), key=record_order)
    extra: dict[str, Any] = {}
    matrices = {s["matrix"] for s in summaries if "matrix" in s}
    if len(matrices) == 1:
        extra["matrix"] = matrices.pop()
    extra["seconds"] = round(sum(float(s.get("seconds") or 0) for s in summaries), 3)
    extra["merged"] = {"from": [str(d) for d in dirs], "shards": [s.get("shard") for s in summaries]}
    if expectations is not None:
        from poolconform.expectations import apply_expectations, load_expectations

        fixed = apply_expectations(records, load_expectations(expectations))
        if fixed:
            extra["fixed"] = fixed
    summary = summarize(records, merge_backends(summaries), dropped=merge_dropped(summaries), extra=extra)
    return records, summary


def main(args: argparse.Namespace) -> int:
    records, summary = merge(args.dirs, args.expectations)
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / RESULTS_FILE, "".join(json.dumps(r) + "\n" for r in records))
    write_reports(args.out, records, summary)
    if not args.quiet:
        from rich.console import Console

        console = Console(highlight=False)
        if not console.is_terminal:
            console = Console(highlight=False, width=160)
        print_summary(summary, console, title=f"poolconform merge ({len(args.dirs)} folders)")
        for entry in summary.get("fixed", []):
            print(f"fixed: {entry['case']} on {entry['backend']} now passes: remove this expectation entry",
                  file=sys.stderr)
        print(f"wrote {args.out}/ ({len(records)} records from {len(args.dirs)} folders)", file=sys.stderr)
    return summary["exit_status"]
