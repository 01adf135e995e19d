"""`check --against stored`: the stored outputs are the truth, but the spec's dtype still is."""

from __future__ import annotations

import numpy as np

from poolconform import oracle, stored_data
from poolconform.validation import make_case


def test_against_stored_refuses_a_wrong_dtype_even_when_values_fit() -> None:
    case = make_case("AveragePool", (1, 1, 4, 4), kernel=2, strides=2, dtype="float16")
    x = np.arange(16, dtype=np.float16).reshape(1, 1, 4, 4)
    stored = [oracle.reference_outputs(case, [x])[0].astype(np.float16)]
    judge = stored_data.against_stored(atol=1e-3, rtol=0.0)
    right = judge(case, stored, [stored[0].copy()], [x])
    wrong = judge(case, stored, [stored[0].astype(np.float64)], [x])
    assert right.status == "pass"
    assert wrong.status == "mismatch"
    assert "dtype float64, expected float16" in wrong.detail


def test_against_stored_uses_the_given_atol() -> None:
    case = make_case("AveragePool", (1, 1, 4, 4), kernel=2, strides=2)
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    stored = [oracle.reference_outputs(case, [x])[0].astype(np.float32)]
    off = stored[0] + np.float32(0.01)
    assert stored_data.against_stored(atol=0.1, rtol=0.0)(case, stored, [off], [x]).status == "pass"
    assert stored_data.against_stored(atol=0.001, rtol=0.0)(case, stored, [off], [x]).status == "mismatch"
