"""report.html: one self-contained page (inline CSS, PNGs as data URIs, no scripts).

Figures are drawn with matplotlib's Agg backend: per op a kernel x stride heatmap per
backend coloured by status, and the ULP error of averaging ops against window size.
Tables (backends, agreement, findings, disagreements) stay HTML so they can be searched.
"""

from __future__ import annotations

import base64
import io
import math
from collections import Counter, defaultdict
from typing import Any

from poolconform.report.text import printable
from poolconform.results import FAILING, STATUSES, Record, numeric

#: Cell colour of a heatmap, from the worst status present in the cell.
STATUS_COLORS = {
    "pass": "#3a9d5d",
    "expected": "#e0b33a",
    "unsupported": "#c9c9c9",
    "mismatch": "#d6453d",
    "shape-mismatch": "#8e1b16",
    "error": "#8a4fb5",
    "crash": "#5b2a86",
    "timeout": "#b07ad6",
}
#: Worst first: a cell takes the colour of its worst record.
SEVERITY = ("crash", "timeout", "error", "shape-mismatch", "mismatch", "expected", "unsupported", "pass")
#: Ops whose outputs are sums, so rounding grows with the window.
AVERAGING_OPS = ("AveragePool", "GlobalAveragePool", "LpPool", "GlobalLpPool")
#: Backends per row of heatmaps.
COLUMNS = 5


def _figure(width: float, height: float):
    """A matplotlib Figure drawn by Agg, outside pyplot: no global state, no display needed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> str:
    """A figure as a PNG data URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


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


def heatmap_figure(op: str, records: list[Record], backends: list[str]) -> str:
    """Kernel (rows) x stride (columns) per backend; each cell says passed / total."""
    from matplotlib.colors import to_rgb

    cells: dict[str, dict[tuple[str, str], list[str]]] = {b: defaultdict(list) for b in backends}
    kernels, strides = set(), set()
    for r in records:
        params = r.get("params") or {}
        k, s = _axis_label(params.get("kernel")), _axis_label(params.get("strides"))
        kernels.add(k)
        strides.add(s)
        cells[r["backend"]][(k, s)].append(cell_status(r))
    rows, cols = sorted(kernels, key=_label_key), sorted(strides, key=_label_key)
    ncols = min(COLUMNS, len(backends))
    nrows = math.ceil(len(backends) / ncols)
    fig = _figure(max(2.8, 0.6 * len(cols) + 1.0) * ncols, max(1.9, 0.42 * len(rows) + 1.0) * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[len(backends):]:
        ax.axis("off")
    for ax, backend in zip(axes.flat, backends):
        image = [[(1.0, 1.0, 1.0)] * len(cols) for _ in rows]
        for i, k in enumerate(rows):
            for j, s in enumerate(cols):
                statuses = cells[backend].get((k, s))
                if not statuses:
                    continue
                worst = min(statuses, key=SEVERITY.index)
                image[i][j] = to_rgb(STATUS_COLORS[worst])
                passed = statuses.count("pass")
                ax.text(j, i, f"{passed}/{len(statuses)}", ha="center", va="center", fontsize=7,
                        color="black" if worst in ("unsupported", "expected") else "white")
        ax.imshow(image, aspect="auto")
        ax.set_title(backend, fontsize=9)
        ax.set_xticks(range(len(cols)), cols, fontsize=7)
        ax.set_yticks(range(len(rows)), rows, fontsize=7)
        ax.set_xlabel("stride s", fontsize=7)
        ax.set_ylabel("kernel f", fontsize=7)
        ax.tick_params(length=0)
    fig.suptitle(f"{op}: passed / records per kernel x stride", fontsize=11)
    return _png(fig)


def global_figure(records: list[Record], ops: list[str], backends: list[str]) -> str:
    """Global ops have no window to vary: one cell per (op, backend)."""
    from matplotlib.colors import to_rgb

    cells: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in records:
        cells[(r["op"], r["backend"])].append(cell_status(r))
    fig = _figure(max(4.0, 1.6 + 1.1 * len(backends)), 1.4 + 0.45 * len(ops))
    ax = fig.subplots()
    image = [[(1.0, 1.0, 1.0)] * len(backends) for _ in ops]
    for i, op in enumerate(ops):
        for j, backend in enumerate(backends):
            statuses = cells.get((op, backend))
            if not statuses:
                continue
            worst = min(statuses, key=SEVERITY.index)
            image[i][j] = to_rgb(STATUS_COLORS[worst])
            ax.text(j, i, f"{statuses.count('pass')}/{len(statuses)}", ha="center", va="center", fontsize=8,
                    color="black" if worst in ("unsupported", "expected") else "white")
    ax.imshow(image, aspect="auto")
    ax.set_xticks(range(len(backends)), backends, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(ops)), ops, fontsize=8)
    ax.tick_params(length=0)
    ax.set_title("global ops: passed / records per backend", fontsize=11)
    return _png(fig)


def ulp_figure(records: list[Record]) -> str | None:
    """Largest ULP error per window size and backend, for the ops that accumulate."""
    points: dict[str, dict[int, float]] = defaultdict(dict)
    for r in records:
        if r.get("op") not in AVERAGING_OPS or r["status"] not in ("pass", "mismatch"):
            continue
        ulp, size = numeric(r.get("max_ulp")), window_size(r)
        if ulp is None or size is None or not math.isfinite(ulp):
            continue
        points[r["backend"]][size] = max(ulp, points[r["backend"]].get(size, 0.0))
    if not points:
        return None
    fig = _figure(9, 4.2)
    ax = fig.subplots()
    markers = "osD^v<>phX*"
    for i, backend in enumerate(sorted(points)):
        xs = sorted(points[backend])
        ax.plot(xs, [points[backend][x] for x in xs], marker=markers[i % len(markers)], markersize=4,
                linewidth=1, alpha=0.85, label=backend)
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("window size (elements averaged)")
    ax.set_ylabel("max ULP error (symlog)")
    ax.set_title("ULP error of averaging ops against window size (worst case per size)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return _png(fig)


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


def render_html(records: list[Record], summary: dict[str, Any]) -> str:
    """The whole report.html text."""
    import jinja2

    backends = sorted({r["backend"] for r in records})
    by_op: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_op[r.get("op") or "?"].append(r)
    heatmaps = []
    windowed = [op for op in sorted(by_op) if not op.startswith("Global")]
    for op in windowed:
        with_kernel = [r for r in by_op[op] if (r.get("params") or {}).get("kernel")]
        if with_kernel:
            heatmaps.append({"op": op, "image": heatmap_figure(op, with_kernel, backends)})
    global_ops = [op for op in sorted(by_op) if op.startswith("Global")]
    if global_ops:
        heatmaps.append({"op": ", ".join(global_ops),
                         "image": global_figure([r for op in global_ops for r in by_op[op]], global_ops, backends)})
    from poolconform.report.markdown import disagreement_order

    disagreements = sorted((r for r in records if r["status"] in FAILING), key=disagreement_order)
    env = jinja2.Environment(loader=jinja2.PackageLoader("poolconform", "report/templates"),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True,
                             finalize=lambda v: printable(v) if isinstance(v, str) else v)
    env.filters["ulp"] = lambda v: "" if v is None else f"{float(v):.3g}"
    return env.get_template("report.html.j2").render(
        summary=summary,
        backends=backends,
        heatmaps=heatmaps,
        ulp_image=ulp_figure(records),
        agreement=agreement_rows(summary),
        disagreements=disagreements,
        finding_records=_finding_records(summary, records),
        colors=STATUS_COLORS,
        statuses=STATUSES,
        backend_names=sorted(set(backends) | set(summary.get("backends") or {})),
        expected_by_backend=dict(Counter(r["backend"] for r in records if r.get("expected"))),
        expected_count=sum(1 for r in records if r.get("expected")),
        open_limit=200,
    )


def _finding_records(summary: dict[str, Any], records: list[Record], limit: int = 50) -> list[list[Record]]:
    """Per finding (same order), its first `limit` records, for the rows that open under it."""
    by_key = {(r["case"], r["backend"]): r for r in records}
    return [[by_key[(c, f["backend"])] for c in f["cases"][:limit] if (c, f["backend"]) in by_key]
            for f in summary.get("findings") or []]
