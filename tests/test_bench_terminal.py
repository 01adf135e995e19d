"""What `poolconform bench` shows a person: the table within COLUMNS, an unavailable backend named
once, and progress on a terminal's stderr only (stdout and --json stay clean)."""

from __future__ import annotations

import json
import os
import re
import pty
import select
import subprocess
import sys
import time

import pytest

from poolconform.bench import BenchRow
from poolconform.cli import main
from poolconform.commands.bench import print_table

pytest.importorskip("onnxruntime", reason="bench runs onnxruntime-cpu")

REASON = "torch.cuda.is_available() is False (torch 2.13.0+cpu, a CPU-only build)"


def _rows(other: str) -> list[BenchRow]:
    """Two ops x two shapes x (a timed, an unsupported and an unavailable backend)."""
    rows = []
    for op in ("MaxPool", "AveragePool"):
        for shape in ([1, 64, 112, 112], [8, 256, 56, 56]):
            rows.append(BenchRow("x", op, shape, "onnxruntime-cpu", "ok", median_ms=2.183, min_ms=2.0, q1_ms=2.1,
                                 q3_ms=2.3, runs=10, gb_per_s=1.83, fraction_of_copy=0.2,
                                 copy_before_gb_per_s=9.3, copy_after_gb_per_s=9.1, threads=5, cores_used=1.9))
            rows.append(BenchRow("x", op, shape, other, "unsupported",
                                 detail="no [/b] such [bold]thing"))
            rows.append(BenchRow("x", op, shape, "torch-cuda", "unavailable", detail=REASON))
    return rows


LONG = "torch-dynamo-export->onnxruntime-cpu"


@pytest.mark.parametrize(("columns", "other"), [(200, LONG), (80, "keras-tensorflow"), (80, LONG), (40, LONG)])
def test_table_fits_columns_names_whole_unavailable_once(columns, other, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", str(columns))
    print_table(_rows(other), 9.3e9, 10, 2)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= columns, out
    assert out.count("torch-cuda") == 1  # once, with its reason, not a row per case
    assert "not run: torch-cuda: torch.cuda.is_available() is False" in " ".join(line.strip() for line in lines)
    for name in ("onnxruntime-cpu", other):  # every name whole, on the line of its row
        assert sum(bool(re.search(rf"(^|\s){re.escape(name)}(\s|:|$)", line)) for line in lines) == 4, out
    assert "[/b]" in out and "[bold]thing" in out  # framework text is printed, not read as markup
    table = "median ms" in out
    if columns == 200:
        assert all(h in lines[1] for h in ("median ms", "IQR ms", "% of copy", "copy GB/s", "threads", "cores"))
    if columns == 80 and other != LONG:  # the least needed columns went first
        assert table and "copy GB/s" not in out and "IQR ms" not in out
    if table:
        assert sum("onnxruntime-cpu" in line and "2.183" in line and "1.83" in line for line in lines) == 4
    else:  # no table fits: one line per row
        assert columns < 80 or other == LONG
        assert " ".join(line.strip() for line in lines).count(f"AveragePool 8x256x56x56 {other}: unsupported") == 1


def _ort_cuda_unavailable() -> None:
    from poolconform.backends.base import resolve_backend_names
    from poolconform.runner import RunOptions, start_workers

    workers = start_workers(resolve_backend_names(["onnxruntime-cuda"]), RunOptions(timeout=60))
    try:
        if not workers["onnxruntime-cuda"].info.unavailable:
            pytest.skip("needs an unavailable backend: onnxruntime-cuda runs here")
    finally:
        for worker in workers.values():
            worker.close()


def test_real_bench_names_an_unavailable_backend_once_and_keeps_stderr_clean(tmp_path, capsys):
    _ort_cuda_unavailable()
    out_json = tmp_path / "bench.json"
    status = main(["bench", "--op", "MaxPool,AveragePool", "--shape", "1x2x8x8,1x1x6x6", "--repeat", "2",
                   "--warmup", "1", "--backends", "onnxruntime-cpu,onnxruntime-cuda", "--json", str(out_json)])
    captured = capsys.readouterr()
    assert status == 0
    assert captured.err == ""  # not a terminal: no progress
    assert captured.out.count("onnxruntime-cuda") == 1 and "not run: onnxruntime-cuda: " in captured.out
    assert sum("onnxruntime-cpu" in line for line in captured.out.splitlines()) == 4
    rows = json.loads(out_json.read_text())["rows"]
    assert sorted(r["status"] for r in rows if r["backend"] == "onnxruntime-cpu") == ["ok"] * 4


def test_progress_goes_to_a_terminal_stderr_not_stdout(tmp_path):
    """stderr a pseudo-terminal, stdout a pipe: the progress shows on the first, the table on the second."""
    out_json = tmp_path / "bench.json"
    master, slave = pty.openpty()
    env = dict(os.environ, COLUMNS="100", TERM="xterm")
    proc = subprocess.Popen([sys.executable, "-m", "poolconform", "bench", "--op", "MaxPool", "--shape", "1x2x8x8",
                             "--repeat", "2", "--warmup", "1", "--backends", "onnxruntime-cpu", "--json", str(out_json)],
                            stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, env=env, text=True)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    stdout, _ = proc.communicate(timeout=60)
    os.close(master)
    assert proc.returncode == 0
    terminal = seen.decode(errors="replace")
    assert "bench: " in terminal and "MaxPool 1x2x8x8 on onnxruntime-cpu" in terminal
    assert "bench: " not in stdout and "\x1b" not in stdout  # the pipe gets the table only
    assert "onnxruntime-cpu" in stdout and "median ms" in stdout
    assert json.loads(out_json.read_text())["rows"][0]["status"] == "ok"
