"""The pytest plugin: matrix items named by case id, outcomes from real records.

Sessions that start workers run in a subprocess: an in-process pytester session that
spawns worker processes aborts the outer interpreter.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]
pytest.importorskip("onnxruntime", reason="the plugin runs onnxruntime-cpu")

MATRIX = '[matrix]\nops = "AveragePool"\nkernel = 3\nstride = 3\ninput_size = 7\nceil_mode = [false, true]\n'
CASES = ("AveragePool-2d-k3-s3-p0-ceil-f32-n7", "AveragePool-2d-k3-s3-p0-f32-n7")


def args(pytester: pytest.Pytester, backends: str, *more: str) -> list[str]:
    matrix = pytester.makefile(".toml", m=MATRIX)
    return ["-p", "no:cacheprovider", "--poolconform", "--poolconform-backends", backends,
            "--poolconform-matrix", str(matrix), *more]


def test_nothing_is_added_without_the_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_one():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest("-p", "no:cacheprovider", "--collect-only", "-q")
    assert [line for line in result.outlines if "::" in line] == ["test_plain.py::test_one"]
    result.assert_outcomes()


def test_collects_one_item_per_case_and_backend(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(*args(pytester, "onnxruntime-cpu,onnx-reference"), "--collect-only", "-q")
    ids = sorted(line for line in result.outlines if line.startswith("poolconform::"))
    assert ids == sorted(f"poolconform::{c}[{b}]" for c in CASES for b in ("onnxruntime-cpu", "onnx-reference"))


def test_outcomes_follow_records(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(*args(pytester, "onnxruntime-cpu,onnx-reference,onnxruntime-cuda"), "-rA")
    from poolconform.backends.onnxruntime_backend import OnnxRuntimeCUDA

    cuda_missing = OnnxRuntimeCUDA().available()
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 1  # onnx-reference on the ceil case
    result.stdout.fnmatch_lines([f"FAILED poolconform::{CASES[0]}[[]onnx-reference[]]*"])
    result.stdout.fnmatch_lines([f"*{CASES[0]} on onnx-reference: mismatch: Y*"])
    if cuda_missing:
        assert (outcomes["passed"], outcomes["skipped"]) == (3, 2)
        result.stdout.fnmatch_lines(["SKIPPED*onnxruntime-cuda unavailable*"])
    else:
        assert (outcomes["passed"], outcomes.get("skipped", 0)) == (5, 0)


def test_expectations_xfail_and_keyword_selection(pytester: pytest.Pytester) -> None:
    expect = pytester.makefile(".toml", expect=f'[[expect]]\ncase = "{CASES[0]}"\nbackend = "onnx-reference"\n'
                                               'reason = "ceil window in the padding"\n')
    result = pytester.runpytest_subprocess(*args(pytester, "onnxruntime-cpu,onnx-reference", "--poolconform-expectations",
                                      str(expect), "-k", "ceil", "-rx"))
    result.assert_outcomes(passed=1, xfailed=1, deselected=2)
    result.stdout.fnmatch_lines(["*expected mismatch: ceil window in the padding*"])


def test_bad_options_are_usage_errors(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(*args(pytester, "no-such-backend"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*poolconform: unknown backend 'no-such-backend'*"])


@pytest.mark.parametrize("which", ["matrix", "expectations"])
def test_a_deeply_nested_file_is_a_usage_error_not_an_internal_error(pytester: pytest.Pytester, which: str) -> None:
    deep = pytester.makefile(".toml", deep=("[matrix]\nkernel = " if which == "matrix" else "[[expect]]\ncase = ")
                             + "[" * 5000 + "]" * 5000 + "\n")
    option = "--poolconform-matrix" if which == "matrix" else "--poolconform-expectations"
    result = pytester.runpytest_subprocess(*args(pytester, "onnxruntime-cpu"), option, str(deep))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines([f"*poolconform: {which} file '*deep.toml' is nested too deeply to parse*"])


def test_a_bad_expectations_file_stops_before_any_item_runs(pytester: pytest.Pytester) -> None:
    expect = pytester.makefile(".toml", expect='[[expect]]\ncase = "*"\nstatus = "timout"\nreason = "r"\n')
    result = pytester.runpytest_subprocess(*args(pytester, "onnxruntime-cpu"), "--poolconform-expectations", str(expect))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown status 'timout' (did you mean 'timeout'?)*"])
    assert "passed" not in result.stdout.str()


def test_a_catch_all_expectation_is_named_in_the_summary(pytester: pytest.Pytester) -> None:
    expect = pytester.makefile(".toml", expect='[[expect]]\ncase = "*"\nbackend = "onnx-reference"\nreason = "r"\n')
    result = pytester.runpytest_subprocess(*args(pytester, "onnxruntime-cpu,onnx-reference"),
                                           "--poolconform-expectations", str(expect))
    result.assert_outcomes(passed=3, xfailed=1)
    result.stdout.fnmatch_lines(["*poolconform: warning: expectation #1 in *expect.toml (case '*') covers all 2 records "
                                 "of backend onnx-reference*"])


@pytest.mark.parametrize(("option", "value"), [("--poolconform-timeout", "-1"), ("--poolconform-timeout", "nan"),
                                               ("--poolconform-backends", ",")])
def test_a_bad_option_is_a_usage_error_not_a_failure_of_every_item(pytester: pytest.Pytester, option, value) -> None:
    """A timeout of -1 failed every item with 'no answer within -1 s'; an empty backend list
    collected every backend. Both are refused as `run` refuses them."""
    result = pytester.runpytest("-p", "no:cacheprovider", "--poolconform", option, value, "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert option in "\n".join(result.errlines)
