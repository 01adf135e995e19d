"""ONNX Runtime on the CPU and CUDA execution providers (and on the CPU with graph
optimizations off), one session per distinct model."""

from __future__ import annotations

import os

import numpy as np

from poolconform.backends.base import BaseBackend
from poolconform.case import PoolCase
from poolconform.onnx_export import model_bytes


class _OnnxRuntime(BaseBackend):
    framework = "onnxruntime"
    reads_onnx = True
    provider = ""
    #: ORT's GraphOptimizationLevel: ORT_ENABLE_ALL is ORT's own default.
    optimization = "ORT_ENABLE_ALL"

    def __init__(self) -> None:
        self._sessions: dict[bytes, object] = {}

    def available(self) -> str | None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            return f"onnxruntime is not installed ({exc})"
        providers = ort.get_available_providers()
        if self.provider not in providers:
            return f"{self.provider} is not in this onnxruntime build (has {', '.join(providers)})"
        return None

    def version(self) -> str:
        import onnxruntime as ort

        return ort.__version__

    def _session(self, case: PoolCase):
        import onnxruntime as ort

        key = model_bytes(case)
        session = self._sessions.get(key)
        if session is None:
            options = ort.SessionOptions()
            options.intra_op_num_threads = _threads_from_env()
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, self.optimization)
            session = ort.InferenceSession(key, options, providers=[self.provider])
            if len(self._sessions) > 256:
                self._sessions.clear()
            self._sessions[key] = session
        return session

    def run(self, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        session = self._session(case)
        feeds = {meta.name: x for meta, x in zip(session.get_inputs(), inputs)}
        return list(session.run(None, feeds))


#: Intra-op threads for ORT sessions; `poolconform bench` sets "0" (ORT's default, one per core).
from poolconform.environment import ORT_THREADS as THREADS_ENV  # noqa: E402  # one name, poolconform.environment


def _threads_from_env() -> int:
    """Intra-op threads: THREADS_ENV (checked as the command started, poolconform.environment),
    else OMP_NUM_THREADS where it is a plain count, else 1 (cheap sessions, small tensors)."""
    from poolconform.environment import MAX_THREADS, thread_count

    given = thread_count(THREADS_ENV, lowest=0)
    if given is not None:
        return given
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(omp) if omp.isdigit() and 1 <= int(omp) <= MAX_THREADS else 1


class OnnxRuntimeCPU(_OnnxRuntime):
    name = "onnxruntime-cpu"
    provider = "CPUExecutionProvider"


class OnnxRuntimeCPUNoOpt(_OnnxRuntime):
    """ORT CPU with every graph optimization off: beside `onnxruntime-cpu`, a difference that
    ORT's optimizer introduces shows as a disagreement between the two."""

    name = "onnxruntime-cpu-noopt"
    provider = "CPUExecutionProvider"
    optimization = "ORT_DISABLE_ALL"
    opt_in = True
    device = "cpu, graph optimizations off"


class OnnxRuntimeCUDA(_OnnxRuntime):
    name = "onnxruntime-cuda"
    provider = "CUDAExecutionProvider"
    device = "cuda"

    def available(self) -> str | None:
        reason = super().available()
        if reason:
            return reason
        import onnxruntime as ort

        try:  # the provider can be listed yet fail to load its CUDA libraries
            ort.InferenceSession(_probe_model(), providers=[self.provider])
        except Exception as exc:  # noqa: BLE001  any failure means "not usable here"
            return f"CUDAExecutionProvider fails to start: {str(exc).splitlines()[0]}"
        return None


def _probe_model() -> bytes:
    from poolconform.validation import make_case
    from poolconform.onnx_export import build_model

    return build_model(make_case("MaxPool", (1, 1, 2, 2), kernel=2)).SerializeToString()
