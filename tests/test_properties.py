"""Property-based tests: the shape rule and the oracle against ONNX Runtime, and hostile matrices.

Over random valid cases, poolconform.shapes.output_shape must be ONNX Runtime's actual output
shape and poolconform.oracle.reference_outputs its values (max exact, averages within
poolconform.compare.tolerance). Over random tables and bytes, the matrix reader must either
expand or refuse with a PoolconformError, never raise anything else.
"""

from __future__ import annotations

import string

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from poolconform import compare, shapes
from poolconform.case import AUTO_PADS, OPS, PoolCase
from poolconform.validation import make_case
from poolconform.errors import CaseError, PoolconformError
from versioned import ORT_SAME_NEGATIVE_PAD, ORT_UNEQUAL_PADS_COUNTED, known_behaviour, pinned_finding
from poolconform.inputs import make_inputs
from poolconform.matrix import KEYS, Expansion, expand, load_toml
from poolconform.oracle import reference_outputs

MAX_OPS = ("MaxPool", "GlobalMaxPool")


@st.composite
def valid_cases(draw) -> PoolCase:
    """A random case ONNX can express (make_case validates it; impossible ones are rejected)."""
    op = draw(st.sampled_from(OPS))
    rank = draw(st.integers(1, 3))
    per_axis = lambda lo, hi: st.lists(st.integers(lo, hi), min_size=rank, max_size=rank)  # noqa: E731
    batch, channels = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    spatial = draw(per_axis(1, 7 if rank < 3 else 5))
    shape = (batch, channels, *spatial)
    rest: dict = {}
    if op in ("LpPool", "GlobalLpPool"):
        rest["p"] = draw(st.integers(1, 3))
    if op == "GlobalLpPool":
        rest["opset"] = 18  # ONNX Runtime has no GlobalLpPool kernel for opset 22 (NOT_IMPLEMENTED)
    if op.startswith("Global"):
        return make_case(op, shape, **rest)
    kernel = draw(per_axis(1, 4))
    dilations = draw(per_axis(1, 2))
    auto_pad = draw(st.sampled_from(AUTO_PADS))
    if auto_pad == "NOTSET":
        # ONNX Runtime refuses pads >= kernel, ignoring dilation; poolconform allows up to the
        # effective kernel. Stay within what both accept (see test_ort_refuses_pads_at_kernel).
        pads = [draw(st.integers(0, k - 1)) for k in kernel for _ in (0,)]
        pads += [draw(st.integers(0, k - 1)) for k in kernel]
    else:
        pads = [0] * (2 * rank)
    rest.update(auto_pad=auto_pad, ceil_mode=draw(st.booleans()) if auto_pad in ("NOTSET", "VALID") else False)
    if op == "AveragePool":
        rest["count_include_pad"] = draw(st.booleans())
    if op == "MaxPool" and draw(st.booleans()):
        rest.update(with_indices=True, storage_order=draw(st.integers(0, 1)))
    strides = draw(per_axis(1, 3))
    if auto_pad != "NOTSET":
        # ONNX Runtime's SAME pads ignore dilation, and with a stride longer than the window the
        # spec's pad formula goes negative (ORT crops or refuses; poolconform pads 0, as TF does):
        # both are findings (docs/refusals.md), outside the agreement this property checks.
        assume(all(d == 1 for d in dilations) and all(s <= k for s, k in zip(strides, kernel)))
    try:
        return make_case(op, shape, kernel=kernel, strides=strides, pads=pads, dilations=dilations, **rest)
    except CaseError:
        assume(False)
        raise


@pytest.fixture(scope="module")
def ort():
    pytest.importorskip("onnxruntime")
    from poolconform.backends.onnxruntime_backend import OnnxRuntimeCPU

    backend = OnnxRuntimeCPU()
    assert backend.available() is None
    return backend


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(case=valid_cases())
def test_shape_rule_and_oracle_match_onnxruntime(ort, case):
    if case.count_include_pad and case.rank > 1 and (case.auto_pad.startswith("SAME") or len(set(case.pads)) > 1):
        # a finding before ORT 1.25, pinned in test_onnxruntime_divergences_kept_out_of_the_property
        assume(known_behaviour(*ORT_UNEQUAL_PADS_COUNTED) == "pad counted")
    inputs = make_inputs(case)
    actual = ort.run(case, inputs)
    expected = reference_outputs(case, inputs)
    assert tuple(actual[0].shape) == shapes.output_shape(case), case
    y = actual[0].astype(np.float64)
    # A dilated window can hold nothing but padding: the oracle says -inf (max) or NaN (average);
    # ONNX Runtime writes the dtype's lowest value for max. Compare the other positions exactly.
    empty = ~np.isfinite(expected[0])
    if case.op in MAX_OPS:
        lowest = float(np.finfo(actual[0].dtype).min)
        assert np.all(y[empty] <= lowest), case
        assert np.array_equal(y[~empty], expected[0].astype(actual[0].dtype)[~empty]), case
    else:
        atol = compare.tolerance(case, expected[0], inputs)
        err = np.abs(y[~empty] - expected[0][~empty])
        assert err.size == 0 or float(err.max()) <= atol, (case, float(err.max()), atol)
    if case.with_indices:
        assert tuple(actual[1].shape) == shapes.output_shape(case)
        assert np.array_equal(actual[1][~empty], expected[1][~empty]), case


def test_onnxruntime_divergences_kept_out_of_the_property(ort):
    """Pins what ONNX Runtime does where the property above filters (findings, docs/refusals.md).

    If this fails, ONNX Runtime changed: update the docs and widen the property's strategy.
    """
    def run(**kw):
        case = make_case(**kw)
        inputs = make_inputs(case)
        return case, inputs, ort.run(case, inputs)

    # pads must be < kernel in ORT, even where dilation makes the window (3) longer than the pad (2)
    with pytest.raises(Exception, match="Pad should be smaller than kernel"):
        run(op="MaxPool", input_shape=(1, 1, 5), kernel=2, dilations=2, pads=2)
    # SAME with a stride longer than the window: the spec's pad formula is negative (-2 here);
    # ORT crops (averages x[1]) where poolconform, like TensorFlow, pads 0 (x[0])
    case, inputs, (y,) = run(op="AveragePool", input_shape=(1, 1, 3), kernel=1, strides=3, auto_pad="SAME_UPPER")
    assert shapes.output_shape(case) == (1, 1, 1) and y.shape == (1, 1, 1)
    assert y[0, 0, 0] == inputs[0][0, 0, 1] and reference_outputs(case, inputs)[0][0, 0, 0] == inputs[0][0, 0, 0]
    behaviour = known_behaviour(*ORT_SAME_NEGATIVE_PAD)
    with pinned_finding(*ORT_SAME_NEGATIVE_PAD[:2], behaviour):
        if behaviour == "refuses":
            with pytest.raises(Exception, match="padding values must be non-negative"):
                run(op="MaxPool", input_shape=(1, 1, 3), kernel=1, strides=3, auto_pad="SAME_UPPER")
        else:  # crops like AveragePool above: x[1]
            case, inputs, (y,) = run(op="MaxPool", input_shape=(1, 1, 3), kernel=1, strides=3, auto_pad="SAME_UPPER")
            assert y[0, 0, 0] == inputs[0][0, 0, 1], (inputs[0], y)
    # SAME_UPPER with count_include_pad over one element and a 2-wide window: the spec gives x/2
    behaviour = known_behaviour(*ORT_UNEQUAL_PADS_COUNTED)
    with pinned_finding(*ORT_UNEQUAL_PADS_COUNTED[:2], behaviour):
        case, inputs, (y,) = run(op="AveragePool", input_shape=(1, 1, 1, 1), kernel=(2, 1), auto_pad="SAME_UPPER",
                                 count_include_pad=True)
        x = inputs[0].ravel()[0]
        assert y.ravel()[0] == (x / 2 if behaviour == "pad counted" else x), (x, y)
    # SAME with dilation: ORT sizes the pads from the undilated kernel, so its output is shorter
    case, _, (y,) = run(op="MaxPool", input_shape=(1, 1, 4), kernel=2, dilations=2, auto_pad="SAME_UPPER")
    assert shapes.output_shape(case) == (1, 1, 4) and y.shape != (1, 1, 4)


# ---- hostile matrices: expand or refuse, nothing else ------------------------------------------

NAMES = ["MaxPool", "AveragePool", "GlobalMaxPool", "LpPool", "SAME_UPPER", "VALID", "float32", "int8", "normal",
         "ties", "", "max", "AvgPool"]
scalars = st.one_of(
    st.integers(-3, 9), st.integers(-(2**63), 2**63 - 1), st.booleans(), st.sampled_from(NAMES),
    st.text(max_size=8), st.floats(allow_nan=True, allow_infinity=True),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                          max_size=2), max_leaves=8)
keys = st.one_of(st.sampled_from(list(KEYS)), st.sampled_from(["kernal", "strides", "op", "Kernel", "pad", "", "input"]),
                 st.text(max_size=6))


small = st.integers(-1, 5)
per_axis_value = st.one_of(small, st.lists(st.lists(small, min_size=1, max_size=6), min_size=1, max_size=1))
PLAUSIBLE = {
    "ops": st.sampled_from(NAMES) | st.lists(st.sampled_from(NAMES), min_size=1, max_size=3),
    "rank": st.integers(0, 4) | st.lists(st.integers(1, 3), min_size=1, max_size=3),
    **{k: per_axis_value | st.lists(per_axis_value, min_size=1, max_size=3)
       for k in ("kernel", "stride", "input_size", "pads", "dilation")},
    **{k: st.booleans() | st.lists(st.booleans(), min_size=1, max_size=2) for k in ("ceil_mode", "count_include_pad",
                                                                                   "indices")},
    "auto_pad": st.sampled_from(list(AUTO_PADS) + ["same", "SAME"]),
    "dtype": st.sampled_from(["float32", "float16", "float64", "bfloat16", "int8", "uint8", "f32"]),
    "batch": st.integers(0, 3), "channels": st.integers(1, 3),
    "opset": st.sampled_from([0, 1, 7, 10, 11, 12, 18, 19, 22, 99]),
    "p": st.integers(0, 3), "storage_order": st.integers(0, 2),
    "generator": st.sampled_from(["normal", "ties", "nan", "inf", "bogus"]),
}
#: Tables near the valid ones, so that many expand (random ones are nearly all refused).
plausible_tables = st.fixed_dictionaries({}, optional=PLAUSIBLE)


def expand_or_refuse(table: object) -> None:
    try:
        result = expand(table)  # type: ignore[arg-type]
    except PoolconformError as exc:
        message = str(exc)
        assert message and "\n" not in message
        event(f"refused: {type(exc).__name__}")
        return
    assert isinstance(result, Expansion) and result.cases  # an empty expansion is refused, never returned
    assert all(isinstance(c, PoolCase) for c in result.cases) and len(set(result.cases)) == len(result.cases)
    assert len(result.cases) + sum(result.dropped.values()) <= result.combinations
    event("expanded")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=st.dictionaries(keys, values, max_size=5) | plausible_tables)
def test_random_tables_expand_or_refuse(table):
    expand_or_refuse(table)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(["kernel", "stride", "input_size", "pads", "dilation", "batch", "opset"]),
       huge=st.lists(st.integers(1, 12), min_size=200, max_size=1000), bad=st.sampled_from([None, 0, -1, 2**40, "3"]))
def test_huge_lists_expand_or_refuse(key, huge, bad):
    if bad is not None:
        huge = huge[:100] + [bad] + huge[100:]
    expand_or_refuse({key: huge, "ops": ["MaxPool", "AveragePool"]})


@settings(max_examples=40, deadline=None)
@given(table=st.one_of(st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=3),
                       st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=2)))
def test_tables_that_are_not_tables_are_refused(table):
    with pytest.raises(PoolconformError):
        expand(table)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=300), st.text(alphabet=string.printable + "[]=\"'é\x00", max_size=200)
                      .map(lambda t: t.encode("utf-8")),
                      st.sampled_from([b"[matrix]\nkernel = ", b"[matrix]\n", b"[matrix]\nkernel = [[[[[[[[1]]]]]]]]\n",
                                       b"\xef\xbb\xbf[matrix]\n", b"matrix.kernel = 3\n", b"[[matrix]]\n"])))
def test_random_bytes_as_a_matrix_file_are_read_or_refused(tmp_path, data):
    path = tmp_path / "m.toml"
    path.write_bytes(data)
    try:
        table = load_toml(path)
    except PoolconformError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    expand_or_refuse(table)
