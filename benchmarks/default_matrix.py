"""Wall clock of `poolconform run` on the embedded default matrix with every available CPU
backend, next to the sum of the frameworks' bare import times measured in the same run.

    python benchmarks/default_matrix.py [--backends A,B] [--json FILE]

The import sum is the floor a one-process-per-framework design cannot go under on one
core; the ratio says how much the matrix itself costs on top of merely loading them.
The first run on a machine fills poolconform's backend caches (see docs/speed.md); later
runs use them. Set POOLCONFORM_CACHE_DIR to an empty folder to measure a cold first round,
POOLCONFORM_NO_CACHE=1 to measure without caches. From round 2 on it prints how many
records' status or output digest differ from round 1 (a cache must make that 0).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from poolconform import backend_cache

#: CPU backends of the default run and the import statement that loads each one's framework.
CPU_BACKEND_IMPORTS = {
    "onnxruntime-cpu": "import onnxruntime",
    "onnx-reference": "import onnx.reference",
    "torch-cpu": "import torch",
    "keras-tensorflow": "import os; os.environ['KERAS_BACKEND'] = 'tensorflow'; import keras",
    "keras-jax": "import os; os.environ['KERAS_BACKEND'] = 'jax'; import keras",
    "keras-torch": "import os; os.environ['KERAS_BACKEND'] = 'torch'; import keras",
    "tensorflow": "import tensorflow",
    "openvino-cpu": "import openvino",
}


def import_seconds(statement: str) -> float | None:
    """Wall seconds of a fresh interpreter running `statement` (None when it fails)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", statement], env=env, capture_output=True, check=False)
    return time.perf_counter() - started if done.returncode == 0 else None


def available_cpu_backends() -> list[str]:
    """Built-in CPU backends whose worker loads here, as `poolconform backends --json` says."""
    out = subprocess.run([sys.executable, "-m", "poolconform", "backends", "--json"],
                         capture_output=True, text=True, check=True)
    rows = json.loads(out.stdout)
    return [r["name"] for r in rows if r["available"] and r["name"] in CPU_BACKEND_IMPORTS]


def load_average() -> float | None:
    """The 1-minute load average (other processes compete for the cores), None where unknown."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def one_round(backends: list[str], jobs: int | None) -> dict:
    """Imports, then the run, back to back: one ratio under one load."""
    load_before = load_average()
    baseline = import_seconds("pass")
    imports = {b: import_seconds(CPU_BACKEND_IMPORTS.get(b, "pass")) for b in backends}
    import_sum = sum(max(0.0, s - baseline) for s in imports.values() if s is not None)
    command = [sys.executable, "-m", "poolconform", "run", "--backends", ",".join(backends), "--quiet"]
    if jobs:
        command += ["--jobs", str(jobs)]
    with tempfile.TemporaryDirectory(prefix="poolconform-default-") as out:
        started = time.perf_counter()
        run = subprocess.run(command + ["--out", out], check=False, capture_output=True, text=True)
        wall = time.perf_counter() - started
        summary_path = Path(out) / "summary.json"
        if not summary_path.exists():
            last = (run.stderr.strip().splitlines() or ["no output"])[-1]
            raise SystemExit(f"default_matrix: the run wrote no summary (exit {run.returncode}): {last}")
        summary = json.loads(summary_path.read_text())
        busy: dict[str, float] = {}  # worker seconds per backend, summed over its records
        outcomes: dict[str, str] = {}  # (case, backend) -> status and output digest
        replayed = 0
        for line in (Path(out) / "results.jsonl").read_text().splitlines():
            record = json.loads(line)
            busy[record["backend"]] = busy.get(record["backend"], 0.0) + float(record.get("seconds") or 0.0)
            outcomes[f"{record['case']} {record['backend']}"] = f"{record['status']} {record.get('digest')}"
            replayed += "replayed from poolconform's cache" in (record.get("note") or "")
    return {"wall_s": wall, "exit": run.returncode, "imports_s": imports, "import_sum_s": import_sum,
            "interpreter_s": baseline, "ratio": wall / import_sum if import_sum else float("nan"),
            "load_before": load_before, "load_after": load_average(), "cases": summary.get("cases"),
            "records": summary.get("records"), "counts": summary.get("counts"), "outcomes": outcomes,
            "replayed": replayed,
            "backend_seconds": {b: round(v, 2) for b, v in sorted(busy.items(), key=lambda kv: -kv[1])}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", help="comma-separated backends (default: every available CPU backend)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of imports + run (default 1)")
    parser.add_argument("--jobs", type=int, help="passed to `poolconform run --jobs` (default: its own)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    backends = [b for b in (args.backends or "").split(",") if b] or available_cpu_backends()
    rounds = []
    cache = "off (POOLCONFORM_NO_CACHE)" if not backend_cache.enabled() else str(backend_cache.cache_root())
    print(f"backend caches (OpenVINO compiled models, JAX executables, onnx-reference outputs): {cache}")
    for _ in range(args.repeat):
        r = one_round(backends, args.jobs)
        rounds.append(r)
        print(f"default matrix: {r['cases']} cases x {len(backends)} backends = {r['records']} records "
              f"on {os.cpu_count()} cores, load average {r['load_before']} -> {r['load_after']}")
        if len(rounds) > 1:  # a cache must never change an outcome: compare with the first round
            first = rounds[0]["outcomes"]
            differ = sum(1 for k, v in r["outcomes"].items() if first.get(k) != v)
            print(f"  records whose status or output digest differ from round 1: {differ} of {len(r['outcomes'])}")
        print(f"  onnx-reference records replayed from the cache: {r['replayed']}")
        print(f"  poolconform run wall: {r['wall_s']:8.1f} s (exit {r['exit']})")
        for name, seconds in r["imports_s"].items():
            shown = "failed" if seconds is None else f"{seconds - r['interpreter_s']:6.2f} s"
            print(f"  import for {name:18s} {shown}")
        print(f"  sum of imports:       {r['import_sum_s']:8.1f} s  "
              f"(bare interpreter start {r['interpreter_s']:.2f} s subtracted)")
        print(f"  run / imports:        {r['ratio']:8.2f}  (target <= 2)")
        print("  worker seconds per backend (sum over its cases): "
              + ", ".join(f"{b} {v:.1f}" for b, v in r["backend_seconds"].items()))
    if len(rounds) > 1:
        ratios = sorted(r["ratio"] for r in rounds)
        print(f"run / imports over {len(rounds)} rounds: " + ", ".join(f"{x:.2f}" for x in ratios)
              + f" (median {ratios[len(ratios) // 2]:.2f})")
    for r in rounds:
        del r["outcomes"]
    if args.json:
        args.json.write_text(json.dumps({"backends": backends, "cores": os.cpu_count(), "rounds": rounds},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
