"""The output-shape rule: one function, checked against what ONNX Runtime really computes."""

import itertools
import numpy as np

import pytest

from poolconform import shapes
from poolconform.validation import make_case
from poolconform.errors import CaseError
from versioned import ORT_SAME_NEGATIVE_PAD, known_behaviour, pinned_finding

ort = pytest.importorskip("onnxruntime")


def test_seed_formula_is_wrong_where_the_readme_says():
    # n=4, f=2, s=2: the tutorial's (n - f + 1) / s gives 1.5; every framework gives 2.
    assert shapes.seed_output_size(4, 2, 2) == 1.5
    assert shapes.output_size(4, 2, 2) == 2


@pytest.mark.parametrize(
    "n, k, s, pb, pe, d, ceil, expected",
    [
        (5, 2, 2, 0, 0, 1, False, 2),
        (5, 2, 2, 0, 0, 1, True, 3),
        (4, 2, 2, 1, 1, 1, True, 3),  # the last window would start in the right padding: dropped
        (6, 3, 2, 1, 1, 1, True, 4),
        (7, 3, 1, 0, 0, 2, False, 3),  # dilated window spans 5
        (3, 5, 1, 1, 1, 1, False, 1),
        (2, 5, 1, 1, 1, 1, False, 0),
    ],
)
def test_output_size_examples(n, k, s, pb, pe, d, ceil, expected):
    assert shapes.output_size(n, k, s, pb, pe, d, ceil) == expected


def test_same_pads_put_the_odd_pad_where_onnx_says():
    assert shapes.same_pads(5, 2, 1, 1, upper=True) == (0, 1)
    assert shapes.same_pads(5, 2, 1, 1, upper=False) == (1, 0)
    assert shapes.same_pads(7, 3, 2, 1, upper=True) == (1, 1)


def _same_pad_negative(n: int, k: int, s: int) -> bool:
    """The spec's unclamped SAME pad `(ceil(n/s) - 1) * s + k - n` is negative."""
    return (-(-n // s) - 1) * s + k - n < 0


def test_onnxruntime_refuses_same_padding_when_the_stride_skips_input():
    """A finding, kept visible: for SAME with stride > kernel the spec's pad is negative;
    poolconform (like TensorFlow) clamps it at 0, ONNX Runtime refuses the model."""
    case = make_case("MaxPool", (1, 1, 5), kernel=1, strides=3, auto_pad="SAME_UPPER")
    assert shapes.output_shape(case) == (1, 1, 2)
    behaviour = known_behaviour(*ORT_SAME_NEGATIVE_PAD)
    with pinned_finding(*ORT_SAME_NEGATIVE_PAD[:2], behaviour):
        if behaviour == "refuses":
            with pytest.raises(Exception, match="padding values must be non-negative"):
                _ort_shape(case)
        else:
            assert _ort_shape(case) == (1, 1, 2)


def _ort_shape(case):
    from poolconform.backends.onnxruntime_backend import OnnxRuntimeCPU
    from poolconform.inputs import make_inputs

    return OnnxRuntimeCPU().run(case, make_inputs(case))[0].shape


def test_shape_rule_equals_onnxruntime_over_a_sweep():
    """Hundreds of (n, f, s, pads, dilation, ceil, auto_pad) points in 1-D, 2-D and 3-D."""
    checked = 0
    for rank, n, k, s, p, d, ceil, auto_pad in itertools.product(
        (1, 2), range(3, 10), (1, 2, 3, 4), (1, 2, 3), (0, 1, 2), (1, 2), (False, True),
        ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"),
    ):
        if auto_pad != "NOTSET" and p:  # ceil_mode stays: under VALID it counts (onnx/onnx#5248)
            continue
        if p >= k:  # ONNX Runtime refuses pads >= kernel
            continue
        if auto_pad.startswith("SAME") and (d > 1 or _same_pad_negative(n, k, s) or _same_pad_negative(n + rank - 1, k, s)):
            continue  # ORT's own SAME arithmetic differs here: see the tests below
        try:
            case = make_case("MaxPool", (1, 1) + (n + rank - 1,) * 1 + (n,) * (rank - 1), kernel=k, strides=s,
                             pads=p, dilations=d, ceil_mode=ceil, auto_pad=auto_pad)
        except CaseError:
            continue
        assert _ort_shape(case) == shapes.output_shape(case), case.id
        checked += 1
    assert checked > 500
    # 3-D, non-cubic, asymmetric pads
    for k, s in itertools.product((1, 2, 3), (1, 2)):
        case = make_case("AveragePool", (2, 3, 5, 6, 7), kernel=[k, 2, 1], strides=[s, 1, 2], pads=[0, 1, 0, 0, 0, 0]
                         if k > 0 else 0)
        assert _ort_shape(case) == shapes.output_shape(case), case.id


def test_readme_shape_table_is_what_the_rule_computes():
    """The README's table beside the seed's formula is checked, not hand-maintained."""
    from conftest import ROOT

    rows = []
    for line in (ROOT / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].isdigit():
            rows.append(cells)
    assert len(rows) >= 3
    for n, f, s, seed, onnx_out in rows:
        ceil = "ceil_mode" in s
        stride = int(s.split(",")[0])
        assert float(seed) == shapes.seed_output_size(int(n), int(f), stride)
        assert int(onnx_out) == shapes.output_size(int(n), int(f), stride, ceil_mode=ceil)


def test_ceil_overhang_rule_follows_the_opset_like_onnx_shape_inference():
    """Before opset 22 the spec keeps a ceil_mode window that starts in the right padding;
    build_model checks our rule against onnx's strict shape inference at every opset."""
    from poolconform.onnx_export import build_model

    kept = 0
    for opset, op, n, k, s, p in itertools.product(
        (10, 11, 12, 18, 19, 22), ("MaxPool", "AveragePool"), range(3, 9), (2, 3), (1, 2, 3), (0, 1)
    ):
        if p >= k:
            continue
        try:
            case = make_case(op, (1, 1, n), kernel=k, strides=s, pads=p, ceil_mode=True, opset=opset)
        except CaseError:
            continue
        build_model(case)  # raises if onnx's inferred shape differs from shapes.output_shape
        kept += shapes.keeps_an_overhang_window(case)
        assert shapes.keeps_an_overhang_window(case) == (
            opset < 22 and shapes.output_shape(case) != shapes.output_shape(case.replace(opset=22)))
    assert kept > 20


def test_onnxruntime_applies_the_opset_22_ceil_rule_at_older_opsets():
    """A finding kept visible: ONNX Runtime drops the overhang window at every opset."""
    from poolconform.worker import onnx_only_reason

    case = make_case("MaxPool", (1, 1, 5), kernel=2, strides=2, pads=1, ceil_mode=True, opset=19)
    assert shapes.output_shape(case) == (1, 1, 4)
    assert _ort_shape(case) == (1, 1, 3)
    assert "opset 19" in onnx_only_reason(case)
    assert onnx_only_reason(case.replace(opset=22)) is None


def test_a_window_covering_neither_input_nor_padding_is_dropped_at_every_opset():
    """MaxPool opset 12, k=1, s=2, pads 0, ceil_mode, width 2: the pre-22 text counts a second
    window that holds no element; the corrected rule (onnx/onnx#5711) and ONNX Runtime give one."""
    from poolconform import oracle
    from poolconform.inputs import make_inputs
    from poolconform.onnx_export import build_model

    case = make_case("MaxPool", (1, 1, 2), kernel=1, strides=2, ceil_mode=True, opset=12)
    assert shapes.output_shape(case) == (1, 1, 1)
    assert shapes.onnx_inferred_spatial_shape(case) == (2,)  # onnx's shape inference keeps the letter
    assert "onnx/onnx#5711" in shapes.empty_window_note(case)
    (values,) = oracle.reference_outputs(case, make_inputs(case))
    assert values.shape == (1, 1, 1) and np.isfinite(values).all()  # never -inf from an empty window
    build_model(case)  # valid model: the disputed axis is declared symbolic
    assert _ort_shape(case) == (1, 1, 1)
    # A window starting in the right padding is not empty of padding: before opset 22 it stays.
    kept = make_case("MaxPool", (1, 1, 5), kernel=2, strides=2, pads=1, ceil_mode=True, opset=12)
    assert shapes.output_shape(kept) == (1, 1, 4) and shapes.empty_window_note(kept) is None
    assert shapes.empty_window_note(case.replace(opset=22)) is None


def test_empty_window_note_reaches_the_record():
    from poolconform.inputs import make_inputs
    from poolconform.job import Job
    from poolconform.verdict import outcome_record
    from poolconform.worker import Outcome

    case = make_case("MaxPool", (1, 1, 2), kernel=1, strides=2, ceil_mode=True, opset=12)
    x = make_inputs(case)[0]
    record = outcome_record(Job(case), "onnxruntime-cpu", Outcome(0, "outputs", outputs=[x[:, :, :1]]))
    assert record["status"] == "pass" and "onnx/onnx#5711" in record["note"]


def test_seed_hint_only_when_the_seed_formula_is_the_cause():
    # n=4, f=2, s=2: (4 - 2 + 1) // 2 = 1 where ONNX gives 2, and no misreading of ONNX's rule gives 1.
    case = make_case("MaxPool", (1, 1, 4, 4), kernel=2, strides=2)
    assert shapes.seed_formula_explains(case, [1, 1, 1, 1])
    assert not shapes.seed_formula_explains(case, [1, 1, 2, 2])  # the right shape
    assert not shapes.seed_formula_explains(case, [1, 1, 1, 2])  # not the seed's on every axis
    # Padding ignored gives 7 = (8 - 2 + 1) / 1: it only coincides with the seed's formula.
    padded = make_case("MaxPool", (1, 1, 8, 8), kernel=2, strides=1, pads=1)
    assert not shapes.seed_formula_explains(padded, [1, 1, 7, 7])
    # Stride 1: the seed's formula equals the right one; never a hint.
    assert not shapes.seed_formula_explains(make_case("MaxPool", (1, 1, 7, 7), kernel=3), [1, 1, 5, 5])
    # ceil_mode dropped (5, k2, s2: ONNX 3, floor 2) equals the seed's 2 by coincidence: no hint.
    ceil = make_case("MaxPool", (1, 1, 5), kernel=2, strides=2, ceil_mode=True)
    assert not shapes.seed_formula_explains(ceil, [1, 1, 2])


def test_every_auto_pad_with_ceil_mode_builds_a_model_onnx_accepts():
    """ceil_mode under VALID counts, as onnx's shape inference and ONNX Runtime apply it
    (onnx/onnx#5248; the spec's VALID formula with ceil is its floor formula): declaring the
    floor shape made onnx reject the model, so `export` of matrices/pads.toml stopped."""
    from poolconform.onnx_export import build_model

    built = 0
    for op, auto_pad, opset, n, k, s in itertools.product(
        ("MaxPool", "AveragePool"), ("VALID", "SAME_UPPER", "SAME_LOWER"), (12, 19, 22), (5, 6, 7), (1, 2, 3), (1, 2, 3),
    ):
        try:
            case = make_case(op, (1, 1, n, n + 1), kernel=k, strides=s, ceil_mode=True, auto_pad=auto_pad, opset=opset)
        except CaseError:
            continue
        build_model(case)  # checked with strict shape inference: raises when the shapes differ
        built += 1
    assert built > 200
    case = make_case("MaxPool", (1, 1, 5), kernel=2, strides=2, ceil_mode=True, auto_pad="VALID")
    assert shapes.output_shape(case) == (1, 1, 3)  # the window at 4 holds one element, as in ONNX Runtime
