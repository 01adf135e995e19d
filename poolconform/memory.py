"""What judging kept in the parent, given back once every record is written.

While a run judges, the parent keeps each case's inputs, its oracle outputs and the facts
that judge them (bounded caches: poolconform/lru.py) until its slowest backend has answered;
a job lets go of its own when that happens, so at the end of a finished run the caches are
mostly empty already (a run stopped early, or a worker lost, leaves entries: they go here).
What stays is the freed heap: glibc keeps freed small blocks for reuse, as resident memory,
and the report phase then grows past it. Handing it back (malloc_trim) lets the reports
start from what judging held at its least, so a large run's peak is the judging's, which
the caches bound: 126 -> 92 MB before the reports of 8,960 cases on 8 stand-in backends
(docs/speed.md, "Memory as the matrix grows").
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
from collections.abc import Callable


def release_judging_memory() -> None:
    """Empty the inputs, oracle and judging-facts caches, then give the freed heap back."""
    from poolconform.compare import clear_facts
    from poolconform.inputs import clear_cache
    from poolconform.job import clear_oracle_cache

    clear_cache()
    clear_oracle_cache()
    clear_facts()
    trim_heap()


def trim_heap() -> bool:
    """malloc_trim(0) where the C library is glibc (Linux); False where there is none to call."""
    trim = _malloc_trim()
    if trim is None:
        return False
    return bool(trim(0))


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim as a function of C size_t -> int; None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim
