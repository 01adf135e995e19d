import pytest

from poolconform.validation import make_case
from poolconform.errors import CaseError


def test_id_is_human_readable_and_matches_the_documented_example():
    case = make_case("MaxPool", (1, 1, 7, 7), kernel=3, strides=2, pads=1, ceil_mode=True)
    assert case.id == "MaxPool-2d-k3-s2-p1-ceil-f32-n7"


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(op="AveragePool", input_shape=(2, 3, 5, 6), kernel=[2, 3], strides=1, pads=[0, 1, 1, 0],
              count_include_pad=True), "AveragePool-2d-k2x3-s1-p0_1_1_0-cip-f32-n5x6-b2c3"),
        (dict(op="MaxPool", input_shape=(1, 1, 9), kernel=2, strides=2, dilations=2, dtype="float16", opset=12),
         "MaxPool-1d-k2-s2-p0-d2-f16-n9-o12"),
        (dict(op="MaxPool", input_shape=(1, 1, 4, 4, 4), kernel=2, strides=1, auto_pad="SAME_UPPER",
              with_indices=True, storage_order=1), "MaxPool-3d-k2-s1-sameupper-idxcol-f32-n4"),
        (dict(op="GlobalAveragePool", input_shape=(1, 1, 4, 4), generator="seed"), "GlobalAveragePool-2d-f32-n4-gseed"),
        (dict(op="LpPool", input_shape=(1, 1, 6, 6), kernel=2, p=3), "LpPool-2d-k2-s1-p0-L3-f32-n6"),
    ],
)
def test_ids_are_stable(kwargs, expected):
    # These strings are part of the interface: expectation files and CI histories use them.
    op = kwargs.pop("op")
    shape = kwargs.pop("input_shape")
    assert make_case(op, shape, **kwargs).id == expected


def test_cases_are_frozen_hashable_and_label_does_not_change_identity():
    a = make_case("MaxPool", (1, 1, 5, 5), kernel=2)
    b = make_case("MaxPool", (1, 1, 5, 5), kernel=[2, 2], strides=1, pads=0)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    labelled = a.replace(label="test_maxpool_dir")
    assert labelled == a and labelled.id == "test_maxpool_dir"
    with pytest.raises(Exception):
        a.op = "AveragePool"  # type: ignore[misc]


def test_onnx_defaults_not_framework_defaults():
    case = make_case("AveragePool", (1, 1, 6, 6), kernel=3)
    assert case.strides == (1, 1)  # ONNX strides default to 1; PyTorch/Keras default to the kernel
    assert case.count_include_pad is False  # ONNX default 0; PyTorch default True
    assert case.pads == (0, 0, 0, 0) and case.dilations == (1, 1)


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (("MaxPool", (1, 1, 5, 5)), dict(kernel=0), "kernel must be >= 1"),
        (("MaxPool", (1, 1, 5, 5)), dict(kernel=2, strides=0), "strides must be >= 1"),
        (("MaxPool", (1, 1, 5, 5)), dict(kernel=2, pads=2), "must be smaller than the effective kernel"),
        (("MaxPool", (1, 1, 2, 2)), dict(kernel=5, pads=1), "kernel larger than padded input"),
        (("MaxPool", (1, 1, 5, 5)), dict(kernel=[2, 2, 2]), "needs 2 values"),
        (("Conv", (1, 1, 5, 5)), dict(kernel=2), "unknown op 'Conv'"),
        (("MaxPool", (1, 1, 5, 5)), dict(kernel=2, dtype="int4"), "unknown dtype 'int4'"),
        (("AveragePool", (1, 1, 5, 5)), dict(kernel=2, with_indices=True), "only MaxPool has an Indices output"),
        (("MaxPool", (1, 1, 5, 5)), dict(kernel=2, pads=1, auto_pad="SAME_UPPER"), "cannot be combined"),
        (("MaxPool", (1, 1)), dict(kernel=2), "1-3 spatial axes"),
    ],
)
def test_impossible_cases_are_rejected_with_a_reason(args, kwargs, message):
    with pytest.raises(CaseError, match=message):
        make_case(*args, **kwargs)


def test_describe_is_plain_json():
    import json

    case = make_case("MaxPool", (2, 3, 8, 8), kernel=3, strides=2, pads=1, with_indices=True)
    d = json.loads(json.dumps(case.describe()))
    assert d["kernel"] == [3, 3] and d["pads"] == [1, 1, 1, 1] and d["with_indices"] is True


def test_zero_batch_or_channels_is_a_valid_case_and_zero_spatial_is_not():
    """N = 0 and C = 0 are valid empty tensors (ONNX Runtime runs N = 0): oracle, export and the
    matrix accept them; an empty spatial axis has no window and stays refused with its reason."""
    import numpy as np

    from poolconform import oracle
    from poolconform.inputs import make_inputs
    from poolconform.matrix import expand
    from poolconform.onnx_export import build_model

    for shape in ((0, 3, 5, 5), (2, 0, 5, 5)):
        for op, kw in (("MaxPool", {"with_indices": True}), ("AveragePool", {}), ("LpPool", {}), ("GlobalAveragePool", {})):
            extra = {} if op.startswith("Global") else {"kernel": 2, "strides": 2}
            case = make_case(op, shape, **extra, **kw)
            outs = oracle.reference_outputs(case, make_inputs(case))
            want = shape[:2] + ((1, 1) if op.startswith("Global") else (2, 2))
            assert [o.shape for o in outs] == [want] * len(outs)
            assert all(o.size == 0 for o in outs) and np.asarray(outs[0]).dtype == np.float64
            build_model(case)
    with pytest.raises(CaseError, match="spatial size"):
        make_case("MaxPool", (1, 1, 0, 4), kernel=1)
    with pytest.raises(CaseError):
        make_case("MaxPool", (-1, 1, 4, 4), kernel=1)
    cases = expand({"ops": ["MaxPool"], "batch": [0, 2], "channels": [0, 1], "input_size": 4}).cases
    assert sorted(c.input_shape[:2] for c in cases) == [(0, 0), (0, 1), (2, 0), (2, 1)]
    assert {c.id.rsplit("-", 1)[-1] for c in cases} >= {"b0c0", "b0c1", "b2c0"}
