"""onnx's ReferenceEvaluator: a backend under test like any other, not the truth.

It is pure Python over NumPy, the slowest backend of a default run (about 30 ms a case, 100 ms
at 56x56), and what it returns is fixed by the model's bytes, the input's bytes, the onnx and
NumPy releases and the SIMD features NumPy dispatches on. So its outputs are kept in
poolconform's backend cache (poolconform.backend_cache, folder `onnx-reference`), keyed by
exactly those, and replayed in later runs; only the outputs are kept, every run still compares
them with the oracle. A replayed record's note says so. An entry whose stored key or payload
digest does not match is ignored (recomputed and rewritten), and a cache that cannot be read
or written is no cache. `POOLCONFORM_NO_CACHE=1` turns it off.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import numpy as np

from poolconform import backend_cache
from poolconform.backends.base import BaseBackend
from poolconform.case import PoolCase
from poolconform.onnx_export import model_bytes

if TYPE_CHECKING:
    from onnx.reference import ReferenceEvaluator

#: Bumped when the entry format changes (old entries then never match).
FORMAT = "poolconform-onnx-reference-outputs-1"
REPLAYED_NOTE = "outputs replayed from poolconform's cache (same onnx, NumPy, CPU features, model and input bytes)"


class OutputCache:
    """Outputs under a key of (onnx, NumPy, model, inputs) in a backend_cache.BlobStore."""

    def __init__(self, store: backend_cache.BlobStore) -> None:
        self.store = store

    @staticmethod
    def key(model: bytes, inputs: list[np.ndarray]) -> str:
        import onnx

        parts: list[str | bytes] = [FORMAT, onnx.__version__, np.__version__, _numpy_cpu_features(), model]
        for x in inputs:
            x = np.ascontiguousarray(x)
            parts += [f"{x.dtype.str}|{x.dtype.name}|{x.shape}", x.tobytes()]
        return backend_cache.digest(*parts)

    def load(self, key: str) -> list[np.ndarray] | None:
        """The stored outputs, or None when absent or not matching the key."""
        found = self.store.load(key)
        if found is None:
            return None
        header, payload = found
        try:
            outputs, offset = [], 0
            for dtype, shape in zip(header["dtypes"], header["shapes"], strict=True):
                dt, count = np.dtype(dtype), int(np.prod(shape, dtype=np.int64))
                outputs.append(np.frombuffer(payload, dt, count=count, offset=offset).reshape(shape).copy())
                offset += dt.itemsize * count
        except (ValueError, TypeError, KeyError):
            return None
        return outputs if offset == len(payload) else None

    def save(self, key: str, outputs: list[np.ndarray]) -> None:
        """Store plain NumPy outputs (dtypes that round-trip by their string); skip the rest."""
        arrays = [np.ascontiguousarray(y) for y in outputs]
        if any(y.dtype.kind not in "biuf" or np.dtype(y.dtype.str) != y.dtype for y in arrays):
            return  # e.g. ml_dtypes' bfloat16: not worth a format of its own
        self.store.save(key, b"".join(y.tobytes() for y in arrays),
                        dtypes=[y.dtype.str for y in arrays], shapes=[list(y.shape) for y in arrays])


def _numpy_cpu_features() -> str:
    """The SIMD features NumPy dispatches on here: a reduction's rounding may depend on them,
    so a cache shared between machines never replays another CPU's outputs."""
    features: dict[str, bool] = {}
    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):  # NumPy 2, 1
        try:
            features = getattr(importlib.import_module(module), "__cpu_features__", {})
            break
        except ImportError:
            continue
    return ",".join(sorted(name for name, on in features.items() if on))


class OnnxReference(BaseBackend):
    name = "onnx-reference"
    framework = "onnx"
    reads_onnx = True

    def __init__(self) -> None:
        self._evaluators: dict[bytes, ReferenceEvaluator] = {}
        self._cache: OutputCache | None = None
        self._cache_checked = False
        self._replayed: str | None = None  # id of the last case whose outputs came from the cache

    def available(self) -> str | None:
        try:
            import onnx.reference  # noqa: F401
        except ImportError as exc:
            return f"onnx.reference is not importable ({exc})"
        return None

    def note(self, case: PoolCase) -> str | None:
        """Said only when the outputs were replayed rather than computed in this run."""
        return REPLAYED_NOTE if self._replayed == case.id else None

    def _output_cache(self) -> OutputCache | None:
        if not self._cache_checked:
            store = backend_cache.BlobStore.open("onnx-reference")
            self._cache = OutputCache(store) if store is not None else None
            self._cache_checked = True
        return self._cache

    def run(self, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        self._replayed = None
        key = model_bytes(case)
        cache = self._output_cache()
        entry = cache.key(key, inputs) if cache is not None else ""
        if cache is not None:
            stored = cache.load(entry)
            if stored is not None:
                self._replayed = case.id
                return stored
        outputs = self._evaluate(key, inputs)
        if cache is not None:
            cache.save(entry, outputs)
        return outputs

    def _evaluate(self, key: bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
        from onnx.reference import ReferenceEvaluator

        evaluator = self._evaluators.get(key)
        if evaluator is None:
            if len(self._evaluators) > 256:
                self._evaluators.clear()
            evaluator = self._evaluators[key] = ReferenceEvaluator(key)
        feeds = dict(zip(evaluator.input_names, inputs))
        return [np.asarray(y) for y in evaluator.run(None, feeds)]
