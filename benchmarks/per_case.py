"""Marginal cost of one pooling case: the seed's Keras pattern and in-process ONNX Runtime
against poolconform's per-case path on the same backends.

    python benchmarks/per_case.py [--n1 10] [--n2 60] [--json FILE]
    python benchmarks/per_case.py --growing [--step 1] [--json FILE]

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
5. keras bare call (floor): only the framework's own call, keras.ops.max_pool /
   average_pool on a tensor made before the clock starts, once per case, in a fresh
   subprocess; twice: with the worker's settings (poolconform.worker's environment and the
   keras-tensorflow backend's one intra-op thread: the same kernel poolconform runs) and
   with the seed's (TensorFlow's defaults). No per-case overhead can go below it, so
   seed / floor bounds the ratio any runner can reach.

What is cached: poolconform's backends reuse a built Keras layer / ORT session only for
an identical configuration, which this case list never repeats; so nothing is.

--growing: MaxPool k2 s1 (1x1 float32) on inputs that grow from 4x4 to 523x523 (every
--step-th size), in growing order; the figures are the mean cost per case after the first
N1 (warm-up) and over the last 100 cases, where the parent's per-case work (inputs,
oracle, comparison, digest) is largest. The runner gets one compute slot (--jobs 1).

Every method also reports "cpu": CPU seconds per case of all its processes and threads
(the runner's parent plus its worker, read from /proc on Linux): on a machine shared with
other load, wall time measures the share a method got, CPU time what it cost. The load
average is printed at the start and the end.
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

from poolconform.backends.base import Unsupported
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


def growing_cases(step: int = 1) -> list[PoolCase]:
    """MaxPool k2 s1 on 1x1xNxN float32, N from 4 to 523, in growing order."""
    table = {"ops": "MaxPool", "kernel": 2, "stride": 1, "input_size": list(range(4, 524, step)), "dtype": "float32",
             "batch": 1, "channels": 1, "opset": 22}
    return sorted(expand(table).cases, key=lambda c: c.input_shape[-1])


#: A time stamp: (wall seconds, CPU seconds of every process and thread the method uses).
Stamp = tuple[float, float]


def now() -> Stamp:
    """Wall clock and this process's CPU time (all its threads)."""
    return time.perf_counter(), time.process_time()


def marginal(stamps: dict[int, Stamp], n1: int, n2: int, which: int = 0) -> float:
    """Seconds per case between the N1-th and the N2-th finished case (which=1: CPU seconds)."""
    return (stamps[n2][which] - stamps[n1][which]) / (n2 - n1)


def seed_keras(cases: list[PoolCase], n1: int, n2: int) -> dict[int, Stamp]:
    """Method 1 (runs in the subprocess): the seed's Sequential + predict per case."""
    import keras

    stamps = {0: now()}
    rng = np.random.default_rng(0)
    for number, case in enumerate(cases, 1):
        layer_class = getattr(keras.layers, {"MaxPool": "MaxPooling2D", "AveragePool": "AveragePooling2D"}[case.op])
        model = keras.Sequential([layer_class(pool_size=case.kernel, strides=case.strides, padding="valid")])
        n, c, h, w = case.input_shape
        x = rng.standard_normal((n, h, w, c)).astype(np.float32)  # the seed's NHWC
        model.predict(x, verbose=0)
        stamps[number] = now()
    return stamps


def keras_bare(cases: list[PoolCase], worker_settings: bool) -> dict[int, Stamp]:
    """Method 5 (runs in the subprocess): cumulative seconds of the bare Keras call alone;
    `worker_settings`: keras imported as the keras-tensorflow worker does (one intra-op thread),
    else as the seed does (TensorFlow's defaults)."""
    from poolconform.backends.keras_backend import KerasTensorFlow, layer_call

    backend = KerasTensorFlow()
    if worker_settings:
        keras = backend._import_keras()
    else:
        import keras
    wall, cpu, stamps = 0.0, 0.0, {0: (0.0, 0.0)}
    for number, case in enumerate(cases, 1):
        plan = backend.plan(case)
        assert not isinstance(plan, Unsupported), plan
        fn = layer_call(keras, plan)
        n, c, h, w = case.input_shape
        x = keras.ops.convert_to_tensor(np.random.default_rng(number).standard_normal((n, h, w, c)).astype(np.float32))
        start = now()
        fn(x)  # eager TensorFlow is synchronous: the output exists when the call returns
        end = now()
        wall, cpu = wall + end[0] - start[0], cpu + end[1] - start[1]
        stamps[number] = (wall, cpu)
    return stamps


def ort_in_process(cases: list[PoolCase]) -> dict[int, Stamp]:
    """Method 3: export, session and run per case, in this process."""
    import onnxruntime as ort

    from poolconform.onnx_export import build_model

    stamps = {0: now()}
    rng = np.random.default_rng(0)
    for number, case in enumerate(cases, 1):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(build_model(case).SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        x = rng.standard_normal(case.input_shape).astype(np.float32)
        session.run(None, {"X": x})
        stamps[number] = now()
    return stamps


def poolconform_runner(backend: str, cases: list[PoolCase], n1: int, n2: int) -> tuple[dict[str, float], dict]:
    """Methods 2 and 4: marginal seconds per case through the runner, job preparation included."""
    from poolconform.backends.base import resolve_backend_names
    from poolconform.job import oracle_job
    from poolconform.runner import RunOptions, run_jobs, start_workers

    jobs = [oracle_job(case) for case in cases[:n1]]
    middle = time.perf_counter()
    jobs += [oracle_job(case) for case in cases[n1:n2]]
    prepare_per_case = (time.perf_counter() - middle) / (n2 - n1)
    options = RunOptions(batch_size=_batch(n1, n2), jobs=1)
    workers = start_workers(resolve_backend_names([backend]), options)
    if workers[backend].info.unavailable:
        raise RuntimeError(f"{backend}: {workers[backend].info.unavailable}")
    stamps: dict[int, Stamp] = {}
    statuses: dict[str, int] = {}
    done = [0]
    process = workers[backend]._process
    pid = process.pid if process is not None else None

    def sink(records: list[dict]) -> None:
        done[0] += len(records)
        wall, cpu = now()
        stamps[done[0]] = (wall, cpu + _cpu_seconds(pid))
        for record in records:
            statuses[record["status"]] = statuses.get(record["status"], 0) + 1

    run_jobs(jobs, workers, options, sink)
    return {span: seconds + prepare_per_case for span, seconds in figures_of(stamps, n1, n2).items()}, statuses


def _cpu_seconds(pid: int | None) -> float:
    """CPU seconds (user + system, all threads) of process `pid` so far; NaN where /proc cannot say."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def _batch(n1: int, n2: int) -> int:
    """A batch size that puts a batch boundary at N1, N2 and N2 - 100 (so each gets a time stamp)."""
    from math import gcd

    return min(16, gcd(gcd(n1, n2), n2 - 100 if n2 > 100 else n2))


def run_seed_subprocess(n1: int, n2: int, growing: int | None = None, method: str = "seed-keras",
                        worker_env: bool = False) -> dict[str, float]:
    """Method 1 or 5 in a fresh interpreter, so Keras picks TensorFlow whatever this process loaded;
    `worker_env`: under the environment poolconform gives its workers, not TensorFlow's defaults."""
    from poolconform.worker import QUIET_SINGLE_THREAD_ENV

    env = {**os.environ, **(QUIET_SINGLE_THREAD_ENV if worker_env else {}), "KERAS_BACKEND": "tensorflow",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    more = ["--growing", "--step", str(growing)] if growing else []
    out = subprocess.run(
        [sys.executable, __file__, "--method", method, "--n1", str(n1), "--n2", str(n2), *more],
        env=env, capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{method} subprocess failed: {out.stderr.strip().splitlines()[-1:]!r}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def figures_of(stamps: dict[int, Stamp], n1: int, n2: int) -> dict[str, float]:
    """Seconds per case after the warm-up, and over the last 100 cases where stamped; "cpu": CPU
    seconds per case after the warm-up (every process and thread of the method: under other load,
    the cost on one core that wall time cannot show)."""
    out = {"mean": marginal(stamps, n1, n2)}
    if n2 - 100 > n1 and n2 - 100 in stamps:
        out["last 100"] = marginal(stamps, n2 - 100, n2)
    out["cpu"] = marginal(stamps, n1, n2, which=1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n1", type=int, default=10, help="cases before the first time stamp (warm-up)")
    parser.add_argument("--n2", type=int, help="cases before the second time stamp (default 60; --growing: all)")
    parser.add_argument("--growing", action="store_true", help="MaxPool k2 s1 on inputs from 4x4 to 523x523")
    parser.add_argument("--step", type=int, default=1, help="--growing: every STEP-th input size (default 1: 520 cases)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--method", choices=["seed-keras", "keras-bare", "keras-bare-defaults"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.step < 1:
        parser.error(f"--step must be >= 1, got {args.step!r}")
    if args.growing:
        cases = growing_cases(args.step)
        args.n2 = args.n2 or len(cases)
        if args.n2 > len(cases):
            parser.error(f"--n2 {args.n2!r} is more than the {len(cases)} growing cases")
        cases = cases[: args.n2]
    else:
        args.n2 = args.n2 or 60
    if not 0 < args.n1 < args.n2:
        parser.error(f"need 0 < --n1 < --n2, got {args.n1!r} and {args.n2!r}")
    if not args.growing:
        cases = benchmark_cases(args.n2)
    if args.method:
        stamps = (seed_keras(cases, args.n1, args.n2) if args.method == "seed-keras"
                  else keras_bare(cases, worker_settings=args.method == "keras-bare"))
        print(json.dumps(figures_of(stamps, args.n1, args.n2)))
        return 0
    load = [os.getloadavg()[0]]
    figures: dict[str, dict[str, float]] = {}
    checks: dict[str, dict] = {}
    growing = args.step if args.growing else None
    figures["seed-keras"] = run_seed_subprocess(args.n1, args.n2, growing)
    figures["keras bare call, worker's settings"] = run_seed_subprocess(args.n1, args.n2, growing, "keras-bare", True)
    figures["keras bare call, seed's settings"] = run_seed_subprocess(args.n1, args.n2, growing, "keras-bare-defaults")
    figures["poolconform keras-tensorflow"], checks["keras-tensorflow"] = poolconform_runner(
        "keras-tensorflow", cases, args.n1, args.n2)
    figures["ort in-process"] = figures_of(ort_in_process(cases), args.n1, args.n2)
    figures["poolconform onnxruntime-cpu"], checks["onnxruntime-cpu"] = poolconform_runner(
        "onnxruntime-cpu", cases, args.n1, args.n2)
    spans = [span for span in ("mean", "last 100", "cpu") if all(span in f for f in figures.values())]
    ratios = {
        span: {
            "seed-keras / poolconform keras-tensorflow (target >= 50)":
                figures["seed-keras"][span] / figures["poolconform keras-tensorflow"][span],
            "poolconform onnxruntime-cpu / ort in-process (target <= 2)":
                figures["poolconform onnxruntime-cpu"][span] / figures["ort in-process"][span],
            "seed-keras / keras bare call, worker's settings (the most any runner gets)":
                figures["seed-keras"][span] / figures["keras bare call, worker's settings"][span],
            "poolconform keras-tensorflow / keras bare call, worker's settings":
                figures["poolconform keras-tensorflow"][span] / figures["keras bare call, worker's settings"][span],
            "seed-keras / keras bare call, seed's settings":
                figures["seed-keras"][span] / figures["keras bare call, seed's settings"][span],
        }
        for span in spans
    }
    kind = f"{len(cases)} growing cases ({cases[0].input_shape[-1]}^2 to {cases[-1].input_shape[-1]}^2)" if \
        args.growing else f"{len(cases)} distinct cases"
    print(f"{kind}; cost per case after case {args.n1} (mean), and over the last 100 cases where there are:")
    for name, per_span in figures.items():
        print(f"  {name:32s} " + "  ".join(f"{span}: {seconds * 1e3:8.3f} ms" for span, seconds in per_span.items()))
    for span, by_name in ratios.items():
        for name, ratio in by_name.items():
            print(f"  [{span}] {name:75s} {ratio:8.1f}x")
    load.append(os.getloadavg()[0])
    print(f"  statuses: {checks}")
    print(f"  load average (1 min) at start and end: {load[0]:.2f}, {load[1]:.2f} on {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps({"n1": args.n1, "n2": args.n2, "growing": args.growing, "step": args.step,
                                         "seconds_per_case": figures, "ratios": ratios, "statuses": checks,
                                         "load_average": load}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
