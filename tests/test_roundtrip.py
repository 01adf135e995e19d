"""Export round-trips: the framework's layer exported to ONNX and run on ORT, against the oracle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

from poolconform.backends.base import BUILTIN_BACKENDS, opt_in_backends, registry, resolve_backend_names
from poolconform.validation import make_case
from poolconform.inputs import make_inputs
from poolconform.oracle import reference_outputs
from poolconform.roundtrip import compare_with_own, describe_export

from conftest import make_model

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("torch-export->onnxruntime-cpu", "keras-export->onnxruntime-cpu")


def test_round_trips_are_registered_opt_in() -> None:
    for name in NAMES:
        assert name in BUILTIN_BACKENDS and name in opt_in_backends() and registry()[name].opt_in
        assert registry()[name].load().name == name
    default = {spec.name for spec in resolve_backend_names(None)}
    assert default.isdisjoint(NAMES)
    assert [s.name for s in resolve_backend_names([NAMES[0]])] == [NAMES[0]]


def test_describe_export_names_the_pooling_node_and_the_rest() -> None:
    nodes = [
        helper.make_node("Pad", ["x", "p"], ["xp"]),
        helper.make_node("MaxPool", ["xp"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], ceil_mode=0,
                         auto_pad="NOTSET"),
    ]
    graph = helper.make_graph(nodes, "g", [], [])
    model = make_model(graph, 20)
    assert describe_export(model) == (
        "exported MaxPool{auto_pad=NOTSET, ceil_mode=0, kernel_shape=[3, 3], pads=[1, 1, 1, 1]} with Pad (opset 20)"
    )
    reduce_only = helper.make_model(helper.make_graph([helper.make_node("ReduceMax", ["x"], ["y"])], "g", [], []))
    assert describe_export(reduce_only).startswith("exported no pooling op with ReduceMax")


def test_compare_with_own_locates_the_difference() -> None:
    a = np.array([[1.0, 2.0], [np.nan, 4.0]], np.float32)
    assert compare_with_own([a], [a.copy()], "torch") == "ORT output == torch output"
    b = a.copy()
    b[1, 1] = 3.75
    expected = "ORT output differs from torch's own output by 0.25 at [1, 1] (4.0 vs 3.75)"
    assert compare_with_own([a], [b], "torch") == expected
    assert "shape [2, 2] differs from keras's own [4]" in compare_with_own([a], [a.ravel()], "keras")


# ------------------------------------------------------------------ torch.onnx.export, for real

TORCH_CASES = [
    make_case("MaxPool", (1, 2, 7, 7), kernel=3, strides=2, pads=1, ceil_mode=True),
    make_case("AveragePool", (2, 2, 6, 6), kernel=3, strides=2, pads=1, count_include_pad=True, ceil_mode=True),
]
TORCH_EXPECTED_ATTRS = ["ceil_mode=1", "count_include_pad=1"]


@pytest.fixture(scope="module")
def torch_round_trip():
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from poolconform.roundtrip import TorchExportOnnxRuntime

    backend = TorchExportOnnxRuntime()
    assert backend.available() is None
    return backend


@pytest.mark.parametrize(
    ("case", "attr"), list(zip(TORCH_CASES, TORCH_EXPECTED_ATTRS)), ids=[c.id for c in TORCH_CASES]
)
def test_torch_export_round_trip_matches_the_oracle(torch_round_trip, case, attr) -> None:
    assert torch_round_trip.supports(case) is None
    inputs = make_inputs(case)
    outputs = torch_round_trip.run(case, inputs)
    expected = reference_outputs(case, inputs)
    assert outputs[0].shape == expected[0].shape
    np.testing.assert_allclose(outputs[0].astype(np.float64), expected[0], rtol=1e-6, atol=1e-6)
    note = torch_round_trip.note(case)
    assert note.startswith(f"exported {case.op}{{") and attr in note and "pads=[1, 1, 1, 1]" in note
    assert note.endswith("ORT output == torch output")


def test_torch_export_round_trip_indices_become_onnx_flattening(torch_round_trip) -> None:
    case = make_case("MaxPool", (2, 2, 5, 5), kernel=2, strides=2, with_indices=True, storage_order=1)
    inputs = make_inputs(case)
    values, indices = torch_round_trip.run(case, inputs)
    expected = reference_outputs(case, inputs)
    np.testing.assert_array_equal(values, expected[0].astype(np.float32))
    np.testing.assert_array_equal(indices, expected[1])
    assert "Indices converted" in torch_round_trip.note(case)


def test_torch_export_round_trip_refuses_what_torch_cannot_say(torch_round_trip) -> None:
    asymmetric = make_case("MaxPool", (1, 1, 6, 6), kernel=3, strides=2, pads=(0, 0, 1, 1))
    assert torch_round_trip.supports(asymmetric).startswith("unsupported: PyTorch padding is symmetric")


# ------------------------------------------------------------------ keras model.export, in its own process

KERAS_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    from poolconform.validation import make_case
    from poolconform.inputs import make_inputs
    from poolconform.oracle import reference_outputs
    from poolconform.roundtrip import KerasExportOnnxRuntime

    backend = KerasExportOnnxRuntime()
    report = {"available": backend.available(), "cases": []}
    for case in [make_case("AveragePool", (1, 2, 7, 7), kernel=3, strides=2, auto_pad="SAME_UPPER"),
                 make_case("MaxPool", (1, 2, 6, 6), kernel=3, strides=2, pads=1)]:
        entry = {"id": case.id, "supports": backend.supports(case)}
        if entry["supports"] is None:
            inputs = make_inputs(case)
            out = backend.run(case, inputs)[0]
            ref = reference_outputs(case, inputs)[0]
            entry.update(shape=list(out.shape), ref_shape=list(ref.shape),
                         err=float(np.max(np.abs(out.astype(np.float64) - ref))), note=backend.note(case))
        report["cases"].append(entry)
    print("REPORT " + json.dumps(report))
    """
)


def test_keras_export_round_trip_matches_the_oracle() -> None:
    pytest.importorskip("keras")
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    env = dict(os.environ, KERAS_BACKEND="torch", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", KERAS_SCRIPT], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=240)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")), None)
    assert line is not None, proc.stderr[-2000:]
    report = json.loads(line[len("REPORT "):])
    assert report["available"] is None
    same, padded = report["cases"]
    assert same["supports"] is None
    assert same["shape"] == same["ref_shape"] == [1, 2, 4, 4]
    assert same["err"] < 1e-6
    # Keras 'same' excludes the padding from averages: the exporter must keep count_include_pad=0.
    assert "exported AveragePool{" in same["note"] and "count_include_pad=0" in same["note"]
    assert same["note"].endswith("ORT output == keras output")
    assert padded["supports"].startswith("unsupported: Keras pooling has no explicit pads")
