"""`poolconform bench`: pooling speed per backend on realistic shapes, next to memory bandwidth."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from poolconform import bench
from poolconform.backends.base import resolve_backend_names
from poolconform.commands.options import names, positive_float, positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time pooling per backend on realistic shapes, against memory bandwidth",
                       description="Time each op on each shape on every backend (median of --repeat runs after "
                                   "one warm-up, frameworks' default threading) and show the achieved GB/s "
                                   "next to a NumPy memory copy measured in the same run.")
    p.add_argument("--op", default=",".join(bench.DEFAULT_OPS), metavar="A,B",
                   help=f"ONNX ops (default {','.join(bench.DEFAULT_OPS)})")
    p.add_argument("--shape", default=",".join("x".join(map(str, s)) for s in bench.DEFAULT_SHAPES),
                   metavar="NxCxHxW,...", help="input shapes, NCHW (default 1x64x112x112,8x256x56x56)")
    p.add_argument("--kernel", type=positive_int, default=3, help="window size on every spatial axis (default 3)")
    p.add_argument("--stride", type=positive_int, default=2, help="stride on every spatial axis (default 2)")
    p.add_argument("--backends", metavar="A,B", help="backends to time (default: every available one but onnx-reference, "
                        "a Python evaluator that takes minutes on these shapes)")
    p.add_argument("--repeat", type=positive_int, default=10, metavar="N", help="timed runs per case (default 10)")
    p.add_argument("--timeout", type=positive_float, default=120.0, metavar="SECONDS",
                   help="limit per run of one case (default 120)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the rows and the copy bandwidth as JSON")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    shapes = [bench.parse_shape(s) for s in names(args.shape)]
    cases = bench.bench_cases(names(args.op), shapes, args.kernel, args.stride)
    specs = resolve_backend_names(names(args.backends) or None)
    if not args.backends:
        specs = [s for s in specs if s.name not in bench.NOT_TIMED_BY_DEFAULT]
    copy_rate = bench.copy_bandwidth()
    rows = bench.run_bench(cases, specs, args.repeat, args.timeout, copy_rate)
    print_table(rows, copy_rate, args.repeat)
    if args.json:
        args.json.write_text(json.dumps({"copy_gb_per_s": copy_rate / 1e9, "repeat": args.repeat,
                                         "rows": bench.rows_as_dicts(rows)}, indent=2) + "\n", encoding="utf-8")
    return 0


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def print_table(rows: list[bench.BenchRow], copy_rate: float, repeat: int) -> None:
    """One row per (case, backend): median time, GB/s, share of the memory-copy rate."""
    table = Table(title=f"poolconform bench (median of {repeat} runs; NumPy copy reaches {copy_rate / 1e9:.1f} GB/s)",
                  title_justify="left")
    for column in ("op", "shape", "backend", "median ms", "GB/s", "% of copy", "status"):
        table.add_column(column, overflow="fold", justify="right" if column in ("median ms", "GB/s", "% of copy")
                         else "left")
    styles = {"ok": "green", "wrong": "red", "error": "red", "unsupported": "yellow", "unavailable": "dim"}
    for r in rows:
        status = r.status if r.status == "ok" or r.detail.startswith(r.status) else f"{r.status}: {r.detail}"
        share = _fmt(r.fraction_of_copy * 100 if r.fraction_of_copy is not None else None, ".0f")
        table.add_row(r.op, "x".join(map(str, r.shape)), r.backend, _fmt(r.median_ms, ".3f"),
                      _fmt(r.gb_per_s, ".2f"), share, f"[{styles.get(r.status, '')}]{status}[/]")
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=160)
    console.print(table)
