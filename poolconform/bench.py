"""The pooling operators' own speed per backend, against the machine's memory bandwidth.

Pooling reads its input once and writes a smaller output, so on realistic shapes it is
memory-bound: the useful yardstick is achieved bandwidth ((bytes read + bytes written) /
time) next to what a plain memory copy reaches on the same machine in the same run.
Each backend times repeated runs of one case inside its own worker (framework default
threading, not the single-thread setting of a conformance run), after warm-up runs that
are not counted; the median counts, with its interquartile range. The worker makes the
case's inputs once (poolconform.inputs' cache), so no run pays a transfer or a generator.
Because the machine's own speed moves (other processes, frequency, the neighbours' cache
use), a NumPy copy is timed just before and just after each backend, and each row says
how many OS threads the worker held and how many cores it kept busy (its CPU seconds
over the wall seconds of the timed runs, shown from half a second on).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from poolconform import compare
from poolconform.backends.base import BackendSpec
from poolconform.case import GLOBAL_OPS, OPS, PoolCase
from poolconform.validation import make_case
from poolconform.errors import PoolconformError
from poolconform.inputs import make_inputs
from poolconform.oracle import reference_outputs
from poolconform.runner import RunOptions, start_workers
from poolconform.worker import QUIET_SINGLE_THREAD_ENV, Task

#: Worker environment for timing: quiet logs, but no thread limits (frameworks' defaults).
BENCH_ENV = {k: v for k, v in QUIET_SINGLE_THREAD_ENV.items()
             if not k.endswith("_THREADS") and k not in ("XLA_FLAGS", "TF_ENABLE_ONEDNN_OPTS")}
BENCH_ENV["POOLCONFORM_ORT_INTRA_OP_THREADS"] = "0"

#: Backends timed only when named: onnx.reference loops in Python, minutes per realistic shape.
NOT_TIMED_BY_DEFAULT = frozenset({"onnx-reference"})

DEFAULT_OPS = ("MaxPool", "AveragePool")
#: Shortest timed stretch whose busy-core figure is shown (CPU time has a 10 ms grain).
MIN_CORES_WALL = 0.5
DEFAULT_SHAPES = ((1, 64, 112, 112), (8, 256, 56, 56))
#: Most timed or warm-up runs per case: each is a task built up front and sent to the worker.
MAX_RUNS = 100_000


class BenchInterrupted(KeyboardInterrupt):
    """Ctrl-C during `run_bench`; `rows` holds the (case, backend) timings already finished."""

    def __init__(self, rows: list[BenchRow]) -> None:
        super().__init__(len(rows))
        self.rows = rows


@dataclass
class BenchRow:
    """One (case, backend) timing; `status` is "ok", "wrong", "unsupported" or "error"."""

    case: str
    op: str
    shape: list[int]
    backend: str
    status: str
    median_ms: float | None = None
    min_ms: float | None = None
    #: First and third quartile of the timed runs: the spread the median comes with.
    q1_ms: float | None = None
    q3_ms: float | None = None
    runs: int = 0
    warmups: int = 0
    bytes_moved: int = 0
    gb_per_s: float | None = None
    fraction_of_copy: float | None = None
    #: The NumPy copy rate measured just before and just after this backend's runs.
    copy_before_gb_per_s: float | None = None
    copy_after_gb_per_s: float | None = None
    #: OS threads of the worker process, and cores it kept busy (its CPU s / wall s) while timed.
    threads: int | None = None
    cores_used: float | None = None
    detail: str = ""

    @property
    def iqr_ms(self) -> float | None:
        return None if self.q1_ms is None or self.q3_ms is None else self.q3_ms - self.q1_ms


def parse_shape(text: str) -> tuple[int, ...]:
    """'1x64x112x112' -> (1, 64, 112, 112): NCHW (or NCW / NCDHW), positive sizes."""
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        raise PoolconformError(f"shape {text!r} is not like 1x64x112x112 (N x C x spatial...)") from None
    if not 3 <= len(shape) <= 5 or min(shape) < 1:
        raise PoolconformError(f"shape {text!r} needs 3 to 5 positive sizes (N, C, 1 to 3 spatial axes)")
    return shape


def bench_cases(ops: list[str], shapes: list[tuple[int, ...]], kernel: int, stride: int) -> list[PoolCase]:
    """Float32 cases for every (op, shape); windowed ops get the kernel and stride, no padding."""
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        raise PoolconformError(f"unknown op {', '.join(map(repr, unknown))}; allowed: {', '.join(OPS)}")
    cases = []
    for op in ops:
        for shape in shapes:
            if op in GLOBAL_OPS:
                cases.append(make_case(op, shape))
            else:
                cases.append(make_case(op, shape, kernel=kernel, strides=stride))
    return cases


def copy_bandwidth(megabytes: int = 128, repeat: int = 5) -> float:
    """Bytes per second a NumPy copy moves (read + write) on this machine, median of runs
    after one warm-up copy (which also faults the target's pages in)."""
    source = np.ones(megabytes * 2**20 // 8, dtype=np.float64)
    target = np.empty_like(source)
    np.copyto(target, source)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        np.copyto(target, source)
        times.append(time.perf_counter() - started)
    return 2 * source.nbytes / statistics.median(times)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile); one value is its own spread."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def process_usage(pid: int | None) -> tuple[float, int] | None:
    """(CPU seconds so far, OS threads) of a process, from /proc (None where there is none)."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    threads = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("Threads:")), 0)
    return (int(stat[11]) + int(stat[12])) / ticks, threads  # utime, stime: fields 14, 15


def _bytes_moved(inputs: list[np.ndarray], outputs: list[np.ndarray]) -> int:
    return sum(int(a.nbytes) for a in inputs) + sum(int(np.asarray(a).nbytes) for a in outputs)


def run_bench(
    cases: list[PoolCase], specs: list[BackendSpec], repeat: int, timeout: float,
    copy_bytes_per_s: float | None = None, warmup: int = 2,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[BenchRow]:
    """Time each case `repeat` times (after `warmup` uncounted runs) on every backend, one
    backend at a time. The copy rate each row is set against is measured around that
    backend's runs, unless `copy_bytes_per_s` fixes it. `progress(what, done, total)` is
    told each step before it starts (the CLI shows it on a terminal's stderr). Ctrl-C raises
    BenchInterrupted with the rows finished so far."""
    if not (1 <= repeat <= MAX_RUNS and 0 <= warmup <= MAX_RUNS):
        raise PoolconformError(f"repeat {repeat} and warmup {warmup} must be within 1..{MAX_RUNS} and 0..{MAX_RUNS}")
    step = progress or (lambda what, done, total: None)
    total = len(cases) * len(specs)
    step(f"starting {len(specs)} backend(s)", 0, total)
    logs = tempfile.TemporaryDirectory(prefix="poolconform-bench-")  # framework chatter stays off the table
    try:
        workers = start_workers(specs, RunOptions(timeout=timeout, env=dict(BENCH_ENV), log_dir=Path(logs.name)))
    except BaseException:  # Ctrl-C while the frameworks load: the log folder goes too
        logs.cleanup()
        raise
    rows: list[BenchRow] = []
    try:
        for c, case in enumerate(cases):
            shape = "x".join(map(str, case.input_shape))
            step(f"oracle of {case.op} {shape}", c * len(specs), total)
            inputs = make_inputs(case)
            expected = reference_outputs(case, inputs)
            for b, spec in enumerate(specs):
                step(f"{case.op} {shape} on {spec.name}", c * len(specs) + b, total)
                worker = workers[spec.name]
                if worker.info.unavailable:
                    rows.append(_row(case, spec.name, "unavailable", detail=worker.info.unavailable))
                    continue
                before = copy_bytes_per_s or copy_bandwidth()
                # inputs=None: the worker makes them once and reuses them, nothing is shipped per run
                warm = list(worker.run([Task(i, case, None) for i in range(max(1, warmup))], timeout))
                pid = getattr(getattr(worker, "_process", None), "pid", None)
                usage, started = process_usage(pid), time.perf_counter()
                timed = list(worker.run([Task(i, case, None) for i in range(repeat)], timeout)) if all(
                    o.kind == "outputs" for o in warm) else []
                used, wall = process_usage(pid), time.perf_counter() - started
                after = copy_bytes_per_s or copy_bandwidth()
                row = _timed_row(case, spec.name, inputs, expected, warm, timed, (before + after) / 2)
                row.copy_before_gb_per_s, row.copy_after_gb_per_s = before / 1e9, after / 1e9
                if usage and used and row.median_ms:
                    row.threads = used[1]
                    if wall >= MIN_CORES_WALL:  # CPU time counts in clock ticks (10 ms): too coarse below
                        row.cores_used = (used[0] - usage[0]) / wall
                rows.append(row)
    except KeyboardInterrupt:
        raise BenchInterrupted(rows) from None
    finally:
        for worker in workers.values():
            worker.close()
        logs.cleanup()
    return rows


def _row(case: PoolCase, backend: str, status: str, **figures: Any) -> BenchRow:
    return BenchRow(case.id, case.op, list(case.input_shape), backend, status, **figures)


def _timed_row(case, backend, inputs, expected, warm, timed, copy_bytes_per_s: float) -> BenchRow:
    first = warm[0]
    if first.kind != "outputs":
        status = "unsupported" if first.kind == "unsupported" else "error"
        return _row(case, backend, status, detail=first.message)
    failed = next((o for o in [*warm, *timed] if o.kind != "outputs"), None)
    if failed is not None or not timed:
        why = f"{failed.kind}: {failed.message}" if failed else "no timed run finished"
        return _row(case, backend, "error", detail=why)
    seconds = [o.seconds for o in timed]
    q1, median, q3 = quartiles(seconds)
    moved = _bytes_moved(inputs, first.outputs or [])
    rate = moved / median if median > 0 else None
    check = compare.compare_outputs(case, expected, timed[-1].outputs or [], inputs)
    return _row(
        case, backend, "ok" if check.status == "pass" else "wrong",
        median_ms=median * 1e3, min_ms=min(seconds) * 1e3, q1_ms=q1 * 1e3, q3_ms=q3 * 1e3,
        runs=len(seconds), warmups=len(warm), bytes_moved=moved,
        gb_per_s=rate / 1e9 if rate else None,
        fraction_of_copy=rate / copy_bytes_per_s if rate and copy_bytes_per_s else None,
        detail=check.detail if check.status != "pass" else (first.note or ""),
    )


def rows_as_dicts(rows: list[BenchRow]) -> list[dict]:
    return [dict(asdict(r), iqr_ms=r.iqr_ms) for r in rows]
