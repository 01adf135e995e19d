"""Runner count against wall time for a matrix (default matrices/full.toml): every shard K/8
run one after another on this machine, as eight CI runners would each run one.

    python benchmarks/shards.py [--matrix FILE] [--n 8] [--backends A,B] [--json FILE]

A case belongs to shard hash(id) % N + 1 (poolconform/shard.py), so the shards of N/2 runners
are unions of pairs of the N shards (K and K + N/2): the wall time of R runners is estimated
from the measured shards as the slowest runner's sum of its shards' case time, plus one
worker start-up per runner (a runner pays the frameworks' start-up once, however many of
the shards it holds). Start-up is measured as the wall time of a run of one case.
Printed: per-shard wall and records, then a table of runners (1, 2, 4, ... N) against the
estimated wall time and the speed-up over one runner. Installing the frameworks on each
runner (about a minute from PyPI) comes on top and is not counted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_shard(matrix: str, shard: str | None, backends: str | None, cases: str | None = None) -> tuple[float, int]:
    """Wall seconds and records of one `poolconform run` (a shard, or the cases a glob picks)."""
    command = [sys.executable, "-m", "poolconform", "run", "--matrix", matrix, "--quiet"]
    if shard:
        command += ["--shard", shard]
    if backends:
        command += ["--backends", backends]
    if cases:
        command += ["--cases", cases]
    with tempfile.TemporaryDirectory(prefix="poolconform-shard-") as out:
        started = time.perf_counter()
        done = subprocess.run(command + ["--out", out], capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        summary = Path(out) / "summary.json"
        if not summary.exists():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise SystemExit(f"shards: {shard or cases} wrote no summary (exit {done.returncode}): {last}")
        records = sum(1 for _ in (Path(out) / "results.jsonl").open())
    return wall, records


def first_case(matrix: str) -> str:
    """The id of the matrix's first case (for the start-up run)."""
    from poolconform.matrix import load_matrix

    return load_matrix(Path(matrix)).cases[0].id


def estimate(walls: list[float], startup: float, runners: int) -> float:
    """Wall time of `runners` runners holding the N measured shards (N divisible by runners)."""
    work = [max(0.0, w - startup) for w in walls]
    return max(startup + sum(work[k::runners]) for k in range(runners))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", default="matrices/full.toml")
    parser.add_argument("--n", type=int, default=8, help="shards to measure (a power of two)")
    parser.add_argument("--backends", help="default: every available one")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.n < 1 or args.n & (args.n - 1):
        parser.error("--n must be a power of two")
    startup, _ = run_shard(args.matrix, None, args.backends, cases=first_case(args.matrix))
    print(f"start-up (a run of one case): {startup:.1f} s", flush=True)
    walls, records = [], []
    for k in range(1, args.n + 1):
        wall, count = run_shard(args.matrix, f"{k}/{args.n}", args.backends)
        walls.append(wall)
        records.append(count)
        print(f"shard {k}/{args.n}: {wall:6.1f} s, {count} records", flush=True)
    rows = []
    runners = 1
    while runners <= args.n:
        rows.append({"runners": runners, "wall_s": round(estimate(walls, startup, runners), 1)})
        runners *= 2
    one = rows[0]["wall_s"]
    print(f"\n{'runners':>7}  {'wall s':>7}  {'speed-up':>8}")
    for row in rows:
        row["speedup"] = round(one / row["wall_s"], 2)
        print(f"{row['runners']:>7}  {row['wall_s']:>7.1f}  {row['speedup']:>7.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"matrix": args.matrix, "startup_s": round(startup, 1),
                                         "shards": [{"k": k + 1, "wall_s": round(w, 1), "records": r}
                                                    for k, (w, r) in enumerate(zip(walls, records))],
                                         "runners": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
