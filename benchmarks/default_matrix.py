"""Wall clock of `poolconform run` on the embedded default matrix with every available CPU
backend, next to the sum of the frameworks' bare import times measured in the same run.

    python benchmarks/default_matrix.py [--backends A,B] [--json FILE]

The import sum is the floor a one-process-per-framework design cannot go under on one
core; the ratio says how much the matrix itself costs on top of merely loading them.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", help="comma-separated backends (default: every available CPU backend)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    backends = [b for b in (args.backends or "").split(",") if b] or available_cpu_backends()
    baseline = import_seconds("pass")
    imports = {b: import_seconds(CPU_BACKEND_IMPORTS.get(b, "pass")) for b in backends}
    import_sum = sum(max(0.0, s - baseline) for s in imports.values() if s is not None)
    with tempfile.TemporaryDirectory(prefix="poolconform-default-") as out:
        started = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "poolconform", "run", "--backends", ",".join(backends),
                              "--out", out, "--quiet"], check=False)
        wall = time.perf_counter() - started
        summary = json.loads((Path(out) / "summary.json").read_text())
    print(f"default matrix: {summary['cases']} cases x {len(backends)} backends = {summary['records']} records")
    print(f"  poolconform run wall: {wall:8.1f} s (exit {run.returncode})")
    for name, seconds in imports.items():
        shown = "failed" if seconds is None else f"{seconds - baseline:6.2f} s"
        print(f"  import for {name:18s} {shown}")
    print(f"  sum of imports:       {import_sum:8.1f} s  (bare interpreter start {baseline:.2f} s subtracted)")
    print(f"  run / imports:        {wall / import_sum if import_sum else float('nan'):8.2f}")
    if args.json:
        args.json.write_text(json.dumps({"backends": backends, "wall_s": wall, "imports_s": imports,
                                         "import_sum_s": import_sum, "interpreter_s": baseline,
                                         "records": summary["records"], "counts": summary["counts"]},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
