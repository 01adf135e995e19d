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
import functools
import importlib.util
import io
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np
import onnx

from poolconform.backends import keras_backend, tensorflow_backend, torch_backend
from poolconform.backends.base import Unsupported, framework_version
from poolconform.backends.keras_backend import KerasPooling
from poolconform.backends.planned import Plan, PlannedBackend
from poolconform.backends.tensorflow_backend import TFPlan
from poolconform.backends.torch_backend import TorchPlan
from poolconform.case import DEFAULT_GENERATOR, OPS, PoolCase

P = TypeVar("P", bound=Plan)
#: What a round trip exported, called on the inputs for its own outputs: a torch module,
#: a Keras model or a tf.function.
FrameworkModel = Callable[..., Any]

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


class _RoundTrip(PlannedBackend[P]):
    """Export once per configuration, run the exported model on ORT CPU, remember the note.

    The plan is the framework backend's own translation: the exported layer is the one
    that backend runs, so a round trip refuses exactly what its framework backend refuses.
    """

    opt_in = True
    #: Name the notes use for the framework's own output.
    own_name = ""
    #: The export call, as refusals name it.
    exporter = ""

    def __init__(self) -> None:
        super().__init__()
        self._exports = functools.lru_cache(maxsize=64)(self._export_described)
        self._notes: dict[PoolCase, str] = {}

    def available(self) -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed"
        return None

    def note(self, case: PoolCase) -> str | None:
        return self._notes.get(_key(case))

    def version(self) -> str:
        own = framework_version(self.framework)
        if self.framework == "keras":
            own += f" on torch {framework_version('torch')}"
        return f"{own} + onnxruntime {framework_version('onnxruntime')}"

    def execute(self, case: PoolCase, plan: P, inputs: list[np.ndarray]) -> list[np.ndarray]:
        key = _key(case)
        model, framework_model, exported = self._exports(key)
        session = _session(model)
        inputs = self._framework_inputs(case, inputs)
        feeds = {meta.name: x for meta, x in zip(session.get_inputs(), inputs)}
        ort_outputs = [np.asarray(y) for y in session.run(None, feeds)]
        try:
            own = self._own_outputs(framework_model, case, inputs)
            versus = compare_with_own(ort_outputs, own, self.own_name)
        except Exception as exc:  # noqa: BLE001  ORT's output is what is judged; the note says why no comparison
            versus = f"{self.own_name}'s own run fails: {_first_line(exc)}"
        self._notes[key] = f"{exported}; {versus}"
        return self._to_onnx_outputs(case, ort_outputs)

    def _export_described(self, case: PoolCase) -> tuple[bytes, FrameworkModel, str]:
        plan = self.plan(case)
        if isinstance(plan, Unsupported):
            raise Unsupported(plan.reason)
        try:
            model, framework_model = self._export(case, plan)
        except Exception as exc:  # noqa: BLE001  the exporter refused: its own words, not a crash
            raise Unsupported(f"unsupported: {self.exporter} refuses: {_refusal(exc)}") from None
        return model, framework_model, describe_export(onnx.load_from_string(model))

    def _export(self, case: PoolCase, plan: P) -> tuple[bytes, FrameworkModel]:
        """The serialized exported model and the framework object that was exported."""
        raise NotImplementedError

    def _own_outputs(self, framework_model: FrameworkModel, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def _framework_inputs(self, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """The inputs in the exported model's layout (ONNX's NCHW unless a framework says otherwise)."""
        return inputs

    def _to_onnx_outputs(self, case: PoolCase, outputs: list[np.ndarray]) -> list[np.ndarray]:
        return outputs


def _first_line(exc: BaseException) -> str:
    line = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def _refusal(exc: BaseException) -> str:
    """The exporter's words: the first line, plus the root cause's where the first line is a
    generic wrapper (the dynamo exporter's ConversionError names the aten op only in its cause)."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", _first_line(exc))  # no terminal colours in a record
    return text if root is exc else f"{text} (caused by {_first_line(root)})"


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


class _TorchExport(_RoundTrip[TorchPlan]):
    """torch.nn pooling module (the torch backend's plan) -> torch.onnx.export -> ONNX Runtime CPU."""

    framework = "torch"
    own_name = "torch"
    dynamo = False

    def available(self) -> str | None:
        if importlib.util.find_spec("torch") is None:
            return "torch is not installed"
        if self.dynamo and importlib.util.find_spec("onnxscript") is None:
            return "onnxscript is not installed (torch.onnx.export's dynamo exporter needs it)"
        return super().available()

    def translate(self, case: PoolCase) -> TorchPlan | Unsupported:
        return torch_backend.translate(case)

    def _export(self, case: PoolCase, plan: TorchPlan) -> tuple[bytes, FrameworkModel]:
        import torch

        module = torch_module(plan).eval()
        sample = torch.zeros(case.input_shape, dtype=_torch_dtype(case.dtype))
        with _quiet():
            if self.dynamo:
                program = torch.onnx.export(module, (sample,), dynamo=True, opset_version=_export_opset(case),
                                            verbose=False)
                assert program is not None  # dynamo=True always returns the ONNXProgram
                return program.model_proto.SerializeToString(), module
            buffer = io.BytesIO()
            # torch hints `f` as a path only; the TorchScript exporter (dynamo=False) also writes to a file object
            torch.onnx.export(module, (sample,), buffer, dynamo=False, opset_version=_export_opset(case),  # type: ignore[arg-type]
                              input_names=["X"], output_names=["Y", "Indices"] if case.with_indices else ["Y"])
            return buffer.getvalue(), module

    def _own_outputs(self, module: FrameworkModel, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        with torch.no_grad():
            result = module(torch_backend._to_torch(inputs[0], "cpu"))
        return [torch_backend._to_numpy(t) for t in (result if isinstance(result, tuple) else (result,))]

    def _to_onnx_outputs(self, case: PoolCase, outputs: list[np.ndarray]) -> list[np.ndarray]:
        if not case.with_indices:
            return outputs
        # The exporter keeps torch's per-(N, C)-plane indices; convert as the torch backend does.
        return [outputs[0], torch_backend.onnx_indices(outputs[1], case.spatial, case.storage_order)]

    def note(self, case: PoolCase) -> str | None:
        text = super().note(case)
        if text and case.with_indices:
            text += "; Indices converted from torch's per-(N,C)-plane to ONNX flattening"
        return text


class TorchExportOnnxRuntime(_TorchExport):
    """torch.onnx.export(dynamo=False): the TorchScript exporter (deprecated since torch 2.9)."""

    name = "torch-export->onnxruntime-cpu"
    exporter = "torch.onnx.export(dynamo=False)"


class TorchDynamoExportOnnxRuntime(_TorchExport):
    """torch.onnx.export(dynamo=True): the torch.export-based exporter, torch's default."""

    name = "torch-dynamo-export->onnxruntime-cpu"
    exporter = "torch.onnx.export(dynamo=True)"
    dynamo = True


def _torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
            "bfloat16": torch.bfloat16, "int8": torch.int8, "uint8": torch.uint8}[name]


def torch_module(plan: TorchPlan):
    """The torch.nn module wrapping the plan's functional call (a module is what users export)."""
    import torch.nn as nn

    return getattr(nn, plan.module)(*plan.args, **dict(plan.kwargs))


class KerasExportOnnxRuntime(_RoundTrip[KerasPooling]):
    """Keras layer (Keras on torch) -> `model.export(format="onnx")` -> ONNX Runtime CPU.

    Keras exports through torch.onnx on its torch backend; its TensorFlow and JAX paths
    need tf2onnx. KERAS_BACKEND is read once per process, so this backend sets it to
    "torch" before importing keras and refuses where keras already runs on another backend.
    """

    name = "keras-export->onnxruntime-cpu"
    framework = "keras"
    own_name = "keras"
    exporter = 'keras model.export(format="onnx")'

    def available(self) -> str | None:
        for module in ("keras", "torch", "onnxscript"):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed (Keras' ONNX export runs on its torch backend)"
        loaded = keras_backend.loaded_keras_backend()
        if loaded not in (None, "torch"):
            return (f"keras is already loaded on {loaded!r} in this process; its ONNX export needs "
                    "KERAS_BACKEND=torch (the tensorflow/jax paths need tf2onnx)")
        return super().available()

    def translate(self, case: PoolCase) -> KerasPooling | Unsupported:
        plan = keras_backend.translate(case)
        if not isinstance(plan, Unsupported) and case.dtype != "float32":
            return Unsupported(
                f"unsupported: Keras ONNX export needs the float32 dtype policy, case dtype is {case.dtype!r}"
            )
        return plan

    def _keras(self):
        os.environ["KERAS_BACKEND"] = "torch"
        import keras

        if keras.config.backend() != "torch":
            raise RuntimeError(f"keras runs on {keras.config.backend()!r} here, the export needs 'torch'")
        return keras

    def _export(self, case: PoolCase, plan: KerasPooling) -> tuple[bytes, FrameworkModel]:
        keras = self._keras()
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

    def _own_outputs(self, model: FrameworkModel, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        keras = self._keras()
        y = model(keras.ops.convert_to_tensor(inputs[0], dtype="float32"))
        return [np.asarray(keras.ops.convert_to_numpy(y))]


class Tf2OnnxOnnxRuntime(_RoundTrip[TFPlan]):
    """The tensorflow backend's tf.nn call in a tf.function -> tf2onnx -> ONNX Runtime CPU.

    The exported graph takes and gives NHWC, as the tf.function does: inputs are transposed
    to NHWC before ORT and the outputs back (argmax converted as the tensorflow backend does).
    """

    name = "tf2onnx->onnxruntime-cpu"
    framework = "tf2onnx"
    own_name = "tensorflow"
    exporter = "tf2onnx.convert.from_function"

    def available(self) -> str | None:
        for module in ("tensorflow", "tf2onnx"):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed (pip install 'poolconform[tf2onnx]')"
        return super().available()

    def version(self) -> str:
        tf = next(filter(None, map(framework_version, ("tensorflow", "tensorflow-cpu"))), "?")
        return (f"{framework_version('tf2onnx')} on tensorflow {tf} + onnxruntime "
                f"{framework_version('onnxruntime')}")

    def translate(self, case: PoolCase) -> TFPlan | Unsupported:
        return tensorflow_backend.translate(case)

    def _export(self, case: PoolCase, plan: TFPlan) -> tuple[bytes, FrameworkModel]:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf
        import tf2onnx
        from tf2onnx import constants

        shape = (case.input_shape[0], *case.input_shape[2:], case.input_shape[1])
        spec = (tf.TensorSpec(shape, getattr(tf, case.dtype), name="X"),)
        function = tf.function(lambda x: tensorflow_backend.call_plan(plan, case, x), input_signature=spec)
        opset = min(max(constants.OPSET_TO_IR_VERSION), max(MIN_EXPORT_OPSET, case.opset))
        with _quiet():
            model, _ = tf2onnx.convert.from_function(function, input_signature=spec, opset=opset)
        return model.SerializeToString(), function

    def _framework_inputs(self, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return [np.ascontiguousarray(np.moveaxis(inputs[0], 1, -1))]

    def _own_outputs(self, function: FrameworkModel, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(y) for y in function(inputs[0])]

    def _to_onnx_outputs(self, case: PoolCase, outputs: list[np.ndarray]) -> list[np.ndarray]:
        values = np.ascontiguousarray(np.moveaxis(outputs[0], -1, 1))
        if len(outputs) == 1:
            return [values]
        return [values, tensorflow_backend.nhwc_argmax_to_onnx(outputs[1], case.input_shape, case.storage_order)]

    def note(self, case: PoolCase) -> str | None:
        text = super().note(case)
        return f"{text}; NHWC via transpose" if text else text
