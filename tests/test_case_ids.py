"""Case ids read back: every valid id is its whole case, and every id the docs show resolves."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poolconform.attributes import ADAPTIVE_OPS, ATTRIBUTES, AUTO_PADS, CONTEXTS, GLOBAL_OPS, GRAPH_ROWS, OPS, PAD_MODES
from poolconform.case import DTYPES, PoolCase
from poolconform.case_ids import parse_case_id
from poolconform.cli import build_parser, main
from poolconform.commands.options import select_cases
from poolconform.errors import CaseError, PoolconformError
from poolconform.matrix import load_matrix
from poolconform.onnx_export import build_model
from poolconform.validation import make_case, validate_case

ROOT = Path(__file__).resolve().parents[1]
MATRICES = sorted((ROOT / "matrices").glob("*.toml"))
#: An id as the docs write one: an op, a rank, then tokens (a trailing glob character marks a pattern).
ID_IN_TEXT = re.compile(r"(?<![\w-])(?:Global|Adaptive)?(?:Max|Average|Lp)Pool-\d+d(?:-[A-Za-z0-9_]+)*(?P<glob>[*?\[])?")


@pytest.mark.parametrize("matrix", [None, *MATRICES], ids=lambda m: "default" if m is None else m.name)
def test_every_matrix_case_round_trips_through_its_id(matrix: Path | None) -> None:
    cases = load_matrix(matrix).cases
    assert len(cases) > 100
    wrong = [c.id for c in cases if parse_case_id(c.id) != c]
    assert wrong == []


@st.composite
def any_valid_case(draw: st.DrawFn) -> PoolCase:
    """A random case, well outside the matrices too: odd pads, storage_order without Indices, opsets."""
    op = draw(st.sampled_from(OPS))
    rank = draw(st.integers(1, 3))
    axes = lambda lo, hi: st.lists(st.integers(lo, hi), min_size=rank, max_size=rank).map(tuple)  # noqa: E731
    shape = (draw(st.integers(0, 3)), draw(st.integers(0, 3)), *draw(axes(1, 9)))
    rest: dict = dict(dtype=draw(st.sampled_from(DTYPES)), opset=draw(st.sampled_from((1, 7, 8, 10, 12, 18, 19, 22))),
                      generator=draw(st.sampled_from(("normal", "ties", "nan", "knownmean"))))
    if op in ("LpPool", "GlobalLpPool"):
        rest["p"] = draw(st.integers(1, 4))
    if op in GLOBAL_OPS:
        return make_case(op, shape, **rest)
    kernel, dilations = draw(axes(1, 4)), draw(axes(1, 3))
    auto_pad = draw(st.sampled_from(AUTO_PADS))
    pads = tuple(draw(st.integers(0, k - 1)) for k in kernel * 2) if auto_pad == "NOTSET" else 0
    rest.update(auto_pad=auto_pad, ceil_mode=draw(st.booleans()))
    if op == "AveragePool":
        rest["count_include_pad"] = draw(st.booleans())
    if op == "MaxPool":
        rest.update(with_indices=draw(st.booleans()), storage_order=draw(st.integers(0, 1)))
    return make_case(op, shape, kernel=kernel, strides=draw(axes(1, 3)), pads=pads, dilations=dilations, **rest)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(st.data())
def test_any_valid_case_round_trips_and_distinct_cases_get_distinct_ids(data: st.DataObject) -> None:
    try:
        case = data.draw(any_valid_case())
    except CaseError:
        return  # ONNX cannot express it: not a case, nothing to round-trip
    assert parse_case_id(case.id) == case
    assert parse_case_id(case.id).id == case.id


def test_ids_that_no_matrix_holds_are_whole_cases() -> None:
    case = parse_case_id("MaxPool-2d-k2x3-s2-p0_1_0_1-d2-idxcol-f16-n8x9-b2c3-o12-gties")
    assert case == make_case("MaxPool", (2, 3, 8, 9), kernel=(2, 3), strides=2, pads=(0, 1, 0, 1), dilations=2,
                             with_indices=True, storage_order=1, dtype="float16", opset=12, generator="ties")
    assert parse_case_id("GlobalLpPool-3d-L3-f64-n4-o18") == make_case("GlobalLpPool", (1, 1, 4, 4, 4), p=3,
                                                                        dtype="float64", opset=18)
    assert parse_case_id("AveragePool-1d-k3-s1-samelower-cip-bf16-n9").auto_pad == "SAME_LOWER"
    # storage_order without Indices is a different model: it has its own token, not a shared id
    col = make_case("MaxPool", (1, 1, 5, 5), kernel=2, storage_order=1)
    assert col.id == "MaxPool-2d-k2-s1-p0-col-f32-n5" and parse_case_id(col.id) == col


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(st.data())
def test_any_case_in_a_context_or_quantized_round_trips(data: st.DataObject) -> None:
    """Contexts, pad modes, output_shape and quantization parameters are all in the id."""
    try:
        case = data.draw(any_valid_case())
        if data.draw(st.booleans()):
            case = case.replace(context=data.draw(st.sampled_from(CONTEXTS)))
            if case.context == "pad":
                case = case.replace(pad_mode=data.draw(st.sampled_from(PAD_MODES)))
            if case.context == "unpool":
                case = case.replace(unpool_shape=data.draw(st.booleans()))
        else:
            case = case.replace(quant=(data.draw(st.sampled_from((0.05, 0.1, 1.0, 0.0039, 12.5))),
                                       data.draw(st.integers(-128, 255)),
                                       data.draw(st.sampled_from((0.02, 0.5, 2.0))), data.draw(st.integers(-128, 255))))
        validate_case(case)
    except CaseError:
        return
    assert parse_case_id(case.id) == case


@pytest.mark.parametrize("text", [
    "MaxPool-2d-k3-s1-p1-pad-f32-n5", "MaxPool-2d-k3-s1-p1-pad-edge-f32-n5", "AveragePool-1d-k2-s1-p1-pad-reflect-f32-n5",
    "MaxPool-2d-k2-s2-p0-unpool-f32-n6", "MaxPool-2d-k2-s2-p0-unpool-oshape-f32-n5", "GlobalAveragePool-2d-dyn-f32-n5",
    "AveragePool-2d-k2-s2-p0-q0p05_128_0p1_120-u8-n5", "GlobalAveragePool-2d-q0p05_m3_0p1_2-i8-n5",
])
def test_context_and_quant_ids_read_back(text: str) -> None:
    assert parse_case_id(text).id == text


@pytest.mark.parametrize("text, why", [
    ("MaxPool-2d-k3-s1-p1-edge-f32-n5", "needs the pad context"),
    ("MaxPool-2d-k3-s1-p0-pad-f32-n5", "has none"),
    ("AveragePool-2d-k3-s1-p1-cip-pad-f32-n5", "count_include_pad"),
    ("AveragePool-2d-k2-s2-p0-unpool-f32-n6", "not AveragePool"),
    ("MaxPool-2d-k2-s2-p0-unpool-f32-n5", "without output_shape"),
    ("MaxPool-2d-k2-s2-p0-q0p05_128_0p1_120-f32-n6", "uint8 or int8"),
    ("MaxPool-2d-k2-s2-p0-q0p05_200_0p1_1-i8-n6", "x_zero_point"),
    ("LpPool-2d-k2-s2-p0-L2-q0p05_1_0p1_1-u8-n6", "'q0p05_1_0p1_1'"),
    ("MaxPool-2d-k2-s2-p0-q0p050_1_0p1_1-u8-n6", "is written"),
    ("MaxPool-2d-k2-s2-p0-dyn-pad-f32-n6", "'pad'"),
])
def test_context_and_quant_ids_of_no_valid_case_are_refused(text: str, why: str) -> None:
    with pytest.raises(CaseError, match=re.escape(why)) as info:
        parse_case_id(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text, token", [
    ("MaxPool-2d-k3-s2-p1-cel-f32-n7", "'cel'"),
    ("MaxPool-2d-k3-s2-p1-cip-f32-n7", "'cip'"),  # MaxPool has no count_include_pad
    ("GlobalMaxPool-2d-k3-f32-n7", "'k3'"),
    ("MaxPool-2d-k3-p1-f32-n7", "'p1'"),  # the stride is missing
    ("MaxPool-2d-k3-s2-p1-f32-n7-zz", "'zz'"),
    ("MaxPool-2d-k3-s2-p1-f32", "ends where the spatial input size n<N> should follow"),
    ("MaxPool-2d-k3-s2-p1-f32-n7-", "token ''"),  # an empty token is named too
    ("MaxPool-4d-k3-s2-p1-f32-n7", "'4d'"),
    ("MinPool-2d-k3-s2-p1-f32-n7", "'MinPool'"),
    ("MaxPool-2d-k3-s2-p1-f99-n7", "'f99'"),
])
def test_a_bad_token_is_named_in_one_line(text: str, token: str) -> None:
    with pytest.raises(CaseError) as info:
        parse_case_id(text)
    message = str(info.value)
    assert token in message and "\n" not in message


@pytest.mark.parametrize("text, why", [
    ("MaxPool-2d-k3x3-s2-p1-f32-n7", "is written 'MaxPool-2d-k3-s2-p1-f32-n7'"),  # one case, one id
    ("MaxPool-2d-k3-s2-p1-f32-n7-b1c1", "is written 'MaxPool-2d-k3-s2-p1-f32-n7'"),
    ("MaxPool-2d-k3-s2-p1-f32-n7-o22", "is written"),
    ("MaxPool-2d-k03-s2-p1-f32-n7", "token 'k03'"),
    ("MaxPool-2d-k9-s1-p0-f32-n3", "kernel larger than padded input"),
    ("MaxPool-2d-k2-s2-p0-f32-n5-gseed", "1x1x4x4"),
    ("MaxPool-2d-k3-s2-p1-f32-n7-o3", "opset 3"),
    ("MaxPool-2d-k3-s2-p1-f32-n7-gnope", "unknown generator 'nope'"),
    ("AveragePool-2d-k3-s2-p1-d2-f32-n7-o18", "no 'dilations' attribute"),
    ("MaxPool-2d-k3-s2-p1-f32-n99999x99999", "more than the limit"),  # the budget refuses it, nothing allocated
    ("MaxPool-2d-k3-s2-p1-f32-n7-" + "x" * 500, "characters"),
])
def test_ids_of_no_valid_case_are_refused(text: str, why: str) -> None:
    with pytest.raises(PoolconformError, match=re.escape(why)) as info:
        parse_case_id(text)
    assert "\n" not in str(info.value)


def test_an_attribute_an_op_does_not_have_is_refused_not_hidden() -> None:
    """Otherwise two different cases would share one id."""
    with pytest.raises(CaseError, match="MaxPool has no count_include_pad"):
        make_case("MaxPool", (1, 1, 5, 5), kernel=2, count_include_pad=True)
    with pytest.raises(CaseError, match="GlobalMaxPool has no kernel"):
        validate_case(PoolCase("GlobalMaxPool", (1, 1, 5, 5), kernel=(2, 2)))
    with pytest.raises(CaseError, match="AveragePool has no p"):
        make_case("AveragePool", (1, 1, 5, 5), kernel=2, p=3)


def test_the_table_feeds_id_params_and_node_alike() -> None:
    case = make_case("AveragePool", (1, 1, 6, 6), kernel=3, strides=2, pads=1, ceil_mode=True,
                     count_include_pad=True, opset=19, dilations=2)
    assert case.id == "AveragePool-2d-k3-s2-p1-d2-ceil-cip-f32-n6-o19"
    node = {a.name: onnx.helper.get_attribute_value(a) for a in build_model(case).graph.node[0].attribute}
    assert node == {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "dilations": [2, 2],
                    "ceil_mode": 1, "count_include_pad": 1}
    params = case.describe()
    assert {k: params[k] for k in ("kernel", "pads", "dilations", "ceil_mode", "count_include_pad")} == {
        "kernel": [3, 3], "pads": [1, 1, 1, 1], "dilations": [2, 2], "ceil_mode": True, "count_include_pad": True}
    assert "p" not in params and "with_indices" not in params
    # count_include_pad is written as 0 where the schema defines it, so no runtime default decides
    plain = make_case("AveragePool", (1, 1, 6, 6), kernel=3)
    assert plain.onnx_attributes()["count_include_pad"] == 0
    assert "count_include_pad" not in make_case("AveragePool", (1, 1, 6, 6), kernel=3, opset=1).onnx_attributes()


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(ADAPTIVE_OPS), st.integers(1, 3), st.data())
def test_adaptive_ids_round_trip(op: str, rank: int, data: st.DataObject) -> None:
    """Adaptive cases (no ONNX node) write their output size as `os<O>` and read back whole."""
    axes = lambda lo, hi: st.lists(st.integers(lo, hi), min_size=rank, max_size=rank).map(tuple)  # noqa: E731
    case = make_case(op, (data.draw(st.integers(0, 3)), data.draw(st.integers(0, 3)), *data.draw(axes(1, 9))),
                     output_size=data.draw(axes(1, 9)), dtype=data.draw(st.sampled_from(("float32", "float16"))),
                     generator=data.draw(st.sampled_from(("normal", "ties"))))
    assert parse_case_id(case.id) == case
    assert parse_case_id(case.id).output_size == case.output_size and "-os" in case.id


def test_adaptive_ids_refuse_what_the_op_lacks() -> None:
    assert parse_case_id("AdaptiveMaxPool-2d-os3x2-f32-n7-b2c3").output_size == (3, 2)
    for bad in ("AdaptiveMaxPool-2d-k3-f32-n7", "AdaptiveAveragePool-2d-os3-i8-n7", "MaxPool-2d-os3-f32-n7",
                "AdaptiveAveragePool-2d-os0-f32-n7", "AdaptiveAveragePool-2d-os3x3x3-f32-n7",
                "AdaptiveAveragePool-2d-os3-pad-f32-n7"):
        with pytest.raises(CaseError):
            parse_case_id(bad)


@pytest.mark.parametrize("attribute", [a for a in ATTRIBUTES if a.name not in GRAPH_ROWS
                                       and not set(a.ops) <= set(ADAPTIVE_OPS)], ids=lambda a: a.name)
def test_the_tables_opsets_are_the_installed_onnx_schemas(attribute) -> None:
    """`since` of every row is the first opset whose schema has the attribute (or the Indices output)."""
    for op in attribute.ops:
        versions = sorted({s.since_version for s in onnx.defs.get_all_schemas_with_history()
                           if s.name == op and s.domain == ""})
        has = [v for v in versions
               if (len(onnx.defs.get_schema(op, v, "").outputs) > 1 if attribute.onnx is None
                   else attribute.onnx in onnx.defs.get_schema(op, v, "").attributes)]
        assert has and has[0] == attribute.since[op], (op, has)


def _doc_ids() -> list[tuple[str, str]]:
    """(where, id) for every case id the --help texts, README.md and docs/*.md show."""
    texts = {"README.md": (ROOT / "README.md").read_text(encoding="utf-8")}
    texts.update({f"docs/{p.name}": p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md"))})
    parser = build_parser()
    texts["poolconform --help"] = parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                texts[f"poolconform {name} --help"] = sub.format_help()
    found = [(where, m.group(0)) for where, text in texts.items() for m in ID_IN_TEXT.finditer(text)
             if m.group("glob") is None]
    return found


def test_every_id_in_help_readme_and_docs_resolves() -> None:
    found = _doc_ids()
    assert any(where.endswith("--help") for where, _ in found)  # the reader sees the help texts
    assert any(where == "README.md" for where, _ in found)
    bad = []
    for where, text in found:
        try:
            parse_case_id(text)
        except CaseError as exc:
            bad.append(f"{where}: {exc}")
    assert bad == []


def test_cases_globs_select_by_id_and_a_selection_of_nothing_is_an_error() -> None:
    cases = load_matrix().cases
    ceil = select_cases(cases, ["*-ceil-*"])
    assert ceil and all("-ceil-" in c.id for c in ceil)
    both = select_cases(cases, ["GlobalMaxPool-*", "*-ceil-*", "*-ceil-*"])
    assert len(both) == len({c.id for c in both}) == len(ceil) + sum(c.op == "GlobalMaxPool" for c in cases)
    assert [c.id for c in both] == [c.id for c in cases if c in set(both)]  # matrix order
    with pytest.raises(PoolconformError, match="matches none"):
        select_cases(cases, ["MinPool-*"])
    with pytest.raises(PoolconformError, match="token 'cel'"):
        select_cases(cases, ["MaxPool-2d-k3-s2-p1-cel-f32-n7"])
    outside = select_cases(cases, ["LpPool-3d-k2-s1-p0-L3-f64-n3"])
    assert [c.id for c in outside] == ["LpPool-3d-k2-s1-p0-L3-f64-n3"]


def test_run_cases_runs_a_held_and_an_unheld_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnxruntime", reason="the run uses onnxruntime-cpu")
    out = tmp_path / "r"
    status = main(["run", "--cases", "MaxPool-2d-k2-s2-p0-f32-n4-gseed", "--cases", "LpPool-1d-k3-s2-p1-L3-f32-n9",
                   "--backends", "onnxruntime-cpu", "--out", str(out), "--quiet"])
    assert status == 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["case"] for r in records) == ["LpPool-1d-k3-s2-p1-L3-f32-n9", "MaxPool-2d-k2-s2-p0-f32-n4-gseed"]
    assert all(r["status"] == "pass" for r in records)


def test_run_cases_that_select_nothing_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["run", "--cases", "NoSuchPool*", "--backends", "onnx-reference", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "matches none" in err
    assert not (tmp_path / "r" / "results.jsonl").exists()
