"""onnx's ReferenceEvaluator: a backend under test like any other, not the truth."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from poolconform.backends.base import BaseBackend
from poolconform.case import PoolCase
from poolconform.onnx_export import model_bytes

if TYPE_CHECKING:
    from onnx.reference import ReferenceEvaluator


class OnnxReference(BaseBackend):
    name = "onnx-reference"
    framework = "onnx"
    reads_onnx = True

    def __init__(self) -> None:
        self._evaluators: dict[bytes, ReferenceEvaluator] = {}

    def available(self) -> str | None:
        try:
            import onnx.reference  # noqa: F401
        except ImportError as exc:
            return f"onnx.reference is not importable ({exc})"
        return None

    def run(self, case: PoolCase, inputs: list[np.ndarray]) -> list[np.ndarray]:
        from onnx.reference import ReferenceEvaluator

        key = model_bytes(case)
        evaluator = self._evaluators.get(key)
        if evaluator is None:
            if len(self._evaluators) > 256:
                self._evaluators.clear()
            evaluator = self._evaluators[key] = ReferenceEvaluator(key)
        feeds = dict(zip(evaluator.input_names, inputs))
        return [np.asarray(y) for y in evaluator.run(None, feeds)]
