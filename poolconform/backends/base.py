"""The backend contract and the registry of built-in and third-party backends.

A backend is a small class: `name`, `available()`, `supports(case)` and `run(case, inputs)`
(required), plus `version()`, `note(case)`, `device` and `reads_onnx` (optional: a
third-party backend that leaves them out gets `DEFAULTS`, filled in by `BackendSpec.load`,
the one place that loads a backend). Frameworks are imported inside `available()` and
`run()`, never at module import, so `poolconform backends` works where a framework is
missing. Every backend runs inside a worker process (poolconform.worker), so a crash
costs only its own records.

Backends that translate a case into their framework's own call derive from
`PlannedBackend` (poolconform.backends.planned): one cached `plan(case)`, from which
`supports`, `note` and `run` follow.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from poolconform.case import PoolCase
from poolconform.errors import PoolconformError

ENTRY_POINT_GROUP = "poolconform.backends"


@runtime_checkable
class Backend(Protocol):
    """What poolconform needs from a backend (README "Third-party backends": must stay stable)."""

    name: str
    #: Where it computes, as `poolconform backends` and every report's header show it
    #: (read only: a class attribute or a property).
    @property
    def device(self) -> str: ...
    #: True when the backend reads the case's ONNX model itself, so it can run any stored
    #: model as it is (`check` on nodes outside poolconform's translation, old ceil rules).
    reads_onnx: bool

    def available(self) -> str | None:
        """None when usable here, else the one-line reason it is not."""

    def version(self) -> str:
        """The framework's version (and its pairing, for converters), "" when unknown."""

    def supports(self, case: PoolCase) -> str | None:
        """None when the backend can express `case` exactly, else why not (one line)."""

    def note(self, case: PoolCase) -> str | None:
        """One line the record carries when the backend translated or emulated something
        (e.g. "NHWC via transpose"), else None."""

    def run(self, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Outputs of the case in ONNX layout (NCHW), in the case's output order."""


#: The optional members of `Backend` and what a backend that leaves one out gets.
DEFAULTS: dict[str, Callable[[Any], Any]] = {
    "device": lambda backend: "",
    "reads_onnx": lambda backend: False,
    "version": lambda backend: lambda: "",
    "note": lambda backend: lambda case: None,
}


class BaseBackend:
    """Shared defaults for the built-in backends; third-party ones need not inherit."""

    name: str = ""
    #: Distribution or module whose version `poolconform backends` shows.
    framework: str = ""
    reads_onnx: bool = False
    #: Runs only when named in --backends (slow, derived or converter checks).
    opt_in: ClassVar[bool] = False

    @property
    def device(self) -> str:
        """`cpu`; a backend that computes elsewhere sets `device = "cuda"` (or a property)."""
        return "cpu"

    def available(self) -> str | None:
        return None

    def supports(self, case: PoolCase) -> str | None:
        return None

    def version(self) -> str:
        return framework_version(self.framework) if self.framework else ""

    def note(self, case: PoolCase) -> str | None:
        return None

    def run(self, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError


class Unsupported(Exception):
    """Why a backend cannot express a case: returned by `plan()`, raised from `run()`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unsupported) and other.reason == self.reason

    def __hash__(self) -> int:
        return hash(self.reason)


def framework_version(distribution: str) -> str:
    """The installed version of a distribution, "" when it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return ""


#: Built-in backends: name -> "module:Class", imported only when asked for.
BUILTIN_BACKENDS: dict[str, str] = {
    "onnxruntime-cpu": "poolconform.backends.onnxruntime_backend:OnnxRuntimeCPU",
    "onnxruntime-cuda": "poolconform.backends.onnxruntime_backend:OnnxRuntimeCUDA",
    "onnxruntime-cpu-noopt": "poolconform.backends.onnxruntime_backend:OnnxRuntimeCPUNoOpt",
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
    "torch-dynamo-export->onnxruntime-cpu": "poolconform.roundtrip:TorchDynamoExportOnnxRuntime",
    "tf2onnx->onnxruntime-cpu": "poolconform.roundtrip:Tf2OnnxOnnxRuntime",
    "onnxsim->onnxruntime-cpu": "poolconform.backends.converters:OnnxSimOnnxRuntime",
    "onnx2torch": "poolconform.backends.converters:Onnx2Torch",
    "onnx2tf->litert": "poolconform.backends.converters:Onnx2TfLiteRT",
}


@dataclass(frozen=True)
class BackendSpec:
    """Where a backend lives; cheap to pass to a worker process, which imports it."""

    name: str
    target: str  # "module:Class"
    third_party: bool = False
    #: The interpreter of the backend's own environment (`--backend-python`); None: this one.
    python: str | None = None

    def backend_class(self) -> type:
        module_name, _, class_name = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise PoolconformError(f"backend {self.name!r}: cannot import {module_name!r} ({exc})") from exc
        return getattr(module, class_name)

    @property
    def opt_in(self) -> bool:
        """Whether the backend runs only when named. Read from the class of a built-in one;
        a plug-in's code is never imported in the parent, so installing it is its opt-in."""
        return False if self.third_party else bool(getattr(self.backend_class(), "opt_in", False))

    def load(self) -> Backend:
        """The backend, with the entry-point name and every optional member it leaves out."""
        backend = self.backend_class()()
        if getattr(backend, "name", None) != self.name:
            backend.name = self.name  # entry-point name wins, so records match --backends
        for member, default in DEFAULTS.items():
            if not hasattr(backend, member):
                setattr(backend, member, default(backend))
        return backend


def registry() -> dict[str, BackendSpec]:
    """Every known backend, built-in first, then the `poolconform.backends` entry points."""
    specs = {name: BackendSpec(name, target) for name, target in BUILTIN_BACKENDS.items()}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in specs:
            specs[ep.name] = BackendSpec(ep.name, ep.value, third_party=True)
    return specs


def opt_in_backends() -> list[str]:
    """Names of the backends that run only when named in --backends."""
    return [spec.name for spec in registry().values() if spec.opt_in]


def split_tagged(name: str) -> tuple[str, str]:
    """`onnxruntime-cpu@1.23` -> ("onnxruntime-cpu", "1.23"); a plain name has tag ""."""
    base, _, tag = name.partition("@")
    return base, tag


def resolve_backend_names(names: list[str] | None, pythons: Mapping[str, str] | None = None) -> list[BackendSpec]:
    """Specs for `--backends`; unknown names are a usage error that lists the known ones.

    `pythons` maps a backend name to the interpreter its worker runs under (README "Backends
    in their own environments"). A tagged name `NAME@TAG` is backend NAME run by the
    interpreter given for `NAME@TAG`, and keeps its full name in every record."""
    known = registry()
    pythons = dict(pythons or {})
    if not names:
        return [dataclasses.replace(spec, python=pythons.get(spec.name)) for spec in known.values() if not spec.opt_in]
    unknown = [n for n in names if split_tagged(n)[0] not in known or (n != split_tagged(n)[0] and not split_tagged(n)[1])]
    if unknown:
        raise PoolconformError(
            f"unknown backend {', '.join(repr(n) for n in unknown)}; known: {', '.join(known)}"
            " (and NAME@TAG for NAME in another environment)"
        )
    untied = [n for n in names if split_tagged(n)[1] and n not in pythons]
    if untied:
        raise PoolconformError(
            f"backend {untied[0]!r} needs an interpreter: --backend-python {untied[0]}=PATH "
            "(README \"Backends in their own environments\")"
        )
    return [
        dataclasses.replace(known[split_tagged(n)[0]], name=n, python=pythons.get(n))
        for n in dict.fromkeys(names)
    ]
