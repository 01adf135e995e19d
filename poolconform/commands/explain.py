"""`poolconform explain CASE`: one case on each backend, a summary first, then the arrays.

The first screen says which backends disagree, where (the first element beyond the
tolerance) and by how much (max abs error, ULP, error as a fraction of the tolerance), one
line per backend with the disagreeing ones first. The arrays follow: the input, the
oracle's expected output, each backend's output and its elementwise difference, so a
disagreement can be read, not just counted. Every line fits the console's width.
"""

from __future__ import annotations

import argparse
import textwrap
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console

from poolconform import compare, dtypes
from poolconform.case import AVERAGING_OPS, PoolCase
from poolconform.commands.options import add_backend_python_option, case_from_id, name_list, positive_float, selected_specs
from poolconform.job import Job, oracle_job
from poolconform.report.terminal import console
from poolconform.report.text import printable
from poolconform.results import FAILING, Record
from poolconform.runner import RunOptions, start_workers
from poolconform.verdict import outcome_record
from poolconform.worker import Outcome, Task

#: Arrays with more elements than this print with numpy's "..." unless --full.
TRUNCATE_OVER = 400
#: numpy's line width for the arrays when the console is wider than this.
ARRAY_WIDTH = 120
_COLUMNS = ("backend", "status", "first diff", "max abs err", "max ULP", "err/tol")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="run one case on each backend: who disagrees, where and by how much, then the arrays",
                       description="Run CASE (an id as in results.jsonl; any valid id, in a matrix or not: the id "
                                   "describes the whole case) on the backends. First a summary, one line per "
                                   "backend, disagreeing ones first: status, first element beyond the tolerance, "
                                   "max abs error, max ULP and error / tolerance. Then the input, the expected "
                                   "output, each backend's output and its difference from the expected one. "
                                   "Exit 1 when a backend disagrees.")
    p.add_argument("case", metavar="CASE", help="case id, e.g. AveragePool-2d-k3-s3-p0-ceil-f32-n7")
    p.add_argument("--matrix", type=Path, metavar="FILE.toml",
                   help="matrix whose ids to suggest when CASE is not a valid id (default: embedded)")
    p.add_argument("--full", action="store_true", help=f"print arrays over {TRUNCATE_OVER} elements in full")
    p.add_argument("--backends", type=name_list, metavar="A,B", help="backends to run (default: every available one)")
    p.add_argument("--timeout", type=positive_float, default=60.0, metavar="SECONDS", help="limit per backend (default 60)")
    add_backend_python_option(p)
    p.set_defaults(handler=main, require="")


@dataclass(frozen=True)
class Gap:
    """Where and how far one backend's output lies from the expected one."""

    output: str  # "Y" or "Indices": the output the figures are about
    first: tuple[int, ...] | None  # first element (C order) beyond the tolerance
    ratio: float | None  # largest |actual - expected| / tolerance; None when tolerance and error are 0


@dataclass(frozen=True)
class BackendResult:
    """One backend's answer: a record, or the reason it did not run."""

    name: str
    status: str  # a record status, or "not run"
    detail: str
    record: Record | None = None
    outputs: tuple[np.ndarray, ...] = ()
    gap: Gap | None = None


def _rank(result: BackendResult) -> int:
    """Disagreeing backends first, then agreeing ones, then those that could not say."""
    if result.status in FAILING:
        return 0
    return {"pass": 1, "unsupported": 2}.get(result.status, 3)


def measure_gap(case: PoolCase, expected: list[np.ndarray], actual: list[np.ndarray],
                inputs: list[np.ndarray]) -> Gap | None:
    """The first output with an element beyond its tolerance (else Y): that element's index
    and the largest error / tolerance of the output. None when the shapes differ.
    Uses compare.element_tolerance, the bound the verdict uses."""
    gaps = []
    for i, (e, a) in enumerate(zip(expected, actual)):
        a = np.asarray(a)
        if a.shape != e.shape:
            return None
        try:
            gaps.append(_output_gap(case, e, a, inputs, indices=(i == 1)))
        except (TypeError, ValueError):  # not numeric: the record's detail says so
            return None
    return next((g for g in gaps if g.first is not None), gaps[0] if gaps else None)


def _output_gap(case: PoolCase, expected: np.ndarray, actual: np.ndarray, inputs: list[np.ndarray],
                indices: bool) -> Gap:
    e, a = expected.astype(np.float64), actual.astype(np.float64)
    e_nan, a_nan = np.isnan(e), np.isnan(a)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        diff = np.where((e_nan & a_nan) | (np.isinf(e) & (e == a)), 0.0, np.abs(a - e))
        diff = np.where(np.isnan(diff) | (e_nan != a_nan), np.inf, diff)
        bound = np.zeros(e.shape) if indices else compare.element_tolerance(case, e, inputs)
        exempt = np.zeros(e.shape, dtype=bool)
        if not indices and case.op in AVERAGING_OPS and dtypes.is_float(case.dtype):
            exempt = (dtypes.ulp_distance(a, e, case.dtype) <= 1) & np.isfinite(a)  # the verdict's rounding rule
        bad = (diff > bound) & ~exempt
        ratio = np.where(diff == 0, 0.0, diff / bound)
        ratio = np.where(exempt, np.minimum(ratio, 1.0), ratio)  # within the rule: at most "at the bound"
    first = tuple(int(i) for i in np.argwhere(bad)[0]) if bad.any() else None
    worst = float(ratio.max()) if ratio.size else 0.0
    return Gap("Indices" if indices else "Y", first, worst)


def _g(value: float | None) -> str:
    if value is None:
        return ""
    return "inf" if value == float("inf") else f"{value:.3g}"


def _cells(r: BackendResult) -> list[str]:
    """The summary's cells for one backend (figures only where there are outputs)."""
    if r.record is None or r.gap is None:
        shape = ""
        if r.status == "shape-mismatch" and r.record is not None:
            shape = "got " + "x".join(map(str, r.record.get("actual_shape") or []))
        return [printable(r.name), r.status, shape, "", "", ""]
    first = f"{r.gap.output}[{','.join(map(str, r.gap.first))}]" if r.gap.first is not None else "-"
    return [printable(r.name), r.status, first, _g(r.record.get("max_abs_err")), _g(r.record.get("max_ulp")),
            _g(r.gap.ratio)]


def summary_lines(case: PoolCase, results: list[BackendResult], width: int) -> list[str]:
    """The first screen: a headline naming the disagreeing backends, then one line per
    backend (a table when it fits `width`, else one wrapped line each), then the details."""
    ran = [r for r in results if r.status != "not run"]
    bad = [r.name for r in results if r.status in FAILING]
    if bad:
        head = f"{', '.join(map(printable, bad))} {'disagrees' if len(bad) == 1 else 'disagree'} " \
               f"({len(bad)} of {len(ran)} that ran)"
    elif ran:
        head = f"no backend disagrees ({len(ran)} ran)"
    else:
        head = "no backend ran"
    lines = _wrap(f"case {case.id}: {head}", width)
    rows = [list(_COLUMNS)] + [_cells(r) for r in results]
    widths = [max(len(row[c]) for row in rows) for c in range(len(_COLUMNS))]
    if sum(widths) + 2 * (len(widths) - 1) <= width:
        right = {3, 4, 5}
        for row in rows:
            cells = [cell.rjust(w) if c in right else cell.ljust(w) for c, (cell, w) in enumerate(zip(row, widths))]
            lines.append("  ".join(cells).rstrip())
    else:  # stacked: one (wrapped) line per backend, names whole
        for row in rows[1:]:
            figures = ", ".join(f"{h} {v}" for h, v in zip(_COLUMNS[2:], row[2:]) if v and v != "-")
            lines += _wrap(f"{row[0]}: {row[1]}" + (f"; {figures}" if figures else ""), width)
    if any(r.gap is not None for r in results):
        lines += _wrap("err/tol: worst error / tolerance; over 1 disagrees; inf: an exact output differs", width)
    for r in results:
        if r.detail:
            lines += _wrap(f"{printable(r.name)}: {printable(r.detail)}", width)
    return lines


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width=max(20, width), subsequent_indent="    ", break_on_hyphens=False) or [""]


def format_array(name: str, array: np.ndarray, full: bool, width: int = ARRAY_WIDTH) -> str:
    """A titled numpy print within `width` columns; says so when numpy elides the middle."""
    truncated = array.size > TRUNCATE_OVER and not full
    threshold = array.size + 1 if full else TRUNCATE_OVER
    with np.printoptions(threshold=threshold, linewidth=min(ARRAY_WIDTH, max(20, width)), precision=7,
                         suppress=False, edgeitems=3):
        body = np.array2string(array, separator=" ")
    note = f" (truncated: {array.size} elements; --full prints all)" if truncated else ""
    title = "\n".join(_wrap(f"{name} {array.dtype} shape {list(array.shape)}{note}:", width))
    return f"{title}\n{body}"


def diff_text(name: str, actual: np.ndarray, expected: np.ndarray, full: bool, width: int = ARRAY_WIDTH) -> str:
    """actual - expected elementwise (float64), or why it cannot be taken."""
    if actual.shape != expected.shape:
        return "\n".join(_wrap(f"{name}: no elementwise diff: shape {list(actual.shape)} vs expected "
                               f"{list(expected.shape)}", width))
    with np.errstate(invalid="ignore", over="ignore"):
        diff = actual.astype(np.float64) - expected.astype(np.float64)
    return format_array(f"{name} diff (actual - expected)", diff, full, width)


def run_backends(job: Job, args: argparse.Namespace) -> list[BackendResult]:
    """Run the case on every selected backend; a spinner on stderr when it is a terminal."""
    err = Console(stderr=True, highlight=False)
    specs, _ = selected_specs(args)
    status = err.status(f"starting {len(specs)} backend(s)") if err.is_terminal else nullcontext()
    results = []
    with status as spinner:
        workers = start_workers(specs, RunOptions(timeout=args.timeout))
        try:
            for backend, worker in workers.items():
                if worker.info.unavailable:
                    results.append(BackendResult(backend, "not run", worker.info.unavailable))
                    continue
                if spinner is not None:
                    spinner.update(f"running {job.case.id} on {backend}")
                outcome: Outcome = next(iter(worker.run([Task(0, job.case, job.inputs)], args.timeout)))
                record = outcome_record(job, backend, outcome)
                outputs = tuple(np.asarray(a) for a in outcome.outputs or [])
                gap = measure_gap(job.case, job.expected, list(outputs), job.inputs) if outputs else None
                results.append(BackendResult(backend, record["status"], record.get("detail") or "", record,
                                             outputs, gap))
        finally:
            for worker in workers.values():
                worker.close()
    return sorted(results, key=_rank)  # stable: the given order within a rank


def explain(case: PoolCase, args: argparse.Namespace, width: int | None = None) -> tuple[str, bool]:
    """The whole explanation text within `width` columns (default: the console's), and
    whether some backend disagreed."""
    width = width or console().width
    job = oracle_job(case)
    job.expected  # the oracle first: a case it refuses stops here, before any worker starts
    results = run_backends(job, args)
    names = ["Y", "Indices"][: len(job.expected)]
    lines = summary_lines(case, results, width) + [""]
    lines += _wrap("params " + ", ".join(f"{k}={v}" for k, v in case.describe().items()), width)
    for i, x in enumerate(job.inputs):
        lines.append(format_array(f"input X{i if len(job.inputs) > 1 else ''}", x, args.full, width))
    for name, y in zip(names, job.expected):
        lines.append(format_array(f"expected {name} (float64 oracle)", y, args.full, width))
    for r in results:
        if not r.outputs:
            continue
        header = f"== {printable(r.name)}: {r.status}"
        lines += ["", header + " " + "=" * max(3, min(width, 64) - len(header) - 1) if len(header) + 4 <= width
                  else header]
        for name, actual, expected in zip(names, r.outputs, job.expected):
            lines.append(format_array(f"{printable(r.name)} {name}", actual, args.full, width))
            lines.append(diff_text(f"{printable(r.name)} {name}", actual, expected, args.full, width))
    return "\n".join(lines), any(r.status in FAILING for r in results)


def main(args: argparse.Namespace) -> int:
    case = case_from_id(args.case, args.matrix)
    text, disagree = explain(case, args)
    print(text)
    return 1 if disagree else 0
