"""Matrix: TOML (or pyproject's [tool.poolconform.matrix], or the embedded default) -> cases.

Each key takes one value or a list of values; lists expand as a cartesian product.
A number means the same on every spatial axis (`kernel = 3` is 3x3 in 2-D); a nested
list is one explicit per-axis value (`kernel = [[2, 3]]`, `pads = [[0, 0, 1, 1]]`).
Impossible combinations are dropped and counted by reason; attributes an op ignores
(a kernel for GlobalMaxPool) collapse into one case.
"""

from __future__ import annotations

import difflib
import itertools
import math
import reprlib
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from poolconform.attributes import CONTEXTS, PAD_MODES
from poolconform.attributes import ADAPTIVE_OPS, ALL_OPS
from poolconform.case import AUTO_PADS, DTYPES, PoolCase
from poolconform.case_list import CaseList, TableSource
from poolconform.generators import SEED_SHAPE
from poolconform.validation import build_case, make_case
from poolconform.tomlfile import loads, read_toml
from poolconform.errors import CaseError, MatrixError

#: key -> (what it holds, default). Order is the order of expansion.
KEYS: dict[str, tuple[str, Any]] = {
    "ops": ("op names", ["MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool"]),
    "rank": ("spatial rank 1, 2 or 3", 2),
    "kernel": ("window size per axis", 2),
    "stride": ("stride per axis", 1),
    "input_size": ("spatial input size per axis", 8),
    "pads": ("padding: n, or [[begin..., end...]]", 0),
    "ceil_mode": ("true/false", False),
    "count_include_pad": ("true/false", False),
    "dilation": ("dilation per axis", 1),
    "auto_pad": (f"one of {', '.join(AUTO_PADS)}", "NOTSET"),
    "dtype": (f"one of {', '.join(DTYPES)}", "float32"),
    "batch": ("batch size N", 1),
    "channels": ("channel count C", 1),
    "opset": ("ONNX opset version", 22),
    "p": ("Lp norm order for LpPool", 2),
    "indices": ("true/false: MaxPool also outputs Indices", False),
    "storage_order": ("0 (row-major) or 1 (column-major) Indices", 0),
    "generator": ("input generator name", "normal"),
    "context": (f"one of {', '.join(CONTEXTS)}: the graph around the node", "single"),
    "pad_mode": (f"one of {', '.join(PAD_MODES)}: the Pad node's mode in the pad context", "constant"),
    "unpool_output_shape": ("true/false: MaxUnpool gets the input's shape (unpool context)", False),
    "quant": ('"none" or [x_scale, x_zero_point, y_scale, y_zero_point]: quantized pooling', "none"),
    "output_size": ("output size per axis of the adaptive ops (AdaptiveAveragePool, AdaptiveMaxPool)", 1),
}

_PER_AXIS = ("kernel", "stride", "input_size", "pads", "dilation", "output_size")
_BOOLS = ("ceil_mode", "count_include_pad", "indices", "unpool_output_shape")
_INTS = ("rank", "batch", "channels", "opset", "p", "storage_order")
_STRINGS = ("ops", "auto_pad", "dtype", "generator", "context", "pad_mode")
#: Keys whose values come from a fixed list: (what a value is called, the allowed values).
#: `generator` too, read from the registry at parse time (see _choices).
_CHOICES = {"ops": ("op", ALL_OPS), "auto_pad": ("auto_pad", AUTO_PADS), "dtype": ("dtype", DTYPES),
            "context": ("context", CONTEXTS), "pad_mode": ("pad_mode", PAD_MODES)}
#: Integer keys with a fixed range: (lowest, highest or None, what the range means).
#: `opset` is a set, not a range: exactly what the exporter writes (see _check_range).
_RANGES: dict[str, tuple[int, int | None, str]] = {
    "rank": (1, 3, "spatial axes"),
    "storage_order": (0, 1, "0 row-major, 1 column-major Indices"),
    "p": (1, None, "the Lp norm order"),
    "batch": (0, None, "batch size N; 0 is a valid empty batch"),
    "channels": (0, None, "channel count C; 0 is valid"),
}

#: A matrix whose cartesian product is larger than this is refused before expanding:
#: a typo like `input_size = [1, ..., 1000]` times a few other lists would run for days.
MAX_COMBINATIONS = 100_000
#: Largest input (N * C * spatial elements) one case may have: 2**24 float64 values are
#: 128 MiB in the oracle; anything larger is a typo, not a pooling test.
MAX_INPUT_ELEMENTS = 2**24
#: Integers in a matrix must fit the int32 attributes every framework accepts.
MAX_INT = 2**31 - 1


@dataclass
class Expansion:
    """The cases of a matrix and what was dropped on the way."""

    cases: CaseList
    dropped: Counter = field(default_factory=Counter)
    combinations: int = 0

    def dropped_summary(self) -> str:
        total = sum(self.dropped.values())
        if not total:
            return "dropped 0 combinations"
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.dropped.most_common())
        return f"dropped {total} combinations: {reasons}"


def _shown(value: Any) -> str:
    """A user's value for a message: bounded, so a huge or deeply nested one stays one line."""
    return _REPR.repr(value)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxstring, _REPR.maxother = 3, 8, 60, 60


def _did_you_mean(value: str, allowed: tuple[str, ...]) -> str:
    """` (did you mean 'normal'?)` for the closest allowed name, case aside; "" when none is close."""
    lowered = {a.lower(): a for a in allowed}
    close = difflib.get_close_matches(value.lower(), lowered, n=1)
    return f" (did you mean {lowered[close[0]]!r}?)" if close else ""


def _generators() -> tuple[str, ...]:
    """Every input generator name (poolconform.generators' table)."""
    from poolconform.generators import GENERATORS

    return tuple(sorted(GENERATORS))


def _choices(key: str) -> tuple[str, tuple[str, ...]] | None:
    """(what a value is called, the allowed values) for keys whose values come from a fixed list."""
    if key == "generator":
        return "generator", _generators()
    return _CHOICES.get(key)


def _check_range(key: str, v: int) -> None:
    """Refuse a number outside the key's fixed range or set: a typo, not an impossible combination."""
    if key == "opset":
        from poolconform.onnx_export import exportable_opsets, opsets_text

        if v not in exportable_opsets():
            raise MatrixError(f"opset must be one the exporter can write ({opsets_text()}), got {v!r}")
        return
    if key in _RANGES:
        low, high, meaning = _RANGES[key]
        if v < low or (high is not None and v > high):
            if high is None:
                allowed = f">= {low}"
            else:
                few = [str(x) for x in range(low, high + 1)]
                allowed = f"{', '.join(few[:-1])} or {few[-1]}"
            raise MatrixError(f"{key} must be {allowed}, got {v!r} ({meaning})")


def _values(key: str, raw: Any) -> list[Any]:
    """One key's list of values, each validated for type and, where fixed, for range or vocabulary."""
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise MatrixError(f"matrix key {key!r} is an empty list; give at least one value")
    out: list[Any] = []
    if key == "quant":
        many = isinstance(raw, list) and any(isinstance(x, (list, str)) for x in raw)
        return [_quant_value(x) for x in (raw if many else [raw])]
    for v in values:
        if key in _PER_AXIS:
            if isinstance(v, list):
                if not v or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
                    raise MatrixError(f"matrix key {key!r}: {_shown(v)} must be a list of integers")
                out.append(tuple(v))
            elif isinstance(v, int) and not isinstance(v, bool):
                out.append(v)
            else:
                raise MatrixError(f"matrix key {key!r}: {_shown(v)} must be an integer or a list of integers")
        elif key in _BOOLS:
            if not isinstance(v, bool):
                raise MatrixError(f"matrix key {key!r}: {_shown(v)} must be true or false")
            out.append(v)
        elif key in _INTS:
            if not isinstance(v, int) or isinstance(v, bool):
                raise MatrixError(f"matrix key {key!r}: {_shown(v)} must be an integer")
            out.append(v)
        else:
            if not isinstance(v, str):
                raise MatrixError(f"matrix key {key!r}: {_shown(v)} must be a string")
            out.append(v)
    for v in out:
        big = [x for x in (v if isinstance(v, tuple) else (v,)) if isinstance(x, int) and x > MAX_INT]
        if big:
            raise MatrixError(f"matrix key {key!r}: {_shown(v)} is too large (at most {MAX_INT})")
    choices = _choices(key)
    if choices is not None:
        what, allowed = choices
        for v in out:
            if v not in allowed:
                raise MatrixError(f"unknown {what} {_shown(v)}{_did_you_mean(v, allowed)}; allowed: {', '.join(allowed)}")
    if key in _INTS:
        for v in out:
            _check_range(key, v)
    if key in ("kernel", "stride", "input_size", "dilation", "output_size"):
        for v in out:
            if any(x < 1 for x in (v if isinstance(v, tuple) else (v,))):
                raise MatrixError(f"matrix key {key!r}: {_shown(v)} must be >= 1")
    if key == "pads":
        for v in out:
            if any(x < 0 for x in (v if isinstance(v, tuple) else (v,))):
                raise MatrixError(f"matrix key 'pads': {_shown(v)} must be >= 0")
    return out


def _quant_value(v: Any) -> tuple[float, int, float, int] | tuple[()]:
    """One `quant` value: "none", or [x_scale, x_zero_point, y_scale, y_zero_point]."""
    if v == "none":
        return ()
    numbers = isinstance(v, list) and len(v) == 4 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                          for x in v)
    if not numbers or not all(isinstance(v[i], int) for i in (1, 3)):
        raise MatrixError(f"matrix key 'quant': {_shown(v)} must be \"none\" or [x_scale, x_zero_point, y_scale, "
                          "y_zero_point] with integer zero points")
    return (float(v[0]), int(v[1]), float(v[2]), int(v[3]))


def normalize(table: dict[str, Any]) -> dict[str, list[Any]]:
    """Validate keys and types; every key gets its list of values (defaults filled in)."""
    if not isinstance(table, dict):
        raise MatrixError(f"[matrix] must be a table of keys, got {type(table).__name__} {table!r:.60}")
    for key in table:
        if not isinstance(key, str):
            raise MatrixError(f"matrix key {key!r} is not a name; allowed: {', '.join(KEYS)}")
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(KEYS)}"
            raise MatrixError(f"unknown matrix key {key!r}{hint}")
    return {key: _values(key, table.get(key, default)) for key, (_, default) in KEYS.items()}


def _axis(value: int | tuple[int, ...], rank: int, what: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * rank
    if len(value) != rank:
        raise CaseError(f"{what} {value!r} does not fit rank {rank}", category=f"{what} does not fit the rank")
    return value


def expand(table: dict[str, Any]) -> Expansion:
    """Expand a [matrix] table into validated, de-duplicated cases (made again when read:
    poolconform/case_list.py)."""
    return _expand(table, set(), Expansion(cases=CaseList()))


def _expand(table: dict[str, Any], seen: set[str], into: Expansion) -> Expansion:
    """Add the table's cases whose ids `seen` does not hold to `into` (one more source)."""
    values = normalize(table)
    total = math.prod(len(v) for v in values.values())
    if total > MAX_COMBINATIONS:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in values.items() if len(v) > 1)
        raise MatrixError(
            f"matrix has {total} combinations ({sizes}), more than the limit {MAX_COMBINATIONS}; "
            "split it into several matrix files or shorten the lists"
        )
    make = _memoized_make_case()
    # read back unchecked: only combinations validated here are ever read (and nothing of
    # this expansion's memory is kept)
    source = TableSource(values, lambda v: _combination_case(v, build_case))
    number_of_source = into.cases.add_source(source)
    kept = array("q")
    dropped: Counter = Counter()
    found = 0
    for number, combo in enumerate(itertools.product(*values.values())):
        try:
            case = _combination_case(dict(zip(values, combo)), make)
        except CaseError as exc:
            dropped[exc.category] += 1
            continue
        _check_size(case)
        found += 1
        if case.id not in seen:
            seen.add(case.id)
            kept.append(CaseList.code(number_of_source, number))
    if not found:
        raise MatrixError(
            f"matrix expands to no case: all {total} combinations were dropped "
            f"({', '.join(f'{n} {why}' for why, n in dropped.most_common())}); "
            "an empty run checks nothing, so fix the values"
        )
    into.cases.extend_codes(np.asarray(kept, np.int64))
    into.dropped.update(dropped)
    into.combinations += total
    return into


def _check_size(case: PoolCase) -> None:
    """Refuse (not drop) a case whose input would not fit in memory: that is a typo."""
    elements = math.prod(case.input_shape)
    if elements > MAX_INPUT_ELEMENTS:
        raise MatrixError(
            f"case {case.id!r} has an input of {elements} elements (shape {case.input_shape!r}), "
            f"more than the limit {MAX_INPUT_ELEMENTS}; lower batch, channels or input_size"
        )


#: Distinct argument sets an expansion remembers (full.toml has 2,954).
MEMO_ENTRIES = 4096


def _memoized_make_case() -> Callable[..., PoolCase]:
    """make_case, answering a repeated call from memory (the case, or its refusal again).

    Many combinations of a table name one case (a global op ignores kernel, stride and pads;
    auto_pad replaces pads): full.toml makes 16,204 calls for 2,954 distinct ones, and
    validating a case (the ONNX schema, the generator, the budget) is most of an expansion's
    time. One memory per expansion, so nothing outlives it, and of at most MEMO_ENTRIES
    (forgotten all at once when full): a key costs more than the case it names, and a large
    matrix that repeats nothing would otherwise double the memory of its expansion
    (docs/speed.md, "Memory as the matrix grows")."""
    made: dict[tuple, PoolCase | CaseError] = {}

    def make(op: str, shape: tuple[int, ...], **kwargs: Any) -> PoolCase:
        key = (op, shape, tuple(sorted(kwargs.items())))
        try:
            hit = made.get(key)
        except TypeError:  # an unhashable value: validated the long way
            return make_case(op, shape, **kwargs)
        if hit is None:
            try:
                hit = make_case(op, shape, **kwargs)
            except CaseError as exc:  # kept without its traceback: frames would tie the memory in a cycle
                hit = CaseError(str(exc), category=exc.category)
            if len(made) >= MEMO_ENTRIES:
                made.clear()
            made[key] = hit
        if isinstance(hit, CaseError):
            raise CaseError(str(hit), category=hit.category)
        return hit

    return make


def _combination_case(v: dict[str, Any], make: Callable[..., PoolCase] = make_case) -> PoolCase:
    op, rank = v["ops"], v["rank"]
    size = v["input_size"]
    spatial = _axis(size, rank, "input_size")
    shape = (v["batch"], v["channels"], *spatial)
    if op in ADAPTIVE_OPS:  # a framework op (poolconform.adaptive): no window, context or quantized form
        if v["context"] != "single" or v["quant"]:
            raise CaseError("adaptive pooling has no context or quantized form",
                            category="adaptive pooling in a context or quantized")
        return make(op, shape, output_size=_axis(v["output_size"], rank, "output_size"), dtype=v["dtype"],
                         opset=v["opset"], generator=v["generator"])
    rest: dict[str, Any] = dict(dtype=v["dtype"], opset=v["opset"], generator=v["generator"],
                                context=v["context"], quant=v["quant"])
    if v["context"] == "pad":
        rest["pad_mode"] = v["pad_mode"]  # the other contexts have no Pad node: the key collapses
    if v["context"] == "unpool":
        rest["unpool_shape"] = v["unpool_output_shape"]
    if op in ("LpPool", "GlobalLpPool"):
        rest["p"] = v["p"]
    if op == "MaxPool" and v["indices"] and v["context"] != "unpool":  # unpool wires the Indices itself
        rest.update(with_indices=True, storage_order=v["storage_order"])
    if op.startswith("Global"):
        return make(op, shape, **rest)
    pads = v["pads"]
    if isinstance(pads, tuple) and len(pads) not in (rank, 2 * rank):
        raise CaseError(f"pads {pads!r} does not fit rank {rank}", category="pads do not fit the rank")
    if v["auto_pad"] != "NOTSET":
        if pads != 0 and any(_axis(pads, len(pads) if isinstance(pads, tuple) else 1, "pads")):
            raise CaseError("explicit pads with auto_pad", category="explicit pads combined with auto_pad")
        pads = 0
        rest["auto_pad"] = v["auto_pad"]
    rest["ceil_mode"] = v["ceil_mode"]
    if op == "AveragePool":
        rest["count_include_pad"] = v["count_include_pad"]
    return make(
        op, shape,
        kernel=_axis(v["kernel"], rank, "kernel"),
        strides=_axis(v["stride"], rank, "stride"),
        pads=pads if isinstance(pads, int) else tuple(pads),
        dilations=_axis(v["dilation"], rank, "dilation"),
        **rest,
    )


def load_tables(path: Path) -> list[dict[str, Any]]:
    """Every matrix table of a file: one `[matrix]`, or several `[[matrix]]`."""
    tables = load_toml(path)
    return tables if isinstance(tables, list) else [tables]


def load_toml(path: Path) -> dict[str, Any] | list[dict[str, Any]]:
    """The [matrix] table of a matrix file or of a pyproject's [tool.poolconform.matrix];
    a list of tables where the file holds several (`[[matrix]]`)."""
    data = read_toml(path, "matrix file", MatrixError)
    if Path(path).name == "pyproject.toml" and "matrix" not in data:
        table: Any = data
        for part in ("tool", "poolconform", "matrix"):
            table = table.get(part) if isinstance(table, dict) else None
        if table is None:
            raise MatrixError(f"{str(path)!r} has no [tool.poolconform.matrix] table")
        return table
    if "matrix" not in data:
        found = ", ".join(repr(k) for k in data) or "nothing"
        raise MatrixError(f"matrix file {str(path)!r} has no [matrix] table (found {found})")
    return data["matrix"]


def default_table() -> dict[str, Any]:
    text = resources.files("poolconform").joinpath("default_matrix.toml").read_text(encoding="utf-8")
    return loads(text)["matrix"]


#: The seed tutorial's four worked examples, on its own 4x4 input.
def golden_cases() -> list[PoolCase]:
    shape = SEED_SHAPE
    return [
        make_case("MaxPool", shape, kernel=2, strides=2, generator="seed"),
        make_case("AveragePool", shape, kernel=2, strides=2, generator="seed"),
        make_case("GlobalMaxPool", shape, generator="seed"),
        make_case("GlobalAveragePool", shape, generator="seed"),
    ]


def load_matrix(path: Path | None = None) -> Expansion:
    """Cases of a matrix file, or of the embedded default (plus the seed's golden cases)."""
    if path is not None:
        return expand_all(load_tables(path))
    expansion = expand(default_table())
    expansion.cases = CaseList.of(golden_cases()).then(expansion.cases)
    return expansion


def expand_all(tables: list[Any]) -> Expansion:
    """Several `[[matrix]]` tables: the union of their cases, in order, without duplicates.
    Each table is held to the combination limit on its own, so one file can tour axes
    (contexts, quantization) whose product with every other axis would be far too large."""
    if not tables:
        raise MatrixError("matrix file holds an empty [[matrix]] list")
    total = Expansion(cases=CaseList())
    seen: set[str] = set()
    for number, table in enumerate(tables, 1):
        if not isinstance(table, dict) and len(tables) > 1:
            raise MatrixError(f"[[matrix]] entry {number} is not a table")
        try:
            _expand(table, seen, total)
        except MatrixError as exc:
            if len(tables) == 1:
                raise
            raise MatrixError(f"[[matrix]] table {number}: {exc}") from None
    return total
