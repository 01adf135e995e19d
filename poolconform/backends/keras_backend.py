"""Keras 3 pooling layers on TensorFlow, JAX and torch: one backend per Keras backend.

Keras fixes its backend once per process from KERAS_BACKEND at the first `import keras`,
so each class sets that variable just before importing keras and refuses to run where
keras already runs on another backend; the runner gives every backend its own process.

A case is translated to the Keras pooling layer a user would write (MaxPooling2D, ...) and
runs as exactly what that layer's call() computes: keras.ops.max_pool / average_pool
(keras.ops.max / mean for the global layers), the public Keras ops, without building a
Layer object per configuration (no Sequential, no model.predict). On JAX the call is
jitted; jax.jit caches one compilation per input shape and dtype.
Layout: channels_last, Keras's default, the layout every Keras backend pools in natively
(channels_first makes Keras's TensorFlow backend transpose twice per call); the
NCHW <-> NHWC transposes are done in NumPy and exact.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from poolconform import dtypes, shapes
from poolconform.backends.base import Unsupported, framework_version
from poolconform.backends.planned import PlannedBackend
from poolconform.case import PoolCase

#: Layout of the layers that round-trip export builds (roundtrip.py): ONNX's own NCHW.
DATA_FORMAT = "channels_first"
#: Layout the conformance run computes in (see the module docstring).
RUN_DATA_FORMAT = "channels_last"

_KINDS = {
    "MaxPool": "MaxPooling",
    "AveragePool": "AveragePooling",
    "GlobalMaxPool": "GlobalMaxPooling",
    "GlobalAveragePool": "GlobalAveragePooling",
}


@dataclass(frozen=True)
class KerasPooling:
    """The Keras layer (and its arguments) that computes a case exactly."""

    layer: str  # e.g. "MaxPooling2D"
    pool_size: tuple[int, ...] = ()
    strides: tuple[int, ...] = ()
    padding: str = ""  # "valid" or "same"; "" for global layers
    remark: str = ""  # how the ONNX attributes were mapped, when not one to one
    #: This Keras backend's own doing for the case, worth a line in the record (e.g. jax's x64).
    backend_remark: str = ""

    @property
    def note(self) -> str:
        """The layer and layout the run uses, then how the attributes were mapped."""
        call = self.layer if self.is_global or self.is_adaptive else f"{self.layer}(padding={self.padding!r})"
        layout = f"{call} as keras.ops, {RUN_DATA_FORMAT} (NHWC via transpose)"
        return "; ".join(filter(None, [layout, self.remark, self.backend_remark]))

    @property
    def is_global(self) -> bool:
        return self.layer.startswith("Global")

    @property
    def is_adaptive(self) -> bool:
        """AdaptiveAveragePooling2D etc. (Keras 3.12+): pool_size holds the output size."""
        return self.layer.startswith("Adaptive")

    def kwargs(self) -> dict[str, object]:
        """Constructor arguments; strides are always explicit (Keras defaults them to pool_size)."""
        if self.is_adaptive:
            return {"output_size": self.pool_size, "data_format": DATA_FORMAT}
        if self.is_global:
            return {"data_format": DATA_FORMAT, "keepdims": True}
        return {
            "pool_size": self.pool_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": DATA_FORMAT,
        }


def translate(case: PoolCase) -> KerasPooling | Unsupported:
    """The Keras layer that computes `case` exactly, or the one-line reason none does."""
    if case.op in ("LpPool", "GlobalLpPool"):
        return Unsupported("unsupported: Keras has no Lp pooling layer")
    if case.with_indices:
        return Unsupported("unsupported: Keras pooling has no Indices output")
    if case.output_size:  # adaptive pooling (poolconform.adaptive): checked for in the layer call
        kind = "Max" if case.op == "AdaptiveMaxPool" else "Average"
        return KerasPooling(f"Adaptive{kind}Pooling{case.rank}D", case.output_size)
    layer = f"{_KINDS[case.op]}{case.rank}D"
    if case.is_global:
        return KerasPooling(layer)
    if any(d != 1 for d in case.dilations):
        return Unsupported(f"unsupported: Keras pooling has no dilation (dilations={case.dilations!r})")
    pads = shapes.resolve_pads(case)
    upper = shapes.resolve_pads(case.replace(auto_pad="SAME_UPPER", pads=(0,) * len(case.pads), ceil_mode=False))
    remarks: list[str] = []
    if case.auto_pad == "SAME_UPPER" or (any(pads) and pads == upper):
        padding = "same"
        if case.op == "AveragePool" and case.count_include_pad and any(pads):
            return Unsupported(
                "unsupported: Keras 'same' excludes padding from averages; count_include_pad=1 has no equivalent"
            )
        if case.auto_pad == "NOTSET":
            remarks.append(f"explicit pads {pads!r} are SAME_UPPER's, run as padding='same'")
        elif case.auto_pad == "SAME_LOWER":
            remarks.append("SAME_LOWER pads equal SAME_UPPER's here, run as padding='same'")
    elif not any(pads):
        padding = "valid"
    elif case.auto_pad == "SAME_LOWER":
        return Unsupported(
            "unsupported: Keras 'same' puts the odd pad at the end (SAME_UPPER); SAME_LOWER has no equivalent"
        )
    else:
        return Unsupported(
            f"unsupported: Keras pooling has no explicit pads (pads={pads!r}); "
            "only none ('valid') or SAME_UPPER's ('same')"
        )
    keras_case = case.replace(
        auto_pad="SAME_UPPER" if padding == "same" else "VALID", pads=(0,) * len(case.pads), ceil_mode=False
    )
    wanted, got = shapes.output_shape(case), shapes.output_shape(keras_case)
    if wanted != got:
        return Unsupported(
            f"unsupported: Keras pooling has no ceil_mode (ONNX output {wanted!r}, Keras '{padding}' gives {got!r})"
            if case.ceil_mode
            else f"unsupported: Keras '{padding}' gives output {got!r}, ONNX {wanted!r}"
        )
    if case.ceil_mode:
        remarks.append("ceil_mode=1 gives the floor-mode shape here, run as floor mode")
    return KerasPooling(layer, case.kernel, case.strides, padding, "; ".join(remarks))


def loaded_keras_backend() -> str | None:
    """The backend of the keras already imported in this process, or None if none is."""
    keras = sys.modules.get("keras")
    if keras is None:
        return None
    try:
        return str(keras.config.backend())
    except AttributeError:  # keras 2, or a half-imported module
        return "unknown"


class _Keras(PlannedBackend[KerasPooling]):
    framework = "keras"
    #: The KERAS_BACKEND value, the modules it needs, and the distribution whose version shows.
    keras_backend = ""
    needs: tuple[str, ...] = ()
    distributions: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self._keras = None
        #: What a plan's layer computes, made once per call (layer arguments and dtype) and reused.
        self._function = functools.lru_cache(maxsize=512)(self._make_function)

    def available(self) -> str | None:
        loaded = loaded_keras_backend()
        if loaded is not None and loaded != self.keras_backend:
            return f"keras already loaded with backend {loaded!r} in this process (needs {self.keras_backend!r})"
        for module in ("keras",) + self.needs:
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed (keras backend {self.keras_backend!r} needs it)"
        keras_version = framework_version("keras")
        major = keras_version.split(".")[0]
        if major.isdigit() and int(major) < 3:
            return f"keras {keras_version!r} is Keras 2; the {self.keras_backend} backend needs keras>=3"
        return None

    def version(self) -> str:
        framework = next((v for v in map(framework_version, self.distributions) if v), "?")
        return f"{framework_version('keras')} ({self.keras_backend} {framework})"

    def translate(self, case: PoolCase) -> KerasPooling | Unsupported:
        plan = translate(case)
        if isinstance(plan, Unsupported):
            return plan
        return dataclasses.replace(plan, backend_remark=self._remark(case, plan))

    def _remark(self, case: PoolCase, plan: KerasPooling) -> str:
        """What this Keras backend does on its own for `case`, worth a line in the record."""
        return ""

    def _import_keras(self):
        """keras on this backend; sets KERAS_BACKEND first (it is read once, at import)."""
        if self._keras is None:
            reason = self.available()
            if reason:
                raise RuntimeError(reason)
            os.environ["KERAS_BACKEND"] = self.keras_backend
            import keras

            if keras.config.backend() != self.keras_backend:
                raise RuntimeError(f"keras loaded backend {keras.config.backend()!r}, wanted {self.keras_backend!r}")
            keras.config.disable_traceback_filtering()  # raw framework errors, not Keras's wrapper text
            self._configure()
            self._keras = keras
        return self._keras

    def _configure(self) -> None:
        """Process-wide framework settings, applied once after keras is imported."""

    def _make_function(self, call: KerasPooling, dtype: str) -> Callable:
        return self._wrap(layer_call(self._import_keras(), call))

    def _wrap(self, fn: Callable) -> Callable:
        """How the call runs: directly (eager) unless a backend compiles it."""
        return fn

    def execute(self, case: PoolCase, plan: KerasPooling, inputs: list[np.ndarray]) -> list[np.ndarray]:
        call = dataclasses.replace(plan, remark="", backend_remark="")  # notes do not change the call
        fn = self._function(call, case.dtype)
        nhwc = np.ascontiguousarray(np.moveaxis(inputs[0], 1, -1))
        y = self._to_numpy(fn(self._to_tensor(nhwc, case.dtype)), case.dtype)
        return [np.ascontiguousarray(np.moveaxis(y, -1, 1))]

    def _to_tensor(self, x: np.ndarray, dtype: str):
        return self._import_keras().ops.convert_to_tensor(x, dtype=dtype)

    def _to_numpy(self, y, dtype: str) -> np.ndarray:
        return np.asarray(self._import_keras().ops.convert_to_numpy(y))


def layer_call(keras, plan: KerasPooling) -> Callable:
    """The body of the plan's layer call() in channels_last: the same keras.ops call with
    the same arguments (keras/src/layers/pooling/*.py), minus the Layer machinery.
    Adaptive layers run as the layer itself (only Keras 3.12+ has them)."""
    if plan.is_adaptive:
        if not hasattr(keras.layers, plan.layer):
            raise Unsupported(f"unsupported: keras {keras.__version__} has no {plan.layer} layer")
        return getattr(keras.layers, plan.layer)(output_size=plan.pool_size, data_format=RUN_DATA_FORMAT)
    if plan.is_global:
        rank = int(plan.layer[-2])  # "GlobalAveragePooling2D" -> 2
        reduce = keras.ops.max if plan.layer.startswith("GlobalMax") else keras.ops.mean
        axes = list(range(1, rank + 1))
        return lambda x: reduce(x, axis=axes, keepdims=True)
    pool = keras.ops.max_pool if plan.layer.startswith("Max") else keras.ops.average_pool
    return lambda x: pool(x, pool_size=plan.pool_size, strides=plan.strides, padding=plan.padding,
                          data_format=RUN_DATA_FORMAT)


class KerasTensorFlow(_Keras):
    name = "keras-tensorflow"
    keras_backend = "tensorflow"
    needs = ("tensorflow",)
    distributions = ("tensorflow", "tensorflow-cpu", "tf-nightly")

    def _configure(self) -> None:
        # One intra-op thread: on a busy 2-core machine a thread pool makes each small pooling
        # call milliseconds slower; every output element is still computed the same way.
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # the context is already initialised: keep its setting
            pass


class KerasJax(_Keras):
    name = "keras-jax"
    keras_backend = "jax"
    needs = ("jax", "jaxlib")
    distributions = ("jax",)

    def _configure(self) -> None:
        # float64 cases ask for float64: without x64 JAX silently computes them in float32.
        import jax

        jax.config.update("jax_enable_x64", True)
        # JAX's own persistent compilation cache, in poolconform's backend cache (off with
        # POOLCONFORM_NO_CACHE=1): a later run loads each case's XLA executable instead of
        # compiling it again (most of a case's cost); what runs is the same executable.
        from poolconform import backend_cache

        folder = backend_cache.writable_dir("jax")
        if folder is not None:
            jax.config.update("jax_compilation_cache_dir", str(folder))
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
            jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)

    def _remark(self, case: PoolCase, plan: KerasPooling) -> str:
        return "jax_enable_x64 set so float64 stays float64" if case.dtype == "float64" else ""

    def _wrap(self, fn: Callable) -> Callable:
        import jax

        return jax.jit(fn)  # one compilation per input shape and dtype, cached by jax


class KerasTorch(_Keras):
    name = "keras-torch"
    keras_backend = "torch"
    needs = ("torch",)
    distributions = ("torch",)

    def _configure(self) -> None:
        # One intra-op thread: measured 6 ms -> 25 us a small max_pool2d call on a busy
        # 2-core machine; every output element is still computed the same way.
        import torch

        torch.set_num_threads(1)

    def _remark(self, case: PoolCase, plan: KerasPooling) -> str:
        if plan.padding != "same":
            return ""
        pads, rank = shapes.resolve_pads(case), case.rank
        if any(pads[a] != pads[a + rank] for a in range(rank)):
            return "Keras's torch backend pads an uneven 'same' by replicating edge values (F.pad mode='replicate')"
        return ""

    def _to_tensor(self, x: np.ndarray, dtype: str):
        keras = self._import_keras()
        if dtype == "bfloat16":  # torch cannot read ml_dtypes' bfloat16: widen exactly, cast back in torch
            return keras.ops.cast(keras.ops.convert_to_tensor(x.astype(np.float32)), "bfloat16")
        return keras.ops.convert_to_tensor(x, dtype=dtype)

    def _to_numpy(self, y, dtype: str) -> np.ndarray:
        keras = self._import_keras()
        if dtype == "bfloat16":  # numpy cannot read torch's bfloat16: widen exactly in torch
            wide = keras.ops.convert_to_numpy(keras.ops.cast(y, "float32"))
            return np.asarray(wide).astype(dtypes.numpy_dtype(dtype))
        return np.asarray(keras.ops.convert_to_numpy(y))
