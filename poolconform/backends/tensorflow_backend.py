"""Raw TensorFlow: each ONNX case translated to a tf.nn pooling op, run eagerly in NHWC.

What tf.nn can say, and so what this backend claims (everything else is a one-line
"unsupported: ..." from `supports`, never an emulation):
- padding "VALID", "SAME" (= ONNX SAME_UPPER, padding excluded from averages), or an
  explicit list, which only tf.nn.max_pool1d / max_pool2d take;
- explicit ONNX pads that equal SAME_UPPER's pads run as "SAME" (same computation);
- no ceil_mode: a ceil_mode case runs only when its output shape equals floor mode's;
- dilations only through tf.nn.pool, which allows them with strides 1 and "VALID" only
  (it documents no explicit padding, and refuses "SAME" with dilations);
- Indices from tf.nn.max_pool_with_argmax (2-D, "SAME"/"VALID" only), converted from
  NHWC flattening to ONNX's NCHW flattening and storage_order;
- no Lp pooling op at all.
Eager ops are called directly: nothing is traced, so there is nothing to retrace.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from poolconform import shapes
from poolconform.backends.base import Unsupported, framework_version
from poolconform.backends.planned import PlannedBackend
from poolconform.case import PoolCase

#: Element types each op's definition accepts (the op refuses others before any kernel runs).
_AVG_DTYPES = ("float16", "bfloat16", "float32", "float64")
_MAX3D_DTYPES = ("float16", "bfloat16", "float32")
#: Distributions that install the `tensorflow` module, most common first.
_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel",
                  "tensorflow-macos", "tf-nightly", "tf-nightly-cpu")


@dataclass(frozen=True)
class TFPlan:
    """How one case runs: which tf.nn op, with what window, strides and padding (NHWC)."""

    op: str  # "max_pool", "avg_pool", "max_pool_with_argmax" or "pool"
    ksize: tuple[int, ...]
    strides: tuple[int, ...]
    padding: str | tuple[tuple[int, int], ...]  # "SAME", "VALID" or explicit (begin, end) per spatial axis
    dilations: tuple[int, ...] = ()
    note: str = "NHWC via transpose"

    def tf_padding(self) -> str | list[list[int]]:
        """`padding` as tf.nn wants it: explicit lists include the batch and channel axes."""
        if isinstance(self.padding, str):
            return self.padding
        return [[0, 0], *[list(p) for p in self.padding], [0, 0]]


def _dtype_reason(case: PoolCase, is_max: bool) -> str | None:
    if not is_max and case.dtype not in _AVG_DTYPES:
        return f"unsupported: tf.nn.avg_pool{case.rank}d accepts {', '.join(_AVG_DTYPES)}, not {case.dtype!r}"
    if is_max and case.rank == 3 and case.dtype not in _MAX3D_DTYPES:
        return f"unsupported: tf.nn.max_pool3d accepts {', '.join(_MAX3D_DTYPES)}, not {case.dtype!r}"
    return None


def _padding(case: PoolCase, is_max: bool) -> tuple[str | tuple[tuple[int, int], ...], str] | Unsupported:
    """(tf padding, how it was chosen), or why it cannot be expressed."""
    rank = case.rank
    pads = shapes.resolve_pads(case)
    same_upper = shapes.resolve_pads(case.replace(auto_pad="SAME_UPPER", pads=(0,) * (2 * rank)))
    same_shape = tuple(-(-n // s) for n, s in zip(case.spatial, case.strides))
    if not any(pads):
        return "VALID", ""
    if pads == same_upper and shapes.spatial_output_shape(case) == same_shape:
        if not is_max and case.count_include_pad:
            return Unsupported(
                f"unsupported: TF 'SAME' excludes padding from averages; count_include_pad=1 "
                f"with pads {pads!r} is not expressible"
            )
        how = "" if case.auto_pad == "SAME_UPPER" else f"pads {pads!r} run as 'SAME' (the same pads)"
        return "SAME", how
    explicit = tuple((pads[a], pads[a + rank]) for a in range(rank))
    if not is_max:
        return Unsupported(
            f"unsupported: tf.nn.avg_pool takes only 'SAME' or 'VALID', not explicit pads {pads!r} "
            f"(SAME would be {same_upper!r})"
        )
    if case.with_indices:
        return Unsupported(f"unsupported: tf.nn.max_pool_with_argmax takes only 'SAME' or 'VALID', not pads {pads!r}")
    if rank == 3:
        return Unsupported(f"unsupported: tf.nn.max_pool3d takes only 'SAME' or 'VALID', not explicit pads {pads!r}")
    return explicit, f"explicit paddings {[list(p) for p in explicit]!r}"


def translate(case: PoolCase) -> TFPlan | Unsupported:
    """The tf.nn call for `case`, or the one-line reason raw TensorFlow cannot express it."""
    if case.output_size:
        return Unsupported(f"unsupported: tf.nn has no adaptive pooling op ({case.op})")
    if case.op in ("LpPool", "GlobalLpPool"):
        return Unsupported(f"unsupported: tf.nn has no Lp pooling op ({case.op})")
    if case.with_indices and case.rank != 2:
        return Unsupported(f"unsupported: tf.nn.max_pool_with_argmax is 2-D only, this case is {case.rank}-D")
    is_max = case.op in ("MaxPool", "GlobalMaxPool")
    reason = _dtype_reason(case, is_max)
    if reason:
        return Unsupported(reason)
    pool = "max_pool" if is_max else "avg_pool"
    if case.is_global:
        ones = (1,) * case.rank
        return TFPlan(pool, case.spatial, ones, "VALID",
                      note=f"{case.op} as tf.nn.{pool}{case.rank}d over the whole spatial extent; NHWC via transpose")
    notes = ["NHWC via transpose"]
    if case.ceil_mode and case.auto_pad in ("NOTSET", "VALID"):
        ceil_shape = shapes.spatial_output_shape(case)
        floor_shape = shapes.spatial_output_shape(case.replace(ceil_mode=False))
        if ceil_shape != floor_shape:
            return Unsupported(f"unsupported: tf.nn pooling has no ceil_mode (ceil gives {ceil_shape!r}, "
                    f"floor {floor_shape!r})")
        notes.append("ceil_mode gives the floor-mode shape here: run without it")
    padded = _padding(case, is_max)
    if isinstance(padded, Unsupported):
        return padded
    padding, how = padded
    if how:
        notes.append(how)
    dilated = any(d != 1 for d in case.dilations)
    if case.with_indices:
        if dilated:
            return Unsupported(
                f"unsupported: tf.nn.max_pool_with_argmax has no dilation (dilations={case.dilations!r})"
            )
        order = "column-major" if case.storage_order == 1 else "row-major"
        notes.append(f"Indices converted from NHWC flattening to NCHW {order} flattening")
        return TFPlan("max_pool_with_argmax", case.kernel, case.strides, padding, note="; ".join(notes))
    if dilated:
        if any(s != 1 for s in case.strides):
            return Unsupported(f"unsupported: tf.nn.pool allows dilations only with strides 1 "
                    f"(strides={case.strides!r}, dilations={case.dilations!r})")
        if padding == "SAME":
            return Unsupported(f"unsupported: tf.nn.pool does not implement 'SAME' with dilations {case.dilations!r}")
        if padding != "VALID":  # it accepts a list on 2-D input, but zero-pads: undocumented
            return Unsupported(f"unsupported: tf.nn.pool (the only op with dilations) documents only 'SAME' or "
                    f"'VALID', not explicit pads {shapes.resolve_pads(case)!r}")
        notes.append("tf.nn.pool with dilations")
        return TFPlan("pool", case.kernel, case.strides, padding, case.dilations, note="; ".join(notes))
    return TFPlan(pool, case.kernel, case.strides, padding, note="; ".join(notes))


def nhwc_argmax_to_onnx(argmax: np.ndarray, nchw_shape: tuple[int, ...], storage_order: int) -> np.ndarray:
    """max_pool_with_argmax indices (include_batch_in_index, NHWC layout) -> ONNX Indices (NCHW).

    TF flattens ((b*H + y)*W + x)*C + c; ONNX flattens ((b*C + c)*H + y)*W + x, or with
    storage_order=1 (b*C + c)*H*W + x*H + y.
    """
    n, c, h, w = nchw_shape
    b, y, x, ch = np.unravel_index(np.moveaxis(np.asarray(argmax, dtype=np.int64), -1, 1), (n, h, w, c))
    within = y * w + x if storage_order == 0 else x * h + y
    return ((b * c + ch) * (h * w) + within).astype(np.int64)


def _tf_input(x: np.ndarray):
    import tensorflow as tf

    return tf.constant(np.ascontiguousarray(np.moveaxis(x, 1, -1)))


def _onnx_layout(y) -> np.ndarray:
    return np.moveaxis(np.asarray(y), -1, 1)


class TensorFlow(PlannedBackend[TFPlan]):
    name = "tensorflow"
    framework = "tensorflow-cpu"

    def available(self) -> str | None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        try:
            import tensorflow  # noqa: F401
        except ImportError as exc:
            return f"tensorflow is not installed ({exc})"
        return None

    def version(self) -> str:
        for distribution in _DISTRIBUTIONS:
            if version := framework_version(distribution):
                return version
        import tensorflow as tf

        return tf.__version__

    def translate(self, case: PoolCase) -> TFPlan | Unsupported:
        return translate(case)

    def execute(self, case: PoolCase, plan: TFPlan, inputs: list[np.ndarray]) -> list[np.ndarray]:
        outputs = [y.numpy() for y in call_plan(plan, case, _tf_input(inputs[0]))]
        if plan.op == "max_pool_with_argmax":
            return [_onnx_layout(outputs[0]), nhwc_argmax_to_onnx(outputs[1], case.input_shape, case.storage_order)]
        return [_onnx_layout(outputs[0])]


def call_plan(plan: TFPlan, case: PoolCase, x) -> tuple:
    """The plan's tf.nn call on NHWC `x`: (values,) or, for max_pool_with_argmax, (values, argmax)."""
    import tensorflow as tf

    if plan.op == "max_pool_with_argmax":
        return tuple(tf.nn.max_pool_with_argmax(x, plan.ksize, plan.strides, plan.tf_padding(),
                                                include_batch_in_index=True))
    if plan.op == "pool":
        kind = "MAX" if case.op == "MaxPool" else "AVG"
        return (tf.nn.pool(x, plan.ksize, kind, plan.strides, plan.tf_padding(), dilations=plan.dilations),)
    return (getattr(tf.nn, f"{plan.op}{case.rank}d")(x, plan.ksize, plan.strides, plan.tf_padding()),)
