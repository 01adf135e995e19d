"""Case budget: work and oracle memory are computed from the attributes and refused before allocation."""

from __future__ import annotations

import tracemalloc

import pytest

from conftest import run_cli
from poolconform import budget, oracle
from poolconform.case import PoolCase
from poolconform.validation import make_case
from poolconform.errors import PoolconformError
from poolconform.inputs import make_inputs

#: The issue's two attacks: a 99999 x 99999 output of a 1-element input, and a 2048-tall window on 4096 x 4096.
DILATED = dict(op="MaxPool", input_shape=(1, 1, 1, 1), kernel=2, strides=1, pads=99999, dilations=100000)
TALL = dict(op="MaxPool", input_shape=(1, 1, 4096, 4096), kernel=(2048, 1), strides=1)


def test_issue_cases_are_refused_in_one_line_before_allocating() -> None:
    for spec in (dict(DILATED), dict(TALL)):
        tracemalloc.start()
        with pytest.raises(budget.CaseTooLarge) as info:
            make_case(spec.pop("op"), spec.pop("input_shape"), **spec)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 2**20  # refused from arithmetic, nothing of the case was allocated
        message = str(info.value)
        assert "\n" not in message and "MAX_WINDOW_VISITS" in message and "limit" in message


def test_figures_of_the_issue_cases() -> None:
    dilated = PoolCase("MaxPool", (1, 1, 1, 1), kernel=(2, 2), strides=(1, 1), pads=(99999,) * 4,
                       dilations=(100000, 100000))
    assert budget.output_elements(dilated) == 99999 ** 2
    assert budget.window_visits(dilated) == 4 * 99999 ** 2
    assert budget.oracle_bytes(dilated) >= 99999 ** 2 * 8  # the float64 output alone is 74 GiB
    tall = PoolCase("MaxPool", (1, 1, 4096, 4096), kernel=(2048, 1), strides=(1, 1), pads=(0,) * 4, dilations=(1, 1))
    assert budget.window_visits(tall) == 2049 * 4096 * 2048


def test_memory_limit_applies_when_work_is_small() -> None:
    """A 2x2 window dilated 8000 over one element: 2.6e8 reads, but a 7999 x 7999 float64 output and its sums."""
    case = PoolCase("AveragePool", (1, 1, 1, 1), kernel=(2, 2), strides=(1, 1), pads=(7999,) * 4, dilations=(8000, 8000))
    assert budget.window_visits(case) <= budget.MAX_WINDOW_VISITS
    problem = budget.budget_problem(case)
    assert problem is not None and "MAX_ORACLE_BYTES" in problem and "GiB" in problem and "\n" not in problem
    assert budget.budget_problem(case.replace(pads=(3999,) * 4, dilations=(4000, 4000))) is None
    big = PoolCase("AveragePool", (1, 1, 4096, 4096), kernel=(3, 3), strides=(1, 1), pads=(0,) * 4, dilations=(1, 1))
    assert budget.budget_problem(big) is None  # an input at the 2**24 limit with a 3x3 window runs
    assert "limit 16777216" in budget.budget_problem(big.replace(input_shape=(1, 2, 4096, 4096)))


@pytest.mark.parametrize("case", [
    make_case("AveragePool", (2, 3, 64, 64), kernel=3, strides=1),
    make_case("MaxPool", (2, 3, 64, 64), kernel=(5, 2), strides=1, pads=1),
    make_case("MaxPool", (1, 2, 32, 32), kernel=3, strides=1, with_indices=True),
    make_case("LpPool", (1, 2, 20, 20, 20), kernel=3, strides=1, opset=18),
    make_case("GlobalAveragePool", (2, 3, 64, 64)),
    make_case("MaxPool", (1, 1, 4000), kernel=2, strides=1, dilations=500, pads=499),
    make_case("AveragePool", (1, 1, 2, 2), kernel=2, strides=1, dilations=300, pads=299, ceil_mode=True),
    make_case("AveragePool", (1, 1, 1024, 1024), kernel=3, strides=1),
    make_case("MaxPool", (1, 1, 1024, 1024), kernel=3, strides=1, with_indices=True),
    make_case("AveragePool", (4, 8, 128, 128), kernel=3, strides=2, dtype="float64"),
    make_case("AveragePool", (1, 2, 256, 256), kernel=3, strides=1, dtype="float16"),
    make_case("GlobalLpPool", (2, 3, 64, 64), opset=18),
    # |x|**9 overflows float64 on these inputs: the scaled LpPool path (estimated 5x under before)
    make_case("LpPool", (1, 4, 256, 256), kernel=3, strides=1, p=9, generator="large", opset=18),
    make_case("LpPool", (1, 2, 64, 64), kernel=2, strides=2, pads=1, p=9, generator="large", dtype="float16", opset=18),
], ids=lambda c: c.id)
def test_estimate_bounds_the_oracle_measured_peak(case: PoolCase) -> None:
    """oracle_bytes mirrors poolconform/oracle.py: when the oracle changes, this says so."""
    inputs = make_inputs(case)
    tracemalloc.start()
    oracle.reference_outputs(case, inputs)
    if case.dtype == "float16":  # judging a 16-bit average may re-sum it in float16
        oracle.accumulated_outputs(case, inputs[0], case.dtype)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    estimate = budget.oracle_bytes(case)
    assert peak <= estimate <= 4 * peak + 2 * 2**20, (peak, estimate)  # never under; not absurdly over


def test_default_matrix_is_far_inside_the_limits() -> None:
    from poolconform.matrix import load_matrix

    cases = load_matrix().cases
    assert max(budget.oracle_bytes(c) for c in cases) < budget.MAX_ORACLE_BYTES / 16
    assert max(budget.window_visits(c) for c in cases) < budget.MAX_WINDOW_VISITS / 16


def test_a_matrix_over_the_budget_exits_2_in_one_line(tmp_path) -> None:
    matrix = tmp_path / "m.toml"
    matrix.write_text('[matrix]\nops = ["MaxPool"]\nkernel = 2\ndilation = 100000\npads = 99999\ninput_size = 1\n')
    proc = run_cli("run", "--matrix", str(matrix), "--backends", "onnxruntime-cpu", "--out", str(tmp_path / "o"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "MAX_WINDOW_VISITS" in proc.stderr
    assert not (tmp_path / "o" / "results.jsonl").exists()


def test_a_large_input_with_a_tall_window_exits_2(tmp_path) -> None:
    matrix = tmp_path / "m.toml"
    matrix.write_text('[matrix]\nops = ["AveragePool"]\nkernel = [[2048, 1]]\ninput_size = 4096\n')
    proc = run_cli("explain", "AveragePool-2d-k2048x1-s1-p0-f32-n4096", "--matrix", str(matrix))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "limit" in proc.stderr


def test_budget_error_is_a_poolconform_error() -> None:
    assert issubclass(budget.CaseTooLarge, PoolconformError)
