"""`poolconform bench` runs real backends on a tiny shape and reports the right columns and figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from poolconform import bench
from poolconform.backends.base import resolve_backend_names
from poolconform.cli import main
from poolconform.errors import PoolconformError

pytest.importorskip("onnxruntime", reason="bench tests time the onnxruntime-cpu backend")

COLUMNS = ("op", "shape", "backend", "median ms", "IQR ms", "GB/s", "% of copy", "copy GB/s", "threads", "cores",
           "status")


def test_bench_prints_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    status = main(["bench", "--op", "MaxPool,GlobalAveragePool", "--shape", "1x2x8x8", "--kernel", "3",
                   "--stride", "2", "--backends", "onnxruntime-cpu", "--repeat", "3", "--warmup", "2",
                   "--json", str(out)])
    assert status == 0
    text = capsys.readouterr().out
    for column in COLUMNS:
        assert column in text
    assert "NumPy copy reaches" in text and "after 2 warm-up(s)" in text
    data = json.loads(out.read_text())
    assert data["copy_gb_per_s"] > 0 and data["warmup"] == 2 and data["cpu_count"] >= 1
    rows = {r["op"]: r for r in data["rows"]}
    assert set(rows) == {"MaxPool", "GlobalAveragePool"}
    maxpool = rows["MaxPool"]
    assert maxpool["backend"] == "onnxruntime-cpu" and maxpool["status"] == "ok"
    assert maxpool["runs"] == 3 and maxpool["median_ms"] > 0 and maxpool["min_ms"] <= maxpool["median_ms"]
    assert maxpool["warmups"] == 2
    assert maxpool["min_ms"] <= maxpool["q1_ms"] <= maxpool["median_ms"] <= maxpool["q3_ms"]
    assert maxpool["iqr_ms"] == pytest.approx(maxpool["q3_ms"] - maxpool["q1_ms"])
    # the copy rate is measured around the backend, and the share is against their mean
    before, after = maxpool["copy_before_gb_per_s"], maxpool["copy_after_gb_per_s"]
    assert before > 0.1 and after > 0.1
    assert maxpool["fraction_of_copy"] == pytest.approx(maxpool["gb_per_s"] / ((before + after) / 2))
    if Path("/proc/self/stat").exists():
        assert maxpool["threads"] >= 1  # the worker's OS threads, read from /proc
    # 1x2x8x8 float32 in (512 bytes); k3 s2 gives 1x2x3x3 out (72 bytes).
    assert maxpool["bytes_moved"] == 512 + 72
    assert maxpool["gb_per_s"] == pytest.approx(584 / (maxpool["median_ms"] * 1e-3) / 1e9)
    assert rows["GlobalAveragePool"]["bytes_moved"] == 512 + 8


def test_bench_times_every_backend_on_every_case():
    rows = bench.run_bench(bench.bench_cases(["LpPool", "AveragePool"], [(1, 1, 6, 6)], 2, 2),
                           resolve_backend_names(["onnxruntime-cpu", "onnx-reference"]),
                           repeat=2, timeout=60, copy_bytes_per_s=1e10)
    assert [(r.op, r.backend) for r in rows] == [
        ("LpPool", "onnxruntime-cpu"), ("LpPool", "onnx-reference"),
        ("AveragePool", "onnxruntime-cpu"), ("AveragePool", "onnx-reference"),
    ]
    assert [r.status for r in rows] == ["ok"] * 4  # outputs checked against the oracle
    assert all(r.runs == 2 and r.fraction_of_copy is not None and r.fraction_of_copy > 0 for r in rows)


def test_bench_marks_unsupported_cases(tmp_path):
    pytest.importorskip("keras", reason="keras-tensorflow needs keras")
    pytest.importorskip("tensorflow", reason="keras-tensorflow needs tensorflow")
    rows = bench.run_bench(bench.bench_cases(["LpPool", "MaxPool"], [(1, 1, 6, 6)], 2, 2),
                           resolve_backend_names(["keras-tensorflow"]), repeat=2, timeout=120,
                           copy_bytes_per_s=1e10)
    by_op = {r.op: r for r in rows}
    assert by_op["LpPool"].status == "unsupported" and "Lp" in by_op["LpPool"].detail
    assert by_op["LpPool"].median_ms is None
    assert by_op["MaxPool"].status == "ok" and by_op["MaxPool"].median_ms > 0


@pytest.mark.parametrize("text", ["1x64", "1x64x0x4", "axbxc", "1x2x3x4x5x6"])
def test_parse_shape_rejects_bad_shapes(text):
    with pytest.raises(PoolconformError, match="shape"):
        bench.parse_shape(text)


def test_parse_shape_and_cases():
    assert bench.parse_shape("8x256x56x56") == (8, 256, 56, 56)
    cases = bench.bench_cases(["AveragePool", "GlobalMaxPool"], [(1, 2, 9, 9)], 3, 2)
    assert [c.op for c in cases] == ["AveragePool", "GlobalMaxPool"]
    assert cases[0].kernel == (3, 3) and cases[0].strides == (2, 2) and cases[0].pads == (0, 0, 0, 0)


def test_unknown_op_is_a_usage_error(capsys):
    assert main(["bench", "--op", "MinPool", "--shape", "1x1x4x4", "--backends", "onnxruntime-cpu"]) == 2
    err = capsys.readouterr().err
    assert "'MinPool'" in err and "MaxPool" in err


def test_quartiles_are_the_spread_of_the_median():
    assert bench.quartiles([4.0, 1.0, 3.0, 2.0, 5.0]) == (2.0, 3.0, 4.0)
    assert bench.quartiles([7.0]) == (7.0, 7.0, 7.0)


def test_process_usage_reads_this_process():
    import os

    if not Path("/proc/self/stat").exists():
        pytest.skip("no /proc here: the figures are left out")
    cpu, threads = bench.process_usage(os.getpid())
    assert cpu > 0 and threads >= 1
    assert bench.process_usage(None) is None


def test_copy_bandwidth_is_a_rate():
    rate = bench.copy_bandwidth(megabytes=8, repeat=3)
    assert np.isfinite(rate) and rate > 1e8  # any machine copies more than 100 MB/s


def test_bench_shape_over_the_case_budget_is_refused_before_allocating():
    """4096x1024x1024 would be 16 GiB of float32 input and 32 GiB in the oracle: one line, exit 2."""
    from conftest import run_cli

    proc = run_cli("bench", "--shape", "4096x1024x1024", "--backends", "onnxruntime-cpu")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "limit" in proc.stderr and "4096" in proc.stderr
    proc = run_cli("bench", "--shape", "4096x1024x1024", "--op", "GlobalAveragePool", "--backends", "onnxruntime-cpu")
    assert proc.returncode == 2 and "limit" in proc.stderr, proc.stderr


def test_inputs_are_made_once_and_handed_out_as_private_copies():
    """bench's repeats reuse one case's inputs from poolconform.inputs' cache; a caller that
    writes into its copy changes nobody else's."""
    from poolconform import inputs
    from poolconform.validation import make_case

    case = make_case("MaxPool", (1, 2, 9, 9), kernel=2)
    inputs.clear_cache()
    first = inputs.make_inputs(case)[0]
    fresh = inputs.generate_inputs(case)[0]
    first[...] = 0
    again = inputs.make_inputs(case)[0]
    np.testing.assert_array_equal(again, fresh)
    assert again.flags.writeable and not np.shares_memory(again, first)
    assert case.id in inputs._cache and len(inputs._cache) == 1
