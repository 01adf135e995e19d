"""`poolconform bench`: pooling speed per backend on realistic shapes, next to memory bandwidth."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rich.table import Table
from rich.text import Text

from poolconform import bench
from poolconform.backends.base import resolve_backend_names
from poolconform.commands.options import name_list, names, positive_float, positive_int
from poolconform.commands.output_file import check_output_file, write_output_file
from poolconform.commands.progress import progress_bar
from poolconform.report.terminal import console
from poolconform.report.text import printable


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time pooling per backend on realistic shapes, against memory bandwidth",
                       description="Time each op on each shape on every backend (median and interquartile "
                                   "range of --repeat runs after --warmup uncounted ones, frameworks' default "
                                   "threading, the worker's threads and busy cores shown) and show the achieved "
                                   "GB/s next to a NumPy memory copy timed just before and after each backend.")
    p.add_argument("--op", default=",".join(bench.DEFAULT_OPS), metavar="A,B",
                   help=f"ONNX ops (default {','.join(bench.DEFAULT_OPS)})")
    p.add_argument("--shape", default=",".join("x".join(map(str, s)) for s in bench.DEFAULT_SHAPES),
                   metavar="NxCxHxW,...", help="input shapes, NCHW (default 1x64x112x112,8x256x56x56)")
    p.add_argument("--kernel", type=positive_int, default=3, help="window size on every spatial axis (default 3)")
    p.add_argument("--stride", type=positive_int, default=2, help="stride on every spatial axis (default 2)")
    p.add_argument("--backends", type=name_list, metavar="A,B", help="backends to time (default: every available one but onnx-reference, "
                        "a Python evaluator that takes minutes on these shapes)")
    p.add_argument("--repeat", type=run_count, default=10, metavar="N",
                   help=f"timed runs per case, at most {bench.MAX_RUNS} (default 10)")
    p.add_argument("--warmup", type=run_count, default=2, metavar="N",
                   help=f"uncounted runs per case before the timed ones, at most {bench.MAX_RUNS} (default 2)")
    p.add_argument("--timeout", type=positive_float, default=120.0, metavar="SECONDS",
                   help="limit per run of one case (default 120)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the rows and the copy bandwidth as JSON")
    p.add_argument("--oracle", action="store_true", help="time the float64 oracle of every op on a 1x64x512x512 "
                   "input against a NumPy copy of it instead (docs/speed.md)")
    p.set_defaults(handler=main)


def run_count(text: str) -> int:
    """--repeat / --warmup: 1 to bench.MAX_RUNS (each run is a task held in memory)."""
    value = positive_int(text)
    if value > bench.MAX_RUNS:
        raise argparse.ArgumentTypeError(f"{text!r} is over {bench.MAX_RUNS} runs per case")
    return value


def main(args: argparse.Namespace) -> int:
    if args.json is not None:
        check_output_file(args.json, "--json")
    if args.oracle:
        from poolconform.commands.bench_oracle import main as oracle_main

        try:
            return oracle_main(args)
        except KeyboardInterrupt:  # not the run commands' --resume advice
            print("poolconform bench: interrupted", file=sys.stderr)
            return 130
    shapes = [bench.parse_shape(s) for s in names(args.shape)]
    cases = bench.bench_cases(names(args.op), shapes, args.kernel, args.stride)
    specs = resolve_backend_names(names(args.backends) or None)
    if not args.backends:
        specs = [s for s in specs if s.name not in bench.NOT_TIMED_BY_DEFAULT]
    copy_rate: float | None = None
    try:
        with progress_bar() as progress:
            progress("timing a NumPy copy", 0, 0)
            copy_rate = bench.copy_bandwidth()
            rows = bench.run_bench(cases, specs, args.repeat, args.timeout, warmup=args.warmup, progress=progress)
    except KeyboardInterrupt as stop:  # the rows timed so far, then one line: not the run commands' --resume
        done = getattr(stop, "rows", [])
        if done and copy_rate is not None:
            print_table(done, copy_rate, args.repeat, args.warmup)
        print(f"poolconform bench: interrupted after {len(done)} of {len(cases) * len(specs)} timing(s)"
              + (" (shown above)" if done and copy_rate is not None else "")
              + ("; --json was not written" if args.json is not None else ""), file=sys.stderr)
        return 130
    print_table(rows, copy_rate, args.repeat, args.warmup)
    if args.json:
        write_output_file(args.json, json.dumps({"copy_gb_per_s": copy_rate / 1e9, "repeat": args.repeat,
                                                 "warmup": args.warmup, "cpu_count": os.cpu_count(),
                                                 "rows": bench.rows_as_dicts(rows)}, indent=2) + "\n", "--json")
    return 0


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


#: Columns left out, a group at a time, when the table would not fit the console's width.
_DROPPABLE = (("copy GB/s", "threads", "cores"), ("IQR ms", "% of copy"))


def print_table(rows: list[bench.BenchRow], copy_rate: float, repeat: int, warmup: int = 1) -> None:
    """One row per (case, backend): median time and its IQR, GB/s, share of the copy rate
    measured around that backend, the copy rate before -> after, the worker's threads and busy cores.
    Within the console's width (COLUMNS): names whole, the least needed columns dropped first,
    else one line per row. An unavailable backend is one line below the table, not a row per case."""
    title = (f"poolconform bench (median and IQR of {repeat} runs after {warmup} warm-up(s); "
             f"NumPy copy reaches {copy_rate / 1e9:.1f} GB/s at the start; {os.cpu_count()} cores)")
    numeric = ("median ms", "IQR ms", "GB/s", "% of copy", "copy GB/s", "threads", "cores")
    columns = ("op", "shape", "backend", *numeric, "status")
    styles = {"ok": "green", "wrong": "red", "error": "red", "unsupported": "yellow", "unavailable": "dim"}
    missing: dict[str, str] = {}
    cells: list[dict[str, Text]] = []
    for r in rows:
        if r.status == "unavailable":
            missing.setdefault(r.backend, r.detail)
            continue
        status = r.status if r.status == "ok" or r.detail.startswith(r.status) else f"{r.status}: {r.detail}"
        share = _fmt(r.fraction_of_copy * 100 if r.fraction_of_copy is not None else None, ".0f")
        around = (f"{r.copy_before_gb_per_s:.1f}->{r.copy_after_gb_per_s:.1f}"
                  if r.copy_before_gb_per_s is not None and r.copy_after_gb_per_s is not None else "")
        values = (r.op, "x".join(map(str, r.shape)), printable(r.backend), _fmt(r.median_ms, ".3f"),
                  _fmt(r.iqr_ms, ".3f"), _fmt(r.gb_per_s, ".2f"), share, around, _fmt(r.threads, "d"),
                  _fmt(r.cores_used, ".1f"))
        cells.append({**{c: Text(v) for c, v in zip(columns, values)},
                      "status": Text(printable(status), style=styles.get(r.status, ""))})

    def table(drop: set[str]) -> Table:
        t = Table(title=title, title_justify="left", show_edge=False, pad_edge=False, header_style="bold")
        shown = [c for c in columns if c not in drop]
        for c in shown:  # only the status wraps: names and figures stay whole
            t.add_column(c, no_wrap=c != "status", overflow="fold", justify="right" if c in numeric else "left")
        for row in cells:
            t.add_row(*(row[c] for c in shown))
        return t

    out = console()
    drops = [set(), set(_DROPPABLE[0]), set(_DROPPABLE[0] + _DROPPABLE[1])]
    status_room = min(12, max((len(row["status"]) for row in cells), default=0)) + 3  # " | " and a short status
    wide = out.options.update(width=10**6)  # a table's natural width, not the console's
    fits = [d for d in drops if out.measure(table(d | {"status"}), options=wide).maximum + status_room <= out.width]
    if fits or not cells:
        out.print(table(fits[0] if fits else drops[-1]))  # the status column wraps in what is left
    else:  # stacked: one line per row, wrapped by rich
        out.print(Text(title, style="bold"))
        for row in cells:
            line = Text(f"{row['op']} {row['shape']} {row['backend']}: ")
            if str(row["median ms"]):
                line.append(f"{row['median ms']} ms, {row['GB/s']} GB/s, ")
            line.append_text(row["status"])
            out.print(line)
    for name, reason in missing.items():  # named once, not once per case
        out.print(Text(f"not run: {printable(name)}: {printable(reason)}", style="dim"))
