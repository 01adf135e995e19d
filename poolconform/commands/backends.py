"""`poolconform backends`: every backend, its framework version, device, and why it is unavailable."""

from __future__ import annotations

import argparse
import json
from typing import TypedDict

from rich.console import Console
from rich.table import Table

from poolconform.backends.base import opt_in_backends, resolve_backend_names
from poolconform.commands.options import names
from poolconform.runner import RunOptions, start_workers


class BackendRow(TypedDict):
    """One backend as `--json` prints it and the table shows it."""

    name: str
    available: bool
    version: str
    device: str
    reason: str | None
    source: str  # "built-in" or "plug-in"
    default: bool  # runs without being named in --backends (not opt-in)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backends", help="list backends, their versions, and why any is unavailable")
    p.add_argument("--backends", metavar="A,B", help="only these backends")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    specs = resolve_backend_names(names(args.backends) or None)
    if not args.backends:
        have = {s.name for s in specs}
        specs += [s for s in resolve_backend_names(sorted(opt_in_backends())) if s.name not in have]
    workers = start_workers(specs, RunOptions())
    rows: list[BackendRow] = []
    for spec in specs:
        info = workers[spec.name].info
        workers[spec.name].close()
        rows.append({
            "name": spec.name,
            "available": info.unavailable is None,
            "version": info.version,
            "device": info.device,
            "reason": info.unavailable,
            "source": "plug-in" if spec.third_party else "built-in",
            "default": not spec.opt_in,
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title="poolconform backends", title_justify="left")
    for col in ("backend", "status", "version", "device", "why not / note"):
        table.add_column(col, overflow="fold")
    for r in rows:
        status = "[green]available[/green]" if r["available"] else "[red]unavailable[/red]"
        note = r["reason"] or ("opt-in: name it in --backends" if not r["default"] else "")
        if r["source"] == "plug-in":
            note = (note + " (plug-in)").strip()
        table.add_row(r["name"], status, r["version"], r["device"], note)
    Console(highlight=False).print(table)
    return 0
