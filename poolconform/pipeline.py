"""One conformance session, shared by `run` and `check`: workers, records, reports, exit status.

Order matters for durability: records are written as batches complete, reports only
at the end (atomically), so an interrupted session keeps every finished record and
`--resume` picks up from there. The first Ctrl-C stops the session within a moment:
unfinished cases get no record, the reports of what finished are marked interrupted,
and the exit status is 130; a second Ctrl-C exits at once.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from poolconform import outdir
from poolconform.backends.base import BackendSpec
from poolconform.errors import INTERRUPTED_STATUS, PoolconformError
from poolconform.report.summary import summarize
from poolconform.report.terminal import print_summary
from poolconform.record_table import RecordTable
from poolconform.results import (RESULTS_FILE, Record, RecordKeys, ResultsWriter, iter_records, read_records, record_key,
                                 write_json)
from poolconform.job import Job
from poolconform.memory import release_judging_memory, trim_heap
from poolconform.runner import RunOptions, run_jobs, start_workers
from poolconform.worker import kill_all_workers



@dataclass
class Session:
    """Everything a run or check needs besides its jobs."""

    specs: list[BackendSpec]
    options: RunOptions
    out: Path | None
    resume: bool = False
    require: list[str] = field(default_factory=list)
    #: The --expectations file, or its entries already loaded (and checked) before the run.
    expectations: Path | list | None = None
    dropped: dict[str, int] = field(default_factory=dict)
    title: str = "poolconform"
    quiet: bool = False
    extra: dict = field(default_factory=dict)
    #: Records known before running (models that failed to load).
    preset_records: list[Record] = field(default_factory=list)
    #: A fresh run's identity, stored in --out (emptying results.jsonl) once the backends start.
    fresh_identity: dict | None = None


def _console() -> Console:
    """The terminal's width, COLUMNS where set, else wide enough for ids in a CI log."""
    from poolconform.report.terminal import console

    return console()


def execute(jobs: Sequence[Job], session: Session) -> tuple[int, Sequence[Record], dict]:
    """Run `jobs` on the session's backends; returns (exit status, records, summary).

    --out is locked for the whole session; logs that stay empty are removed at the end,
    and a temporary log folder (no --out) is removed whatever it holds.
    """
    lock: outdir.OutLock | None = None
    temporary_logs = False
    if session.out is not None:
        outdir.prepare(session.out)
        lock = outdir.OutLock(session.out)
        session.options.log_dir = session.out / outdir.LOG_DIR
    elif session.options.log_dir is None:  # frameworks' chatter never reaches the user's terminal
        session.options.log_dir = Path(tempfile.mkdtemp(prefix="poolconform-logs-"))
        temporary_logs = True
    try:
        return _execute(jobs, session)
    finally:
        outdir.prune_logs(session.options.log_dir, remove_dir=temporary_logs)
        if lock is not None:
            lock.release()


def _execute(jobs: Sequence[Job], session: Session) -> tuple[int, Sequence[Record], dict]:
    err = Console(stderr=True, highlight=False)
    started = time.perf_counter()
    done = RecordKeys()
    results_path = session.out / RESULTS_FILE if session.out else None
    if session.out is not None and results_path is not None:
        done = _check_identity(jobs, session, results_path)
    stop = session.options.stop
    restore = _on_interrupt(stop)
    try:
        return _run(jobs, session, err, started, done, results_path)
    finally:
        restore()


def _check_identity(jobs: Sequence[Job], session: Session, results_path: Path) -> RecordKeys:
    """Store this run's identity in --out; on --resume, refuse to continue a different run.
    Returns the (case, backend) pairs that already have a record (read one at a time, not held)."""
    assert session.out is not None
    names = [s.name for s in session.specs]
    ids = itertools.chain((j.case.id for j in jobs), (r["case"] for r in session.preset_records))
    ours: set[str] = set()  # on --resume, this run's case ids: every earlier record must be of one
    identity = outdir.run_identity(_kept(ids, ours) if session.resume else ids, names)
    done = RecordKeys()
    if session.resume:
        backends = set(names) | {r["backend"] for r in session.preset_records}
        foreign: tuple[str, str] | None = None
        for record in iter_records(results_path, done):  # fills `done`
            if foreign is None and (record["backend"] not in backends or record["case"] not in ours):
                foreign = record["case"], record["backend"]
        if done:
            why = outdir.identity_difference(outdir.read_identity(session.out), identity)
            if why:
                raise PoolconformError(f"--resume: {str(session.out)!r} holds another run: {why}; "
                                       "choose another --out, or drop --resume to start over")
        if foreign is not None:  # its record would be reported as if this run had judged it
            raise PoolconformError(f"--resume: {str(results_path)!r} holds a record of {foreign[0]!r} on "
                                   f"{foreign[1]!r}, which this run does not select (the file was edited or "
                                   "joined with another); choose another --out, or drop --resume to start over")
        _store_identity(session.out, identity)
    else:
        session.fresh_identity = identity  # stored once the backends are known to run (_start_fresh)
    return done


def _kept(ids: Iterable[str], into: set[str]) -> Iterator[str]:
    """`ids`, each also added to `into` as it passes (one walk over a lazy case list)."""
    for case_id in ids:
        into.add(case_id)
        yield case_id


def _store_identity(out: Path, identity: dict) -> None:
    try:
        write_json(out / outdir.IDENTITY_FILE, identity)
    except OSError as exc:
        raise PoolconformError(f"cannot write {str(out / outdir.IDENTITY_FILE)!r}: {exc.strerror or exc}") from None


def _start_fresh(session: Session, results_path: Path | None) -> None:
    """A new run replaces what --out held, but only once it is sure to run: a refusal
    (a required backend missing, none available) leaves the previous run's records intact."""
    identity = session.fresh_identity
    if results_path is None or session.out is None or identity is None:
        return
    ResultsWriter(results_path, resume=False).close()  # empty before the new identity is stored
    outdir.remove_reports(session.out)  # a kill from here on must not leave the old run's verdict
    _store_identity(session.out, identity)


def _on_interrupt(stop: threading.Event):
    """First SIGINT: set `stop` and kill the workers; second: exit 130 at once. Returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            kill_all_workers(wait=1.0)
            os.write(2, b"poolconform: interrupted again: stopped at once; finished records are kept "
                        b"(continue with --resume)\n")
            os._exit(INTERRUPTED_STATUS)
        stop.set()
        kill_all_workers()

    previous = signal.signal(signal.SIGINT, handler)
    return lambda: signal.signal(signal.SIGINT, previous)


def _run(jobs: Sequence[Job], session: Session, err: Console, started: float, done: RecordKeys,
         results_path: Path | None) -> tuple[int, Sequence[Record], dict]:
    stop = session.options.stop
    workers = start_workers(session.specs, session.options)
    if stop.is_set():  # interrupted while the frameworks were loading: nothing ran
        for w in workers.values():
            w.close()
        raise KeyboardInterrupt
    infos = {name: w.info for name, w in workers.items()}
    missing = [n for n in session.require if infos.get(n) is None or infos[n].unavailable]
    if missing:
        for w in workers.values():
            w.close()
        reasons = "; ".join(f"{n}: {infos[n].unavailable if n in infos else 'not selected'}" for n in missing)
        raise PoolconformError(f"required backend unavailable: {reasons}")
    usable = [n for n, i in infos.items() if i.unavailable is None]
    gone = [n for n in done.backends() if n in infos and n not in usable]
    if gone:  # its earlier records would stand beside the cases it never reached
        for w in workers.values():
            w.close()
        reasons = "; ".join(f"{n}: {infos[n].unavailable}" for n in gone)
        raise PoolconformError(f"--resume: backends with records in this run are unavailable here ({reasons}); "
                               "resume where they run, or drop --resume to start over")
    if not usable:
        for w in workers.values():
            w.close()
        reasons = "; ".join(f"{n}: {i.unavailable}" for n, i in infos.items())
        raise PoolconformError(f"no selected backend is available here ({reasons})")
    try:
        _start_fresh(session, results_path)
    except PoolconformError:
        for w in workers.values():
            w.close()
        raise
    # an unavailable backend is named once: in the summary's "not run" lines
    preset = [r for r in session.preset_records if record_key(r) not in done]
    for record in preset:
        done.add(record["case"], record["backend"])
    if done:
        total = sum(1 for j in jobs for n in usable if (j.case.id, n) not in done) + len(preset)
    else:  # a fresh run: no pass over the jobs, which may be made when read (poolconform.job.JobList)
        total = len(jobs) * len(usable) + len(preset)
    try:
        writer = ResultsWriter(results_path, resume=session.resume) if results_path else None
    except PoolconformError:
        for w in workers.values():
            w.close()
        raise
    collected = RecordTable(spill=True)  # without --out: the records, held compactly (in a temporary file past 8,192)
    written = [0]
    show = err.is_terminal and not session.quiet
    progress = Progress(TextColumn("running"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=err, transient=True, disable=not show)
    # Entered only when shown: rich < 14 prints a newline on stop even when disabled.
    with progress if show else contextlib.nullcontext():
        task = progress.add_task("records", total=total)

        def sink(records: list[Record]) -> None:
            if writer:
                writer.write(records)
            else:  # with --out, results.jsonl is read back once at the end: one copy of each record
                for record in records:
                    collected.add(record)
            written[0] += len(records)
            progress.advance(task, len(records))

        try:
            sink(preset)
            infos = run_jobs(jobs, workers, session.options, sink, skip=done)
        finally:
            for w in workers.values():
                w.close()
            if writer:
                writer.close()
    interrupted = stop.is_set()  # before the last record, or after it (no shrinking, then): either way, stop
    release_judging_memory()  # every record is written: the reports read records, not arrays
    from poolconform.expectations import Marking, catch_alls, load_expectations, unmatched

    entries = None
    if session.expectations is not None:
        entries = session.expectations if isinstance(session.expectations, list) else load_expectations(session.expectations)
    marking = Marking(entries or [])  # marks each record as it is read: the table is final, and every record spills
    if results_path:
        records = read_records(results_path, spill=True, mark=marking.mark)
    else:
        records = RecordTable((marking.mark(r) for r in collected), spill=True, final=True)
        del collected
    trim_heap()  # what reading freed (the reader's keys, each chunk's parsed records), handed back
    fixed: list[dict] = []
    catch_all: list[dict] = []
    unused: list[dict] = []
    if entries is not None:
        fixed = marking.fixed()
        catch_all = catch_alls(records, entries)  # named in the verdict line
        unused = unmatched(records, entries)  # warned about in every report
    extra = dict(session.extra)
    extra["seconds"] = round(time.perf_counter() - started, 3)
    if fixed:
        extra["fixed"] = fixed
    if catch_all:
        extra["catch_all_expectations"] = catch_all
    if unused:
        extra["unmatched_expectations"] = unused
    if interrupted:
        extra["interrupted"] = (f"stopped by Ctrl-C after {written[0]} of {total} records" if written[0] < total else
                                f"stopped by Ctrl-C after all {total} records had finished, before the reports")
    summary = summarize(records, infos, dropped=session.dropped, extra=extra)
    trim_heap()
    if interrupted:
        summary["exit_status"] = INTERRUPTED_STATUS
    if session.out is not None:
        try:
            write_reports(session.out, records, summary, stop=stop)
        except OSError as exc:
            raise PoolconformError(f"cannot write the reports to {str(session.out)!r}: {exc.strerror or exc}; "
                                   f"{len(records)} records are kept in {RESULTS_FILE}") from None
    if session.quiet:  # the verdict line only: a script still sees what the exit status means
        from poolconform.report.terminal import verdict

        _console().print(verdict(summary), soft_wrap=True)
    else:
        print_summary(summary, _console(), title=session.title)
        for entry in fixed:
            err.print(f"fixed: {entry['case']} on {entry['backend']} now passes: remove this expectation entry")
        if session.out is not None:
            err.print(f"wrote {session.out}/ ({len(records)} records, {extra['seconds']:.1f} s)")
    if interrupted or summary.get("interrupted"):  # also: Ctrl-C while the findings were shrunk
        kept = (f" and kept in {session.out}/{RESULTS_FILE}; the reports say interrupted"
                + ("; continue with --resume" if written[0] < total else "") if session.out is not None else "")
        print_line(f"poolconform: interrupted: {written[0]} of {total} records finished{kept}")
        return INTERRUPTED_STATUS, records, summary
    return summary["exit_status"], records, summary


def write_reports(out: Path, records: Sequence[Record], summary: dict, stop: threading.Event | None = None) -> None:
    """summary.json always; the other reports where their writers are installed, and a
    warning naming what is missing where they are not (a package run from a source tree
    without its dependencies, as ci/gpu-check.sh may be): a CI job that reads junit.xml must
    not find it silently absent."""
    write_json(out / "summary.json", summary)
    try:
        from poolconform.report import files
    except ImportError as exc:
        missing = exc.name or str(exc)
        print_line(f"poolconform: warning: only summary.json was written to {str(out)!r}: {missing!r} is not "
                   "installed (a dependency of poolconform; pip install the package to get "
                   "findings.json, report.html, junit.xml and summary.md)")
        return
    files.write_all(out, records, summary, stop)


def print_line(message: str) -> None:
    print(message, file=sys.stderr)
