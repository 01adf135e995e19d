"""A cache bounded in bytes, least recently used first out: what the parent keeps per case
(inputs, oracle outputs, the facts judging them needs) must not grow with the matrix
(docs/speed.md, "Memory as the matrix grows").

Each entry is kept with the bytes it costs, as its owner counts them (its arrays' data
plus a fixed overhead per entry, so that tiny entries cannot make the cache unbounded in
number). Thread-safe; the lock is reentrant, as a weak reference's callback may drop an
entry while a call holds it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ByteLRU(Generic[K, V]):
    """Values by key, each with its size; `bytes` stays at most `limit` (an entry larger
    than the limit is not kept at all)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.bytes = 0
        self._held: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.RLock()

    def get(self, key: K) -> V | None:
        """The value, now the most recently used; None when not kept."""
        with self._lock:
            hit = self._held.get(key)
            if hit is None:
                return None
            self._held.move_to_end(key)
            return hit[0]

    def __contains__(self, key: object) -> bool:
        return key in self._held

    def __len__(self) -> int:
        return len(self._held)

    def keep(self, key: K, value: V, size: int) -> None:
        """Keep `value` (replacing the key's), dropping the least recently used beyond the limit."""
        if size > self.limit:
            return  # too big to keep at all: remade on each use
        with self._lock:
            self._drop(key)
            self._held[key] = (value, size)
            self.bytes += size
            while self.bytes > self.limit:
                self._drop(next(iter(self._held)))

    def drop(self, key: K, only: Callable[[V], bool] | None = None) -> None:
        """Forget the key's value (when `only` is given, only a value it accepts)."""
        with self._lock:
            held = self._held.get(key)
            if held is not None and (only is None or only(held[0])):
                self._drop(key)

    def clear(self) -> None:
        with self._lock:
            self._held.clear()
            self.bytes = 0

    def _drop(self, key: K) -> None:
        """Forget `key` (the caller holds the lock)."""
        held = self._held.pop(key, None)
        if held is not None:
            self.bytes -= held[1]
