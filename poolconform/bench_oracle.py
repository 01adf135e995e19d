"""`poolconform bench --oracle`: the float64 oracle's own speed against a NumPy copy.

The oracle should run at memory speed: on a 1x64x512x512 float32 input every op's oracle
is timed next to a plain copy of that input (`x.copy()`, a fresh array, as the oracle's
output is), in the same process and interleaved repeat by repeat, so that load from other
processes moves both. Reported per op: median and IQR of each, and the ratio of medians
(target: at most 4). The copy runs on one thread, and so does the oracle unless
POOLCONFORM_ORACLE_THREADS says otherwise: the count used is printed and recorded, since a
ratio then compares that many threads with one.
"""

from __future__ import annotations

import os
import statistics
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from poolconform.case import PoolCase
from poolconform.oracle import reference_outputs
from poolconform.oracle_blocks import oracle_threads

SHAPE = (1, 64, 512, 512)
#: The ratio of medians (op / copy) the oracle must stay under.
TARGET_RATIO = 4.0


def _windowed(op: str, shape: tuple[int, ...], kernel: int, stride: int, pad: int, **rest: Any) -> PoolCase:
    rank = len(shape) - 2
    return PoolCase(op, shape, kernel=(kernel,) * rank, strides=(stride,) * rank, pads=(pad,) * (2 * rank),
                    dilations=(1,) * rank, **rest)


def oracle_cases(shape: tuple[int, ...] = SHAPE) -> dict[str, PoolCase]:
    """The ops of issue 18, by label. Built as PoolCase directly: the case budget is a limit
    on matrices, not on this fixed measurement."""
    return {
        "MaxPool k3 s2 p1": _windowed("MaxPool", shape, 3, 2, 1),
        "MaxPool k3 s2 p1 + Indices": _windowed("MaxPool", shape, 3, 2, 1, with_indices=True),
        "AveragePool k3 s1 p1": _windowed("AveragePool", shape, 3, 1, 1),
        "AveragePool k3 s1 p1 count_include_pad": _windowed("AveragePool", shape, 3, 1, 1, count_include_pad=True),
        "LpPool p2 k3 s2 p1": _windowed("LpPool", shape, 3, 2, 1, p=2, opset=18),
        "GlobalMaxPool": PoolCase("GlobalMaxPool", shape),
        "GlobalAveragePool": PoolCase("GlobalAveragePool", shape),
        "GlobalLpPool p2": PoolCase("GlobalLpPool", shape, p=2, opset=18),
    }


@dataclass
class OracleRow:
    op: str
    median_ms: float
    iqr_ms: float
    copy_median_ms: float
    copy_iqr_ms: float
    ratio: float
    meets_target: bool
    #: Medians of the process's CPU time (all threads): less moved by other processes taking
    #: the core than wall time is, so a cross-check on a loaded machine (not the verdict).
    cpu_ms: float = 0.0
    copy_cpu_ms: float = 0.0
    cpu_ratio: float = 0.0


def _quartiles(values: list[float]) -> tuple[float, float]:
    """Median and interquartile range (0 for fewer than two values)."""
    if len(values) < 2:
        return values[0], 0.0
    q1, _, q3 = statistics.quantiles(values, n=4)
    return statistics.median(values), q3 - q1


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - cpu


def bench_oracle(repeat: int = 7, warmup: int = 2, shape: tuple[int, ...] = SHAPE,
                 progress: Callable[[str, int, int], None] | None = None) -> list[OracleRow]:
    """Time every op's oracle and a copy of its input, alternating, after `warmup` runs of each;
    `progress(op, done, total)` is told before each op (the CLI shows it on a terminal's stderr)."""
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    rows = []
    cases = oracle_cases(shape)
    for i, (label, case) in enumerate(cases.items()):
        if progress:
            progress(f"oracle {label}", i, len(cases))
        run = lambda case=case: reference_outputs(case, [x])  # noqa: E731
        copy = x.copy
        for _ in range(warmup):
            run()
            copy()
        ops, copies = [], []
        for _ in range(repeat):
            copies.append(_timed(copy))
            ops.append(_timed(run))
        (op_med, op_iqr), (cp_med, cp_iqr) = _quartiles([w for w, _ in ops]), _quartiles([w for w, _ in copies])
        op_cpu, cp_cpu = statistics.median(c for _, c in ops), statistics.median(c for _, c in copies)
        ratio = op_med / cp_med if cp_med > 0 else float("inf")
        rows.append(OracleRow(label, op_med * 1e3, op_iqr * 1e3, cp_med * 1e3, cp_iqr * 1e3, ratio,
                              ratio <= TARGET_RATIO, op_cpu * 1e3, cp_cpu * 1e3,
                              op_cpu / cp_cpu if cp_cpu > 0 else float("inf")))
    return rows


def environment() -> dict[str, object]:
    """What the figures depend on: cores, the oracle's threads, thread-count variables, load."""
    return {
        "cpu_count": os.cpu_count(),
        "oracle_threads": oracle_threads(),
        "copy_threads": 1,
        "python_threads": threading.active_count(),
        "numpy": np.__version__,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "POOLCONFORM_ORACLE_THREADS": os.environ.get("POOLCONFORM_ORACLE_THREADS"),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "note": "the copy is one NumPy call on one thread; the oracle spreads its blocks over oracle_threads",
    }


def as_dicts(rows: list[OracleRow]) -> list[dict]:
    return [asdict(r) for r in rows]


def print_rows(rows: list[OracleRow], repeat: int, warmup: int, shape: tuple[int, ...] = SHAPE,
               width: int | None = None) -> None:
    """A plain table: one line per op, the copy measured around it, the ratio and the verdict,
    within `width` columns (the console's: the terminal, or COLUMNS); the cpu-ratio
    cross-check is left out where it does not fit, the notes wrap."""
    from poolconform.report.terminal import console

    width = width or console().width
    env = environment()
    print(textwrap.fill(
        f"poolconform bench --oracle: {'x'.join(map(str, shape))} float32, median (IQR) of {repeat} runs "
        f"after {warmup} warm-up; {env['cpu_count']} cores, oracle on {env['oracle_threads']} thread(s), copy on 1; "
        f"target op/copy <= {TARGET_RATIO:g}", width))
    if hasattr(os, "getloadavg"):
        print("load average at the end: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    name = max([len("op")] + [len(r.op) for r in rows])
    head = f"{'op':{name}s} {'oracle ms (IQR)':>15s} {'copy ms (IQR)':>13s} {'ratio':>5s}     "
    cpu = len(head) + len(" cpu ratio") <= width
    print((head + (" cpu ratio" if cpu else "")).rstrip())
    for r in rows:
        line = (f"{r.op:{name}s} {r.median_ms:7.1f} ({r.iqr_ms:5.1f}) {r.copy_median_ms:6.1f} ({r.copy_iqr_ms:4.1f}) "
                f"{r.ratio:5.2f} {'ok' if r.meets_target else 'OVER':4s}")
        print((line + (f" {r.cpu_ratio:9.2f}" if cpu else "")).rstrip())
    print(textwrap.fill("ratio: medians of wall time, the verdict" + (
        "; cpu ratio: medians of CPU time, a cross-check under load" if cpu else
        " (a cpu-ratio column, CPU time, shows in a wider terminal and in --json)"), width))
