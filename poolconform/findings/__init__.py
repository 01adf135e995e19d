"""Findings: the few behaviours behind many disagreeing records, each with a minimal case.

`build_findings` triages records (poolconform/findings/triage.py) and adds to each
finding a ready-to-paste `[[expect]]` entry; `shrink_findings` (shrink.py) replaces each
`minimal_case` by a smaller case its backend still gets wrong. findings.json holds them.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from poolconform.findings.triage import triage, unsupported_groups
from poolconform.results import PSEUDO_BACKENDS, Record

#: Exact ids listed in a snippet when no glob names the members alone.
MAX_EXACT = 6

__all__ = ["build_findings", "expect_snippet", "triage", "unsupported_groups"]


def _common_glob(ids: list[str]) -> str:
    """`A-*t1-*t2-*` from the dash-separated tokens every id holds, in the first id's order."""
    shared = [t for t in ids[0].split("-") if all(t in i.split("-") for i in ids)]
    if not shared:
        return "*"
    glob = shared[0] if all(i.split("-")[0] == shared[0] for i in ids) else "*" + shared[0]
    for token in shared[1:]:
        glob += "-*" + token
    return glob if all(i.split("-")[-1] == shared[-1] for i in ids) else glob + "-*"


def expect_snippet(finding: dict[str, Any], others: int) -> str:
    """A TOML `[[expect]]` entry (or a few) covering exactly this finding's cases on its
    backend; `others`: how many more of that backend's cases its glob names (outside_counts)."""
    members = finding["cases"]
    glob = _common_glob(members)
    if others == 0:
        globs = [glob]
    elif len(members) <= MAX_EXACT:
        globs = list(members)
    else:
        globs = [glob]
    lines = []
    for g in globs:
        lines += ["[[expect]]", f"case = {json.dumps(g)}", f"backend = {json.dumps(finding['backend'])}",
                  f"status = {json.dumps(finding['status'])}", f"reason = {json.dumps(finding['summary'])}"]
        lines += _looks(finding)
        if finding.get("link"):
            lines.append(f"link = {json.dumps(finding['link'])}")
        else:
            lines.append('# link = "https://github.com/OWNER/REPO/issues/N"')
        if len(globs) == 1 and others:
            lines.append(f"# this glob also names {others} case(s) outside the finding: narrow it if they must stay gated")
        lines.append("")
    return "\n".join(lines)


def _looks(finding: dict[str, Any]) -> list[str]:
    """What pins the entry to this disagreement, so a worse one fails again: the worst ULP of
    a values mismatch, or the kind of a NaN mismatch (README "Known disagreements")."""
    if finding["status"] != "mismatch":
        return []
    if finding.get("max_ulp") is not None:
        worst = finding["max_ulp"]
        return [f"max_ulp = {int(worst) if float(worst).is_integer() else worst}"
                "  # the worst this run saw: a larger error, a NaN, a wrong dtype or index fails again"]
    if finding["signature"] in ("NaN dropped", "NaN produced"):
        return [f"detail = {json.dumps(finding['signature'] + ':*')}"]
    return []


def reproduce_command(finding: dict[str, Any]) -> str:
    """The `explain` line that shows a finding's minimal case, quoted for a shell: backend names
    such as `onnx2tf->litert` hold a `>` that would otherwise redirect. A backend that ran in
    its own environment is named with it (`--backend-python`), or explain would run another
    install of the framework, or none."""
    import shlex

    from poolconform.case_ids import parse_case_id
    from poolconform.errors import CaseError

    backend, case = finding["backend"], finding["minimal_case"]
    try:
        parse_case_id(case)
        is_id = True
    except CaseError:
        is_id = False
    if backend in PSEUDO_BACKENDS or not is_id:
        # check's stored data, or a folder whose model no case id names: explain cannot run
        # it; check can, from the folder that holds the test directory, or from the ONNX
        # project's own suite (its directories are cached, not in the current folder)
        folder = f"test_{case}" if is_id and not case.startswith("test_") else case
        if finding.get("suite") == "onnx":  # --cases names the directory, every data set of it
            directory = re.sub(r"/test_data_set_[0-9]+$", "", case)
            line = f"poolconform check --onnx-suite --cases {shlex.quote(directory)}"
        elif finding.get("path"):  # where check found it: runs from any folder
            line = f"poolconform check {shlex.quote(finding['path'])}"
            if finding.get("against") == "stored":
                line += " --against stored"
                if finding.get("stored_atol") is not None:  # judged within a tolerance: the same one
                    line += f" --atol {finding['stored_atol']!r} --rtol {finding.get('stored_rtol') or 0.0!r}"
        else:
            line = f"poolconform check {shlex.quote(folder)}"
        return line if backend in PSEUDO_BACKENDS else f"{line} --backends {shlex.quote(backend)}"
    line = f"poolconform explain {shlex.quote(case)} --backends {shlex.quote(backend)}"
    if finding.get("python"):
        line += f" --backend-python {shlex.quote(backend + '=' + finding['python'])}"
    return line


def build_findings(records: Sequence[Record], pythons: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Every disagreement finding (worst first), each with its `expect` snippet; `pythons`
    names the interpreter of each backend that ran in its own environment (kept in the
    finding as `python`, for shrinking and the reproduce line)."""
    findings = triage(records)
    pythons = pythons or {}
    others = outside_counts(findings, records)
    for f, outside in zip(findings, others):
        if pythons.get(f["backend"]):
            f["python"] = pythons[f["backend"]]
        f["reproduce"] = reproduce_command(f)
        f["expect"] = expect_snippet(f, outside)
    return findings


def outside_counts(findings: list[dict[str, Any]], records: Iterable[Record]) -> list[int]:
    """Per finding, how many records of its backend its `expect` glob names that are not its
    own (one record per case and backend, as a run has). One pass, keeping no case list: a
    large run's records are read back from a file (poolconform/record_table.py)."""
    counts = [0] * len(findings)
    by_backend: dict[str, list[tuple[int, re.Pattern[str], frozenset[str]]]] = {}
    for i, f in enumerate(findings):
        glob = re.compile(fnmatch.translate(_common_glob(f["cases"])))  # matched as fnmatch.fnmatchcase does
        by_backend.setdefault(f["backend"], []).append((i, glob, frozenset(f["cases"])))
    if not by_backend:
        return counts
    for r in records:
        for i, glob, members in by_backend.get(r["backend"], ()):
            case = r["case"]
            if case not in members and glob.match(case):
                counts[i] += 1
    return counts


def refresh(finding: dict[str, Any]) -> None:
    """Recompute the fields that follow `minimal_case` after shrinking (the `expect` snippet
    follows the finding's cases, which shrinking leaves as they are)."""
    finding["reproduce"] = reproduce_command(finding)
