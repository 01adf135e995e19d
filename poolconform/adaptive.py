"""Adaptive pooling: the framework ops (PyTorch's adaptive_{avg,max}_pool, Keras' Adaptive*Pooling)
that exporters lower to ONNX, and the window rule every one of them documents.

Output index i of an axis with input size n and output size o pools the input window
[floor(i*n/o), ceil((i+1)*n/o)): windows of unequal size that may overlap when o does not
divide n. ONNX has no such operator, so a case runs on the frameworks directly and through
their exporters (docs/conformance-space.md, "Adaptive pooling"); a backend that reads the
ONNX model declines it with `ONNX_REFUSAL`. Pure arithmetic on the case: no framework import.
"""

from __future__ import annotations

import numpy as np

from poolconform.attributes import ADAPTIVE_OPS
from poolconform.case import PoolCase
from poolconform.errors import CaseError

__all__ = ["ADAPTIVE_OPS", "DTYPES", "ONNX_REFUSAL", "check_adaptive", "divides", "is_adaptive", "onnx_rejects",
           "windows"]

#: Why a backend that reads ONNX, or the backend-test exporter, has nothing to run.
ONNX_REFUSAL = ("adaptive pooling is not an ONNX operator; it is judged through the frameworks and "
                "their exporters")
#: The element types adaptive cases take: the frameworks' adaptive kernels are floating point only.
DTYPES = ("float32", "float64", "float16", "bfloat16")


def is_adaptive(case: PoolCase) -> bool:
    return case.op in ADAPTIVE_OPS


def windows(n: int, o: int) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the o windows over an axis of n: [floor(i*n/o), ceil((i+1)*n/o))."""
    i = np.arange(o, dtype=np.int64)
    return (i * n) // o, -((-(i + 1) * n) // o)


def divides(case: PoolCase) -> bool:
    """Whether every output size divides its input size: then the windows are one fixed
    kernel n/o at stride n/o, which an AveragePool or MaxPool expresses exactly."""
    return all(n % o == 0 for n, o in zip(case.spatial, case.output_size))


def check_adaptive(case: PoolCase) -> None:
    """CaseError (with a category a matrix counts drops under) when the adaptive case is malformed."""
    if len(case.output_size) != case.rank:
        raise CaseError(f"output_size={case.output_size!r} needs {case.rank} values for rank {case.rank}")
    if any(not isinstance(o, int) or isinstance(o, bool) or o < 1 for o in case.output_size):
        raise CaseError(f"output_size must hold integers >= 1, got {case.output_size!r}")
    if case.dtype not in DTYPES:
        raise CaseError(f"adaptive pooling takes {', '.join(DTYPES)}, not {case.dtype!r}",
                        category="adaptive pooling on an integer dtype")


def onnx_rejects(case: PoolCase) -> str | None:
    """The unsupported line for a backend that reads the ONNX model; None for ONNX ops."""
    return f"unsupported: {ONNX_REFUSAL}" if is_adaptive(case) else None
