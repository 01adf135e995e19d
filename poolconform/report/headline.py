"""Which verdict a run's reports state: one decision, read by the terminal, summary.md and
report.html, so that none of them can say OK where the exit status says otherwise."""

from __future__ import annotations

from typing import Any


def headline(summary: dict[str, Any]) -> str:
    """The kind of verdict of a summary: "partial" (`merge --allow-partial`, exit 1),
    "interrupted" (Ctrl-C, 130), "nothing-verified" (every record unsupported, 2), "fail"
    (unexpected disagreements, 1), "nothing-checked" (no record: a shard that no case of the
    matrix falls in, 0; merge judges the whole) or "ok" (0)."""
    if summary.get("partial"):
        return "partial"
    if summary.get("interrupted"):
        return "interrupted"
    if summary.get("nothing_verified"):
        return "nothing-verified"
    if summary.get("unexpected"):
        return "fail"
    if not summary.get("records"):
        return "nothing-checked"
    return "ok"


def nothing_checked(summary: dict[str, Any]) -> str:
    """Why a summary with no record checked nothing."""
    shard = summary.get("shard")
    if shard:
        return f"no case of the selection falls in shard {shard}; `merge` of every shard judges the whole run"
    return "no record: nothing was checked"
