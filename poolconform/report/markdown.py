"""summary.md: the run in a few Markdown tables, for pull requests and $GITHUB_STEP_SUMMARY."""

from __future__ import annotations

from typing import Any

from poolconform.results import FAILING, STATUSES, Record, numeric

#: Disagreements listed in full; the rest are counted.
TOP = 10


def _cell(value: object) -> str:
    """A table cell: one line, pipes escaped, long text cut."""
    text = " ".join(str("" if value is None else value).split()).replace("|", "\\|")
    return text if len(text) <= 140 else text[:139] + "…"


def _table(header: list[str], rows: list[list[object]], right_from: int = 1) -> list[str]:
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def disagreement_order(record: Record) -> tuple:
    """Unexpected before expected, then the largest ULP error first, then by name."""
    ulp = numeric(record.get("max_ulp")) if record["status"] == "mismatch" else None
    return (bool(record.get("expected")), -(ulp if ulp is not None else float("inf")), record["status"],
            record["backend"], record["case"])


def verdict(summary: dict[str, Any]) -> str:
    """The first line a reviewer reads."""
    failing = sum(summary["counts"].get(s, 0) for s in FAILING)
    expected = failing - summary["unexpected"]
    scope = f"{summary['cases']} cases, {summary['records']} records"
    if summary["unexpected"]:
        return f"**poolconform: FAIL**: {summary['unexpected']} unexpected disagreement(s) ({scope})"
    note = f", {expected} expected disagreement(s)" if expected else ""
    return f"**poolconform: OK**: no unexpected disagreement ({scope}{note})"


def render_markdown(records: list[Record], summary: dict[str, Any]) -> str:
    """The whole summary.md text."""
    lines = [f"## poolconform {summary['tool']['version']}", "", verdict(summary), ""]
    expected_by_backend: dict[str, int] = {}
    for r in records:
        if r.get("expected"):
            expected_by_backend[r["backend"]] = expected_by_backend.get(r["backend"], 0) + 1
    rows = []
    for name, counts in summary["by_backend"].items():
        version = (summary["backends"].get(name) or {}).get("version") or ""
        rows.append([name, version, *[counts.get(s, 0) or "" for s in STATUSES], expected_by_backend.get(name, "")])
    lines += _table(["backend", "version", *STATUSES, "expected"], rows, right_from=2)
    missing = {n: i["unavailable"] for n, i in summary["backends"].items() if i.get("unavailable")}
    if missing:
        lines.append("")
        lines += [f"- not run: `{n}`: {_cell(why)}" for n, why in missing.items()]
    disagreements = sorted((r for r in records if r["status"] in FAILING), key=disagreement_order)
    if disagreements:
        lines += ["", f"### Top disagreements ({min(TOP, len(disagreements))} of {len(disagreements)})", ""]
        rows = []
        for r in disagreements[:TOP]:
            ulp = r.get("max_ulp")
            rows.append([f"`{r['case']}`", r["backend"], r["status"] + (" (expected)" if r.get("expected") else ""),
                         "" if ulp is None else f"{float(ulp):.3g}", r.get("detail") or ""])
        lines += _table(["case", "backend", "status", "max ULP", "detail"], rows, right_from=99)
    agreement = summary.get("agreement") or {}
    names = list(agreement)
    if len(names) >= 2:
        lines += ["", "### Pairwise agreement (% of cases both backends ran)", ""]
        rows = []
        for a in names:
            row: list[object] = [a]
            for b in names:
                cell = agreement[a][b]
                row.append("-" if a == b else (f"{100.0 * cell['agree'] / cell['both']:.0f}" if cell["both"] else ""))
            rows.append(row)
        lines += _table(["", *names], rows)
    fixed = summary.get("fixed") or []
    if fixed:
        lines += ["", "### Fixed expectations (remove these entries)", ""]
        lines += _table(["case", "backend", "reason"], [[f"`{f['case']}`", f["backend"], f["reason"]] for f in fixed],
                        right_from=99)
    if summary.get("dropped"):
        total = sum(summary["dropped"].values())
        reasons = ", ".join(f"{n} {why}" for why, n in summary["dropped"].items())
        lines += ["", f"Dropped {total} impossible combinations: {_cell(reasons)}."]
    return "\n".join(lines) + "\n"
