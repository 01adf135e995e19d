"""Runner count against wall time for a matrix (default matrices/full.toml), measured: for each
runner count R, every shard K/R is run one after another on this machine, as R CI runners would
each run one, and the slowest shard is the wall time of R runners.

    python benchmarks/shards.py [--matrix FILE] [--runners 1,2,4] [--backends A,B] [--json FILE]

R = 1 is the unsharded run. Each shard pays the frameworks' start-up again (and, on CI, the
install: about a minute from PyPI, not counted here), so the speed-up stays below R; the
summed shard time against the single run shows that overhead. Set POOLCONFORM_NO_CACHE=1 to
measure what a runner without a warm cache does.
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


def run_shard(matrix: str, shard: str | None, backends: str | None) -> tuple[float, int]:
    """Wall seconds and records of one `poolconform run` of the matrix (or one shard of it)."""
    command = [sys.executable, "-m", "poolconform", "run", "--matrix", matrix, "--quiet"]
    if shard:
        command += ["--shard", shard]
    if backends:
        command += ["--backends", backends]
    with tempfile.TemporaryDirectory(prefix="poolconform-shard-") as out:
        started = time.perf_counter()
        done = subprocess.run(command + ["--out", out], capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        results = Path(out) / "results.jsonl"
        if not (Path(out) / "summary.json").exists():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise SystemExit(f"shards: {shard or 'the whole run'} wrote no summary (exit {done.returncode}): {last}")
        records = sum(1 for _ in results.open())
    return wall, records


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--matrix", default="matrices/full.toml")
    parser.add_argument("--runners", default="1,2,4", help="runner counts to measure (default 1,2,4)")
    parser.add_argument("--backends", help="default: every available one")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    try:
        counts = sorted({int(r) for r in args.runners.split(",")})
    except ValueError:
        parser.error(f"--runners {args.runners!r} is not a list of integers")
    if not counts or counts[0] < 1:
        parser.error("--runners must be positive integers")
    rows = []
    print(f"{args.matrix}; load average {load_average()}; cache {'off' if os.environ.get('POOLCONFORM_NO_CACHE') else 'on'}",
          flush=True)
    for r in counts:
        shards = []
        for k in range(1, r + 1):
            wall, records = run_shard(args.matrix, None if r == 1 else f"{k}/{r}", args.backends)
            shards.append({"k": k, "wall_s": round(wall, 1), "records": records})
            print(f"  {r} runner(s), shard {k}/{r}: {wall:6.1f} s, {records} records", flush=True)
        rows.append({"runners": r, "wall_s": max(s["wall_s"] for s in shards),
                     "summed_s": round(sum(s["wall_s"] for s in shards), 1), "shards": shards,
                     "load_after": load_average()})
    one = rows[0]["wall_s"] if rows[0]["runners"] == 1 else None
    print(f"\n{'runners':>7}  {'wall s':>7}  {'speed-up':>8}  {'runner s':>8}")
    for row in rows:
        row["speedup"] = round(one / row["wall_s"], 2) if one else None
        speedup = f"{row['speedup']:.2f}x" if one else "-"
        print(f"{row['runners']:>7}  {row['wall_s']:>7.1f}  {speedup:>8}  {row['summed_s']:>8.1f}")
    if args.json:
        args.json.write_text(json.dumps({"matrix": args.matrix, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
