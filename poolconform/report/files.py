"""The reports under --out besides summary.json: findings.json, report.html, junit.xml, summary.md.

Findings lead every report. Before writing, each finding's minimal case is shrunk by
re-running its backend (a bounded number of seconds, POOLCONFORM_SHRINK_SECONDS, 0 to
skip); summary.json is then rewritten so it carries the same minimal cases.
Each file is written atomically (readers see the old file or the new one), and summary.md
is appended to $GITHUB_STEP_SUMMARY when GitHub Actions provides one.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from poolconform import environment
from poolconform.errors import INTERRUPTED_STATUS
from poolconform.findings import refresh
from poolconform.findings.shrink import BUDGET_SECONDS, shrink_findings
from poolconform.memory import trim_heap
from poolconform.report.html import render_html
from poolconform.report.junit import junit_parts
from poolconform.report.markdown import render_markdown
from poolconform.results import Record, write_atomic, write_json

FINDINGS_FILE = "findings.json"


def shrink_budget() -> float:
    """Seconds shrinking may take: POOLCONFORM_SHRINK_SECONDS, or the default."""
    return environment.seconds(environment.SHRINK_SECONDS, BUDGET_SECONDS)


def write_all(out: Path, records: Sequence[Record], summary: dict, stop: threading.Event | None = None) -> None:
    """Write every file report for one run (summary.json is the pipeline's; rewritten here
    once the minimal cases are known). A Ctrl-C while shrinking (`stop` set) ends the
    shrinking at once, and the summary then says interrupted (exit status 130)."""
    findings = summary.get("findings") or []
    budget = shrink_budget()
    if findings and budget > 0 and not summary.get("interrupted") and not summary.get("partial"):
        shrink_findings(findings, records, log_dir=out / "logs", budget=budget, stop=stop)
        for finding in findings:
            refresh(finding)
        if stop is not None and stop.is_set():
            summary["interrupted"] = "stopped by Ctrl-C while shrinking the findings (every record had finished)"
            summary["exit_status"] = INTERRUPTED_STATUS
        write_json(out / "summary.json", summary)
    write_atomic(out / FINDINGS_FILE, json.dumps(findings + (summary.get("unsupported") or []), indent=2) + "\n")
    markdown = render_markdown(records, summary)
    write_atomic(out / "summary.md", markdown)
    # Each report is a pass over the records: each starts from the heap the last one freed,
    # handed back, so the peak is the largest pass's, not their sum (poolconform/memory.py).
    trim_heap()
    write_atomic(out / "junit.xml", junit_parts(records, findings=findings, summary=summary))
    trim_heap()
    write_atomic(out / "report.html", render_html(records, summary))
    trim_heap()
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        try:
            with open(step_summary, "a", encoding="utf-8") as f:
                f.write(markdown + "\n")
        except OSError as exc:  # the reports in --out are written: the variable is what is wrong
            print(f"poolconform: warning: GITHUB_STEP_SUMMARY={step_summary!r} cannot be appended to "
                  f"({exc.strerror or exc}); summary.md in {str(out)!r} holds the same text", file=sys.stderr)
