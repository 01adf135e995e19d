"""Marginal cost of one pooling case: the seed's Keras pattern and in-process ONNX Runtime
against poolconform's per-case path on the same backends.

    python benchmarks/per_case.py [--n1 10] [--n2 60] [--json FILE]

Each method runs the same list of distinct cases (no two share a configuration, so no
method gets a cache hit another could not) and stamps the time after case N1 and after
case N2; the marginal cost per case is (t(N2) - t(N1)) / (N2 - N1), which leaves out
imports, worker start-up and first-call warm-up. Methods:

1. seed-keras: per case, keras.Sequential([the case's Keras pooling layer]) built and
   model.predict(x) called, as the seed tutorial does (NHWC, TensorFlow backend, in a
   fresh subprocess with KERAS_BACKEND=tensorflow and TensorFlow's default threading).
2. poolconform keras-tensorflow: the runner with one worker, as `poolconform run` does it
   (jobs are lazy: inputs and the float64 oracle are made when needed, inside the timed
   run; any up-front preparation is timed and added too), outputs compared and recorded.
3. ORT in-process: per case onnx_export.build_model (checked, as poolconform does),
   InferenceSession (one intra-op thread, as poolconform's backend) and run.
4. poolconform onnxruntime-cpu: like 2 on the ORT backend.

What is cached: poolconform's backends reuse a built Keras layer / ORT session only for
an identical configuration, which this case list never repeats; so nothing is.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from poolconform.case import PoolCase
from poolconform.matrix import expand

#: The case list: windowed Max/Average pooling that Keras expresses exactly, all distinct.
CASE_TABLE = {
    "ops": ["MaxPool", "AveragePool"],
    "rank": 2,
    "kernel": [1, 2, 3, 4, 5],
    "stride": [1, 2, 3],
    "input_size": [8, 9, 13, 16, 28, 32],
    "pads": 0,
    "ceil_mode": False,
    "dtype": "float32",
    "batch": 2,
    "channels": 3,
    "opset": 22,
}


def benchmark_cases(count: int) -> list[PoolCase]:
    """`count` distinct cases, interleaved so every prefix mixes ops, kernels and sizes."""
    cases = expand(CASE_TABLE).cases
    if count > len(cases):
        raise SystemExit(f"--n2 {count!r} is more than the {len(cases)} distinct cases in CASE_TABLE")
    rng = np.random.default_rng(0)
    return [cases[i] for i in rng.permutation(len(cases))[:count]]


def marginal(stamps: dict[int, float], n1: int, n2: int) -> float:
    """Seconds per case between the N1-th and the N2-th finished case."""
    return (stamps[n2] - stamps[n1]) / (n2 - n1)


def seed_keras(cases: list[PoolCase], n1: int, n2: int) -> dict[int, float]:
    """Method 1 (runs in the subprocess): the seed's Sequential + predict per case."""
    import keras

    stamps = {0: time.perf_counter()}
    rng = np.random.default_rng(0)
    for number, case in enumerate(cases, 1):
        layer_class = getattr(keras.layers, {"MaxPool": "MaxPooling2D", "AveragePool": "AveragePooling2D"}[case.op])
        model = keras.Sequential([layer_class(pool_size=case.kernel, strides=case.strides, padding="valid")])
        n, c, h, w = case.input_shape
        x = rng.standard_normal((n, h, w, c)).astype(np.float32)  # the seed's NHWC
        model.predict(x, verbose=0)
        stamps[number] = time.perf_counter()
    return stamps


def ort_in_process(cases: list[PoolCase]) -> dict[int, float]:
    """Method 3: export, session and run per case, in this process."""
    import onnxruntime as ort

    from poolconform.onnx_export import build_model

    stamps = {0: time.perf_counter()}
    rng = np.random.default_rng(0)
    for number, case in enumerate(cases, 1):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(build_model(case).SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        x = rng.standard_normal(case.input_shape).astype(np.float32)
        session.run(None, {"X": x})
        stamps[number] = time.perf_counter()
    return stamps


def poolconform_runner(backend: str, cases: list[PoolCase], n1: int, n2: int) -> tuple[float, dict]:
    """Methods 2 and 4: marginal seconds per case through the runner, job preparation included."""
    from poolconform.backends.base import resolve_backend_names
    from poolconform.runner import RunOptions, oracle_job, run_jobs, start_workers

    jobs = [oracle_job(case) for case in cases[:n1]]
    middle = time.perf_counter()
    jobs += [oracle_job(case) for case in cases[n1:n2]]
    prepare_per_case = (time.perf_counter() - middle) / (n2 - n1)
    options = RunOptions(batch_size=_batch(n1, n2))
    workers = start_workers(resolve_backend_names([backend]), options)
    if workers[backend].info.unavailable:
        raise RuntimeError(f"{backend}: {workers[backend].info.unavailable}")
    stamps: dict[int, float] = {}
    statuses: dict[str, int] = {}
    done = [0]

    def sink(records: list[dict]) -> None:
        done[0] += len(records)
        stamps[done[0]] = time.perf_counter()
        for record in records:
            statuses[record["status"]] = statuses.get(record["status"], 0) + 1

    run_jobs(jobs, workers, options, sink)
    return marginal(stamps, n1, n2) + prepare_per_case, statuses


def _batch(n1: int, n2: int) -> int:
    """A batch size that puts a batch boundary at N1 and N2 (so both get a time stamp)."""
    from math import gcd

    return min(16, gcd(n1, n2))


def run_seed_subprocess(n1: int, n2: int) -> float:
    """Method 1 in a fresh interpreter, so Keras picks TensorFlow whatever this process loaded."""
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [sys.executable, __file__, "--method", "seed-keras", "--n1", str(n1), "--n2", str(n2)],
        env=env, capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"seed-keras subprocess failed: {out.stderr.strip().splitlines()[-1:]!r}")
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n1", type=int, default=10, help="cases before the first time stamp (warm-up)")
    parser.add_argument("--n2", type=int, default=60, help="cases before the second time stamp")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--method", choices=["seed-keras"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 0 < args.n1 < args.n2:
        parser.error(f"need 0 < --n1 < --n2, got {args.n1!r} and {args.n2!r}")
    cases = benchmark_cases(args.n2)
    if args.method == "seed-keras":
        print(marginal(seed_keras(cases, args.n1, args.n2), args.n1, args.n2))
        return 0
    figures: dict[str, float] = {}
    checks: dict[str, dict] = {}
    figures["seed-keras"] = run_seed_subprocess(args.n1, args.n2)
    figures["poolconform keras-tensorflow"], checks["keras-tensorflow"] = poolconform_runner(
        "keras-tensorflow", cases, args.n1, args.n2)
    figures["ort in-process"] = marginal(ort_in_process(cases), args.n1, args.n2)
    figures["poolconform onnxruntime-cpu"], checks["onnxruntime-cpu"] = poolconform_runner(
        "onnxruntime-cpu", cases, args.n1, args.n2)
    ratios = {
        "seed-keras / poolconform keras-tensorflow": figures["seed-keras"] / figures["poolconform keras-tensorflow"],
        "poolconform onnxruntime-cpu / ort in-process": figures["poolconform onnxruntime-cpu"]
        / figures["ort in-process"],
    }
    print(f"{len(cases)} distinct cases; marginal cost per case between case {args.n1} and case {args.n2}:")
    for name, seconds in figures.items():
        print(f"  {name:32s} {seconds * 1e3:9.3f} ms/case")
    for name, ratio in ratios.items():
        print(f"  {name:46s} {ratio:8.1f}x")
    print(f"  statuses: {checks}")
    if args.json:
        args.json.write_text(json.dumps({"n1": args.n1, "n2": args.n2, "seconds_per_case": figures,
                                         "ratios": ratios, "statuses": checks}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
