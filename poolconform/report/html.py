"""report.html: one self-contained page (inline CSS and SVG, no scripts, no images to fetch).

Figures are inline SVG written here, so their text is real text at a readable size and the
page stays small: per op a kernel x stride heatmap per backend, each cell filled by its
pass fraction and marked with its worst status, and the error of averaging ops as a
fraction of their tolerance against window size (1.0 = at the bound).
Tables (backends, agreement, findings, disagreements) stay HTML so they can be searched.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from html import escape
from typing import Any

from poolconform.case import AVERAGING_OPS
from poolconform.report.text import printable
from poolconform.results import FAILING, STATUSES, Record, numeric

#: Marker colour of a heatmap cell's worst status (and the legend's).
STATUS_COLORS = {
    "pass": "#2f8a4e",
    "expected": "#d9a21b",
    "unsupported": "#9a9a9a",
    "mismatch": "#d6453d",
    "shape-mismatch": "#8e1b16",
    "error": "#8a4fb5",
    "crash": "#5b2a86",
    "timeout": "#b07ad6",
}
#: Text colour for a status written on white (the amber and grey fills are too light for text).
TEXT_COLORS = STATUS_COLORS | {"expected": "#7a5600", "unsupported": "#5f5f5f"}
#: Worst first: a cell's marker takes the colour of its worst record.
SEVERITY = ("crash", "timeout", "error", "shape-mismatch", "mismatch", "expected", "unsupported", "pass")
#: Heatmap cell size in CSS pixels; text is 12 px.
CELL_W, CELL_H = 46, 24
#: Lines of the error plot, one colour per backend.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
#: The error plot's y range (error / tolerance, log scale); 0 is drawn at the floor.
RATIO_FLOOR, RATIO_CEIL = 1e-4, 1e2


def cell_status(record: Record) -> str:
    """The heatmap category of one record (an excused disagreement is "expected")."""
    if record["status"] in FAILING and record.get("expected"):
        return "expected"
    return record["status"]


def _axis_label(values: list[int] | None) -> str:
    if not values:
        return "?"
    return str(values[0]) if len(set(values)) == 1 else "x".join(str(v) for v in values)


def _label_key(label: str) -> tuple:
    return tuple(int(p) if p.isdigit() else 10**9 for p in label.split("x"))


def window_size(record: Record) -> int | None:
    """Elements in one window: the kernel product, or the input's spatial size for global ops."""
    params = record.get("params") or {}
    dims = params.get("kernel")
    if dims is None and str(record.get("op", "")).startswith("Global"):
        dims = (params.get("input_shape") or [])[2:]
    if not dims:
        return None
    return math.prod(int(d) for d in dims)


def _t(value: object) -> str:
    """Text for SVG/HTML: control characters made visible, markup escaped."""
    return escape(printable(value))


def pass_fill(fraction: float) -> str:
    """A cell's fill: from near-white (nothing passed) to green (everything passed)."""
    low, high = (0xF3, 0xF3, 0xF3), (0x2F, 0x8A, 0x4E)
    return "#" + "".join(f"{round(a + (b - a) * fraction):02x}" for a, b in zip(low, high))


def grid_svg(title: str, rows: list[str], cols: list[str], cells: Mapping[tuple[str, str], Counter[str]],
             row_name: str = "", col_name: str = "") -> str:
    """One heatmap panel: each cell reads passed/records, is filled by the pass fraction, and
    carries a corner triangle in the colour of its worst status when that is not a pass."""
    left = 8 + 7 * max([len(r) for r in rows] + [len(row_name)])
    cell_w = max([CELL_W] + [8 + 7 * len(c) for c in cols])
    top = 46 if title else 22
    width = max(left + cell_w * len(cols) + 4, 8 + 7 * len(title))
    height = top + CELL_H * len(rows) + 4
    out = [f'<svg class="grid" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="{_t(title)}">',
           f'<text x="0" y="13" font-weight="600">{_t(title)}</text>' if title else "",
           f'<text x="{left}" y="28" class="axis">{_t(col_name)} →</text>' if col_name else "",
           f'<text x="0" y="28" class="axis">{_t(row_name)} ↓</text>' if row_name else ""]
    for j, c in enumerate(cols):
        out.append(f'<text x="{left + cell_w * j + cell_w / 2}" y="{top - 5}" text-anchor="middle" class="tick">{_t(c)}</text>')
    for i, r in enumerate(rows):
        y = top + CELL_H * i
        out.append(f'<text x="{left - 6}" y="{y + 16}" text-anchor="end" class="tick">{_t(r)}</text>')
        for j, c in enumerate(cols):
            x = left + cell_w * j
            statuses = cells.get((r, c))  # records per status, in the order first seen
            if not statuses:
                out.append(f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{CELL_H - 2}" fill="#fff" stroke="#e2e2e2"/>')
                continue
            passed, worst, total = statuses["pass"], min(statuses, key=SEVERITY.index), sum(statuses.values())
            fraction = passed / total
            counts = ", ".join(f"{n} {s}" for s, n in statuses.most_common())
            out.append(f'<g><title>{_t(r)} / {_t(c)}: {counts}</title>'
                       f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{CELL_H - 2}" fill="{pass_fill(fraction)}"/>')
            if worst != "pass":
                out.append(f'<path d="M{x + cell_w - 14} {y}h12v12z" fill="{STATUS_COLORS[worst]}"/>')
            color = "#fff" if fraction > 0.55 else "#222"
            out.append(f'<text x="{x + (cell_w - 2) / 2 - (3 if worst != "pass" else 0)}" y="{y + 16}" '
                       f'text-anchor="middle" fill="{color}">{passed}/{total}</text></g>')
    out.append("</svg>")
    return "".join(part for part in out if part)


class _Heatmap:
    """One windowed op's heatmap, gathered record by record: statuses per (kernel, stride)
    cell and backend."""

    def __init__(self, backends: list[str]) -> None:
        self.cells: dict[str, dict[tuple[str, str], Counter[str]]] = {b: defaultdict(Counter) for b in backends}
        self.kernels: set[str] = set()
        self.strides: set[str] = set()

    def add(self, record: Record, params: dict) -> None:
        k, s = _axis_label(params.get("kernel")), _axis_label(params.get("strides"))
        self.kernels.add(k)
        self.strides.add(s)
        self.cells[record["backend"]][(k, s)][cell_status(record)] += 1

    def panels(self) -> list[str]:
        """Kernel (rows) x stride (columns), one panel per backend that has a cell."""
        rows, cols = sorted(self.kernels, key=_label_key), sorted(self.strides, key=_label_key)
        return [grid_svg(b, rows, cols, cells, row_name="kernel", col_name="stride")
                for b, cells in self.cells.items() if cells]


def global_panel(records: Iterable[Record], ops: list[str], backends: list[str]) -> str:
    """Global ops have no window to vary: one cell per (backend, op)."""
    cells: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for r in records:
        cells[(r["backend"], r["op"])][cell_status(r)] += 1
    short = {op: op.replace("Global", "").replace("Pool", "") for op in ops}  # the heading names them
    return grid_svg("", backends, [short[op] for op in ops], {(b, short[op]): v for (b, op), v in cells.items()})


def ratio_points(records: Sequence[Record]) -> dict[str, dict[int, float]]:
    """Per backend and window size, the largest max_abs_err / atol of the averaging ops."""
    points: dict[str, dict[int, float]] = defaultdict(dict)
    for r in records:
        if r.get("op") not in AVERAGING_OPS or r["status"] not in ("pass", "mismatch"):
            continue
        err, atol, size = numeric(r.get("max_abs_err")), numeric(r.get("atol")), window_size(r)
        if err is None or atol is None or size is None or not math.isfinite(err):
            continue
        ratio = err / atol if atol > 0 else (0.0 if err == 0 else RATIO_CEIL)
        points[r["backend"]][size] = max(ratio, points[r["backend"]].get(size, 0.0))
    return points


def ratio_svg(points: dict[str, dict[int, float]]) -> str | None:
    """Error as a fraction of the tolerance against window size, log-log, the bound drawn at 1."""
    if not points:
        return None
    sizes = sorted({s for p in points.values() for s in p})
    x0, x1 = math.log10(min(sizes)), math.log10(max(sizes))
    if x1 - x0 < 1:
        x1 = x0 + 1
    left, top, w, h = 58, 10, 640, 250
    width, height = left + w + 20, top + h + 44
    y0, y1 = math.log10(RATIO_FLOOR), math.log10(RATIO_CEIL)

    def px(size: int) -> float:
        return round(left + w * (math.log10(size) - x0) / (x1 - x0), 1)

    def py(ratio: float) -> float:
        v = min(max(ratio, RATIO_FLOOR), RATIO_CEIL)
        return round(top + h * (y1 - math.log10(v)) / (y1 - y0), 1)

    out = [f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img" aria-label="error as a fraction of the tolerance">',
           f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="#fafafa" stroke="#ccc"/>',
           f'<rect x="{left}" y="{top}" width="{w}" height="{py(1.0) - top}" fill="#fbe0de" opacity="0.6"/>']
    for e in range(int(y0), int(y1) + 1):
        y = py(10.0**e)
        label = "1 (bound)" if e == 0 else f"1e{e}"
        out.append(f'<line x1="{left}" x2="{left + w}" y1="{y}" y2="{y}" stroke="{"#d6453d" if e == 0 else "#e4e4e4"}"/>'
                   f'<text x="{left - 4}" y="{y + 4}" text-anchor="end" class="tick">{"1" if e == 0 else label}</text>')
    for tick in (m * 10**e for e in range(math.floor(x0), math.ceil(x1) + 1) for m in (1, 2, 5)):
        if x0 <= math.log10(tick) <= x1 and (x1 - x0 <= 3 or str(tick).startswith("1")):
            x = px(tick)
            out.append(f'<line x1="{x}" x2="{x}" y1="{top}" y2="{top + h}" stroke="#e4e4e4"/>'
                       f'<text x="{x}" y="{top + h + 16}" text-anchor="middle" class="tick">{tick:g}</text>')
    out.append(f'<text x="{left + w / 2}" y="{height - 6}" text-anchor="middle" class="axis">window size (elements averaged, log)</text>'
               f'<text x="12" y="{top + h / 2}" transform="rotate(-90 12 {top + h / 2})" text-anchor="middle" class="axis">error / tolerance (log)</text>'
               f'<text x="{left + 6}" y="{top + 14}" class="axis">above 1: outside the tolerance</text>')
    for i, backend in enumerate(sorted(points)):
        color = PALETTE[i % len(PALETTE)]
        xs = sorted(points[backend])
        path = " ".join(f"{'M' if k == 0 else 'L'}{px(x)} {py(points[backend][x])}" for k, x in enumerate(xs))
        out.append(f'<g><title>{_t(backend)}</title><path d="{path}" fill="none" stroke="{color}" stroke-width="1.5" opacity="0.85"/>')
        out += [f'<circle cx="{px(x)}" cy="{py(points[backend][x])}" r="3" fill="{color}"><title>{_t(backend)}: window {x}, '
                f'{points[backend][x]:.3g} of the tolerance</title></circle>' for x in xs]
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def legend(points: dict[str, dict[int, float]]) -> list[dict[str, str]]:
    """The error plot's legend, in the plot's colour order."""
    return [{"name": b, "color": PALETTE[i % len(PALETTE)]} for i, b in enumerate(sorted(points))]


def agreement_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The agreement matrix as rows of (text, css colour) cells for the template."""
    table = summary.get("agreement") or {}
    rows = []
    for a in table:
        cells = []
        for b in table:
            cell = table[a][b]
            if a == b or not cell["both"]:
                cells.append({"text": "-" if a == b else "", "color": "#f4f4f4", "title": ""})
                continue
            pct = 100.0 * cell["agree"] / cell["both"]
            color = "#bfe5c9" if pct == 100 else ("#f6e3a1" if pct >= 90 else "#f3b6b1")
            cells.append({"text": f"{pct:.0f}%", "color": color, "title": f"{cell['agree']} of {cell['both']}"})
        rows.append({"name": a, "cells": cells})
    return rows


def _finalize(value: object) -> object:
    """Every string a template prints goes through printable(), except the SVG built here
    (already escaped, marked safe)."""
    import markupsafe

    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        return printable(value)
    return value


def render_html(records: Sequence[Record], summary: dict[str, Any]) -> str:
    """The whole report.html text."""
    import jinja2

    names: set[str] = set()
    op_names: set[str] = set()
    expected_by_backend: Counter[str] = Counter()
    for r in records:  # one pass for what is asked of every record
        names.add(r["backend"])
        op_names.add(r.get("op") or "?")
        if r.get("expected"):
            expected_by_backend[r["backend"]] += 1
    backends, ops = sorted(names), sorted(op_names)
    # One pass for every windowed op's heatmap: a large run's records are read back from a file.
    windowed = {op: _Heatmap(backends) for op in ops if not op.startswith("Global")}
    for r in records:
        heatmap, params = windowed.get(r.get("op") or "?"), r.get("params") or {}
        if heatmap is not None and params.get("kernel"):
            heatmap.add(r, params)
    heatmaps = [{"op": op, "panels": panels} for op, heatmap in windowed.items() if (panels := heatmap.panels())]
    global_ops = [op for op in ops if op.startswith("Global")]
    if global_ops:
        heatmaps.append({"op": ", ".join(global_ops),
                         "panels": [global_panel((r for r in records if r.get("op") in global_ops), global_ops,
                                                 backends)]})
    from poolconform.report.markdown import disagreement_order

    failing = [0]

    def counted(rs: Iterable[Record]) -> Iterator[Record]:
        for r in rs:
            if r["status"] in FAILING:
                failing[0] += 1
                yield r

    open_limit = 200
    # the worst few hundred, not every one (a broken backend's records are all disagreements):
    # nsmallest keeps the order sorted() gives, ties included
    disagreements = heapq.nsmallest(open_limit, counted(records), key=disagreement_order)
    points = ratio_points(records)
    env = jinja2.Environment(loader=jinja2.PackageLoader("poolconform", "report/templates"),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True,
                             finalize=_finalize)
    env.filters["ulp"] = lambda v: "" if v is None else f"{float(v):.3g}"
    from poolconform.expectations import catch_all_line
    from poolconform.report.headline import headline, nothing_checked

    return env.get_template("report.html.j2").render(
        summary=summary,
        headline=headline(summary),
        catch_all=catch_all_line(summary.get("catch_all_expectations") or []),
        nothing_checked=nothing_checked(summary),
        backends=backends,
        heatmaps=heatmaps,
        ratio_svg=ratio_svg(points),
        ratio_legend=legend(points),
        agreement=agreement_rows(summary),
        disagreements=disagreements,
        disagreement_count=failing[0],
        finding_records=_finding_records(summary, records),
        colors=STATUS_COLORS,
        text_colors=TEXT_COLORS,
        pass_fill=pass_fill,
        statuses=[s for s in STATUSES if s == "pass" or summary["counts"].get(s)],  # the rest are all 0
        backend_names=sorted(set(backends) | set(summary.get("backends") or {})),
        expected_by_backend=dict(expected_by_backend),
        expected_count=sum(expected_by_backend.values()),
        open_limit=open_limit,
    )


def _finding_records(summary: dict[str, Any], records: Sequence[Record], limit: int = 50) -> list[list[Record]]:
    """Per finding (same order), its first `limit` records, for the rows that open under it."""
    findings = summary.get("findings") or []
    wanted = {(c, f["backend"]) for f in findings for c in f["cases"][:limit]}
    by_key = {key: r for r in records if (key := (r["case"], r["backend"])) in wanted}
    return [[by_key[(c, f["backend"])] for c in f["cases"][:limit] if (c, f["backend"]) in by_key]
            for f in findings]
