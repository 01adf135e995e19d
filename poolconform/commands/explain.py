"""`poolconform explain CASE`: one case on each backend, with the arrays printed.

The input, the oracle's expected output, each backend's output and its elementwise
difference from the expected one, so a disagreement can be read, not just counted.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from poolconform.case import PoolCase
from poolconform.commands.options import case_from_id, positive_float, selected_specs
from poolconform.results import FAILING
from poolconform.job import oracle_job
from poolconform.runner import RunOptions, start_workers
from poolconform.verdict import outcome_record
from poolconform.worker import Task

#: Arrays with more elements than this print with numpy's "..." unless --full.
TRUNCATE_OVER = 400


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="run one case on each backend and print input, expected, outputs and diffs",
                       description="Run CASE (an id as in results.jsonl; any valid id, in a matrix or not: the id "
                                   "describes the whole case) on the backends and print the input, the expected "
                                   "output, each backend's output and its difference from the expected one. "
                                   "Exit 1 when a backend disagrees.")
    p.add_argument("case", metavar="CASE", help="case id, e.g. AveragePool-2d-k3-s2-p1-ceil-f32-n7")
    p.add_argument("--matrix", type=Path, metavar="FILE.toml",
                   help="matrix whose ids to suggest when CASE is not a valid id (default: embedded)")
    p.add_argument("--full", action="store_true", help=f"print arrays over {TRUNCATE_OVER} elements in full")
    p.add_argument("--backends", metavar="A,B", help="backends to run (default: every available one)")
    p.add_argument("--timeout", type=positive_float, default=60.0, metavar="SECONDS", help="limit per backend (default 60)")
    p.set_defaults(handler=main, require="")


def format_array(name: str, array: np.ndarray, full: bool) -> str:
    """A titled numpy print; says so when numpy elides the middle."""
    truncated = array.size > TRUNCATE_OVER and not full
    threshold = array.size + 1 if full else TRUNCATE_OVER
    with np.printoptions(threshold=threshold, linewidth=120, precision=7, suppress=False, edgeitems=3):
        body = np.array2string(array, separator=" ")
    note = f" (truncated: {array.size} elements; --full prints all)" if truncated else ""
    return f"{name} {array.dtype} shape {list(array.shape)}{note}:\n{body}"


def diff_text(name: str, actual: np.ndarray, expected: np.ndarray, full: bool) -> str:
    """actual - expected elementwise (float64), or why it cannot be taken."""
    if actual.shape != expected.shape:
        return f"{name}: no elementwise diff: shape {list(actual.shape)} vs expected {list(expected.shape)}"
    with np.errstate(invalid="ignore", over="ignore"):
        diff = actual.astype(np.float64) - expected.astype(np.float64)
    return format_array(f"{name} diff (actual - expected)", diff, full)


def explain(case: PoolCase, args: argparse.Namespace) -> tuple[str, bool]:
    """The whole explanation text, and whether some backend disagreed."""
    job = oracle_job(case)
    names = ["Y", "Indices"][: len(job.expected)]
    lines = [f"case {case.id}", "params " + ", ".join(f"{k}={v}" for k, v in case.describe().items()), ""]
    for i, x in enumerate(job.inputs):
        lines.append(format_array(f"input X{i if len(job.inputs) > 1 else ''}", x, args.full))
    for name, y in zip(names, job.expected):
        lines.append(format_array(f"expected {name} (float64 oracle)", y, args.full))
    specs, _ = selected_specs(args)
    workers = start_workers(specs, RunOptions(timeout=args.timeout))
    disagree = False
    try:
        for backend, worker in workers.items():
            lines += ["", f"== {backend} " + "=" * max(3, 60 - len(backend))]
            if worker.info.unavailable:
                lines.append(f"not run: {worker.info.unavailable}")
                continue
            outcome = next(iter(worker.run([Task(0, case, job.inputs)], args.timeout)))
            record = outcome_record(job, backend, outcome)
            disagree |= record["status"] in FAILING
            lines.append(f"status {record['status']}" + (f": {record['detail']}" if record["detail"] else ""))
            for name, actual, expected in zip(names, outcome.outputs or [], job.expected):
                lines.append(format_array(f"{backend} {name}", np.asarray(actual), args.full))
                lines.append(diff_text(f"{backend} {name}", np.asarray(actual), expected, args.full))
    finally:
        for worker in workers.values():
            worker.close()
    return "\n".join(lines), disagree


def main(args: argparse.Namespace) -> int:
    case = case_from_id(args.case, args.matrix)
    text, disagree = explain(case, args)
    print(text)
    return 1 if disagree else 0
