"""The backend contract: every member declared on the Protocol, defaults filled in at load in
one place, and translating backends whose supports/note/run all follow from one cached plan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from poolconform.backends.base import BUILTIN_BACKENDS, Backend, BackendSpec, Unsupported, registry
from poolconform.backends.planned import PlannedBackend
from poolconform.validation import make_case

PLUGINS = Path(__file__).resolve().parent / "plugins"
ONNX_READERS = {"onnxruntime-cpu", "onnxruntime-cuda", "onnxruntime-cpu-noopt", "onnx-reference", "openvino-cpu",
                "onnxsim->onnxruntime-cpu", "onnx2torch", "onnx2tf->litert"}


def test_every_builtin_backend_declares_the_whole_contract_itself():
    for name, target in BUILTIN_BACKENDS.items():
        backend = BackendSpec(name, target).backend_class()()
        assert isinstance(backend, Backend), name  # no default needed: nothing is probed for
        assert backend.reads_onnx is (name in ONNX_READERS), name


def test_a_plugin_without_the_optional_members_gets_the_defaults_at_load(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    spec = BackendSpec("my-echo", "poolconform_testplugins:EchoBackend", third_party=True)
    raw = spec.backend_class()()
    assert not isinstance(raw, Backend)  # it defines only name, available, supports, run
    backend = spec.load()
    assert isinstance(backend, Backend)
    assert backend.name == "my-echo"  # the entry-point name wins
    assert (backend.version(), backend.device, backend.reads_onnx) == ("", "", False)
    case = make_case("MaxPool", (1, 1, 4, 4), kernel=2, strides=2)
    assert backend.note(case) is None
    assert backend.run(case, [np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)])[0].ravel().tolist() == [
        5.0, 7.0, 13.0, 15.0]
    assert spec.opt_in is False  # a plug-in's code never runs in the parent to say otherwise


def test_opt_in_is_the_class_attribute_of_the_builtin():
    specs = registry()
    assert {n for n, s in specs.items() if s.opt_in} >= {"torch-export->onnxruntime-cpu",
                                                          "keras-export->onnxruntime-cpu"}
    assert not specs["onnxruntime-cpu"].opt_in and not specs["torch-cpu"].opt_in


TRANSLATING = ["torch-cpu", "keras-jax", "keras-torch", "keras-tensorflow", "tensorflow"]


@pytest.mark.parametrize("name", TRANSLATING)
def test_supports_note_and_run_follow_one_cached_plan(name):
    backend = BackendSpec(name, BUILTIN_BACKENDS[name]).load()
    assert isinstance(backend, PlannedBackend)
    refused = make_case("MaxPool", (1, 1, 6, 6), kernel=3, pads=[0, 0, 1, 1], dilations=2)
    plan = backend.plan(refused)
    assert isinstance(plan, Unsupported) and backend.plan(refused) is plan  # computed once
    assert backend.supports(refused) == plan.reason and plan.reason.startswith("unsupported: ")
    assert backend.note(refused) is None
    with pytest.raises(Unsupported) as raised:  # run() refuses with the same words, framework untouched
        backend.run(refused, [np.zeros((1, 1, 6, 6), np.float32)])
    assert str(raised.value) == plan.reason
    same = make_case("MaxPool", (1, 1, 6, 6), kernel=3, auto_pad="SAME_UPPER")
    plan = backend.plan(same)
    assert not isinstance(plan, Unsupported) and backend.plan(same) is plan
    assert backend.supports(same) is None and backend.note(same) == plan.note != ""
