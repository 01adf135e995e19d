"""The pooling operators' own speed per backend, against the machine's memory bandwidth.

Pooling reads its input once and writes a smaller output, so on realistic shapes it is
memory-bound: the useful yardstick is achieved bandwidth ((bytes read + bytes written) /
time) next to what a plain memory copy reaches on the same machine in the same run.
Each backend times repeated runs of one case inside its own worker (framework default
threading, not the single-thread setting of a conformance run); the median counts.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from poolconform import compare
from poolconform.backends.base import BackendSpec
from poolconform.case import GLOBAL_OPS, OPS, PoolCase, make_case
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
DEFAULT_SHAPES = ((1, 64, 112, 112), (8, 256, 56, 56))


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
    runs: int = 0
    bytes_moved: int = 0
    gb_per_s: float | None = None
    fraction_of_copy: float | None = None
    detail: str = ""


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


def copy_bandwidth(megabytes: int = 256, repeat: int = 7) -> float:
    """Bytes per second a NumPy copy moves (read + write) on this machine, median of runs."""
    source = np.ones(megabytes * 2**20 // 8, dtype=np.float64)
    target = np.empty_like(source)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        np.copyto(target, source)
        times.append(time.perf_counter() - started)
    return 2 * source.nbytes / statistics.median(times)


def _bytes_moved(inputs: list[np.ndarray], outputs: list[np.ndarray]) -> int:
    return sum(int(a.nbytes) for a in inputs) + sum(int(np.asarray(a).nbytes) for a in outputs)


def run_bench(
    cases: list[PoolCase], specs: list[BackendSpec], repeat: int, timeout: float, copy_bytes_per_s: float
) -> list[BenchRow]:
    """Time each case `repeat` times (after one warm-up run) on every backend, one backend at a time."""
    logs = tempfile.TemporaryDirectory(prefix="poolconform-bench-")  # framework chatter stays off the table
    workers = start_workers(specs, RunOptions(timeout=timeout, env=dict(BENCH_ENV), log_dir=Path(logs.name)))
    rows: list[BenchRow] = []
    try:
        for case in cases:
            inputs = make_inputs(case)
            expected = reference_outputs(case, inputs)
            for spec in specs:
                worker = workers[spec.name]
                if worker.info.unavailable:
                    rows.append(_row(case, spec.name, "unavailable", detail=worker.info.unavailable))
                    continue
                tasks = [Task(i, case, inputs) for i in range(repeat + 1)]
                outcomes = list(worker.run(tasks, timeout))
                rows.append(_timed_row(case, spec.name, inputs, expected, outcomes, copy_bytes_per_s))
    finally:
        for worker in workers.values():
            worker.close()
        logs.cleanup()
    return rows


def _row(case: PoolCase, backend: str, status: str, **figures: object) -> BenchRow:
    return BenchRow(case.id, case.op, list(case.input_shape), backend, status, **figures)  # type: ignore[arg-type]


def _timed_row(case, backend, inputs, expected, outcomes, copy_bytes_per_s: float) -> BenchRow:
    first = outcomes[0]
    if first.kind != "outputs":
        status = "unsupported" if first.kind == "unsupported" else "error"
        return _row(case, backend, status, detail=first.message)
    failed = next((o for o in outcomes if o.kind != "outputs"), None)
    if failed is not None:
        return _row(case, backend, "error", detail=f"{failed.kind}: {failed.message}")
    timed = [o.seconds for o in outcomes[1:]] or [first.seconds]
    median = statistics.median(timed)
    moved = _bytes_moved(inputs, first.outputs or [])
    rate = moved / median if median > 0 else None
    check = compare.compare_outputs(case, expected, first.outputs or [], inputs)
    return _row(
        case, backend, "ok" if check.status == "pass" else "wrong",
        median_ms=median * 1e3, min_ms=min(timed) * 1e3, runs=len(timed), bytes_moved=moved,
        gb_per_s=rate / 1e9 if rate else None,
        fraction_of_copy=rate / copy_bytes_per_s if rate and copy_bytes_per_s else None,
        detail=check.detail if check.status != "pass" else (first.note or ""),
    )


def rows_as_dicts(rows: list[BenchRow]) -> list[dict]:
    return [asdict(r) for r in rows]
