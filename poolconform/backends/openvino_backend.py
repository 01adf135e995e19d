"""OpenVINO on the CPU: it reads the case's ONNX model itself, compiles it once, infers.

Precision: the CPU plugin may run float32 models in bfloat16 or float16 by default on
CPUs that have fast units for them (INFERENCE_PRECISION_HINT). poolconform forces f32 so
results do not depend on which CPU ran them. Where this CPU's default is lower, the
backend's device description says so (shown by `poolconform backends` and in every
report's header), not every record. One inference thread and one stream: pooling cases are tiny, and threads only
contend with the other backends' workers.

Speed: compiling is nearly all of a case's cost (about 35 ms of 40 on the development
machine, the CPU plugin's graph transformations; the options above do not change it), and
every case of a matrix is a distinct model. So each compiled model is exported, as OpenVINO's
own model cache (CACHE_DIR) does, into poolconform's backend cache (poolconform.backend_cache,
folder `openvino`; POOLCONFORM_NO_CACHE=1 turns it off), keyed by the model's bytes, the
options, the OpenVINO version and this CPU's name; a later run imports it (about 7 ms) instead
of reading and compiling the model again: the same plugin, precision and kernels. A blob that
fails to import is compiled afresh, and the error a record shows is always the compile's own.
"""

from __future__ import annotations

import json

import numpy as np

from poolconform import backend_cache, dtypes
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


#: Bumped when what a cached blob holds changes (old blobs then never match).
BLOB_FORMAT = "poolconform-openvino-blob-1"

#: Compile options: exact float32 arithmetic, no thread pool for tiny tensors.
COMPILE_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1}


class OpenVINOCPU(BaseBackend):
    name = "openvino-cpu"
    framework = "openvino"
    reads_onnx = True
    device_name = "CPU"

    def __init__(self) -> None:
        self._compiled: dict[bytes, tuple[object, object]] = {}  # model -> (compiled model, infer request)
        self._core = None
        self._blobs: backend_cache.BlobStore | None = None
        self._blob_prefix: tuple[str, ...] | None = None
        #: Compiled models imported from the cache in this process (the rest were compiled).
        self.cache_hits = 0
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

    def _blob_key(self, model: bytes) -> str | None:
        """The compiled-model cache key of `model`, None when there is no cache."""
        if self._blob_prefix is None:
            self._blobs = backend_cache.BlobStore.open("openvino")
            core = self._get_core()
            self._blob_prefix = (BLOB_FORMAT, import_openvino().get_version(), self.device_name,
                                 str(core.get_property(self.device_name, "FULL_DEVICE_NAME")),
                                 json.dumps(COMPILE_CONFIG, sort_keys=True))
        return backend_cache.digest(*self._blob_prefix, model) if self._blobs is not None else None

    def _compile(self, model: bytes):
        """The compiled model: imported from the cache when it holds this model, else compiled
        (and exported into the cache)."""
        core = self._get_core()
        key = self._blob_key(model)
        found = self._blobs.load(key) if self._blobs is not None and key else None
        if found is not None:
            try:
                imported = core.import_model(found[1], self.device_name, COMPILE_CONFIG)
                self.cache_hits += 1
                return imported
            except Exception:  # noqa: BLE001  a blob this OpenVINO cannot import: compile instead
                pass
        compiled = core.compile_model(core.read_model(model=model), self.device_name, COMPILE_CONFIG)
        if self._blobs is not None and key:
            try:
                blob = compiled.export_model()
                self._blobs.save(key, blob.getvalue() if hasattr(blob, "getvalue") else bytes(blob))
            except Exception:  # noqa: BLE001  a model the plugin cannot export is simply not cached
                pass
        return compiled

    def _compiled_model(self, case: PoolCase):
        """(compiled model, its infer request), made once per distinct model."""
        key = model_bytes(case)  # bytes: the ONNX frontend parses them in memory
        entry = self._compiled.get(key)
        if entry is None:
            compiled = self._compile(key)
            if len(self._compiled) > 256:
                self._compiled.clear()
            entry = self._compiled[key] = (compiled, compiled.create_infer_request())
        return entry

    def run(self, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        compiled, request = self._compiled_model(case)
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
