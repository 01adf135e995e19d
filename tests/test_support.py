"""support.onnx_rejects against the schemas and against the exporter's own ONNX checker."""

from __future__ import annotations

import itertools
from pathlib import Path

import onnx
import pytest

from poolconform.case import DTYPES, OPS, POOLING_OPSETS, PoolCase
from poolconform.validation import make_case
from poolconform.errors import CaseError
from poolconform.onnx_export import build_model, ir_version_for
from poolconform.support import (
    allowed_dtypes,
    onnx_rejects,
    support_table,
    supported_opsets,
)

#: Variants that each need one attribute or output which not every opset has.
FEATURES: dict[str, dict[str, object]] = {
    "plain": {},
    "pads": {"pads": 1},
    "ceil": {"ceil_mode": True},
    "dilated": {"dilations": 2},
    "indices-col": {"with_indices": True, "storage_order": 1},
    "indices": {"with_indices": True},
    "cip": {"count_include_pad": True, "pads": 1},
    "same": {"auto_pad": "SAME_LOWER"},
}


def _case(op: str, feature: str, dtype: str, opset: int) -> PoolCase | None:
    """A small case with the feature, or None when the feature does not apply to the op."""
    extra = dict(FEATURES[feature])
    if op.startswith("Global") and feature != "plain":
        return None
    if "with_indices" in extra and op != "MaxPool":
        return None
    if "count_include_pad" in extra and op != "AveragePool":
        return None
    window = {} if op.startswith("Global") else {"kernel": 2, "strides": 2}
    if op in ("LpPool", "GlobalLpPool"):
        extra["p"] = 3
    # built where everything is expressible, then moved: make_case itself now applies onnx_rejects
    case = make_case(op, (1, 2, 5, 5), **window, **extra)  # type: ignore[arg-type]
    return case.replace(dtype=dtype, opset=opset)


def test_supported_opsets_come_from_the_schemas() -> None:
    assert supported_opsets("MaxPool") == [1, 8, 10, 11, 12, 22]
    assert supported_opsets("AveragePool") == [1, 7, 10, 11, 19, 22]
    with pytest.raises(KeyError, match="'NoSuchPool'"):
        supported_opsets("NoSuchPool")


def test_pooling_opsets_cover_every_change_from_opset_7() -> None:
    changes = {v for op in OPS for v in supported_opsets(op) if v >= 7}
    assert changes <= set(POOLING_OPSETS), sorted(changes - set(POOLING_OPSETS))


@pytest.mark.parametrize(
    ("op", "feature", "dtype", "opset", "needle"),
    [
        ("MaxPool", "ceil", "float32", 8, "'ceil_mode'"),
        ("AveragePool", "ceil", "float32", 8, "'ceil_mode'"),
        ("MaxPool", "dilated", "float32", 8, "'dilations'"),
        ("AveragePool", "dilated", "float32", 18, "'dilations'"),
        ("LpPool", "dilated", "float32", 12, "'dilations'"),
        ("MaxPool", "indices", "float32", 7, "Indices"),
        ("MaxPool", "indices-col", "float32", 7, "'storage_order'"),
        ("MaxPool", "plain", "int8", 11, "'int8'"),
        ("MaxPool", "plain", "bfloat16", 19, "'bfloat16'"),
        ("AveragePool", "plain", "uint8", 22, "'uint8'"),
        ("GlobalLpPool", "plain", "int8", 22, "'int8'"),
    ],
)
def test_rejections_name_the_missing_piece(op: str, feature: str, dtype: str, opset: int, needle: str) -> None:
    case = _case(op, feature, dtype, opset)
    assert case is not None
    reason = onnx_rejects(case)
    assert reason is not None and needle in reason, reason
    assert f"opset {opset!r}" in reason


@pytest.mark.parametrize(
    ("op", "feature", "dtype", "opset"),
    [
        ("MaxPool", "plain", "int8", 12),
        ("MaxPool", "plain", "uint8", 22),
        ("MaxPool", "indices-col", "float16", 8),
        ("MaxPool", "dilated", "float64", 10),
        ("AveragePool", "dilated", "float32", 19),
        ("AveragePool", "cip", "float32", 7),
        ("LpPool", "ceil", "float32", 18),
        ("GlobalAveragePool", "plain", "bfloat16", 22),
    ],
)
def test_accepted_cases(op: str, feature: str, dtype: str, opset: int) -> None:
    case = _case(op, feature, dtype, opset)
    assert case is not None
    assert onnx_rejects(case) is None


def test_opsets_outside_the_schemas_are_explained() -> None:
    plain = make_case("MaxPool", (1, 1, 4, 4), kernel=2)
    future = plain.replace(opset=onnx.defs.onnx_opset_version() + 5)
    assert "newer than the installed onnx" in (onnx_rejects(future) or "")
    ancient = plain.replace(opset=0)
    assert "schema starts at opset 1" in (onnx_rejects(ancient) or "")


def test_make_case_refuses_what_onnx_rejects() -> None:
    with pytest.raises(CaseError, match="MaxPool-8 \\(opset 8\\) has no 'ceil_mode'"):
        make_case("MaxPool", (1, 1, 5, 5), kernel=2, ceil_mode=True, opset=8)


def test_verdicts_agree_with_the_onnx_checker() -> None:
    """onnx_rejects says None exactly when the exported model passes onnx's full check."""
    disagreements = []
    checked = rejected = 0
    for op, feature, dtype, opset in itertools.product(OPS, FEATURES, DTYPES, POOLING_OPSETS):
        case = _case(op, feature, dtype, opset)
        if case is None:
            continue
        reason = onnx_rejects(case)
        try:
            build_model(case)
            exported = None
        except CaseError as exc:
            exported = str(exc)
        checked += 1
        rejected += reason is not None
        if (reason is None) != (exported is None):
            disagreements.append((case.id, reason, exported))
    assert checked > 500 and 100 < rejected < checked - 100, (checked, rejected)
    assert disagreements == []


def test_allowed_dtypes_follow_type_constraint_t() -> None:
    assert allowed_dtypes("MaxPool", 11) == ["float32", "float64", "float16"]
    assert allowed_dtypes("MaxPool", 12) == ["float32", "float64", "float16", "int8", "uint8"]
    assert "bfloat16" in allowed_dtypes("AveragePool", 22)
    assert not {"int8", "uint8"} & set(allowed_dtypes("AveragePool", 22))


def test_support_table_lists_every_op_and_opset() -> None:
    table = support_table()
    for op in OPS:
        assert f"| {op} | {op}-" in table
    assert "| MaxPool | MaxPool-12 | 12, 18, 19 |" in table


@pytest.mark.parametrize("opset", POOLING_OPSETS)
def test_onnxruntime_loads_every_pooling_opset(opset: int) -> None:
    """The exporter's pinned IR version loads in onnxruntime at each opset (and is valid for onnx)."""
    ort = pytest.importorskip("onnxruntime")
    import numpy as np

    model = build_model(make_case("MaxPool", (1, 1, 4, 4), kernel=2, strides=2, opset=opset))
    assert model.ir_version == ir_version_for(opset)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    (y,) = session.run(None, {"X": x})
    np.testing.assert_array_equal(y, [[[[5, 7], [13, 15]]]])


# ---------------------------------------------------------------- matrices/ cover every axis

MATRICES = sorted((Path(__file__).parent.parent / "matrices").glob("*.toml"))


def _matrix_values() -> dict[str, set[object]]:
    """Every value each matrix key takes across matrices/*.toml (lists made hashable)."""
    from poolconform.matrix import load_tables, normalize

    seen: dict[str, set[object]] = {}
    for path in MATRICES:
        for table in load_tables(path):
            for key, values in normalize(table).items():
                seen.setdefault(key, set()).update(values)
    return seen


def test_matrix_files_have_a_header_and_parse() -> None:
    names = {p.name for p in MATRICES}
    assert {"full.toml", "agree.toml", "pads.toml", "dtypes.toml", "opsets.toml"} <= names
    assert {"special-values.toml", "lppool.toml"} <= names
    for path in MATRICES:
        head = path.read_text().splitlines()[0]
        assert head.startswith(f"# {path.name}:"), path
        assert "cases" in path.read_text().split("[matrix]")[0], f"{path.name} header gives no case count"


def test_matrix_files_together_exercise_every_axis() -> None:
    from poolconform.generators import SPECIAL_GENERATORS

    seen = _matrix_values()
    assert set(OPS) <= seen["ops"]
    assert {1, 2, 3} <= seen["rank"]
    assert {"NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"} <= seen["auto_pad"]
    assert {True, False} <= seen["ceil_mode"] and {True, False} <= seen["count_include_pad"]
    assert {True} <= seen["indices"] and {0, 1} <= seen["storage_order"]
    assert {1, 2, 3} <= seen["p"]
    assert set(DTYPES) <= seen["dtype"]
    assert set(POOLING_OPSETS) <= seen["opset"]
    assert set(SPECIAL_GENERATORS) <= seen["generator"]
    assert any(isinstance(d, int) and d > 1 for d in seen["dilation"])
    assert any(b > 1 for b in seen["batch"]) and any(c > 1 for c in seen["channels"])
    asymmetric = [v for v in seen["pads"] if isinstance(v, tuple) and v[: len(v) // 2] != v[len(v) // 2 :]]
    assert asymmetric and any(isinstance(v, int) and v > 0 for v in seen["pads"])
    for key in ("kernel", "stride", "input_size"):
        assert any(isinstance(v, tuple) and len(set(v)) > 1 for v in seen[key]), f"no non-square {key}"


def test_agree_matrix_expands_without_onnx_rejections() -> None:
    from poolconform.matrix import expand, load_toml

    path = next(p for p in MATRICES if p.name == "agree.toml")
    expansion = expand(load_toml(path))
    assert 300 <= len(expansion.cases) <= 3000
    assert [c.id for c in expansion.cases if onnx_rejects(c)] == []


def test_docs_carry_the_current_support_table() -> None:
    import re

    import onnx

    docs = (Path(__file__).parent.parent / "docs" / "conformance-space.md").read_text()
    documented = re.search(r"printed by `python -m poolconform.support` with onnx (\S+)\.", docs)
    assert documented, "the docs name the onnx release their support table was printed with"
    if onnx.__version__ != documented.group(1):  # another onnx knows other schemas: the table is per release
        pytest.skip(f"the docs' table is onnx {documented.group(1)}'s; this is onnx {onnx.__version__}")
    assert support_table() in docs, "regenerate the table with: python -m poolconform.support"
