"""ONNX -> ONNX and ONNX -> framework converters, judged on the case's own model.

`onnxsim->onnxruntime-cpu` runs the model that onnx-simplifier makes of the case's model on
ORT CPU (the note says whether the simplifier changed the graph); `onnx2torch` runs the
torch.nn module that onnx2torch makes of it on PyTorch CPU. Both read the ONNX model, so
they run any case, and both are opt-in (installed by the `onnxsim` / `onnx2torch` extras).
A converter that refuses a model records `unsupported` with its own words; one that
converts it into something wrong is judged by the oracle like any backend.
"""

from __future__ import annotations

import functools
import importlib.util

import numpy as np

from poolconform.backends.base import BaseBackend, Unsupported, framework_version
from poolconform.case import PoolCase
from poolconform.onnx_export import model_bytes


def _first_line(exc: BaseException) -> str:
    line = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


class _Converter(BaseBackend):
    """Convert each distinct model once; remember what the conversion did for the note."""

    reads_onnx = True
    opt_in = True
    #: The conversion call, as refusals name it.
    converter = ""

    def __init__(self) -> None:
        self._converted = functools.lru_cache(maxsize=256)(self._convert_or_refuse)

    def _convert_or_refuse(self, model: bytes) -> tuple[object, str]:
        try:
            return self._convert(model)
        except Exception as exc:  # noqa: BLE001  the converter refused: its own words, not a crash
            return Unsupported(f"unsupported: {self.converter} refuses: {_first_line(exc)}"), ""

    def _convert(self, model: bytes) -> tuple[object, str]:
        """What runs the model, and one line on what the conversion did."""
        raise NotImplementedError

    def _runnable(self, case: PoolCase) -> object:
        converted, _ = self._converted(model_bytes(case))
        if isinstance(converted, Unsupported):
            raise Unsupported(converted.reason)
        return converted

    def note(self, case: PoolCase) -> str | None:
        converted, note = self._converted(model_bytes(case))
        return None if isinstance(converted, Unsupported) else (note or None)


class OnnxSimOnnxRuntime(_Converter):
    """onnxsim.simplify(model) -> ONNX Runtime CPU (all graph optimizations, ORT's default)."""

    name = "onnxsim->onnxruntime-cpu"
    framework = "onnxsim"
    converter = "onnxsim.simplify"

    def available(self) -> str | None:
        for module in ("onnxsim", "onnxruntime"):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed (pip install 'poolconform[onnxsim]')"
        return None

    def version(self) -> str:
        return f"{framework_version('onnxsim')} + onnxruntime {framework_version('onnxruntime')}"

    def _convert(self, model: bytes) -> tuple[object, str]:
        import onnx
        import onnxsim

        from poolconform.roundtrip import _session, describe_export

        original = onnx.load_from_string(model)
        simplified, checked = onnxsim.simplify(original)
        before, after = describe_export(original), describe_export(simplified)
        if before == after:
            note = "onnxsim left the graph as it was"
        else:
            note = (f"onnxsim changed the graph: {before.removeprefix('exported ')} -> "
                    f"{after.removeprefix('exported ')}")
        if not checked:
            note += "; onnxsim's own check of the result failed"
        return _session(simplified.SerializeToString()), note

    def run(self, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        session = self._runnable(case)
        feeds = {meta.name: x for meta, x in zip(session.get_inputs(), inputs)}  # type: ignore[attr-defined]
        return [np.asarray(y) for y in session.run(None, feeds)]  # type: ignore[attr-defined]


class Onnx2Torch(_Converter):
    """onnx2torch.convert(model) -> the torch.nn module it builds, run on PyTorch CPU.

    onnx2torch imports torchvision, which must be built for the installed torch: torch
    2.13.0+cpu needs torchvision==0.28.0+cpu (https://download.pytorch.org/whl/cpu); the
    PyPI torchvision 0.28.0 wheel is built against CUDA torch and fails to import on it.
    """

    name = "onnx2torch"
    framework = "onnx2torch"
    converter = "onnx2torch.convert"

    def available(self) -> str | None:
        for module in ("torch", "onnx2torch"):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed (pip install 'poolconform[onnx2torch]')"
        try:
            import onnx2torch  # noqa: F401  imports torchvision, which must match torch's build
        except Exception as exc:  # noqa: BLE001  a torchvision built for another torch fails here
            return (f"onnx2torch does not import: {_first_line(exc)} (torchvision "
                    f"{framework_version('torchvision') or '?'} must be built for torch "
                    f"{framework_version('torch')})")
        return None

    def version(self) -> str:
        return (f"{framework_version('onnx2torch')} on torch {framework_version('torch')}, "
                f"torchvision {framework_version('torchvision')}")

    def _convert(self, model: bytes) -> tuple[object, str]:
        import onnx
        import onnx2torch

        module = onnx2torch.convert(onnx.load_from_string(model)).eval()
        kinds = sorted({type(m).__name__ for m in module.modules() if m is not module})
        return module, f"converted to {', '.join(kinds) or type(module).__name__}"

    def run(self, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        from poolconform.backends.torch_backend import _to_numpy, _to_torch

        module = self._runnable(case)
        with torch.no_grad():
            result = module(*[_to_torch(x, "cpu") for x in inputs])  # type: ignore[operator]
        return [_to_numpy(t) for t in (result if isinstance(result, (tuple, list)) else (result,))]
