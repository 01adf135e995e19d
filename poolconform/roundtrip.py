"""Framework export round-trips: the framework's pooling layer, exported to ONNX, run on ORT CPU.

`torch-export->onnxruntime-cpu` builds the torch.nn pooling module (the torch backend's
translation), exports it with torch.onnx.export (the dynamo exporter, torch's default);
`keras-export->onnxruntime-cpu` builds the Keras layer (the Keras backend's translation)
and exports it with `model.export(format="onnx")` on Keras' torch backend. Both return
ONNX Runtime's outputs on the exported model, so the runner judges the exporter + ORT
pair against the oracle; note() names the pooling node the exporter wrote and whether ORT
on it reproduces the framework's own output, so a lost ceil_mode or count_include_pad
shows as an exporter bug, not as an ORT one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator

import numpy as np
import onnx

from poolconform.backends.base import BaseBackend, Unsupported
from poolconform.case import DEFAULT_GENERATOR, OPS, PoolCase

#: The lowest opset the dynamo exporters write; older cases are exported at this one.
MIN_EXPORT_OPSET = 18


def describe_export(model: onnx.ModelProto) -> str:
    """`exported MaxPool{ceil_mode=1, kernel_shape=[3, 3], ...} (opset 22)`, plus any other ops."""
    pools, others = [], []
    for node in model.graph.node:
        if node.op_type in OPS:
            attrs = sorted((a.name, onnx.helper.get_attribute_value(a)) for a in node.attribute)
            text = ", ".join(f"{k}={v.decode() if isinstance(v, bytes) else v}" for k, v in attrs)
            pools.append(f"{node.op_type}{{{text}}}")
        else:
            others.append(node.op_type)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), "?")
    text = "exported " + (" + ".join(pools) if pools else "no pooling op")
    if others:
        text += " with " + ", ".join(others)
    return f"{text} (opset {opset})"


def compare_with_own(ort: list[np.ndarray], own: list[np.ndarray], framework: str) -> str:
    """`ORT output == torch output`, or where and by how much the two differ (NaN equals NaN)."""
    for k, (a, b) in enumerate(zip(ort, own)):
        label = "ORT output" if k == 0 else f"ORT output {k}"
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return f"{label} shape {list(a.shape)} differs from {framework}'s own {list(b.shape)}"
        x, y = a.astype(np.float64), b.astype(np.float64)
        same = (x == y) | (np.isnan(x) & np.isnan(y))
        if not same.all():
            diff = np.where(same, 0.0, np.abs(x - y))
            diff = np.where(np.isnan(diff), np.inf, diff)
            at = np.unravel_index(int(np.argmax(diff)), diff.shape)
            return (f"{label} differs from {framework}'s own output by {float(diff[at]):.6g} "
                    f"at {[int(i) for i in at]} ({float(x[at])!r} vs {float(y[at])!r})")
    return f"ORT output == {framework} output"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Exporters print progress and warn about torchvision; a worker's stdout is not theirs."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


class _RoundTrip(BaseBackend):
    """Export once per configuration, run the exported model on ORT CPU, remember the note."""

    #: Name the notes use for the framework's own output.
    own_name = ""

    def __init__(self) -> None:
        self._exports: dict[PoolCase, tuple[bytes, object, str]] = {}
        self._notes: dict[PoolCase, str] = {}

    def available(self) -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed"
        return None

    def note(self, case: PoolCase) -> str | None:
        return self._notes.get(_key(case))

    def version(self) -> str:
        from poolconform.backends.base import framework_version

        own = framework_version(self.framework)
        if self.framework == "keras":
            own += f" on torch {framework_version('torch')}"
        return f"{own} + onnxruntime {framework_version('onnxruntime')}"

    def run(self, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        key = _key(case)
        if key not in self._exports:
            if len(self._exports) > 64:
                self._exports.clear()
            model, framework_model = self._export(case)
            self._exports[key] = (model, framework_model, describe_export(onnx.load_from_string(model)))
        model, framework_model, exported = self._exports[key]
        session = _session(model)
        feeds = {meta.name: x for meta, x in zip(session.get_inputs(), inputs)}
        ort_outputs = [np.asarray(y) for y in session.run(None, feeds)]
        own = self._own_outputs(framework_model, case, inputs)
        self._notes[key] = f"{exported}; {compare_with_own(ort_outputs, own, self.own_name)}"
        return self._to_onnx_outputs(case, ort_outputs)

    def _export(self, case: PoolCase) -> tuple[bytes, object]:
        """The serialized exported model and the framework object that was exported."""
        raise NotImplementedError

    def _own_outputs(self, framework_model: object, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def _to_onnx_outputs(self, case: PoolCase, outputs: list[np.ndarray]) -> list[np.ndarray]:
        return outputs


def _key(case: PoolCase) -> PoolCase:
    """Cases equal up to label and generator export the same model."""
    return case.replace(generator=DEFAULT_GENERATOR, label=None, model_bytes=None)


def _session(model: bytes):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _export_opset(case: PoolCase) -> int:
    return max(MIN_EXPORT_OPSET, case.opset)


class TorchExportOnnxRuntime(_RoundTrip):
    """torch.nn pooling module -> torch.onnx.export(dynamo=True) -> ONNX Runtime CPU."""

    name = "torch-export->onnxruntime-cpu"
    framework = "torch"
    own_name = "torch"

    def available(self) -> str | None:
        if importlib.util.find_spec("torch") is None:
            return "torch is not installed"
        if importlib.util.find_spec("onnxscript") is None:
            return "onnxscript is not installed (torch.onnx.export's dynamo exporter needs it)"
        return super().available()

    def supports(self, case: PoolCase) -> str | None:
        from poolconform.backends.torch_backend import TorchCPU

        return TorchCPU().supports(case)

    def _export(self, case: PoolCase) -> tuple[bytes, object]:
        import torch

        module = torch_module(case).eval()
        sample = torch.zeros(case.input_shape, dtype=_torch_dtype(case.dtype))
        with _quiet():
            program = torch.onnx.export(
                module, (sample,), dynamo=True, opset_version=_export_opset(case), verbose=False
            )
        return program.model_proto.SerializeToString(), module

    def _own_outputs(self, module: object, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        from poolconform.backends.torch_backend import _to_numpy, _to_torch

        with torch.no_grad():
            result = module(_to_torch(inputs[0], "cpu"))  # type: ignore[operator]
        return [_to_numpy(t) for t in (result if isinstance(result, tuple) else (result,))]

    def _to_onnx_outputs(self, case: PoolCase, outputs: list[np.ndarray]) -> list[np.ndarray]:
        if not case.with_indices:
            return outputs
        from poolconform.backends.torch_backend import onnx_indices

        # The exporter keeps torch's per-(N, C)-plane indices; convert as the torch backend does.
        return [outputs[0], onnx_indices(outputs[1], case.spatial, case.storage_order)]

    def note(self, case: PoolCase) -> str | None:
        text = super().note(case)
        if text and case.with_indices:
            text += "; Indices converted from torch's per-(N,C)-plane to ONNX flattening"
        return text


def _torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
            "bfloat16": torch.bfloat16, "int8": torch.int8, "uint8": torch.uint8}[name]


def torch_module(case: PoolCase):
    """The torch.nn pooling module computing the case, with the torch backend's padding rule.

    Adapter: torch_backend translates inside TorchCPU.run (functional calls); a module
    is what users export, so this mirrors that translation with torch.nn classes.
    """
    import torch.nn as nn

    from poolconform.backends.torch_backend import symmetric_padding

    rank = case.rank
    if case.op == "GlobalMaxPool":
        return getattr(nn, f"AdaptiveMaxPool{rank}d")(1)
    if case.op == "GlobalAveragePool":
        return getattr(nn, f"AdaptiveAvgPool{rank}d")(1)
    if case.op == "GlobalLpPool":
        spatial = case.spatial[0] if rank == 1 else case.spatial
        return getattr(nn, f"LPPool{rank}d")(case.p, spatial, stride=spatial)
    padding, reason = symmetric_padding(case)
    if padding is None:
        raise Unsupported(reason)
    ceil_mode = case.ceil_mode and case.auto_pad == "NOTSET"
    if case.op == "MaxPool":
        return getattr(nn, f"MaxPool{rank}d")(case.kernel, case.strides, padding, case.dilations,
                                             return_indices=case.with_indices, ceil_mode=ceil_mode)
    if case.op == "AveragePool":
        return getattr(nn, f"AvgPool{rank}d")(case.kernel, case.strides, padding, ceil_mode=ceil_mode,
                                             count_include_pad=case.count_include_pad)
    if case.op == "LpPool":
        kernel, stride = (case.kernel[0], case.strides[0]) if rank == 1 else (case.kernel, case.strides)
        return getattr(nn, f"LPPool{rank}d")(case.p, kernel, stride=stride, ceil_mode=ceil_mode)
    raise Unsupported(f"unsupported: no torch.nn module for op {case.op!r}")


class KerasExportOnnxRuntime(_RoundTrip):
    """Keras layer (Keras on torch) -> `model.export(format="onnx")` -> ONNX Runtime CPU.

    Keras exports through torch.onnx on its torch backend; its TensorFlow and JAX paths
    need tf2onnx. KERAS_BACKEND is read once per process, so this backend sets it to
    "torch" before importing keras and refuses where keras already runs on another backend.
    """

    name = "keras-export->onnxruntime-cpu"
    framework = "keras"
    own_name = "keras"

    def available(self) -> str | None:
        from poolconform.backends.keras_backend import loaded_keras_backend

        for module in ("keras", "torch", "onnxscript"):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed (Keras' ONNX export runs on its torch backend)"
        loaded = loaded_keras_backend()
        if loaded not in (None, "torch"):
            return (f"keras is already loaded on {loaded!r} in this process; its ONNX export needs "
                    "KERAS_BACKEND=torch (the tensorflow/jax paths need tf2onnx)")
        return super().available()

    def supports(self, case: PoolCase) -> str | None:
        from poolconform.backends.keras_backend import translate

        plan = translate(case)
        if isinstance(plan, str):
            return plan
        if case.dtype != "float32":
            return f"unsupported: Keras ONNX export needs the float32 dtype policy, case dtype is {case.dtype!r}"
        return None

    def _keras(self):
        os.environ["KERAS_BACKEND"] = "torch"
        import keras

        if keras.config.backend() != "torch":
            raise RuntimeError(f"keras runs on {keras.config.backend()!r} here, the export needs 'torch'")
        return keras

    def _export(self, case: PoolCase) -> tuple[bytes, object]:
        from poolconform.backends.keras_backend import translate

        keras = self._keras()
        plan = translate(case)
        if isinstance(plan, str):
            raise Unsupported(plan)
        layer = getattr(keras.layers, plan.layer)(**plan.kwargs())
        inp = keras.Input(shape=case.input_shape[1:], batch_size=case.input_shape[0], dtype="float32")
        model = keras.Model(inp, layer(inp))
        signature = [keras.InputSpec(shape=case.input_shape, dtype="float32")]
        with tempfile.TemporaryDirectory(prefix="poolconform-keras-export-") as tmp, _quiet():
            path = os.path.join(tmp, "model.onnx")
            model.export(path, format="onnx", verbose=False, input_signature=signature,
                         opset_version=_export_opset(case))
            with open(path, "rb") as f:
                return f.read(), model

    def _own_outputs(self, model: object, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        keras = self._keras()
        y = model(keras.ops.convert_to_tensor(inputs[0], dtype="float32"))  # type: ignore[operator]
        return [np.asarray(keras.ops.convert_to_numpy(y))]
