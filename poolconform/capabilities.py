"""Which backend expresses which pooling attribute: a table generated from the backends' own code.

Each row is a probe case; a cell asks that backend's `supports(case)`, which a translating
backend derives from the same cached `plan(case)` its run and `poolconform repro` use. No
framework is imported (plans are pure arithmetic on the case), so the table can be regenerated
anywhere: `python -m poolconform.capabilities` prints the Markdown that the README holds
between its capability markers, and a test keeps the two equal.
"""

from __future__ import annotations

from poolconform.backends.base import BUILTIN_BACKENDS, BackendSpec
from poolconform.case import PoolCase
from poolconform.validation import make_case

START = "<!-- capabilities:start -->"
END = "<!-- capabilities:end -->"

_2D = (1, 1, 6, 6)


def probes() -> list[tuple[str, PoolCase]]:
    """(attribute, a case that needs it) for every row of the table."""
    return [
        ("MaxPool, no padding", make_case("MaxPool", _2D, kernel=2, strides=2)),
        ("AveragePool, no padding", make_case("AveragePool", _2D, kernel=2, strides=2)),
        ("GlobalMaxPool / GlobalAveragePool", make_case("GlobalAveragePool", _2D)),
        ("LpPool (p=2, opset 18)", make_case("LpPool", _2D, kernel=2, strides=2, opset=18)),
        ("GlobalLpPool (opset 18)", make_case("GlobalLpPool", _2D, opset=18)),
        ("symmetric pads, max", make_case("MaxPool", _2D, kernel=3, pads=1)),
        ("symmetric pads, average, count_include_pad=0", make_case("AveragePool", _2D, kernel=3, pads=1)),
        ("count_include_pad=1", make_case("AveragePool", _2D, kernel=3, pads=1, count_include_pad=True)),
        ("asymmetric pads", make_case("MaxPool", _2D, kernel=3, pads=[0, 0, 1, 1])),
        ("pad larger than kernel // 2", make_case("MaxPool", _2D, kernel=3, pads=2)),
        ("SAME_UPPER (odd total pad)", make_case("MaxPool", (1, 1, 5, 5), kernel=2, auto_pad="SAME_UPPER")),
        ("SAME_LOWER (odd total pad)", make_case("MaxPool", (1, 1, 5, 5), kernel=2, auto_pad="SAME_LOWER")),
        ("ceil_mode that changes the shape", make_case("MaxPool", (1, 1, 5, 5), kernel=2, strides=2, ceil_mode=True)),
        ("dilation, max", make_case("MaxPool", _2D, kernel=2, dilations=2)),
        ("dilation, average (opset 19)", make_case("AveragePool", _2D, kernel=2, dilations=2)),
        ("MaxPool Indices (row-major)", make_case("MaxPool", _2D, kernel=2, strides=2, with_indices=True)),
        ("MaxPool Indices, storage_order=1",
         make_case("MaxPool", _2D, kernel=2, strides=2, with_indices=True, storage_order=1)),
        ("1-D", make_case("MaxPool", (1, 1, 8), kernel=2, strides=2)),
        ("3-D", make_case("MaxPool", (1, 1, 4, 4, 4), kernel=2, strides=2)),
        ("float16", make_case("AveragePool", _2D, kernel=2, strides=2, dtype="float16")),
        ("bfloat16", make_case("AveragePool", _2D, kernel=2, strides=2, dtype="bfloat16")),
        ("float64", make_case("AveragePool", _2D, kernel=2, strides=2, dtype="float64")),
        ("int8 / uint8 MaxPool", make_case("MaxPool", _2D, kernel=2, strides=2, dtype="int8")),
    ]


def table_backends() -> list[str]:
    """Built-in backends worth a column (a CUDA twin expresses what its CPU twin does)."""
    specs = [BackendSpec(n, target) for n, target in BUILTIN_BACKENDS.items()]
    return [s.name for s in specs if not s.name.endswith("-cuda") and not s.opt_in]


def capability_table() -> str:
    """The Markdown table: yes, or no with the backend's own reason as a numbered note."""
    names = table_backends()
    backends = {n: BackendSpec(n, BUILTIN_BACKENDS[n]).load() for n in names}
    notes: dict[str, int] = {}
    lines = ["| attribute | " + " | ".join(f"`{n}`" for n in names) + " |",
             "| --- |" + " --- |" * len(names)]
    for label, case in probes():
        cells = []
        for n in names:
            reason = backends[n].supports(case)
            if reason is None:
                cells.append("yes")
            else:
                text = reason.removeprefix("unsupported: ").strip()
                number = notes.setdefault(text, len(notes) + 1)
                cells.append(f"no [{number}]")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"{number}. {text}" for text, number in notes.items()]
    return "\n".join(lines) + "\n"


def readme_section() -> str:
    return f"{START}\n{capability_table()}{END}"


if __name__ == "__main__":
    print(readme_section())
