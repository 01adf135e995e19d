"""Converter, exporter and optimizer backends (issue L): each judged by the same oracle, an
exporter's refusal kept apart (unsupported, its own words) from a silently wrong export."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from poolconform.backends.base import Unsupported, registry
from poolconform.inputs import make_inputs
from poolconform.oracle import reference_outputs
from poolconform.validation import make_case
from conftest import load, usable

NEW = ("onnxruntime-cpu-noopt", "torch-dynamo-export->onnxruntime-cpu", "tf2onnx->onnxruntime-cpu",
       "onnxsim->onnxruntime-cpu", "onnx2torch", "onnx2tf->litert")
CEIL_AVG = make_case("AveragePool", (2, 2, 6, 6), kernel=3, strides=2, pads=1, count_include_pad=True, ceil_mode=True)


def agrees(backend, case) -> list[np.ndarray]:
    inputs = make_inputs(case)
    outputs = backend.run(case, inputs)
    expected = reference_outputs(case, inputs)
    assert [o.shape for o in outputs] == [e.shape for e in expected]
    np.testing.assert_allclose(outputs[0].astype(np.float64), expected[0], rtol=1e-6, atol=1e-6)
    return outputs


def test_new_backends_are_registered_opt_in_with_their_kind():
    specs = registry()
    for name in NEW:
        assert specs[name].opt_in, name
    reads = {name: load(name).reads_onnx for name in NEW}
    assert reads == {"onnxruntime-cpu-noopt": True, "torch-dynamo-export->onnxruntime-cpu": False,
                     "tf2onnx->onnxruntime-cpu": False, "onnxsim->onnxruntime-cpu": True, "onnx2torch": True,
                     "onnx2tf->litert": True}


def test_noopt_runs_ort_with_every_graph_optimization_off():
    ort = pytest.importorskip("onnxruntime")
    backend = usable("onnxruntime-cpu-noopt")
    agrees(backend, CEIL_AVG)
    level = backend._session(CEIL_AVG).get_session_options().graph_optimization_level
    assert level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    default = load("onnxruntime-cpu")._session(CEIL_AVG).get_session_options().graph_optimization_level
    assert default == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


def test_dynamo_export_round_trip_keeps_ceil_and_count_include_pad():
    backend = usable("torch-dynamo-export->onnxruntime-cpu", "torch", "onnxscript")
    agrees(backend, CEIL_AVG)
    note = backend.note(CEIL_AVG)
    assert note.startswith("exported AveragePool{") and "ceil_mode=1" in note and "count_include_pad=1" in note
    assert note.endswith("ORT output == torch output")


def test_an_exporter_refusal_is_unsupported_with_its_own_words():
    backend = usable("torch-export->onnxruntime-cpu", "torch")
    case = make_case("MaxPool", (1, 1, 8), kernel=2, strides=2, dtype="int8")  # no int8 max_pool1d kernel
    assert backend.supports(case) is None  # torch's plan expresses it; the exporter is what refuses
    with pytest.raises(Unsupported) as refused:
        backend.run(case, make_inputs(case))
    assert str(refused.value).startswith("unsupported: torch.onnx.export(dynamo=False) refuses: NotImplementedError")


def test_dynamo_export_that_runs_where_torch_cannot_still_judges_ort():
    backend = usable("torch-dynamo-export->onnxruntime-cpu", "torch", "onnxscript")
    case = make_case("MaxPool", (1, 1, 8), kernel=2, strides=2, dtype="int8")
    outputs = backend.run(case, make_inputs(case))  # exported without running a kernel; ORT has one
    np.testing.assert_array_equal(outputs[0], reference_outputs(case, make_inputs(case))[0].astype(np.int8))
    assert "torch's own run fails: NotImplementedError" in backend.note(case)


def test_tf2onnx_round_trip_transposes_and_converts_argmax():
    backend = usable("tf2onnx->onnxruntime-cpu", "tensorflow", "tf2onnx")
    case = make_case("MaxPool", (2, 3, 5, 5), kernel=2, strides=2, with_indices=True, storage_order=1)
    values, indices = agrees(backend, case)
    np.testing.assert_array_equal(indices, reference_outputs(case, make_inputs(case))[1])
    assert "exported MaxPool{" in backend.note(case) and backend.note(case).endswith("NHWC via transpose")
    assert backend.supports(CEIL_AVG).startswith("unsupported: tf.nn pooling has no ceil_mode")  # tensorflow's plan


def test_onnxsim_says_whether_it_changed_the_graph():
    backend = usable("onnxsim->onnxruntime-cpu", "onnxsim", "onnxruntime")
    agrees(backend, CEIL_AVG)
    assert backend.note(CEIL_AVG) == "onnxsim left the graph as it was"


def test_onnx2torch_is_usable_or_says_why_in_one_line():
    backend = load("onnx2torch")
    reason = backend.available()
    missing = [m for m in ("torch", "onnx2torch") if importlib.util.find_spec(m) is None]
    if missing:
        assert reason == f"{missing[0]} is not installed (pip install 'poolconform[onnx2torch]')"
        return
    if reason is not None:  # e.g. a torchvision built for another torch
        assert "\n" not in reason and "torchvision" in reason
        return
    agrees(backend, CEIL_AVG)
