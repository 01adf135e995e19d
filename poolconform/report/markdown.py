"""summary.md: the run in a few Markdown tables, for pull requests and $GITHUB_STEP_SUMMARY."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from poolconform.report.headline import headline, nothing_checked
from poolconform.report.text import printable
from poolconform.results import FAILING, STATUSES, Record, numeric



def _cell(value: object) -> str:
    """A table cell: one line, pipes escaped, long text cut."""
    text = " ".join(printable(value).split()).replace("|", "\\|")
    return text if len(text) <= 140 else text[:139] + "…"


def _table(header: list[str], rows: list[list[object]], right_from: int = 1) -> list[str]:
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def _code(value: object) -> str:
    """An id as inline code (a backtick in it would end the code span: made a quote)."""
    return "`" + _cell(value).replace("`", "'") + "`"


def _findings(summary: dict[str, Any]) -> list[str]:
    """The findings table that leads the page: every finding, its count and minimal case."""
    findings = summary.get("findings") or []
    if not findings:
        return []
    total = sum(f["count"] for f in findings)
    lines = [f"### Findings ({len(findings)} behaviour(s) behind {total} disagreeing record(s))", ""]
    rows = []
    for f in findings:
        status = f["status"] + (" (expected)" if f.get("expected") else "")
        summary_text = f["summary"] + (f" ({f['link']})" if f.get("link") else "")
        rows.append([summary_text, status, f["count"], _code(f["minimal_case"])])
    lines += _table(["finding", "status", "records", "minimal case"], rows, right_from=2)
    for entry in summary.get("unmatched_expectations") or []:
        lines.append(f"\n- warning: expectation {_cell(entry['entry'])} ({_code(entry['case'])}) matched no record")
    return lines + [""]


def disagreement_order(record: Record) -> tuple:
    """Unexpected before expected, then the largest ULP error first, then by name."""
    ulp = numeric(record.get("max_ulp")) if record["status"] == "mismatch" else None
    return (bool(record.get("expected")), -(ulp if ulp is not None else float("inf")), record["status"],
            record["backend"], record["case"])


def verdict(summary: dict[str, Any]) -> str:
    """The first line a reviewer reads, with the terminal's warning about an expectation that
    excuses every record of a backend (it could hide any regression there)."""
    line = _verdict(summary)
    if summary.get("catch_all_expectations"):
        from poolconform.expectations import catch_all_line

        line += f"; **warning**: {_cell(catch_all_line(summary['catch_all_expectations']))}"
    return line


def _verdict(summary: dict[str, Any]) -> str:
    failing = sum(summary["counts"].get(s, 0) for s in FAILING)
    expected = failing - summary["unexpected"]
    scope = f"{summary['cases']} cases, {summary['records']} records"
    kind = headline(summary)
    if kind == "partial":
        return f"**poolconform: PARTIAL**: {_cell('; '.join(summary['partial']['missing']))} ({scope})"
    if kind == "interrupted":
        return f"**poolconform: INTERRUPTED**: {_cell(summary['interrupted'])} ({scope})"
    if kind == "nothing-verified":
        return (f"**poolconform: NOTHING VERIFIED**: {_cell(summary['nothing_verified'])}; no backend could "
                f"express the selected cases ({scope})")
    if kind == "fail":
        return f"**poolconform: FAIL**: {summary['unexpected']} unexpected disagreement(s) ({scope})"
    if kind == "nothing-checked":
        return f"**poolconform: NOTHING CHECKED**: {_cell(nothing_checked(summary))} ({scope})"
    note = f", {expected} expected disagreement(s)" if expected else ""
    return f"**poolconform: OK**: no unexpected disagreement ({scope}{note})"


def _scan_nodes(records: Sequence[Record], summary: dict[str, Any]) -> list[str]:
    """`poolconform scan`: one row per model node, its case and the backends that disagree."""
    scan = summary.get("scan")
    if not isinstance(scan, dict) or not scan.get("nodes"):
        return []
    failing: dict[str, list[str]] = {}
    for r in records:
        if r["status"] in FAILING:
            failing.setdefault(r["case"], []).append(r["backend"] + (" (expected)" if r.get("expected") else ""))
    rows = [[_code(n["node"]), n["config"], _code(n["case"]),
             ", ".join(sorted(failing.get(n["case"], []))) or ("not checked" if n.get("problem") else "none")]
            for n in scan["nodes"]]
    lines = [f"### Pooling nodes of {_code(scan.get('model', ''))}", ""]
    lines += _table(["node", "configuration", "case", "disagrees on"], rows, right_from=99)
    source = scan.get("source") or {}
    lines += [f"- exporter changed layer `{_cell(c['layer'])}` ({_cell(c['kind'])}): became {_cell(c['became'])}"
              for c in source.get("changed", [])]
    return lines + [""]


def render_markdown(records: Sequence[Record], summary: dict[str, Any]) -> str:
    """The whole summary.md text."""
    lines = [f"## poolconform {summary['tool']['version']}", "", verdict(summary), ""]
    lines += _findings(summary)
    lines += _scan_nodes(records, summary)
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
        lines += _table(["case", "backend", "reason", "link"],
                        [[_code(f["case"]), f["backend"], f["reason"], f.get("link", "")] for f in fixed], right_from=99)
    if summary.get("dropped"):
        total = sum(summary["dropped"].values())
        reasons = ", ".join(f"{n} {why}" for why, n in summary["dropped"].items())
        lines += ["", f"Dropped {total} impossible combinations: {_cell(reasons)}."]
    return "\n".join(lines) + "\n"
