"""Judging the outputs a backend-test directory stores, apart from the backends.

`check` judges every backend against the oracle wherever the oracle can read the model,
and the stored outputs once, as one record of the pseudo-backend `stored-data`: a stored
value that disagrees with the spec is a finding about the data, not a mismatch of every
backend. Hand-typed literals (ONNX Runtime's tests write 0.4124 for 0.41245) are told
apart from wrong data by `literal_precision_explains`; `--against stored` instead makes
the stored outputs the truth, with an explicit `--atol`/`--rtol`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from poolconform import compare
from poolconform.case import PoolCase
from poolconform.results import Record, make_record

#: The pseudo-backend whose records judge the stored outputs themselves.
STORED_DATA = "stored-data"
#: Literals must resolve the data to this fraction of its largest magnitude (about 4
#: significant digits) before a difference can be blamed on how they were written.
LITERAL_MIN_RESOLUTION = 1e-3

Judge = Callable[[PoolCase, list[np.ndarray], list[np.ndarray], list[np.ndarray]], compare.Comparison]


def _decimals(value: float, dtype: np.dtype) -> int:
    """Digits after the point in the shortest text that reads back as `value` in `dtype`."""
    if dtype not in (np.float16, np.float32, np.float64):
        dtype = np.dtype(np.float64)
    text = np.format_float_positional(dtype.type(value), unique=True, trim="-")
    return len(text.split(".")[1]) if "." in text else 0


def literal_precision_explains(stored: np.ndarray, spec: np.ndarray) -> int | None:
    """The decimals d the stored values are written with, when that explains every
    difference from the spec; None when it does not.

    Explained means: same shape, NaN and infinities at the same places, each stored value
    within one unit of its last written decimal (10**-d) of the spec's, and d fine enough
    for the data (10**-d <= LITERAL_MIN_RESOLUTION * max|spec|), so all-zero or one-decimal
    outputs are never excused as "rounded".
    """
    if stored.shape != spec.shape or not np.issubdtype(stored.dtype, np.floating) or stored.size == 0:
        return None
    s, e = stored.astype(np.float64), spec.astype(np.float64)
    finite = np.isfinite(e)
    if not np.array_equal(np.isnan(s), np.isnan(e)) or not np.array_equal(s[np.isinf(e)], e[np.isinf(e)]):
        return None
    if not np.isfinite(s[finite]).all() or not finite.any():
        return None
    decimals = max(_decimals(v, stored.dtype) for v in s[finite].ravel().tolist())
    unit = 10.0 ** -decimals
    scale = float(np.abs(e[finite]).max())
    if unit > LITERAL_MIN_RESOLUTION * scale or float(np.abs(s[finite] - e[finite]).max()) > unit:
        return None
    return decimals


def judge_stored(case: PoolCase, spec: list[np.ndarray], stored: list[np.ndarray],
                 inputs: list[np.ndarray]) -> tuple[Record, str | None]:
    """The `stored-data` record of one directory, and the reason it is excused (None if not).

    Output k is compared with the spec by the same rule as a backend; a stored value
    that differs is reported here once. It is excused (not a failure) only when the
    literals' written precision explains every difference; otherwise the data, or the
    oracle, is wrong and the record fails the run like any disagreement.
    """
    common: dict[str, Any] = dict(op=case.op, dtype=case.dtype, opset=case.opset, params=case.describe(), expected_from="oracle")
    single = case.replace(with_indices=False)
    worst = None
    for k, (e, s) in enumerate(zip(spec, stored)):
        if k == 0:
            result = compare.compare_outputs(single, [e], [s], inputs)
        else:  # Indices: exact
            assert worst is not None  # output 0 came first, and passed
            same = s.shape == e.shape and np.array_equal(s.astype(np.int64), e.astype(np.int64))
            result = dataclasses.replace(worst, status="pass") if same else compare.Comparison(
                "mismatch" if s.shape == e.shape else "shape-mismatch", list(e.shape), list(s.shape),
                detail="Indices differ from the spec's")
        if result.status != "pass":
            worst = result
            break
        worst = worst or result
    if len(stored) != len(spec):
        worst = compare.Comparison("shape-mismatch", list(spec[0].shape), list(stored[0].shape) if stored else None,
                                   detail=f"the directory stores {len(stored)} output(s), the spec gives {len(spec)}")
        k = 0
    assert worst is not None
    if worst.status == "pass":
        return make_record(case.id, STORED_DATA, "pass", expected_shape=worst.expected_shape,
                           actual_shape=worst.actual_shape, max_abs_err=worst.max_abs_err,
                           max_ulp=worst.max_ulp, detail="", **common), None
    ulp = worst.max_ulp
    size = f"by up to {ulp:.3g} ULP" if ulp is not None and np.isfinite(ulp) else "in shape or NaN positions"
    head = f"stored output_{k}.pb differs from the spec {size} ({worst.detail})"
    decimals = literal_precision_explains(stored[k], spec[k]) if k == 0 and worst.status == "mismatch" else None
    if decimals is not None:
        reason = (f"the stored values are literals written with {decimals} decimals, each within one unit of "
                  f"that decimal of the spec's: a finding about the data; backends are judged against the spec")
        detail = f"{head}; {reason}"
    else:
        reason = None
        detail = (f"{head}; the data or the oracle is wrong: backends are judged against the spec "
                  "(--against stored makes the stored outputs the truth)")
    record = make_record(case.id, STORED_DATA, worst.status, expected_shape=worst.expected_shape,
                         actual_shape=worst.actual_shape, max_abs_err=worst.max_abs_err,
                         max_rel_err=worst.max_rel_err, max_ulp=worst.max_ulp, detail=detail, **common)
    return record, reason


def against_stored(atol: float, rtol: float) -> Judge:
    """A judge for `--against stored`: `|actual - stored| <= atol + rtol * |stored|` per
    element, NaN by position, shapes and output count as compare_outputs decides them."""

    def judge(case: PoolCase, expected: list[np.ndarray], actual: list[np.ndarray],
              inputs: list[np.ndarray]) -> compare.Comparison:
        base = compare.compare_outputs(case, expected, actual, inputs)
        if base.status == "shape-mismatch" or len(actual) < len(expected):
            return base
        for k, (e, a) in enumerate(zip(expected, actual)):
            wrong_type = compare.dtype_problem(case, np.asarray(a), indices=(k == 1))
            if wrong_type:  # a wrong dtype is a mismatch whatever the values
                return dataclasses.replace(base, status="mismatch", detail=wrong_type)
            e64 = np.asarray(e, dtype=np.float64)
            try:
                a64 = np.asarray(a).astype(np.float64)
            except (TypeError, ValueError):
                return dataclasses.replace(base, status="mismatch", detail=f"output {k} is not numeric")
            with np.errstate(invalid="ignore", over="ignore"):
                same_special = (np.isnan(e64) & np.isnan(a64)) | (np.isinf(e64) & (e64 == a64))
                bad = ~same_special & ~(np.abs(a64 - e64) <= atol + rtol * np.abs(e64))
            if bad.any():
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                detail = (f"output {k}{list(where)} stored {e64[where]:.9g}, got {a64[where]:.9g}; "
                          f"{int(bad.sum())} of {bad.size} element(s) outside atol {atol:g} + rtol {rtol:g}")
                return dataclasses.replace(base, status="mismatch", detail=detail, atol=atol)
        return dataclasses.replace(base, status="pass", detail="", atol=atol)

    return judge
