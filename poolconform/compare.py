"""Compare a backend's outputs with the expected ones: shape, then dtype, then values.

Tolerance policy (the model and its formula are stated in the README's Tolerance section):
- integer dtypes, MaxPool / GlobalMaxPool values and Indices: exact;
- averaging ops in float types: one bound per output element, the forward error bound of
  summing that window's own elements in the accumulation type (float32 for 16-bit
  inputs) plus half an ULP of the output type for the final rounding. A large element
  widens only the bounds of the windows that hold it. A result that is the exact value
  correctly rounded (0 ULP), or a finite result 1 ULP from it, always passes.
The output dtype is part of the verdict: the input's dtype for values, int64 for Indices.
NaN is compared by position; a NaN where a number was expected, or the reverse, is a
mismatch whose detail names what the backend did ("NaN dropped").
Every comparison reports max_abs_err, max_rel_err and max_ulp: the tolerance that would
have passed.
"""

from __future__ import annotations

import hashlib
import weakref
from dataclasses import dataclass

import numpy as np

from poolconform import contexts, dtypes, oracle, quantized
from poolconform.case import AVERAGING_OPS, PoolCase
from poolconform.lru import ByteLRU


@dataclass(frozen=True)
class Comparison:
    status: str  # "pass", "mismatch" or "shape-mismatch"
    expected_shape: list[int]
    actual_shape: list[int] | None
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    max_ulp: float | None = None
    #: The element tolerance: at the reported element on a mismatch, the largest on a pass.
    atol: float | None = None
    detail: str = ""
    digest: str | None = None


def _gamma(n: np.ndarray, u: float) -> np.ndarray:
    """Higham's gamma_n = n u / (1 - n u): the relative error bound of n roundings, capped
    at 1 (from n u = 1/2 on): a sum of W terms that stagnates still lies within its own
    sum of magnitudes, and an infinite bound would let any answer pass."""
    nu = np.asarray(n, dtype=np.float64) * u
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(nu < 0.5, nu / (1 - nu), 1.0)


def _average_bound(case: PoolCase, x: np.ndarray, count: np.ndarray, u: float, tiny: float) -> np.ndarray:
    """Accumulation error of an average: W - 1 additions and up to two roundings for the
    division (a reciprocal, then a product), over the window's own sum |x_i| / divisor."""
    return _gamma(count + 1, u) * oracle.window_abs_means(case, x) + tiny


def _lp_bound(case: PoolCase, y: np.ndarray, count: np.ndarray, u: float, tiny: float, acc: str) -> np.ndarray:
    """Accumulation error of an Lp norm y = S**(1/p), S = sum |x_i|**p, carried through the root.

    S carries a relative error c = gamma_{W+p} (p - 1 products or a pow per term, W - 1
    additions of nonnegative terms) plus an absolute W p tiny for underflow; y's error is the
    root's image of [S - dS, S + dS], computed from y in logarithms so nothing overflows.
    The root adds 2u (one ULP), and pow(S, fl(1/p)) the rounding of its exponent.
    """
    p = case.p
    ay = np.abs(y)
    t = dtypes.numpy_dtype(acc).type
    exponent_error = abs(float(t(1) / t(p)) - 1.0 / p)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        c = _gamma(count + p, u)
        log_s = p * np.log(ay)  # log S; -inf where y = 0
        log_q = np.log(count * p * tiny) - log_s  # log(W p tiny / S)
        r = c + np.exp(log_q)  # dS / S
        up = ay * np.expm1(np.logaddexp(np.log1p(c), log_q) / p)  # (S + dS)**(1/p) - y
        down = -ay * np.expm1(np.log1p(-np.minimum(r, 1.0)) / p)  # y - (S - dS)**(1/p)
        root = ay * (2 * u + np.expm1(exponent_error * np.abs(log_s)))
        bound = np.maximum(up, down) + root
    # y = 0 only when every term is 0, which every order sums exactly.
    return np.where(ay == 0, 0.0, bound)


def element_tolerance(
    case: PoolCase, expected: np.ndarray, inputs: list[np.ndarray], accumulate: str | None = None
) -> np.ndarray:
    """Absolute tolerance of each element of the case's values output (float64, the shape
    of `expected`); 0 where the answer must be exact. `accumulate` names the accumulation
    type (default: dtypes.accumulation_type of the case's dtype)."""
    e = np.asarray(expected, dtype=np.float64)
    if case.quant:  # ±1 in the quantized domain, for the reasons in poolconform/quantized.py
        return quantized.element_tolerance(case, e, inputs, oracle.reference_outputs)
    if case.op not in AVERAGING_OPS or not dtypes.is_float(case.dtype) or e.size == 0:
        return np.zeros(e.shape)
    acc = accumulate or dtypes.accumulation_type(case.dtype)
    u, tiny = dtypes.unit_roundoff(acc), dtypes.smallest_subnormal(acc)
    count = np.broadcast_to(oracle.window_counts(case), e.shape)
    x = np.asarray(inputs[0]).astype(np.float64)
    with np.errstate(all="ignore"):
        if case.op in ("LpPool", "GlobalLpPool"):
            summed = _lp_bound(case, e, count, u, tiny, acc)
        else:
            summed = _average_bound(case, x, count, u, tiny)
        rounding = 0.5 * dtypes.ulp(np.abs(e) + np.nan_to_num(summed, nan=0.0, posinf=0.0), case.dtype)
        bound = summed + rounding
    # Non-finite expected values are judged by value and position alone.
    return np.where(np.isfinite(e) & ~np.isnan(bound), bound, 0.0)


#: What judging an expected array needs besides the answer: its bound, and for an average its bracket.
_Facts = tuple[np.ndarray, "tuple[np.ndarray, np.ndarray] | None"]
#: Most bytes of those facts kept (least recently used first out). They are as large as the
#: oracle outputs they belong to, three times over for an average (a float64 bound and the
#: two values around each exact one): unbounded, they outgrew the oracle cache itself.
FACTS_CACHE_BYTES = 16 * 2**20


#: What one kept entry costs besides its arrays (the key, the tuple, the weak reference).
ENTRY_BYTES = 512
#: The facts of each expected array still alive and recently judged, by the array's id, with a
#: weak reference that drops them with the array (one dropped by the byte limit is computed
#: again if a lagging backend's answer needs it).
_facts: ByteLRU[int, tuple[weakref.ref, PoolCase, _Facts]] = ByteLRU(FACTS_CACHE_BYTES)


def clear_facts() -> None:
    """Forget every kept judging fact (a run whose records are all written; tests)."""
    _facts.clear()


def _known_facts(case: PoolCase, e: np.ndarray) -> _Facts | None:
    hit = _facts.get(id(e))
    return hit[2] if hit is not None and hit[0]() is e and hit[1] == case else None


def _keep_facts(case: PoolCase, e: np.ndarray, facts: _Facts) -> None:
    bound, around = facts
    key = id(e)

    def forget(ref: weakref.ref) -> None:
        _facts.drop(key, only=lambda held: held[0] is ref)  # not a newer array's, which took the id

    try:
        ref = weakref.ref(e, forget)
    except TypeError:  # not an object a weak reference can follow: not kept
        return
    size = bound.nbytes + (sum(a.nbytes for a in around) if around else 0) + ENTRY_BYTES
    _facts.keep(key, (ref, case, facts), size)


def _tolerance_of(case: PoolCase, e: np.ndarray, inputs: list[np.ndarray], type_name: str | None) -> _Facts:
    """element_tolerance(case, e, inputs), and for an average (`type_name` given) the two values
    of that type around each exact one (dtypes.bracket), computed once per expected array: a
    job's oracle outputs are one array judged against every backend's answer, from the job's
    own inputs, and on a small average the bound costs more than the oracle. Kept while that
    array lives (the bounded oracle cache holds it), within FACTS_CACHE_BYTES."""
    found = _known_facts(case, e)
    if found is not None:
        return found
    bound = element_tolerance(case, e, inputs)
    bound.flags.writeable = False
    around = dtypes.bracket(e, type_name) if type_name else None
    found = (bound, around)
    _keep_facts(case, e, found)
    return found


def tolerance(case: PoolCase, expected: np.ndarray, inputs: list[np.ndarray]) -> float:
    """The largest per-element tolerance of the case's values output: one figure for a
    report or a script; the verdict itself uses element_tolerance."""
    bound = element_tolerance(case, expected, inputs)
    return float(bound.max()) if bound.size else 0.0


#: How output_digest fingerprints: SHA-1 (its first 8 bytes) over each output's dtype, shape and
#: raw bytes, every NaN made the canonical one; SHA-1 because OpenSSL's is the fastest hash the
#: standard library has (faster than BLAKE2b where the CPU has SHA instructions, docs/speed.md).
#: Runs record it (run.json); `diff` compares digests only between runs of one algorithm.
DIGEST_ALGORITHM = "sha1-64-raw"
#: The earlier fingerprint: SHA-1 of the outputs cast to float64, cut to 12 hex digits.
LEGACY_DIGEST_ALGORITHM = "sha1-float64"


def output_digest(outputs: list[np.ndarray]) -> str:
    """Short fingerprint of a backend's outputs, so two backends can be compared later
    (pairwise agreement) without keeping their arrays: one pass over the raw bytes, no
    float64 copy. Same dtype, shape and bits (NaN payloads aside) give the same digest."""
    h = hashlib.sha1()
    for out in outputs:
        a = np.ascontiguousarray(out)
        h.update(f"{a.dtype.name}{a.shape}".encode())
        if a.dtype.hasobject:  # not a tensor a framework should return; still fingerprinted
            h.update(repr(a.tolist()).encode())
            continue
        if a.dtype.kind in "fc" or a.dtype.name == "bfloat16":
            nan = np.isnan(a)
            if nan.any():
                a = np.where(nan, np.array(np.nan, dtype=a.dtype), a)
        h.update(a.reshape(-1).view(np.uint8).data)
    return h.hexdigest()[:16]


def digest_algorithm(digest: str | None) -> str | None:
    """Which algorithm made a record's digest, told by its length (None when there is none)."""
    if not isinstance(digest, str):
        return None
    return {16: DIGEST_ALGORITHM, 12: LEGACY_DIGEST_ALGORITHM}.get(len(digest), f"unknown ({len(digest)} hex digits)")


def _fmt(value: float) -> str:
    return f"{value:.9g}"


def _where(index: tuple[int, ...]) -> str:
    return "[" + ",".join(str(int(i)) for i in index) + "]"


def compare_outputs(
    case: PoolCase,
    expected: list[np.ndarray],
    actual: list[np.ndarray],
    inputs: list[np.ndarray],
) -> Comparison:
    """Classify `actual` against `expected` (float64 truth, or stored outputs for check)."""
    if case.context != "single":  # judged as the pooling node itself computes (poolconform/contexts.py)
        case, inputs = contexts.judged_view(case, inputs)
    expected_shape = list(expected[0].shape)
    actual_list = [np.asarray(a) for a in actual]
    digest = output_digest(actual_list)
    first_shape = list(actual_list[0].shape) if actual_list else None
    if len(actual_list) != len(expected):  # an extra output is as wrong as a missing one
        return Comparison(
            "shape-mismatch", expected_shape, first_shape,
            detail=f"backend returned {len(actual_list)} output(s), expected {len(expected)}", digest=digest,
        )
    for i, (e, a) in enumerate(zip(expected, actual_list)):
        if list(a.shape) != list(e.shape):
            name = "Indices" if i == 1 else "Y"
            return Comparison(
                "shape-mismatch", expected_shape, first_shape,
                detail=f"output {name} has shape {tuple(a.shape)!r}, expected {tuple(e.shape)!r}", digest=digest,
            )
    worst = Comparison("pass", expected_shape, first_shape, 0.0, 0.0, 0.0, 0.0, "", digest)
    if _exactly_right(case, expected, actual_list):
        return worst  # what the element-wise path below finds for an exact op, in one pass
    for i, (e, a) in enumerate(zip(expected, actual_list)):
        result = _compare_values(case, e, a, inputs, indices=(i == 1))
        wrong_type = dtype_problem(case, a, indices=(i == 1))
        if wrong_type:
            detail = "; ".join(part for part in (wrong_type, result.detail) if part)
            return Comparison(
                "mismatch", expected_shape, first_shape, result.max_abs_err, result.max_rel_err,
                result.max_ulp, result.atol, detail, digest,
            )
        if result.status != "pass":
            return Comparison(
                result.status, expected_shape, first_shape, result.max_abs_err, result.max_rel_err,
                result.max_ulp, result.atol, result.detail, digest,
            )
        if i == 0:
            worst = Comparison(
                "pass", expected_shape, first_shape, result.max_abs_err, result.max_rel_err,
                result.max_ulp, result.atol, "", digest,
            )
    return worst


def _exactly_right(case: PoolCase, expected: list[np.ndarray], actual: list[np.ndarray]) -> bool:
    """An exact op (max, Indices, integers) whose every output has the spec's dtype and equals
    the expected one, NaN for NaN: a pass with every error 0, decided without the float64 copies."""
    if case.op in AVERAGING_OPS and dtypes.is_float(case.dtype):
        return False
    try:
        return all(not dtype_problem(case, a, indices=(i == 1)) and _same(a, e)
                   for i, (e, a) in enumerate(zip(expected, actual)))
    except (TypeError, ValueError):  # a type NumPy cannot compare directly: the long way decides
        return False


def _same(a: np.ndarray, e: np.ndarray) -> bool:
    """Equal element for element, NaN for NaN (shapes already equal); no masked copies
    unless there is a NaN."""
    if bool((a == e).all()):
        return True
    return a.dtype.kind == "f" and bool(np.isnan(a).any()) and np.array_equal(a, e, equal_nan=True)


def expected_dtype(case: PoolCase, indices: bool) -> np.dtype:
    """The output type the spec gives: the input's type for values, int64 for Indices."""
    return np.dtype(np.int64) if indices else dtypes.numpy_dtype(case.dtype)


def dtype_problem(case: PoolCase, actual: np.ndarray, indices: bool = False) -> str:
    """'' when the output has the spec's type, else the detail that says what it has
    ("dtype float64, expected float16"): a wrong type is a mismatch whatever the values."""
    want = expected_dtype(case, indices)
    if actual.dtype == want:
        return ""
    what = "Indices " if indices else ""
    return f"{what}dtype {actual.dtype.name}, expected {want.name}"


def _compare_values(
    case: PoolCase, expected: np.ndarray, actual: np.ndarray, inputs: list[np.ndarray], indices: bool
) -> Comparison:
    shape = list(expected.shape)
    e = expected.astype(np.float64, copy=False)  # read only; the same array for every backend (_tolerance_of)
    try:
        a = actual.astype(np.float64)
    except (TypeError, ValueError):
        return Comparison("mismatch", shape, list(actual.shape), detail=f"output dtype {actual.dtype} is not numeric")
    type_name = "int64" if indices else case.dtype
    e_nan, a_nan = np.isnan(e), np.isnan(a)
    both = e_nan & a_nan
    same_inf = np.isinf(e) & (e == a)
    # inf - inf, huge / tiny: the special values are judged by position above, so silence numpy.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        diff = np.where(both | same_inf, 0.0, np.abs(a - e))
        diff = np.where(np.isnan(diff), np.inf, diff)
        rel = np.where(diff == 0, 0.0, diff / np.maximum(np.abs(e), np.finfo(np.float64).tiny))
    ulp = np.zeros_like(e) if indices else dtypes.ulp_distance(a, e, type_name)
    ulp = np.where(both | same_inf, 0.0, np.where(e_nan != a_nan, np.inf, ulp))
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float(rel.max()) if rel.size else 0.0
    max_ulp = float(ulp.max()) if ulp.size else 0.0
    inexact = case.op in AVERAGING_OPS and dtypes.is_float(type_name)
    bound, around = (np.zeros(e.shape), None) if indices else _tolerance_of(case, e, inputs,
                                                                             type_name if inexact else None)
    # An averaging op may return the exact value rounded either way to its type: one of the two
    # values around it (the value itself where it is representable), never a third, and never
    # a finite value for an infinite one (inf and the largest finite are one step apart).
    if around is not None:
        low, high = around
        rounded = np.isfinite(e) & np.isfinite(a) & ((a == low) | (a == high))
    else:
        rounded = np.zeros(e.shape, dtype=bool)
    bad = (e_nan != a_nan) | ((diff > bound) & ~rounded)
    atol = float(bound.max()) if bound.size else 0.0
    if not bad.any():
        return Comparison("pass", shape, list(actual.shape), max_abs, max_rel, max_ulp, atol)
    nan_lost = e_nan & ~a_nan
    nan_made = a_nan & ~e_nan
    what = "Indices" if indices else "Y"
    if nan_lost.any():
        w = tuple(np.argwhere(nan_lost)[0])
        detail = f"NaN dropped: {what}{_where(w)} expected NaN (NaN in window), got {_fmt(a[w])}"
    elif nan_made.any():
        w = tuple(np.argwhere(nan_made)[0])
        detail = f"NaN produced: {what}{_where(w)} expected {_fmt(e[w])}, got NaN"
    else:
        w = tuple(np.unravel_index(np.argmax(np.where(bad, diff, -1.0)), diff.shape))
        atol = float(bound[w])
        count = int(bad.sum())
        detail = f"{what}{_where(w)} expected {_fmt(e[w])}, got {_fmt(a[w])}; {count} of {bad.size} element(s) differ"
        if not indices and not case.is_global and np.isneginf(e[w]) and np.isfinite(a[w]) and _empty_window(case, w):
            detail += f" ({_fmt(a[w])} for an empty window)"
        elif atol:
            detail += f" (tolerance {atol:.3g})"
            if inexact:
                detail += _narrow_accumulation_hint(case, e, a, inputs, bad, diff)
    return Comparison("mismatch", shape, list(actual.shape), max_abs, max_rel, max_ulp, atol, detail)


def _empty_window(case: PoolCase, where: tuple[int, ...]) -> bool:
    """The output element's window holds no input element (only padding or overhang)."""
    counts = oracle.window_counts(case)
    return int(counts[(0, 0, *where[2:])]) == 0


def _narrow_accumulation_hint(
    case: PoolCase, e: np.ndarray, a: np.ndarray, inputs: list[np.ndarray], bad: np.ndarray, diff: np.ndarray
) -> str:
    """'; consistent with float16 accumulation' when every differing element fits the bound of
    accumulating in the 16-bit input type and lies at most half as far from a sum kept in
    that type as from the truth; '' otherwise (float32 and float64 inputs have no narrower type to blame)."""
    if case.dtype not in ("float16", "bfloat16"):
        return ""
    x = np.asarray(inputs[0])
    narrow_bound = element_tolerance(case, e, inputs, accumulate=case.dtype)
    if not (diff[bad] <= narrow_bound[bad]).all():
        return ""
    narrow = oracle.accumulated_outputs(case, x, case.dtype)
    with np.errstate(invalid="ignore"):
        nearer = np.abs(a - narrow) <= np.abs(a - e) / 2
    if not nearer[bad].all():
        return ""
    return f"; consistent with {case.dtype} accumulation, not float32"
