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

import numpy as np

from poolconform import shapes
from poolconform.backends.base import BaseBackend, Unsupported
from poolconform.case import PoolCase


def symmetric_padding(case: PoolCase) -> tuple[tuple[int, ...] | None, str | None]:
    """PyTorch's per-axis `padding` for the case, or (None, the reason it has none)."""
    pads = shapes.resolve_pads(case)
    rank = case.rank
    begins, ends = pads[:rank], pads[rank:]
    if begins != ends:
        how = f"auto_pad={case.auto_pad} resolves to" if case.auto_pad != "NOTSET" else "pads"
        return None, (
            f"unsupported: PyTorch padding is symmetric; {how} {pads!r} (begin..., end...) is not"
        )
    limits = tuple(k // 2 for k in case.kernel)
    if any(p > limit for p, limit in zip(begins, limits)):
        return None, (
            f"unsupported: PyTorch padding must be at most half the kernel (kernel={case.kernel!r} "
            f"allows {limits!r}), pads are {begins!r}"
        )
    return begins, None


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
        idx = sum(coord.astype(np.int64) * stride for coord, stride in zip(coords, column_strides))
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


def torch_call(case: PoolCase) -> tuple[str, tuple, dict[str, object]]:
    """The torch.nn.functional call that computes a supported case: (name, args after x, kwargs).

    One translation for the backend's run() and for `poolconform repro`'s script.
    """
    rank = case.rank
    if case.op == "GlobalMaxPool":
        return f"adaptive_max_pool{rank}d", (1,), {}
    if case.op == "GlobalAveragePool":
        return f"adaptive_avg_pool{rank}d", (1,), {}
    if case.op == "GlobalLpPool":
        spatial = case.spatial[0] if rank == 1 else case.spatial  # lp_pool1d multiplies by an int
        return f"lp_pool{rank}d", (case.p, spatial), {"stride": spatial}
    padding, _ = symmetric_padding(case)
    kernel, stride = case.kernel, case.strides
    ceil_mode = case.ceil_mode and case.auto_pad == "NOTSET"
    if case.op == "MaxPool":
        return (f"max_pool{rank}d", (kernel, stride, padding, case.dilations),
                {"ceil_mode": ceil_mode, "return_indices": case.with_indices})
    if case.op == "AveragePool":
        return (f"avg_pool{rank}d", (kernel, stride, padding),
                {"ceil_mode": ceil_mode, "count_include_pad": case.count_include_pad})
    if case.op == "LpPool":
        if rank == 1:  # lp_pool1d multiplies by kernel_size, so it needs an int
            kernel, stride = kernel[0], stride[0]
        return f"lp_pool{rank}d", (case.p, kernel), {"stride": stride, "ceil_mode": ceil_mode}
    raise ValueError(f"torch backend has no translation for op {case.op!r}")


class _Torch(BaseBackend):
    framework = "torch"

    def available(self) -> str | None:
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            return f"torch is not installed ({exc})"
        return None

    def supports(self, case: PoolCase) -> str | None:
        if case.is_global:
            return None
        if case.op in ("AveragePool", "LpPool") and any(d != 1 for d in case.dilations):
            fn = "avg_pool" if case.op == "AveragePool" else "lp_pool"
            return f"unsupported: PyTorch {fn}{case.rank}d has no dilation (dilations={case.dilations!r})"
        if case.op == "LpPool" and any(shapes.resolve_pads(case)):
            return f"unsupported: PyTorch lp_pool{case.rank}d has no padding (pads={shapes.resolve_pads(case)!r})"
        return symmetric_padding(case)[1]

    def note(self, case: PoolCase) -> str | None:
        rank = case.rank
        notes = []
        if case.op == "GlobalMaxPool":
            notes.append(f"F.adaptive_max_pool{rank}d(x, 1)")
        elif case.op == "GlobalAveragePool":
            notes.append(f"F.adaptive_avg_pool{rank}d(x, 1)")
        elif case.op == "GlobalLpPool":
            notes.append(f"F.lp_pool{rank}d with the whole spatial extent as kernel")
        if case.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            padding, _ = symmetric_padding(case)
            notes.append(f"{case.auto_pad} as symmetric padding={padding!r}")
        if case.ceil_mode and case.auto_pad != "NOTSET":
            notes.append("ceil_mode not passed: it has no effect under auto_pad")
        if case.with_indices:
            order = "column-major" if case.storage_order == 1 else "row-major"
            notes.append(f"Indices converted from per-(N,C)-plane to whole-tensor {order} flattening")
        return "; ".join(notes) or None

    def run(self, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        import torch.nn.functional as F

        reason = self.supports(case)
        if reason:  # never run a case whose attributes torch would silently ignore
            raise Unsupported(reason)
        fn, args, kwargs = torch_call(case)
        result = getattr(F, fn)(_to_torch(inputs[0], self.device), *args, **kwargs)
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
