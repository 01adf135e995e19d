"""poolconform's numeric environment variables, checked once as a command starts.

A bad value is one line and exit status 2 before any work, not a surprise later: an
oracle thread count read only once a case is large enough stopped a run half way, and an
ONNX Runtime thread count read inside the backend's worker became an `error` record
blamed on onnxruntime (or was silently ignored). Each variable is parsed here, and the
modules that use it read it through these functions.
"""

from __future__ import annotations

import math
import os

from poolconform.errors import PoolconformError

ORACLE_THREADS = "POOLCONFORM_ORACLE_THREADS"
ORT_THREADS = "POOLCONFORM_ORT_INTRA_OP_THREADS"
SHRINK_SECONDS = "POOLCONFORM_SHRINK_SECONDS"
#: More threads than any machine has cores is a typo (ONNX Runtime fails to start with 10**11).
MAX_THREADS = 1024


def thread_count(name: str, lowest: int = 1) -> int | None:
    """A thread count from `name`, `lowest` to MAX_THREADS; None when unset or empty."""
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    if not text.isdigit() or not lowest <= int(text) <= MAX_THREADS:
        raise PoolconformError(f"{name} must be a whole number of threads from {lowest} to {MAX_THREADS}, not {text!r}")
    return int(text)


def seconds(name: str, default: float) -> float:
    """A number of seconds >= 0 from `name`; `default` when unset or empty."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise PoolconformError(f"{name}={text!r} is not a number of seconds") from None
    if not (value >= 0 and math.isfinite(value)):
        raise PoolconformError(f"{name}={text!r} must be a finite number of seconds >= 0")
    return value


def check_environment() -> None:
    """Parse every numeric variable now (each raises PoolconformError when it is bad)."""
    thread_count(ORACLE_THREADS)
    thread_count(ORT_THREADS, lowest=0)  # 0: ONNX Runtime's own default, one per core (what bench sets)
    seconds(SHRINK_SECONDS, 0.0)
