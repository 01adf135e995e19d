"""The float64 oracle against ONNX Runtime's values, and the seed's golden examples."""

import itertools
import random

import numpy as np
import pytest
from conftest import SEED_PRINTED

from poolconform.validation import make_case
from poolconform.compare import compare_outputs
from poolconform.errors import CaseError
from poolconform.inputs import SEED_INPUT, make_inputs
from poolconform.matrix import golden_cases
from poolconform.oracle import reference_outputs



@pytest.mark.parametrize("case", golden_cases(), ids=lambda c: c.id)
def test_oracle_reproduces_the_seed_examples_exactly(case):
    (y,) = reference_outputs(case, make_inputs(case))
    np.testing.assert_array_equal(y[0, 0], np.array(SEED_PRINTED[case.op]))
    np.testing.assert_array_equal(make_inputs(case)[0].astype(np.float64), SEED_INPUT)


def test_oracle_matches_onnxruntime_over_a_sweep():
    pytest.importorskip("onnxruntime")
    from poolconform.backends.onnxruntime_backend import OnnxRuntimeCPU

    ort = OnnxRuntimeCPU()
    checked = 0
    for op, rank, k, s, p, d, ceil, cip in itertools.product(
        ("MaxPool", "AveragePool", "LpPool"), (1, 2, 3), (1, 2, 3), (1, 2), (0, 1), (1, 2), (False, True), (False, True)
    ):
        if (op != "AveragePool" and cip) or (op == "LpPool" and (ceil or d > 1)) or p >= k:
            continue
        shape = (2, 3) + (6, 7, 5)[:rank]
        try:
            case = make_case(op, shape, kernel=k, strides=s, pads=p, dilations=d, ceil_mode=ceil,
                             count_include_pad=cip, opset=22 if op != "LpPool" else 18)
        except CaseError:
            continue
        x = make_inputs(case)
        result = compare_outputs(case, reference_outputs(case, x), ort.run(case, x), x)
        assert result.status == "pass", (case.id, result.detail)
        checked += 1
    assert checked > 300


@pytest.mark.parametrize("storage_order", [0, 1])
def test_indices_flatten_over_batch_and_channel_like_onnxruntime(storage_order):
    pytest.importorskip("onnxruntime")
    from poolconform.backends.onnxruntime_backend import OnnxRuntimeCPU

    case = make_case("MaxPool", (2, 3, 5, 6), kernel=[2, 3], strides=[2, 1], pads=[1, 0, 1, 1], with_indices=True,
                     storage_order=storage_order)
    x = make_inputs(case)
    values, indices = reference_outputs(case, x)
    ort_values, ort_indices = OnnxRuntimeCPU().run(case, x)
    np.testing.assert_array_equal(indices, ort_indices)
    assert indices.max() >= 5 * 6 * 5  # batch and channel are part of the flat index
    np.testing.assert_array_equal(values, ort_values)


def test_empty_window_and_nan_semantics_are_explicit():
    # n=1, kernel 2 dilated by 2, pads 1: the only window reads positions -1 and 1, both padding.
    case = make_case("MaxPool", (1, 1, 1), kernel=2, strides=1, pads=1, dilations=2)
    (y,) = reference_outputs(case, [np.array([[[5.0]]])])
    assert y.shape == (1, 1, 1) and np.isneginf(y[0, 0, 0])
    avg = case.replace(op="AveragePool")
    (y,) = reference_outputs(avg, [np.array([[[5.0]]])])
    assert np.isnan(y[0, 0, 0])  # 0 / 0 elements
    case = make_case("MaxPool", (1, 1, 4), kernel=2, strides=2)
    (y,) = reference_outputs(case, [np.array([[[1.0, np.nan, 3.0, 4.0]]])])
    assert np.isnan(y[0, 0, 0]) and y[0, 0, 1] == 4.0  # NaN propagates, like IEEE max


def _random_case(rng: random.Random):
    """One case drawn from the matrix space: rank 1-3, dilation, pads, ceil_mode, auto_pad,
    count_include_pad, Indices and storage order, every dtype and generator."""
    op = rng.choice(["MaxPool", "AveragePool", "LpPool", "GlobalMaxPool", "GlobalAveragePool", "GlobalLpPool"])
    rank = rng.randint(1, 3)
    shape = (rng.randint(1, 2), rng.randint(1, 3)) + tuple(rng.randint(1, 9 if rank < 3 else 6) for _ in range(rank))
    kw: dict = {"dtype": rng.choice(["float32", "float64", "float16", "bfloat16", "int8", "uint8"]),
                "generator": rng.choice(["normal", "ties", "equal", "negative", "large", "nan", "inf", "knownmean"])}
    if not op.startswith("Global"):
        kw.update(kernel=[rng.randint(1, 4) for _ in range(rank)], strides=[rng.randint(1, 3) for _ in range(rank)],
                  dilations=[rng.randint(1, 3) for _ in range(rank)] if rng.random() < 0.4 else 1)
        kw["auto_pad"] = rng.choice(["NOTSET"] * 4 + ["VALID", "SAME_UPPER", "SAME_LOWER"])
        if kw["auto_pad"] == "NOTSET":
            kw.update(pads=[rng.randint(0, 3) for _ in range(2 * rank)], ceil_mode=rng.random() < 0.4)
        if op == "AveragePool":
            kw["count_include_pad"] = rng.random() < 0.5
        if op == "MaxPool" and rng.random() < 0.5:
            kw.update(with_indices=True, storage_order=rng.randint(0, 1))
    kw["opset"] = 18 if "Lp" in op else rng.choice([19, 22])
    if "Lp" in op:
        kw["p"] = rng.choice([1, 2, 3])
    return make_case(op, shape, **kw)


def _same(before: np.ndarray, after: np.ndarray, exact: bool) -> bool:
    if before.shape != after.shape or before.dtype != after.dtype:
        return False
    same = (before == after) | (np.isnan(before) & np.isnan(after))
    if exact:
        return bool(same.all())
    with np.errstate(all="ignore"):
        close = np.abs(before - after) <= 1e-15 * np.abs(before)
    return bool((same | close).all())


@pytest.mark.parametrize("chunk", [None, 20], ids=["whole-planes", "row-blocks"])
def test_fast_oracle_equals_the_gathering_oracle_over_a_random_sweep(monkeypatch, chunk):
    """Max and Indices bit for bit, sums within 1e-15 relative; the tolerance passes
    (window_abs_means, window_counts, accumulated_outputs) likewise. With `chunk` 20 every
    plane is cut into row blocks, so block seams and Indices' plane offsets are exercised."""
    import random

    import oracle_before

    from poolconform import oracle, oracle_blocks

    if chunk:
        monkeypatch.setattr(oracle_blocks, "CHUNK_ELEMENTS", chunk)
    rng = random.Random(18 + (chunk or 0))
    checked, inexact = 0, 0
    while checked < 300:
        try:
            case = _random_case(rng)
            x = make_inputs(case)
        except CaseError:
            continue
        checked += 1
        with np.errstate(all="ignore"):
            before = oracle_before.reference_outputs(case, x)
            if case.op == "MaxPool" and x[0].dtype.kind in "iu":  # an empty window: the type's lowest, not -inf
                before[0] = np.where(np.isneginf(before[0]), float(np.iinfo(x[0].dtype).min), before[0])
            pairs = list(zip(before, reference_outputs(case, x)))
            exact = [case.op.endswith("MaxPool")] * len(pairs)
            if case.op in ("AveragePool", "GlobalAveragePool"):
                pairs.append((oracle_before.window_abs_means(case, x[0]), oracle.window_abs_means(case, x[0])))
                exact.append(False)
            if not case.op.endswith("MaxPool") and case.dtype != "float64":
                pairs.append((oracle_before.accumulated_outputs(case, x[0], case.dtype),
                              oracle.accumulated_outputs(case, x[0], case.dtype)))
                exact.append(True)
            pairs.append((oracle_before.window_counts(case), oracle.window_counts(case)))
            exact.append(True)
        for (before, after), bit_exact in zip(pairs, exact):
            assert _same(before, after, bit_exact), (case.id, before.ravel()[:6], after.ravel()[:6])
            inexact += int((before != after).sum() - (np.isnan(before) & np.isnan(after)).sum())
    assert inexact < checked  # sums differ from longdouble ones only in a rare last bit


def test_a_wrong_oracle_fails_the_equivalence_check():
    """The check above can fail: one flipped Indices element or a sum off by 4e-15 is caught."""
    case = make_case("MaxPool", (1, 2, 6, 6), kernel=3, strides=2, pads=1, with_indices=True)
    _, indices = reference_outputs(case, make_inputs(case))
    wrong = indices.copy()
    wrong.flat[3] += 1
    assert _same(indices, indices.copy(), True) and not _same(indices, wrong, True)
    value = np.array([0.3])
    assert not _same(value, value * (1 + 4e-15), False) and _same(value, np.nextafter(value, 1), False)


def test_indices_take_the_first_maximum_in_row_major_order():
    """Ties are broken row first, then column (a column-first search would answer 3), NaN is
    the maximum and its first occurrence wins, and -0.0 ties with 0.0."""
    case = make_case("MaxPool", (1, 1, 3, 3), kernel=3, strides=1, with_indices=True)
    for rows, index in (([[0, 0, 5], [5, 0, 0], [0, 0, 0]], 2), ([[0, 1, 2], [3, np.nan, 9], [np.nan, 0, 0]], 4),
                        ([[-0.0, 0.0, -1], [0.0, -0.0, -2], [-3, -4, -5]], 0),
                        ([[-np.inf] * 3, [-np.inf] * 3, [-np.inf, -np.inf, -np.inf]], 0)):
        values, indices = reference_outputs(case, [np.array([[rows]], np.float32)])
        assert indices.ravel().tolist() == [index], rows
    # a maximum in an earlier row beats a later one in a kernel with padding, in every block size
    case = make_case("MaxPool", (1, 1, 4, 4), kernel=3, strides=2, pads=1, with_indices=True)
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 0, 1] = x[0, 0, 1, 0] = 7
    assert reference_outputs(case, [x])[1][0, 0, 0, 0] == 1


@pytest.mark.parametrize("op,extra", [("MaxPool", {"with_indices": True}), ("MaxPool", {}),
                                      ("AveragePool", {"count_include_pad": True}), ("LpPool", {"p": 2, "opset": 18})])
def test_oracle_threads_split_blocks_without_changing_a_bit(monkeypatch, op, extra):
    """With small blocks there are many, so several threads share them: the outputs must be
    the same bytes as on one thread (Indices' plane offsets and block seams included)."""
    from poolconform import oracle_blocks

    case = make_case(op, (2, 5, 13, 11), kernel=3, strides=2, pads=1, **extra)
    x = make_inputs(case)
    monkeypatch.setattr(oracle_blocks, "CHUNK_ELEMENTS", 40)
    monkeypatch.setenv("POOLCONFORM_ORACLE_THREADS", "1")
    one = reference_outputs(case, x)
    monkeypatch.setenv("POOLCONFORM_ORACLE_THREADS", "3")
    assert oracle_blocks.oracle_threads() == 3
    three = reference_outputs(case, x)
    for a, b in zip(one, three):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_oracle_thread_count_is_refused_in_one_line(monkeypatch, value):
    from poolconform import oracle_blocks
    from poolconform.errors import PoolconformError

    monkeypatch.setenv("POOLCONFORM_ORACLE_THREADS", value)
    with pytest.raises(PoolconformError, match="POOLCONFORM_ORACLE_THREADS"):
        oracle_blocks.oracle_threads()


def test_bench_oracle_times_every_op_against_a_copy_and_names_its_threads(monkeypatch, capsys):
    from poolconform import bench_oracle

    monkeypatch.setenv("POOLCONFORM_ORACLE_THREADS", "2")
    rows = bench_oracle.bench_oracle(repeat=3, warmup=1, shape=(1, 2, 16, 16))
    assert [r.op for r in rows] == list(bench_oracle.oracle_cases())
    for r in rows:
        assert r.median_ms > 0 and r.copy_median_ms > 0 and r.cpu_ms >= 0
        assert r.ratio == pytest.approx(r.median_ms / r.copy_median_ms) and r.meets_target == (r.ratio <= 4)
    env = bench_oracle.environment()
    assert env["oracle_threads"] == 2 and env["copy_threads"] == 1
    bench_oracle.print_rows(rows, 3, 1, (1, 2, 16, 16))
    out = capsys.readouterr().out
    assert "oracle on 2 thread(s), copy on 1" in out
    assert [line[:40].rstrip() for line in out.splitlines() if line[:40].rstrip() in {r.op for r in rows}] == [r.op for r in rows]
    bench_oracle.print_rows(rows, 3, 1, (1, 2, 16, 16), width=80)  # a terminal of 80 columns
    narrow = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in narrow) <= 80 and not any("cpu ratio" in line for line in narrow)
    assert sum(1 for line in narrow if line.split(" ")[0] in {"MaxPool", "AveragePool", "LpPool"}) == 5
    bench_oracle.print_rows(rows, 3, 1, (1, 2, 16, 16), width=120)
    assert any(line.endswith("cpu ratio") for line in capsys.readouterr().out.splitlines())


def _lp_by_hand(case, x):
    """Lp norms window by window in plain Python, scaled by the window's largest |x|."""
    import math

    from poolconform import shapes

    pads, out, r = shapes.resolve_pads(case), shapes.spatial_output_shape(case), case.rank
    kernel = case.spatial if case.is_global else case.kernel
    strides = (1,) * r if case.is_global else case.strides
    y = np.zeros(x.shape[:2] + out)
    for n, c in np.ndindex(*x.shape[:2]):
        for o in np.ndindex(*out):
            values = []
            for j in np.ndindex(*kernel):
                pos = tuple(o[a] * strides[a] + j[a] - pads[a] for a in range(r))
                if all(0 <= q < case.spatial[a] for a, q in enumerate(pos)):
                    values.append(abs(float(x[(n, c) + pos])))
            m = max(values, default=0.0)
            y[(n, c) + o] = 0.0 if m == 0 else m * math.fsum((v / m) ** case.p for v in values) ** (1 / case.p)
    return y


@pytest.mark.parametrize("p", [2, 9, 700, 10**6])
@pytest.mark.parametrize("op", ["LpPool", "GlobalLpPool"])
def test_lp_norms_stay_finite_and_exact_for_any_p(op, p):
    """|x|**p leaves float64 for a large p (2.86**10**6 is inf, 0.5**1100 is 0): the oracle
    said inf (or 0) and a backend's inf passed against it. It scales by the window's largest
    |x| instead, with no warning."""
    import warnings

    rng = np.random.default_rng(p)
    window = dict(kernel=[2, 3], strides=[1, 2], pads=[1, 0, 0, 1], ceil_mode=True) if op == "LpPool" else {}
    for dtype, scale in (("float32", 1e-30), ("float32", 0.5), ("float32", 2.86), ("float16", 3.0), ("float64", 1e300)):
        case = make_case(op, (1, 2, 5, 6), p=p, dtype=dtype, **window)
        x = (rng.standard_normal((1, 2, 5, 6)) * scale).astype(dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            got = reference_outputs(case, [x])[0]
        want = _lp_by_hand(case, x)
        assert np.all(np.isfinite(got)), (case.id, scale)
        np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=f"{case.id} scale {scale}")


def test_an_empty_window_of_an_integer_type_is_its_lowest_value():
    """Before opset 22 a ceil_mode window may hold only padding: its max is -inf, which no
    int8 answer can equal; the type's lowest value is the integer form of that identity."""
    # windows start at 0 and 3, and at 6, past the 5 inputs: kept before opset 22, it holds only padding
    case = make_case("MaxPool", (1, 1, 5), kernel=3, strides=3, pads=[0, 2], ceil_mode=True, dtype="int8", opset=18)
    x = [np.array([[[5, -3, 7, 1, -9]]], np.int8)]
    assert reference_outputs(case, x)[0].ravel().tolist() == [7.0, 1.0, -128.0]
    floats = reference_outputs(case.replace(dtype="float32"), [x[0].astype(np.float32)])[0]
    assert floats.ravel().tolist() == [7.0, 1.0, -np.inf]
