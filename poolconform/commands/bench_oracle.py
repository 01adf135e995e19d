"""`poolconform bench --oracle`: the oracle's speed table (poolconform/bench_oracle.py)."""

from __future__ import annotations

import argparse
import json

from poolconform import bench_oracle
from poolconform.commands.output_file import write_output_file
from poolconform.commands.progress import progress_bar


def main(args: argparse.Namespace) -> int:
    warmup = 2
    with progress_bar() as progress:
        rows = bench_oracle.bench_oracle(repeat=args.repeat, warmup=warmup, progress=progress)
    bench_oracle.print_rows(rows, args.repeat, warmup)
    if args.json:  # checked before timing (commands/bench.py); a write that fails still is one line
        write_output_file(args.json, json.dumps({"shape": list(bench_oracle.SHAPE), "repeat": args.repeat,
                                                 "warmup": warmup, "environment": bench_oracle.environment(),
                                                 "rows": bench_oracle.as_dicts(rows)}, indent=2) + "\n", "--json")
    return 0
