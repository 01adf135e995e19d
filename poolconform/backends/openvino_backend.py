"""OpenVINO on the CPU: it reads the case's ONNX model itself, compiles it once, infers.

Precision: the CPU plugin may run float32 models in bfloat16 or float16 by default on
CPUs that have fast units for them (INFERENCE_PRECISION_HINT). poolconform forces f32 so
results do not depend on which CPU ran them. Where this CPU's default is lower, the
backend's device description says so (shown by `poolconform backends` and in every
report's header), not every record. One inference thread and one stream: pooling cases are tiny, and threads only
contend with the other backends' workers.
"""

from __future__ import annotations

import numpy as np

from poolconform import dtypes
from poolconform.backends.base import BaseBackend
from poolconform.case import PoolCase
from poolconform.onnx_export import model_bytes

def import_openvino():
    """`import openvino` with its telemetry declined for this process.

    Importing openvino sends a usage event unless the user ran `opt_in_out --opt_out`; the send
    runs in a thread that forks, which Python 3.12+ warns about. OpenVINO declines telemetry in
    CI (openvino-telemetry's documented `disable_in_ci`, keyed on CI=true); the consent is read
    once, at the first import, so CI=true is set only around it and the user's files are untouched.
    """
    import os
    import sys

    if "openvino" in sys.modules:
        return sys.modules["openvino"]
    saved = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        import openvino
    finally:
        if saved is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = saved
    return openvino


#: Compile options: exact float32 arithmetic, no thread pool for tiny tensors.
COMPILE_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1}


class OpenVINOCPU(BaseBackend):
    name = "openvino-cpu"
    framework = "openvino"
    reads_onnx = True
    device_name = "CPU"

    def __init__(self) -> None:
        self._compiled: dict[bytes, object] = {}
        self._core = None
        self._default_precision: str | None = None

    def available(self) -> str | None:
        try:
            ov = import_openvino()
        except ImportError as exc:
            return f"openvino is not installed ({exc})"
        devices = ov.Core().available_devices
        if self.device_name not in devices:
            return f"OpenVINO has no {self.device_name} device here (has {', '.join(devices) or 'none'})"
        return None

    def version(self) -> str:
        ov = import_openvino()

        return ov.get_version().split("-")[0]

    @property
    def device(self) -> str:
        """`cpu`, plus the forced precision where this CPU's default is lower (a fact of the
        machine, not of any case)."""
        default = self.default_precision()
        if default in ("f32", "float32", ""):
            return "cpu"
        return f"cpu, INFERENCE_PRECISION_HINT forced to f32 (this CPU's default is {default})"

    def note(self, case: PoolCase) -> str | None:
        """Said only where it matters: float64 input."""
        if case.dtype == "float64":
            return "the OpenVINO CPU plugin computes float64 models in float32"
        return None

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
            ov = import_openvino()

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
        ov = import_openvino()

        return ov.Tensor(np.ascontiguousarray(x).view(np.uint16), x.shape, ov.Type.bf16)
    return x


def _as_case_dtype(y: np.ndarray, case: PoolCase) -> np.ndarray:
    """OpenVINO hands bf16 outputs to numpy as float16 arrays holding bf16 bits: reinterpret them."""
    bf16 = dtypes.numpy_dtype("bfloat16")
    if case.dtype == "bfloat16" and y.dtype != bf16 and y.dtype.itemsize == 2:
        return np.ascontiguousarray(y).view(bf16)
    return y
