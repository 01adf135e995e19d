"""`poolconform backends`: every backend, its framework version, device, and why it is unavailable."""

from __future__ import annotations

import argparse
import json
from typing import TypedDict

from rich.console import Console
from rich.table import Table

from poolconform.backends.base import opt_in_backends, registry, resolve_backend_names, split_tagged
from poolconform.commands.options import add_backend_python_option, name_list, names
from poolconform.runner import RunOptions, start_workers

#: Below this width the table would break backend names and reasons into slivers: one block
#: per backend instead (name, status, version and device on a line, the reason wrapped below).
TABLE_MIN_WIDTH = 110


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
    p.add_argument("--backends", type=name_list, metavar="A,B", help="only these backends")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_backend_python_option(p)
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from poolconform.envs import backend_pythons, configured_pythons

    given = [name for name, _ in args.backend_python or []]
    chosen = names(args.backends)
    pythons = backend_pythons(args.backend_python, [*chosen, *registry(), *given, *configured_pythons()])
    specs = resolve_backend_names(chosen or None, pythons)
    if not chosen:  # every backend: the opt-in ones and every NAME@TAG given an interpreter too
        have = {s.name for s in specs}
        extra = sorted(opt_in_backends()) + [n for n in pythons if split_tagged(n)[1]]
        specs += [s for s in resolve_backend_names(extra, pythons) if s.name not in have]
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
    console = Console(highlight=False)
    if console.width < TABLE_MIN_WIDTH:
        _print_blocks(console, rows)
        return 0
    table = Table(title="poolconform backends", title_justify="left")
    for col in ("backend", "status", "version", "device", "why not / note"):
        table.add_column(col, overflow="fold")
    for r in rows:
        status = "[green]available[/green]" if r["available"] else "[red]unavailable[/red]"
        table.add_row(r["name"], status, r["version"], r["device"], _note(r))
    console.print(table)
    return 0


def _note(row: BackendRow) -> str:
    note = row["reason"] or ("opt-in: name it in --backends" if not row["default"] else "")
    return (note + " (plug-in)").strip() if row["source"] == "plug-in" else note


def _print_blocks(console: Console, rows: list[BackendRow]) -> None:
    """Narrow terminals: each backend's name whole on its own line, the reason wrapped below."""
    import textwrap

    from rich.markup import escape

    console.print("poolconform backends")
    for r in rows:
        status = "[green]available[/green]" if r["available"] else "[red]unavailable[/red]"
        facts = "  ".join(escape(x) for x in (r["version"], r["device"]) if x)
        console.print(f"[bold]{escape(r['name'])}[/bold]  {status}" + (f"  {facts}" if facts else ""))
        if _note(r):
            console.print(escape(textwrap.fill(_note(r), console.width - 1, initial_indent="    ",
                                               subsequent_indent="    ", break_on_hyphens=False)))
