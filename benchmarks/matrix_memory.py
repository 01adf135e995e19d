"""Parent memory as the matrix grows: peak resident memory of the parent's side of a run
on matrices of about 1,000, 10,000 and 100,000 cases, each judged for several backends.

    python benchmarks/matrix_memory.py [--sizes 1000,10000,100000] [--backends 8] [--broken N] [--json FILE]

Each size runs in a fresh interpreter: the matrix is expanded (poolconform.matrix), one
oracle job is made per case, and every job goes through the parent's whole per-case path
as a run does it: inputs, float64 oracle, comparison with each backend's answer (the
oracle's values in the case's dtype, standing in for --backends backends, the last of which
lags like the slowest real backend: one case for every 10 of the others') and a record
each, written batch by batch to a results.jsonl and read back at the end, as a run with
--out does; then the reports a run writes (summary, findings, summary.md, junit.xml,
report.html) are made from them. No worker runs, so the figure is the parent alone; what a
worker holds is one case.
With --broken N the first N stand-ins answer zeros, as a broken install would: almost every
record of theirs disagrees, and the findings are triaged from them.
Printed per size: cases, records, seconds, resident memory after expansion, after judging
every case, at the peak while judging, once the caches judging kept are emptied and the
freed heap is given back (poolconform.memory, as a run does), with the records read back,
after the reports, the report phase's own peak (Linux: VmHWM restarted after judging), and
at the peak, and the peak's growth per case (what stays "bounded" means: jobs hold no arrays once judged, so
what grows is the case list and one compact record per (case, backend)).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    # The package beside this file, and only it: an editable install's finder would fill in,
    # from the installed tree, modules an older commit's tree (a baseline) does not have.
    sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]

#: Tiny cases (8x8 to 27x27, 1 to 3 channels) so 100,000 of them are judged in minutes.
BASE_TABLE = {
    "ops": ["MaxPool", "AveragePool"],
    "kernel": [1, 2, 3, 4],
    "stride": [1, 2, 3, 4],
    "pads": [0, 1],
    "ceil_mode": [False, True],
    "dilation": [1, 2],
    "input_size": list(range(8, 28)),
    "channels": [1, 2, 3],
}
#: What makes a larger matrix: more input generators, each a copy of the base table whose
#: cases are as large as the others' (growing the channels instead, as rounds five to nine
#: did, made the larger matrices' cases larger too, so that "memory grows with the matrix"
#: mixed count with size). `seed` is left out: it fits only the tutorial's 4x4 input.
GENERATORS = ["normal", "ties", "equal", "negative", "large", "nan", "inf", "knownmean"]


#: The lagging stand-in judges one case for every SLOW_EVERY cases the others judge.
SLOW_EVERY = 10


def tables_for(cases: int) -> list[dict]:
    """Matrix tables of about `cases` cases in all: one table of the base per generator
    (15,360 combinations each; a matrix file may hold several `[[matrix]]` tables, as here),
    so a case's size does not depend on how many there are. Under one table's worth, the
    base with fewer input sizes."""
    per_generator = 5120 * len(BASE_TABLE["channels"])  # a few are dropped as impossible
    if cases < per_generator:
        sizes = max(1, round(cases / (per_generator // len(BASE_TABLE["input_size"]))))
        return [dict(BASE_TABLE, input_size=list(range(8, 8 + sizes)), generator="normal")]
    count = min(len(GENERATORS), max(1, round(cases / per_generator)))
    return [dict(BASE_TABLE, generator=name) for name in GENERATORS[:count]]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_high_water() -> bool:
    """Start the kernel's peak of resident memory (VmHWM) again from now (Linux); False where
    it cannot be. getrusage's peak (peak_mb()) restarts with it: take it first."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def high_water_mb() -> float | None:
    """Peak resident memory since reset_high_water (VmHWM), or None where there is none."""
    return _status_mb("VmHWM:")


def current_mb() -> float:
    return _status_mb("VmRSS:") or peak_mb()


def _status_mb(field: str) -> float | None:
    """A memory figure of /proc/self/status (Linux) in MiB, or None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def measure(cases: int, backends: int, broken: int = 0) -> dict:
    """(In the child) expand, make jobs, judge every job for each backend, read the records
    back and write the reports; memory figures in MiB."""
    import numpy as np

    from poolconform import dtypes
    from poolconform.matrix import expand_all

    try:
        from poolconform.job import JobList
    except ImportError:  # code before lazy cases (a worktree of an older commit, for a baseline)
        from poolconform.job import oracle_job

        def JobList(cases):  # type: ignore[no-redef]  # noqa: N802
            return [oracle_job(c) for c in cases]
    from poolconform.pipeline import write_reports
    from poolconform.report.summary import summarize
    from poolconform.results import RESULTS_FILE, ResultsWriter, read_records
    from poolconform.verdict import outcome_record
    from poolconform.worker import Outcome

    names = [f"stand-in-{i}" for i in range(1, backends + 1)]
    wrong = set(names[:broken])  # these answer zeros: every one of their records disagrees

    started = time.perf_counter()
    base = current_mb()
    jobs = JobList(expand_all(tables_for(cases)).cases)  # as `run` makes them: each when reached
    expanded = current_mb()
    expand_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="poolconform-memory-") as out:
        path = Path(out) / RESULTS_FILE
        writer = ResultsWriter(path, resume=False)
        batch: list = []
        unjudged = np.full(len(jobs), len(names), np.int32)  # as the runner counts them

        def judge(key: int, judged_by: list[str]) -> None:
            job = jobs[key]  # made again if let go: a lagging backend's case, as in a run
            answer = [np.asarray(e).astype(dtypes.numpy_dtype(job.case.dtype) if i == 0 else np.int64)
                      for i, e in enumerate(job.expected)]
            for name in judged_by:
                given = [np.zeros_like(a) for a in answer] if name in wrong else answer
                batch.append(outcome_record(job, name, Outcome(key, "outputs", given)))
            unjudged[key] -= len(judged_by)
            if unjudged[key] <= 0:
                job.release()  # as the runner does once every backend's answer is judged
            if len(batch) >= 64:  # as a run with --out writes them: batch by batch, not kept
                writer.write(batch)
                batch.clear()

        # The last stand-in lags as the slowest backend does (OpenVINO at about 40 ms a case
        # against 1-5 ms for the others): one case for every SLOW_EVERY of the others', then the rest.
        fast, slow = (names[:-1], names[-1:]) if len(names) > 1 else (names, [])
        slow_next = 0
        for key in range(len(jobs)):
            judge(key, fast)
            if slow and key % SLOW_EVERY == 0:
                judge(slow_next, slow)
                slow_next += 1
        while slow and slow_next < len(jobs):
            judge(slow_next, slow)
            slow_next += 1
        writer.write(batch)
        writer.close()
        judged = current_mb()
        run_peak = peak_mb()  # the parent's peak while running: before the reports read records back
        try:  # as the pipeline does once every record is written, and after each pass over them
            from poolconform.memory import release_judging_memory, trim_heap
        except ImportError:  # code from before releasing (a worktree of an older commit, for a baseline)
            release_judging_memory = trim_heap = lambda: None  # noqa: E731
        release_judging_memory()
        released = current_mb()
        reports_own_peak = reset_high_water()  # from here: the report phase's own peak
        try:  # what the reports are made from, as the pipeline does: marked as read, spilled to a file beside it
            from poolconform.expectations import Marking

            records = read_records(path, spill=True, mark=Marking([]).mark)
        except ImportError:  # code from before marking as read (a worktree of an older commit, for a baseline)
            try:
                records = read_records(path, spill=True)
            except TypeError:  # code from before spilling
                records = read_records(path)
        with_records = current_mb()
        trim_heap()
        reports_started = time.perf_counter()
        summary = summarize(records, dropped={}, extra={})
        trim_heap()
        write_reports(Path(out), records, summary)
        reports_s = time.perf_counter() - reports_started
    return {"cases": len(jobs), "records": len(records), "seconds": time.perf_counter() - started,
            "expand_seconds": expand_s, "reports_seconds": reports_s,
            "rss_start_mb": base, "rss_after_expansion_mb": expanded, "rss_after_judging_mb": judged, "rss_released_mb": released,
            "rss_with_records_mb": with_records, "rss_after_reports_mb": current_mb(), "rss_peak_mb": max(run_peak, peak_mb()),
            "rss_run_peak_mb": run_peak,
            "rss_reports_peak_mb": high_water_mb() if reports_own_peak else None,
            "statuses": summary["counts"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="approximate case counts (comma-separated)")
    parser.add_argument("--backends", type=int, default=8, help="stand-in backends judged per case (default 8)")
    parser.add_argument("--broken", type=int, default=0, metavar="N",
                        help="the first N stand-ins answer zeros, so every record of theirs disagrees (default 0)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.backends < 1:
        parser.error("--backends must be at least 1")
    if not 0 <= args.broken <= args.backends:
        parser.error("--broken must be between 0 and --backends")
    if args.child:
        print(json.dumps(measure(args.child, args.backends, args.broken)))
        return 0
    rows = []
    for size in (int(s) for s in args.sizes.split(",") if s):
        done = subprocess.run([sys.executable, __file__, "--child", str(size), "--backends", str(args.backends),
                               "--broken", str(args.broken)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"size {size}: {done.stderr.strip().splitlines()[-1:]!r}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"parent side of a run (expansion, jobs, inputs, oracle, comparison, records, reports), "
          f"{args.backends} stand-in backend(s)" + (f", {args.broken} of them answering zeros" if args.broken else "")
          + ", one interpreter per size (MB: resident memory):")
    print(f"  {'cases':>7s} {'records':>8s} {'seconds':>8s} {'reports s':>9s} {'start':>6s} {'expanded':>8s} "
          f"{'judged':>7s} {'run peak':>8s} {'released':>8s} {'+records':>8s} {'+reports':>8s} {'rep peak':>8s} {'peak':>6s} {'peak-start per case':>20s}")
    for r in rows:
        per_case_kb = (r["rss_peak_mb"] - r["rss_start_mb"]) * 1024 / max(1, r["cases"])
        print(f"  {r['cases']:7d} {r['records']:8d} {r['seconds']:8.1f} {r['reports_seconds']:9.1f} "
              f"{r['rss_start_mb']:6.0f} {r['rss_after_expansion_mb']:8.0f} {r['rss_after_judging_mb']:7.0f} "
              f"{r['rss_run_peak_mb']:8.0f} {r.get('rss_released_mb', r['rss_after_judging_mb']):8.0f} "
              f"{r['rss_with_records_mb']:8.0f} {r['rss_after_reports_mb']:8.0f} "
              f"{r.get('rss_reports_peak_mb') or float('nan'):8.0f} {r['rss_peak_mb']:6.0f} "
              f"{per_case_kb:17.2f} KB")
        r["peak_kb_per_case"] = per_case_kb
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
