"""OpenVINO on the CPU: it reads the case's ONNX model itself, compiles it once, infers.

Precision: the CPU plugin may run float32 models in bfloat16 or float16 by default on
CPUs that have fast units for them (INFERENCE_PRECISION_HINT). poolconform forces f32 so
results do not depend on which CPU ran them; note() says so where this CPU's default is
lower. One inference thread and one stream: pooling cases are tiny, and threads only
contend with the other backends' workers.
"""

from __future__ import annotations

import numpy as np

from poolconform import dtypes
from poolconform.backends.base import BaseBackend
from poolconform.case import PoolCase
from poolconform.onnx_export import model_bytes

#: Compile options: exact float32 arithmetic, no thread pool for tiny tensors.
COMPILE_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1}


class OpenVINOCPU(BaseBackend):
    name = "openvino-cpu"
    framework = "openvino"
    device_name = "CPU"

    def __init__(self) -> None:
        self._compiled: dict[bytes, object] = {}
        self._core = None
        self._default_precision: str | None = None

    def available(self) -> str | None:
        try:
            import openvino as ov
        except ImportError as exc:
            return f"openvino is not installed ({exc})"
        devices = ov.Core().available_devices
        if self.device_name not in devices:
            return f"OpenVINO has no {self.device_name} device here (has {', '.join(devices) or 'none'})"
        return None

    def version(self) -> str:
        import openvino as ov

        return ov.get_version().split("-")[0]

    def note(self, case: PoolCase) -> str | None:
        """Said only where it matters: float64 input, or a CPU whose default precision is lower."""
        notes = []
        if case.dtype == "float64":
            notes.append("the OpenVINO CPU plugin computes float64 models in float32")
        default = self.default_precision()
        if default not in ("f32", "float32", ""):
            notes.append(f"INFERENCE_PRECISION_HINT forced to f32 (this CPU's default is {default})")
        return "; ".join(notes) or None

    def default_precision(self) -> str:
        """The CPU plugin's default inference precision on this machine (e.g. 'f32', 'bf16')."""
        if self._default_precision is None:
            try:
                value = self._get_core().get_property(self.device_name, "INFERENCE_PRECISION_HINT")
                self._default_precision = str(getattr(value, "get_type_name", lambda: value)())
            except Exception:  # noqa: BLE001  an old plugin without the property: nothing to say
                self._default_precision = ""
        return self._default_precision

    def _get_core(self):
        if self._core is None:
            import openvino as ov

            self._core = ov.Core()
        return self._core

    def _compiled_model(self, case: PoolCase):
        key = model_bytes(case)
        compiled = self._compiled.get(key)
        if compiled is None:
            core = self._get_core()
            model = core.read_model(model=key)  # bytes: the ONNX frontend parses them in memory
            compiled = core.compile_model(model, self.device_name, COMPILE_CONFIG)
            if len(self._compiled) > 256:
                self._compiled.clear()
            self._compiled[key] = compiled
        return compiled

    def run(self, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        compiled = self._compiled_model(case)
        request = compiled.create_infer_request()
        results = request.infer({i: _feedable(x) for i, x in enumerate(inputs)})
        outputs = [np.asarray(results[port]) for port in compiled.outputs]
        if len(outputs) > 1:  # ONNX Indices are int64; OpenVINO may hand back int32
            outputs[1] = outputs[1].astype(np.int64)
        return [_as_case_dtype(y, case) if i == 0 else y for i, y in enumerate(outputs)]


def _feedable(x: np.ndarray) -> np.ndarray:
    """numpy bfloat16 (ml_dtypes) is not a type OpenVINO's numpy bridge knows: hand over its bits."""
    if x.dtype == dtypes.numpy_dtype("bfloat16"):
        import openvino as ov

        return ov.Tensor(np.ascontiguousarray(x).view(np.uint16), x.shape, ov.Type.bf16)
    return x


def _as_case_dtype(y: np.ndarray, case: PoolCase) -> np.ndarray:
    """OpenVINO hands bf16 outputs to numpy as float16 arrays holding bf16 bits: reinterpret them."""
    bf16 = dtypes.numpy_dtype("bfloat16")
    if case.dtype == "bfloat16" and y.dtype != bf16 and y.dtype.itemsize == 2:
        return np.ascontiguousarray(y).view(bf16)
    return y
