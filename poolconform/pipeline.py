"""One conformance session, shared by `run` and `check`: workers, records, reports, exit status.

Order matters for durability: records are written as batches complete, reports only
at the end (atomically), so an interrupted session keeps every finished record and
`--resume` picks up from there.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from poolconform.backends.base import BackendSpec
from poolconform.errors import PoolconformError
from poolconform.report.summary import summarize
from poolconform.report.terminal import print_summary
from poolconform.results import RESULTS_FILE, Record, ResultsWriter, read_records, record_key, write_json
from poolconform.runner import Job, RunOptions, run_jobs, start_workers


@dataclass
class Session:
    """Everything a run or check needs besides its jobs."""

    specs: list[BackendSpec]
    options: RunOptions
    out: Path | None
    resume: bool = False
    require: list[str] = field(default_factory=list)
    expectations: Path | None = None
    dropped: dict[str, int] = field(default_factory=dict)
    title: str = "poolconform"
    quiet: bool = False
    extra: dict = field(default_factory=dict)
    #: Records known before running (models that failed to load).
    preset_records: list[Record] = field(default_factory=list)


def _console() -> Console:
    """Wide enough for ids and details when the output is a file or a CI log."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=160)
    return console


def execute(jobs: list[Job], session: Session) -> tuple[int, list[Record], dict]:
    """Run `jobs` on the session's backends; returns (exit status, records, summary)."""
    err = Console(stderr=True, highlight=False)
    started = time.perf_counter()
    if session.out is not None:
        session.out.mkdir(parents=True, exist_ok=True)
        session.options.log_dir = session.out / "logs"
    elif session.options.log_dir is None:  # frameworks' chatter never reaches the user's terminal
        session.options.log_dir = Path(tempfile.mkdtemp(prefix="poolconform-logs-"))
    done: set[tuple[str, str]] = set()
    results_path = session.out / RESULTS_FILE if session.out else None
    if session.resume and results_path is not None:
        done = {record_key(r) for r in read_records(results_path)}
    workers = start_workers(session.specs, session.options)
    infos = {name: w.info for name, w in workers.items()}
    missing = [n for n in session.require if infos.get(n) is None or infos[n].unavailable]
    if missing:
        for w in workers.values():
            w.close()
        reasons = "; ".join(f"{n}: {infos[n].unavailable if n in infos else 'not selected'}" for n in missing)
        raise PoolconformError(f"required backend unavailable: {reasons}")
    usable = [n for n, i in infos.items() if i.unavailable is None]
    if not usable:
        for w in workers.values():
            w.close()
        reasons = "; ".join(f"{n}: {i.unavailable}" for n, i in infos.items())
        raise PoolconformError(f"no selected backend is available here ({reasons})")
    for name, info in infos.items():
        if info.unavailable and not session.quiet:
            err.print(f"[dim]skipping {name}: {info.unavailable}[/dim]")
    preset = [r for r in session.preset_records if record_key(r) not in done]
    done |= {record_key(r) for r in preset}
    total = sum(1 for j in jobs for n in usable if (j.case.id, n) not in done)
    writer = ResultsWriter(results_path, resume=session.resume) if results_path else None
    collected: list[Record] = []
    show = err.is_terminal and not session.quiet
    progress = Progress(TextColumn("running"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=err, transient=True, disable=not show)
    with progress:
        task = progress.add_task("records", total=total)

        def sink(records: list[Record]) -> None:
            if writer:
                writer.write(records)
            collected.extend(records)
            progress.advance(task, len(records))

        sink(preset)
        try:
            infos = run_jobs(jobs, workers, session.options, sink, skip=done)
        finally:
            if writer:
                writer.close()
    records = read_records(results_path) if results_path else collected
    fixed: list[dict] = []
    if session.expectations is not None:
        from poolconform.expectations import apply_expectations, load_expectations

        fixed = apply_expectations(records, load_expectations(session.expectations))
    extra = dict(session.extra)
    extra["seconds"] = round(time.perf_counter() - started, 3)
    if fixed:
        extra["fixed"] = fixed
    summary = summarize(records, infos, dropped=session.dropped, extra=extra)
    if session.out is not None:
        write_reports(session.out, records, summary)
    if not session.quiet:
        print_summary(summary, _console(), title=session.title)
        for entry in fixed:
            err.print(f"fixed: {entry['case']} on {entry['backend']} now passes: remove this expectation entry")
        if session.out is not None:
            err.print(f"wrote {session.out}/ ({len(records)} records, {extra['seconds']:.1f} s)")
    return summary["exit_status"], records, summary


def write_reports(out: Path, records: list[Record], summary: dict) -> None:
    """summary.json always; the other reports where their writers are installed."""
    write_json(out / "summary.json", summary)
    try:
        from poolconform.report import files
    except ImportError:
        return
    files.write_all(out, records, summary)


def print_line(message: str) -> None:
    print(message, file=sys.stderr)
