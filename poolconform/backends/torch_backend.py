"""PyTorch on CPU and CUDA: each ONNX case translated to torch.nn.functional's own pooling op.

Translation (ONNX -> PyTorch): stride, count_include_pad and ceil_mode are always passed
explicitly (PyTorch defaults stride to the kernel and count_include_pad to True); pads
must be symmetric and at most half the kernel, because that is all PyTorch's `padding`
can say; nothing is emulated with F.pad. Global ops use F.adaptive_*_pool(x, 1) (what
torch.onnx exports as GlobalMaxPool / GlobalAveragePool) and GlobalLpPool uses
F.lp_pool with the whole spatial extent as kernel. Inputs run in their own dtype:
an op that has no kernel for it raises, and the runner records the framework's message.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from poolconform import shapes
from poolconform.backends.base import Unsupported
from poolconform.backends.planned import PlannedBackend
from poolconform.case import PoolCase


def symmetric_padding(case: PoolCase) -> tuple[int, ...] | Unsupported:
    """PyTorch's per-axis `padding` for the case, or the reason it has none."""
    pads = shapes.resolve_pads(case)
    rank = case.rank
    begins, ends = pads[:rank], pads[rank:]
    if begins != ends:
        how = f"auto_pad={case.auto_pad} resolves to" if case.auto_pad != "NOTSET" else "pads"
        return Unsupported(f"unsupported: PyTorch padding is symmetric; {how} {pads!r} (begin..., end...) is not")
    limits = tuple(k // 2 for k in case.kernel)
    if any(p > limit for p, limit in zip(begins, limits)):
        return Unsupported(
            f"unsupported: PyTorch padding must be at most half the kernel (kernel={case.kernel!r} "
            f"allows {limits!r}), pads are {begins!r}"
        )
    return begins


def onnx_indices(plane_indices: np.ndarray, spatial: tuple[int, ...], storage_order: int) -> np.ndarray:
    """PyTorch's per-(N, C)-plane row-major indices -> ONNX's whole-tensor flat indices.

    ONNX flattens over (N, C, spatial...), and with storage_order=1 the plane is read
    column-major (the first spatial axis varies fastest).
    """
    idx = np.asarray(plane_indices, dtype=np.int64)
    n, c = idx.shape[:2]
    plane = int(np.prod(spatial))
    if storage_order == 1:
        coords = np.unravel_index(idx, spatial)
        column_strides = [int(np.prod(spatial[:a])) for a in range(len(spatial))]
        idx = sum((coord.astype(np.int64) * stride for coord, stride in zip(coords, column_strides)),
                  start=np.zeros(idx.shape, np.int64))
    base = (np.arange(n, dtype=np.int64)[:, None] * c + np.arange(c, dtype=np.int64)[None, :]) * plane
    return idx + base.reshape((n, c) + (1,) * len(spatial))


def _to_torch(x: np.ndarray, device: str):
    """numpy -> torch in the same dtype (bfloat16 travels as its bit pattern)."""
    import torch

    x = np.ascontiguousarray(x)
    if x.dtype.name == "bfloat16":
        return torch.from_numpy(x.view(np.int16)).view(torch.bfloat16).to(device)
    return torch.from_numpy(x).to(device)


def _to_numpy(t) -> np.ndarray:
    import ml_dtypes
    import torch

    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


@dataclass(frozen=True)
class TorchPlan:
    """The torch.nn.functional call that computes a case: `F.<function>(x, *args, **kwargs)`."""

    function: str  # e.g. "max_pool2d"
    args: tuple = ()
    kwargs: tuple[tuple[str, object], ...] = ()
    note: str = ""

    def call(self, x: str = "x") -> str:
        """The call as Python source, for `poolconform repro`'s script."""
        return ", ".join([x, *map(repr, self.args), *(f"{k}={v!r}" for k, v in self.kwargs)])

    @property
    def module(self) -> str:
        """The torch.nn class that wraps the same call (what users export): MaxPool2d, ..."""
        stem, rank = self.function[:-2], self.function[-2:]
        return _MODULES[stem] + rank


_MODULES = {"max_pool": "MaxPool", "avg_pool": "AvgPool", "lp_pool": "LPPool",
            "adaptive_max_pool": "AdaptiveMaxPool", "adaptive_avg_pool": "AdaptiveAvgPool"}


def translate(case: PoolCase) -> TorchPlan | Unsupported:
    """The torch.nn.functional call for `case`, or why PyTorch cannot express it."""
    rank = case.rank
    notes = []
    if case.output_size:  # adaptive pooling (poolconform.adaptive): torch's own op, one to one
        kind = "max" if case.op == "AdaptiveMaxPool" else "avg"
        size = case.output_size[0] if rank == 1 else case.output_size
        return TorchPlan(f"adaptive_{kind}_pool{rank}d", (size,), (), "")
    if case.is_global:
        if case.op == "GlobalLpPool":
            spatial = case.spatial[0] if rank == 1 else case.spatial  # lp_pool1d multiplies by an int
            return TorchPlan(f"lp_pool{rank}d", (case.p, spatial), (("stride", spatial),),
                             f"F.lp_pool{rank}d with the whole spatial extent as kernel")
        kind = "max" if case.op == "GlobalMaxPool" else "avg"
        return TorchPlan(f"adaptive_{kind}_pool{rank}d", (1,), (), f"F.adaptive_{kind}_pool{rank}d(x, 1)")
    if case.op in ("AveragePool", "LpPool") and any(d != 1 for d in case.dilations):
        fn = "avg_pool" if case.op == "AveragePool" else "lp_pool"
        return Unsupported(f"unsupported: PyTorch {fn}{rank}d has no dilation (dilations={case.dilations!r})")
    pads = shapes.resolve_pads(case)
    if case.op == "LpPool" and any(pads):
        return Unsupported(f"unsupported: PyTorch lp_pool{rank}d has no padding (pads={pads!r})")
    padding = symmetric_padding(case)
    if isinstance(padding, Unsupported):
        return padding
    if case.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        notes.append(f"{case.auto_pad} as symmetric padding={padding!r}")
    if case.ceil_mode and case.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        notes.append("ceil_mode not passed: it has no effect under SAME padding")
    if case.with_indices:
        order = "column-major" if case.storage_order == 1 else "row-major"
        notes.append(f"Indices converted from per-(N,C)-plane to whole-tensor {order} flattening")
    note = "; ".join(notes)
    kernel: int | tuple[int, ...] = case.kernel
    stride: int | tuple[int, ...] = case.strides
    ceil_mode = case.ceil_mode and case.auto_pad in ("NOTSET", "VALID")
    if case.op == "MaxPool":
        return TorchPlan(f"max_pool{rank}d", (kernel, stride, padding, case.dilations),
                         (("ceil_mode", ceil_mode), ("return_indices", case.with_indices)), note)
    if case.op == "AveragePool":
        return TorchPlan(f"avg_pool{rank}d", (kernel, stride, padding),
                         (("ceil_mode", ceil_mode), ("count_include_pad", case.count_include_pad)), note)
    if case.op == "LpPool":
        if rank == 1:  # lp_pool1d multiplies by kernel_size, so it needs an int
            kernel, stride = case.kernel[0], case.strides[0]
        return TorchPlan(f"lp_pool{rank}d", (case.p, kernel), (("stride", stride), ("ceil_mode", ceil_mode)), note)
    return Unsupported(f"unsupported: PyTorch has no translation for op {case.op!r}")


class _Torch(PlannedBackend[TorchPlan]):
    framework = "torch"

    def available(self) -> str | None:
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            return f"torch is not installed ({exc})"
        return None

    def translate(self, case: PoolCase) -> TorchPlan | Unsupported:
        return translate(case)

    def execute(self, case: PoolCase, plan: TorchPlan, inputs: list[np.ndarray]) -> list[np.ndarray]:
        import torch.nn.functional as F

        result = getattr(F, plan.function)(_to_torch(inputs[0], self.device), *plan.args, **dict(plan.kwargs))
        if not case.with_indices:
            return [_to_numpy(result)]
        values, indices = result
        return [_to_numpy(values), onnx_indices(_to_numpy(indices), case.spatial, case.storage_order)]


class TorchCPU(_Torch):
    name = "torch-cpu"
    device = "cpu"


class TorchCUDA(_Torch):
    name = "torch-cuda"
    device = "cuda"

    def available(self) -> str | None:
        reason = super().available()
        if reason:
            return reason
        import torch

        if not torch.cuda.is_available():
            built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            return f"torch.cuda.is_available() is False (torch {torch.__version__}, {built})"
        return None
