"""The terminal report: backends x statuses, the findings (every backend with a disagreement), agreement.

Every name and message from a record goes through printable(): a folder name can hold
terminal escapes, and rich markup characters are not interpreted (Text, not markup).
Every table fits the console's width with every backend name whole: a table that would
not fit drops its version column, then shortens its headers, then is printed as one
line per backend (see fitted()).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from poolconform.report.headline import headline, nothing_checked
from poolconform.report.text import printable
from poolconform.results import FAILING, STATUSES

#: Findings listed in full (every backend with a disagreement gets at least one line).
TOP_FINDINGS = 12
#: Width of the report when stdout is a file or a CI log and COLUMNS is not set.
LOG_WIDTH = 160

_STYLE = {"pass": "green", "mismatch": "red", "shape-mismatch": "red", "unsupported": "dim",
          "error": "magenta", "crash": "magenta", "timeout": "magenta"}
#: Column headers for narrow terminals (every one still a word a reader recognises).
_SHORT = {"pass": "pass", "mismatch": "mism.", "shape-mismatch": "shape", "unsupported": "unsup.",
          "error": "err.", "crash": "crash", "timeout": "t/o"}


def console() -> Console:
    """The console reports print to: the terminal's width; COLUMNS where set (also for a
    file or a pipe); otherwise LOG_WIDTH, wide enough for ids and details in a CI log."""
    out = Console(highlight=False)
    if not out.is_terminal and not os.environ.get("COLUMNS", "").strip().isdigit():
        out = Console(highlight=False, width=LOG_WIDTH)
    return out


def fitted(console: Console, *tables: Table) -> Table | None:
    """The first table whose natural width fits the console, or None when none does."""
    unbounded = console.options.update(width=10**6)  # a table's natural width, not the console's
    for table in tables:
        if console.measure(table, options=unbounded).maximum <= console.width:
            return table
    return None


def print_summary(summary: dict[str, Any], console: Console, title: str = "poolconform") -> None:
    """Print the summary as tables a person reads in a few seconds, within the console's width."""
    console.print(Text(f"{printable(title)}: {summary['cases']} cases, {summary['records']} records", style="bold"))
    _print_statuses(summary, console)
    missing = {n: i["unavailable"] for n, i in summary["backends"].items() if i.get("unavailable")}
    for name, reason in missing.items():
        console.print(Text(f"not run: {printable(name)}: {printable(reason)}", style="dim"))
    for name, info in summary["backends"].items():
        device = info.get("device") or ""
        if device and device.lower() not in ("cpu", "cuda", "gpu") and not info.get("unavailable"):
            console.print(Text(f"{printable(name)} runs on: {printable(device)}", style="dim"))
    print_findings(summary, console)
    _print_agreement(summary["agreement"], console)
    if summary.get("dropped"):
        total = sum(summary["dropped"].values())
        reasons = ", ".join(f"{n} {why}" for why, n in summary["dropped"].items())
        console.print(f"dropped {total} impossible combinations: {reasons}")
    console.print(verdict(summary), soft_wrap=True)  # one line, however long: CI logs grep it


def _print_statuses(summary: dict[str, Any], console: Console) -> None:
    """Backends by status: only the statuses that occur (pass always), names never cut."""
    by_backend = summary["by_backend"]
    shown = [s for s in STATUSES if s == "pass" or any(c.get(s) for c in by_backend.values())]

    def table(version: bool, header: Callable[[str], str]) -> Table:
        t = Table(show_edge=False, pad_edge=False, header_style="bold")
        t.add_column("backend", no_wrap=True)
        if version:
            t.add_column("version", style="dim", no_wrap=True)
        for status in shown:
            t.add_column(header(status), justify="right", style=_STYLE[status], no_wrap=True)
        for name, counts in by_backend.items():
            info = summary["backends"].get(name, {})
            cells = [Text(printable(name))]
            if version:
                cells.append(Text(printable(info.get("version") or "")))
            t.add_row(*cells, *[str(counts.get(s, 0) or "") for s in shown])
        return t

    best = fitted(console, table(True, str), table(False, str), table(False, _SHORT.__getitem__))
    if best is not None:
        console.print(best)
        return
    for name, counts in by_backend.items():  # stacked: one line per backend, wrapped by rich
        parts = ", ".join(f"{counts[s]} {s}" for s in shown if counts.get(s))
        console.print(Text(f"{printable(name)}: {parts or 'no records'}"))


def verdict(summary: dict[str, Any]) -> str:
    """One line that says what the exit status will be, and why; it names every catch-all
    expectation (one that covers all records of a backend), which could hide any regression."""
    line = _verdict_head(summary)
    if summary.get("catch_all_expectations"):
        from rich.markup import escape

        from poolconform.expectations import catch_all_line

        line += f"; [bold yellow]warning: {escape(catch_all_line(summary['catch_all_expectations']))}[/bold yellow]"
    return line


def _verdict_head(summary: dict[str, Any]) -> str:
    kind = headline(summary)
    if kind == "partial":
        return f"[bold red]verdict: PARTIAL report ({escape('; '.join(summary['partial']['missing']))}): exit 1[/bold red]"
    if kind == "interrupted":
        return f"[bold yellow]verdict: none, INTERRUPTED ({escape(summary['interrupted'])}): exit 130[/bold yellow]"
    if kind == "nothing-verified":
        return (f"[bold red]verdict: nothing verified ({escape(summary['nothing_verified'])}; no backend could "
                "express the selected cases): exit 2[/bold red]")
    failing = sum(summary["counts"].get(s, 0) for s in FAILING)
    unexpected = summary["unexpected"]
    expected = failing - unexpected
    if kind == "fail":
        tail = f" ({expected} more expected)" if expected else ""
        return f"[bold red]verdict: {unexpected} unexpected disagreement(s){tail}: exit 1[/bold red]"
    if kind == "nothing-checked":
        return f"[bold yellow]verdict: nothing checked here ({escape(nothing_checked(summary))}): exit 0[/bold yellow]"
    if expected:
        return f"[bold green]verdict: no unexpected disagreement ({expected} expected, declared in --expectations): exit 0[/bold green]"
    return "[bold green]verdict: every backend that ran agrees with the oracle: exit 0[/bold green]"


def _print_agreement(table_data: dict[str, dict[str, dict[str, int]]], console: Console) -> None:
    """Pairwise agreement: names as headers; numbered headers when they do not fit; else one line each."""
    names = list(table_data)
    if len(names) < 2:
        return
    cells: dict[tuple[str, str], str] = {}
    for a in names:
        for b in names:
            cell = table_data[a][b]
            if a == b or not cell["both"]:
                cells[(a, b)] = "-" if a == b else ""
            else:
                pct = 100.0 * cell["agree"] / cell["both"]
                style = "green" if pct == 100 else ("yellow" if pct >= 90 else "red")
                cells[(a, b)] = f"[{style}]{pct:.0f}[/{style}]"

    def table(numbered: bool) -> Table:
        t = Table(show_edge=False, pad_edge=False, header_style="bold")
        t.add_column("", no_wrap=True)
        for i, n in enumerate(names, 1):
            t.add_column(str(i) if numbered else n, justify="right", no_wrap=True)
        for i, a in enumerate(names, 1):
            t.add_row(Text(f"{i} {a}" if numbered else a), *[cells[(a, b)] for b in names])
        return t

    console.print(Text("pairwise agreement (% of cases both ran)", style="bold"))
    best = fitted(console, table(False), table(True))
    if best is not None:
        console.print(best)
        return
    for a in names:  # stacked
        parts = ", ".join(f"{escape(printable(b))} {cells[(a, b)]}" for b in names if b != a and cells[(a, b)])
        console.print(f"{escape(printable(a))}: {parts}")


def chosen_findings(findings: list[dict[str, Any]], top: int = TOP_FINDINGS) -> list[dict[str, Any]]:
    """The findings to list: the worst of each backend first, so none is crowded out, then the rest."""
    firsts: dict[str, dict[str, Any]] = {}
    for f in findings:
        firsts.setdefault(f["backend"], f)
    chosen = list(firsts.values())
    chosen += [f for f in findings if f not in chosen][: max(0, top - len(chosen))]
    order = {id(f): i for i, f in enumerate(findings)}
    return sorted(chosen, key=lambda f: order[id(f)])


def shell_lines(command: str, width: int) -> list[str]:
    """A command cut at spaces into lines of at most `width`, each but the last ending in ` \\`,
    so that a copy of all of them still pastes as one command (a word longer than the width
    keeps a line of its own)."""
    lines: list[str] = []
    line = ""
    for word in command.split(" "):
        if line and len(line) + 1 + len(word) + 2 > width:
            lines.append(line + " \\")
            line = "  " + word
        else:
            line = f"{line} {word}" if line else word
    return lines + [line]


def print_findings(summary: dict[str, Any], console: Console) -> None:
    """One paragraph per finding: what, where, how many, and the command that reproduces it."""
    findings = summary.get("findings") or []
    if not findings:
        return
    total = sum(f["count"] for f in findings)
    console.print(Text(f"findings: {len(findings)} behaviour(s) behind {total} disagreeing record(s)", style="bold"))
    shown = chosen_findings(findings)
    for i, f in enumerate(shown, 1):
        tag = "expected" if f.get("expected") else f["status"]
        line = Text(f"{i:>2}. ")
        line.append(f"[{tag}] ", style="yellow" if f.get("expected") else _STYLE.get(f["status"], ""))
        line.append(printable(f["summary"]) + f" ({f['count']} record(s))")
        if f.get("link"):
            line.append(f" {printable(f['link'])}", style="dim")
        console.print(line)
        command = printable(f.get("reproduce") or f"minimal case {f['minimal_case']}")
        for part in shell_lines(command, console.width - 4):
            console.print(Text("    " + part, style="dim"), soft_wrap=True)
    if len(shown) < len(findings):
        console.print(Text(f"    ... and {len(findings) - len(shown)} more in findings.json", style="dim"))
    for entry in summary.get("unmatched_expectations") or []:
        console.print(Text(f"warning: expectation {printable(entry['entry'])} (case {printable(entry['case'])!r}) "
                           "matched no record", style="yellow"))
