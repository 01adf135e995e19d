"""The backend contract and the registry of built-in and third-party backends.

A backend is a small class: `name`, `available()`, `supports(case)` and
`run(case, inputs)`. Frameworks are imported inside `available()` and `run()`, never at
module import, so `poolconform backends` works where a framework is missing. Every
backend runs inside a worker process (poolconform.worker), so a crash costs only its
own records.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import metadata
from typing import Protocol, runtime_checkable

import numpy as np

from poolconform.case import PoolCase
from poolconform.errors import PoolconformError

ENTRY_POINT_GROUP = "poolconform.backends"


@runtime_checkable
class Backend(Protocol):
    """What poolconform needs from a backend (DESIGN.md: must stay stable)."""

    name: str

    def available(self) -> str | None:
        """None when usable here, else the one-line reason it is not."""

    def supports(self, case: PoolCase) -> str | None:
        """None when the backend can express `case` exactly, else why not (one line)."""

    def run(self, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Outputs of the case in ONNX layout (NCHW), in the case's output order."""


class BaseBackend:
    """Shared defaults for the built-in backends; third-party ones need not inherit."""

    name: str = ""
    #: Distribution or module whose version `poolconform backends` shows.
    framework: str = ""
    device: str = "cpu"

    def available(self) -> str | None:
        return None

    def supports(self, case: PoolCase) -> str | None:
        return None

    def version(self) -> str:
        return framework_version(self.framework) if self.framework else ""

    def note(self, case: PoolCase) -> str | None:
        """One line the record carries when the backend translated or emulated something
        (e.g. "NHWC via transpose", "explicit pads applied with tf.pad before the call")."""
        return None

    def run(self, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError


class Unsupported(Exception):
    """Raised from `run` when the backend finds out late that it cannot express a case."""


def framework_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return ""


#: Built-in backends: name -> "module:Class", imported only when asked for.
BUILTIN_BACKENDS: dict[str, str] = {
    "onnxruntime-cpu": "poolconform.backends.onnxruntime_backend:OnnxRuntimeCPU",
    "onnxruntime-cuda": "poolconform.backends.onnxruntime_backend:OnnxRuntimeCUDA",
    "onnx-reference": "poolconform.backends.onnx_reference:OnnxReference",
    "torch-cpu": "poolconform.backends.torch_backend:TorchCPU",
    "torch-cuda": "poolconform.backends.torch_backend:TorchCUDA",
    "keras-tensorflow": "poolconform.backends.keras_backend:KerasTensorFlow",
    "keras-jax": "poolconform.backends.keras_backend:KerasJax",
    "keras-torch": "poolconform.backends.keras_backend:KerasTorch",
    "tensorflow": "poolconform.backends.tensorflow_backend:TensorFlow",
    "openvino-cpu": "poolconform.backends.openvino_backend:OpenVINOCPU",
    "torch-export->onnxruntime-cpu": "poolconform.roundtrip:TorchExportOnnxRuntime",
    "keras-export->onnxruntime-cpu": "poolconform.roundtrip:KerasExportOnnxRuntime",
}


#: Backends that read the ONNX model itself, so they can run any stored model as it is.
ONNX_NATIVE_BACKENDS = {"onnxruntime-cpu", "onnxruntime-cuda", "onnx-reference", "openvino-cpu"}

#: Backends that run only when named in --backends (slow or derived checks).
OPT_IN_BACKENDS: set[str] = {"torch-export->onnxruntime-cpu", "keras-export->onnxruntime-cpu"}


@dataclass(frozen=True)
class BackendSpec:
    """Where a backend lives; cheap to pass to a worker process, which imports it."""

    name: str
    target: str  # "module:Class"
    third_party: bool = False

    def load(self) -> Backend:
        module_name, _, class_name = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise PoolconformError(f"backend {self.name!r}: cannot import {module_name!r} ({exc})") from exc
        cls = getattr(module, class_name)
        backend = cls()
        if getattr(backend, "name", None) != self.name:
            backend.name = self.name  # entry-point name wins, so records match --backends
        return backend


def registry() -> dict[str, BackendSpec]:
    """Every known backend, built-in first, then the `poolconform.backends` entry points."""
    specs = {name: BackendSpec(name, target) for name, target in BUILTIN_BACKENDS.items()}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in specs:
            specs[ep.name] = BackendSpec(ep.name, ep.value, third_party=True)
    return specs


def resolve_backend_names(names: list[str] | None) -> list[BackendSpec]:
    """Specs for `--backends`; unknown names are a usage error that lists the known ones."""
    known = registry()
    if not names:
        return [spec for spec in known.values() if spec.name not in OPT_IN_BACKENDS]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise PoolconformError(
            f"unknown backend {', '.join(repr(n) for n in unknown)}; known: {', '.join(known)}"
        )
    return [known[n] for n in dict.fromkeys(names)]
