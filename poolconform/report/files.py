"""The reports under --out besides summary.json: report.html, junit.xml, summary.md.

Each is written atomically (readers see the old file or the new one), and summary.md
is appended to $GITHUB_STEP_SUMMARY when GitHub Actions provides one.
"""

from __future__ import annotations

import os
from pathlib import Path

from poolconform.report.html import render_html
from poolconform.report.junit import junit_xml
from poolconform.report.markdown import render_markdown
from poolconform.results import Record, write_atomic

REPORT_FILES = ("report.html", "junit.xml", "summary.md")


def write_all(out: Path, records: list[Record], summary: dict) -> None:
    """Write every file report for one run (summary.json is the pipeline's)."""
    markdown = render_markdown(records, summary)
    write_atomic(out / "summary.md", markdown)
    write_atomic(out / "junit.xml", junit_xml(records))
    write_atomic(out / "report.html", render_html(records, summary))
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a", encoding="utf-8") as f:
            f.write(markdown + "\n")
