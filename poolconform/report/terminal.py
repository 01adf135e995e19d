"""The terminal report: backends x statuses, the findings (every backend with a disagreement), agreement.

Every name and message from a record goes through printable(): a folder name can hold
terminal escapes, and rich markup characters are not interpreted (Text, not markup).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from poolconform.report.text import printable
from poolconform.results import FAILING, STATUSES

#: Findings listed in full (every backend with a disagreement gets at least one line).
TOP_FINDINGS = 12

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
        table.add_row(Text(printable(name)), Text(printable(info.get("version") or "")),
                      *[str(counts.get(s, 0) or "") for s in STATUSES])
    console.print(table)
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
    if summary.get("partial"):  # `merge --allow-partial`: never read as a whole run
        from rich.markup import escape

        return f"[bold red]verdict: PARTIAL report ({escape('; '.join(summary['partial']['missing']))}): exit 1[/bold red]"
    if summary.get("interrupted"):  # Ctrl-C: what finished, not a verdict on the run
        from rich.markup import escape

        return f"[bold yellow]verdict: none, INTERRUPTED ({escape(summary['interrupted'])}): exit 130[/bold yellow]"
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


def chosen_findings(findings: list[dict[str, Any]], top: int = TOP_FINDINGS) -> list[dict[str, Any]]:
    """The findings to list: the worst of each backend first, so none is crowded out, then the rest."""
    firsts: dict[str, dict[str, Any]] = {}
    for f in findings:
        firsts.setdefault(f["backend"], f)
    chosen = list(firsts.values())
    chosen += [f for f in findings if f not in chosen][: max(0, top - len(chosen))]
    order = {id(f): i for i, f in enumerate(findings)}
    return sorted(chosen, key=lambda f: order[id(f)])


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
        console.print(Text("    " + printable(f.get("reproduce") or f"minimal case {f['minimal_case']}"), style="dim"))
    if len(shown) < len(findings):
        console.print(Text(f"    ... and {len(findings) - len(shown)} more in findings.json", style="dim"))
    for entry in summary.get("unmatched_expectations") or []:
        console.print(Text(f"warning: expectation {printable(entry['entry'])} (case {printable(entry['case'])!r}) "
                           "matched no record", style="yellow"))
