"""Ctrl-C, for real: SIGINT to the run's whole process group, as a terminal sends it.

The first SIGINT stops the run within a second or two, records nothing for unfinished
cases (never a crash or timeout), marks the reports interrupted and exits 130; `--resume`
then finishes with each (case, backend) exactly once. A second SIGINT exits at once.
No worker process outlives the run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the worker processes"),
]

#: 288 cases, 576 records on two backends; onnx-reference takes several seconds, so a
#: SIGINT after the first batch lands mid-run.
MATRIX = """\
[matrix]
ops = ["MaxPool", "AveragePool"]
rank = [1, 2]
kernel = [2, 3]
stride = [1, 2]
input_size = [6, 9, 17]
pads = [0, 1]
ceil_mode = [false, true]
count_include_pad = [false, true]
batch = 2
channels = 3
"""
TOTAL = 576
BACKENDS = "onnxruntime-cpu,onnx-reference"


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("interrupt") / "m.toml"
    path.write_text(MATRIX)
    return path


def start(matrix: Path, out: Path, *extra: str) -> subprocess.Popen:
    """The CLI in its own session, so the test can signal its whole process group."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "poolconform", "run", "--matrix", str(matrix), "--backends",
                             BACKENDS, "--out", str(out), "--quiet", *extra], cwd=ROOT, env=env,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def group_processes(pgid: int) -> dict[int, str]:
    """Live (non-zombie) processes of a process group: pid -> command line."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found[int(stat.parent.name)] = cmdline
    return found


def workers_of(pgid: int) -> dict[int, str]:
    return {pid: cmd for pid, cmd in group_processes(pgid).items() if "child_main" in cmd}  # poolconform.worker._BOOTSTRAP


def record_lines(out: Path) -> int:
    path = out / "results.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def interrupt(process: subprocess.Popen, times: int = 1) -> tuple[int, str, float, float]:
    """SIGINT the run's process group; (exit status, stderr, seconds until no worker computes,
    seconds until exit). The reports of what finished are written in between."""
    sent = time.monotonic()
    for _ in range(times):
        os.killpg(process.pid, signal.SIGINT)
        time.sleep(0.01)
    assert wait_for(lambda: not workers_of(process.pid), 30)
    stopped = time.monotonic() - sent
    _, stderr = process.communicate(timeout=60)
    return process.returncode, stderr, stopped, time.monotonic() - sent


def assert_no_worker_outlives(pgid: int) -> None:
    assert workers_of(pgid) == {}, "workers outlived the run"
    # the multiprocessing resource tracker leaves by itself once its pipe closes
    assert wait_for(lambda: not group_processes(pgid), 3), group_processes(pgid)


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_first_sigint_stops_within_seconds_and_resume_finishes_each_record_once(matrix):
    out = matrix.parent / "once"
    process = start(matrix, out)
    assert wait_for(lambda: process.poll() is not None or record_lines(out) > 0, 240)
    assert workers_of(process.pid), "the run had no worker processes"
    status, stderr, stopped, exited = interrupt(process)
    assert status == 130, stderr
    assert stopped < 2, f"workers still ran {stopped:.1f} s after the SIGINT"
    assert exited < 6, f"took {exited:.1f} s to exit"
    assert "Traceback" not in stderr and "interrupted:" in stderr, stderr
    kept = records(out)
    assert 0 < len(kept) < TOTAL, "the run was not caught mid-way"
    assert not [r for r in kept if r["status"] in ("crash", "timeout")], "an interruption was recorded as a failure"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_status"] == 130
    assert summary["interrupted"] == f"stopped by Ctrl-C after {len(kept)} of {TOTAL} records"
    assert summary["records"] == len(kept)
    assert "**poolconform: INTERRUPTED**" in (out / "summary.md").read_text()
    assert "INTERRUPTED: stopped by Ctrl-C" in (out / "report.html").read_text()
    assert_no_worker_outlives(process.pid)

    resumed = subprocess.run([sys.executable, "-m", "poolconform", "run", "--matrix",
                              str(matrix), "--backends", BACKENDS, "--out", str(out), "--quiet", "--resume"],
                             cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode in (0, 1), resumed.stderr
    final = records(out)
    assert final[: len(kept)] == kept  # finished records kept, not rerun
    assert len(final) == TOTAL == len({(r["case"], r["backend"]) for r in final})  # each exactly once
    assert not [r for r in final if r["status"] in ("crash", "timeout")]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["records"] == TOTAL and "interrupted" not in summary
    assert summary["exit_status"] == resumed.returncode


def test_second_sigint_exits_at_once_leaving_no_worker(matrix):
    out = matrix.parent / "twice"
    process = start(matrix, out)
    assert wait_for(lambda: process.poll() is not None or record_lines(out) > 0, 240)
    status, stderr, stopped, exited = interrupt(process, times=2)
    assert status == 130, stderr
    assert exited < 2, f"took {exited:.1f} s to exit"
    assert "Traceback" not in stderr, stderr
    assert not [r for r in records(out) if r["status"] in ("crash", "timeout")]
    assert_no_worker_outlives(process.pid)


def test_sigint_while_the_workers_start_exits_130_without_a_traceback(matrix):
    out = matrix.parent / "starting"
    process = start(matrix, out)
    assert wait_for(lambda: process.poll() is not None or workers_of(process.pid), 120)
    status, stderr, stopped, exited = interrupt(process)  # the workers are still importing their frameworks
    assert status == 130, stderr
    assert stopped < 2 and exited < 3, f"workers stopped after {stopped:.1f} s, exit after {exited:.1f} s"
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert record_lines(out) == 0 or not [r for r in records(out) if r["status"] in ("crash", "timeout")]
    assert_no_worker_outlives(process.pid)


def test_sigint_after_the_last_record_stops_the_shrinking_at_once(matrix):
    """Once every record is written, findings are shrunk by re-running their backend (up to
    POOLCONFORM_SHRINK_SECONDS): a Ctrl-C there was ignored for as long. It stops, the
    reports say interrupted, the exit status is 130, and every record is kept. The backend's
    interpreter is a wrapper that sleeps once a marker exists, so the shrinking is caught
    starting its worker whatever the machine's speed."""
    out = matrix.parent / "shrinking"
    marker = matrix.parent / "shrinking-now"
    wrapper = matrix.parent / "slow-python"
    wrapper.write_text(f"#!/bin/sh\n[ -e '{marker}' ] && sleep 60\nexec '{sys.executable}' \"$@\"\n")
    wrapper.chmod(0o755)
    env = dict(os.environ, PYTHONPATH=str(ROOT), POOLCONFORM_SHRINK_SECONDS="120")
    process = subprocess.Popen([sys.executable, "-m", "poolconform", "run", "--matrix", str(matrix), "--backends",
                                BACKENDS, "--backend-python", f"onnx-reference={wrapper}", "--out", str(out), "--quiet"],
                               cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    # onnx-reference disagrees on ceil_mode cases: shrinking starts once all records are in
    assert wait_for(lambda: process.poll() is not None or record_lines(out) >= TOTAL, 240)
    marker.touch()
    assert process.poll() is None, "the run ended before it could be interrupted while shrinking"
    time.sleep(1.5)  # the shrinking's own onnx-reference worker is starting (and sleeping)
    sent = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert time.monotonic() - sent < 6, "the shrinking went on after Ctrl-C"
    assert "Traceback" not in stderr and "interrupted:" in stderr and "--resume" not in stderr, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_status"] == 130 and summary["records"] == TOTAL
    assert "stopped by Ctrl-C" in summary["interrupted"]
    assert "**poolconform: INTERRUPTED**" in (out / "summary.md").read_text()
    assert_no_worker_outlives(process.pid)
