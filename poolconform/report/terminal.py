"""The terminal report: backends x statuses, the worst disagreements, pairwise agreement."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from poolconform.results import FAILING, STATUSES

_STYLE = {"pass": "green", "mismatch": "red", "shape-mismatch": "red", "unsupported": "dim",
          "error": "magenta", "crash": "magenta", "timeout": "magenta"}


def print_summary(summary: dict[str, Any], console: Console, title: str = "poolconform") -> None:
    """Print the summary as tables a person reads in a few seconds."""
    table = Table(title=f"{title}: {summary['cases']} cases, {summary['records']} records", title_justify="left")
    table.add_column("backend")
    table.add_column("version", style="dim")
    for status in STATUSES:
        table.add_column(status, justify="right", style=_STYLE[status])
    for name, counts in summary["by_backend"].items():
        info = summary["backends"].get(name, {})
        table.add_row(name, info.get("version") or "", *[str(counts.get(s, 0) or "") for s in STATUSES])
    console.print(table)
    missing = {n: i["unavailable"] for n, i in summary["backends"].items() if i.get("unavailable")}
    for name, reason in missing.items():
        console.print(f"[dim]not run: {name}: {reason}[/dim]")
    if summary["worst"]:
        worst = Table(title="worst disagreements", title_justify="left")
        for col in ("case", "backend", "status", "max ULP", "detail"):
            worst.add_column(col, overflow="fold")
        for r in summary["worst"][:10]:
            ulp = r.get("max_ulp")
            status = f"{r['status']} (expected)" if r.get("expected") else r["status"]
            worst.add_row(r["case"], r["backend"], status, "" if ulp is None else f"{float(ulp):.3g}",
                          (r.get("detail") or "")[:160])
        console.print(worst)
    _print_agreement(summary["agreement"], console)
    if summary.get("dropped"):
        total = sum(summary["dropped"].values())
        reasons = ", ".join(f"{n} {why}" for why, n in summary["dropped"].items())
        console.print(f"dropped {total} impossible combinations: {reasons}")
    console.print(verdict(summary))


def verdict(summary: dict[str, Any]) -> str:
    """One line that says what the exit status will be, and why."""
    failing = sum(summary["counts"].get(s, 0) for s in FAILING)
    unexpected = summary["unexpected"]
    expected = failing - unexpected
    if unexpected:
        tail = f" ({expected} more expected)" if expected else ""
        return f"[bold red]verdict: {unexpected} unexpected disagreement(s){tail}: exit 1[/bold red]"
    if expected:
        return f"[bold green]verdict: no unexpected disagreement ({expected} expected, declared in --expectations): exit 0[/bold green]"
    return "[bold green]verdict: every backend that ran agrees with the oracle: exit 0[/bold green]"


def _print_agreement(table_data: dict[str, dict[str, dict[str, int]]], console: Console) -> None:
    names = list(table_data)
    if len(names) < 2:
        return
    table = Table(title="pairwise agreement (% of cases both ran)", title_justify="left")
    table.add_column("")
    for n in names:
        table.add_column(n, justify="right")
    for a in names:
        row = []
        for b in names:
            cell = table_data[a][b]
            if a == b or not cell["both"]:
                row.append("-" if a == b else "")
            else:
                pct = 100.0 * cell["agree"] / cell["both"]
                style = "green" if pct == 100 else ("yellow" if pct >= 90 else "red")
                row.append(f"[{style}]{pct:.0f}[/{style}]")
        table.add_row(a, *row)
    console.print(table)
