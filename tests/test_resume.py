"""Durable results: a run SIGKILLed at any moment continues with --resume, each record exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from poolconform.errors import PoolconformError
from poolconform.results import RecordKeys, read_records, repair_torn_tail, write_atomic, write_json

REPO = Path(__file__).resolve().parents[1]

#: 192 cases (384 records on two backends): enough batches of 64 that a kill lands mid-way.
MATRIX = """\
[matrix]
ops = ["MaxPool", "AveragePool"]
rank = [1, 2]
kernel = [2, 3]
stride = [1, 2]
input_size = [6, 9]
pads = [0, 1]
ceil_mode = [false, true]
count_include_pad = [false, true]
batch = 2
channels = 3
"""
BACKENDS = "onnxruntime-cpu,onnx-reference"


def run_args(matrix: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "poolconform", "run", "--matrix", str(matrix), "--backends", BACKENDS,
            "--out", str(out), "--quiet", *extra]


def lines_of(out: Path) -> list[str]:
    return (out / "results.jsonl").read_text(encoding="utf-8").splitlines()


def statuses(lines: list[str]) -> dict[tuple[str, str], str]:
    records = [json.loads(line) for line in lines]
    return {(r["case"], r["backend"]): r["status"] for r in records}


def children_of(pid: int) -> set[int]:
    """Live processes whose parent is `pid` (the backend workers and their helpers)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("resume") / "m.toml"
    path.write_text(MATRIX)
    return path


@pytest.fixture(scope="module")
def uninterrupted(matrix) -> tuple[int, list[str]]:
    out = matrix.parent / "full"
    result = subprocess.run(run_args(matrix, out), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, lines_of(out)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the worker processes")
def test_sigkilled_run_resumes_to_the_same_records_each_once(matrix, uninterrupted):
    full_status, full_lines = uninterrupted
    total = len(full_lines)
    assert total == 384 and len(statuses(full_lines)) == total
    out = matrix.parent / "killed"
    results = out / "results.jsonl"
    process = subprocess.Popen(run_args(matrix, out), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    written = 0
    while time.monotonic() < deadline and process.poll() is None:
        written = results.read_bytes().count(b"\n") if results.exists() else 0
        if 0 < written < total:
            break
        time.sleep(0.005)
    workers = children_of(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 0 < written < total, f"the run was not caught mid-way ({written} of {total} lines)"
    assert workers, "the run had no worker processes"
    kept = lines_of(out)
    assert 0 < len(kept) < total

    # orphaned workers notice their parent is gone and exit on their own
    deadline = time.monotonic() + 15
    while children_of(process.pid) | {p for p in workers if Path(f"/proc/{p}").exists()} and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [p for p in workers if Path(f"/proc/{p}/stat").exists()
             and Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    assert alive == [], f"workers of the killed run still alive: {alive}"

    # a kill in the middle of a write leaves half a line
    with open(results, "a", encoding="utf-8") as f:
        f.write(full_lines[-1][: len(full_lines[-1]) // 2])

    resumed = subprocess.run(run_args(matrix, out, "--resume"), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == full_status, resumed.stderr
    final = lines_of(out)
    assert final[: len(kept)] == kept  # finished records were kept, not rerun
    assert len(final) == total  # every (case, backend) exactly once
    assert statuses(final) == statuses(full_lines)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["records"] == total and summary["exit_status"] == full_status

    # resuming a finished run does nothing but rewrite its reports
    again = subprocess.run(run_args(matrix, out, "--resume"), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == full_status, again.stderr
    assert lines_of(out) == final
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []


def test_repair_cuts_a_torn_tail_and_keeps_a_whole_last_record(tmp_path):
    path = tmp_path / "results.jsonl"
    a, b = '{"case": "a", "backend": "x", "status": "pass"}', '{"case": "b", "backend": "x", "status": "pass"}'
    path.write_text(f"{a}\n{b[:11]}")
    repair_torn_tail(path)
    assert path.read_text() == f"{a}\n"
    path.write_text(f"{a}\n{b}")  # killed between the record and its newline
    assert len(read_records(path)) == 2
    repair_torn_tail(path)
    assert path.read_text() == f"{a}\n{b}\n"
    path.write_bytes(f"{a}\n".encode() + b"\xff\xfe{")  # torn inside a multi-byte character
    repair_torn_tail(path)
    assert path.read_text() == f"{a}\n"
    path.write_text("")
    repair_torn_tail(path)
    assert path.read_text() == ""


def test_repair_reads_only_the_tail_of_a_large_file_and_cuts_what_a_kill_left(tmp_path):
    path = tmp_path / "results.jsonl"
    whole = "".join(json.dumps({"case": f"c{i}", "backend": "x", "status": "pass", "detail": "d" * (i % 300)}) + "\n"
                    for i in range(3000))  # about 0.5 MB: many of the 64 KiB blocks read from the end
    torn = '{"case": "c3000", "backend": "x", "status": "pa'
    path.write_text(whole + "\n\n" + torn)  # blank lines, then a torn record: all cut
    repair_torn_tail(path)
    assert path.read_text() == whole
    long_record = json.dumps({"case": "long", "backend": "x", "status": "pass", "detail": "z" * 200_000})
    path.write_text(whole + long_record)  # a whole record longer than a block, lacking its newline
    repair_torn_tail(path)
    assert path.read_text() == whole + long_record + "\n"
    assert len(read_records(path)) == 3001


def test_resume_keys_say_which_pairs_have_a_record():
    keys = RecordKeys([("a", "x"), ("a", "y"), ("b", "y"), ("a", "x")])
    assert len(keys) == 3 and bool(keys)
    assert ("a", "x") in keys and ("b", "y") in keys
    assert ("b", "x") not in keys and ("c", "x") not in keys and ("a", "z") not in keys and "a" not in keys
    assert sorted(keys) == [("a", "x"), ("a", "y"), ("b", "y")]
    many = RecordKeys((f"case{i}", f"backend{b}") for i in range(100) for b in range(70))  # masks wider than 64 bits
    assert len(many) == 7000 and ("case99", "backend69") in many and ("case99", "backend70") not in many
    assert not RecordKeys()


def test_only_the_last_line_may_be_torn(tmp_path):
    path = tmp_path / "results.jsonl"
    a = '{"case": "a", "backend": "x", "status": "pass"}'
    path.write_text(f'{a}\n{{"case": "b", "ba\n{a.replace("a", "c", 1)}\n')
    with pytest.raises(PoolconformError, match="line 2: not JSON"):
        read_records(path)
    path.write_text(f'{a}\n[1, 2]\n')
    with pytest.raises(PoolconformError, match="line 2: not a poolconform record"):
        read_records(path)
    for line, why in [('{"case": ["a"], "backend": "x", "status": "pass"}', "case must be a non-empty string"),
                      ('{"case": "a", "backend": "x"}', "the record has no status"),
                      ('{"case": "a", "backend": "x", "status": "ok"}', "unknown status 'ok'"),
                      # a figure the reports read that no run writes: refused, not a traceback in html
                      ('{"case": "a", "backend": "x", "status": "pass", "max_abs_err": "huge"}',
                       "max_abs_err must be a number, not 'huge'"),
                      ('{"case": "a", "backend": "x", "status": "pass", "params": {"kernel": ["k"]}}',
                       "params.kernel must be a list of numbers"),
                      ('{"case": "a", "backend": "x", "status": "pass", "actual_shape": "1x2"}',
                       "actual_shape must be a list of integers")]:
        path.write_text(f"{a}\n{line}\n{a}\n")
        with pytest.raises(PoolconformError, match=f"line 2: {why}"):
            read_records(path)
    # a second record of one (case, backend): neither may quietly win (an appended pass would hide the error)
    path.write_text('{"case": "a", "backend": "x", "status": "error"}\n{"case": "a", "backend": "x", "status": "pass"}\n')
    with pytest.raises(PoolconformError, match="line 2: a second record of 'a' on 'x'"):
        read_records(path)
    # an expectation's marks in a line do not excuse it: only --expectations does
    path.write_text('{"case": "a", "backend": "x", "status": "error", "expected": true, "expected_reason": "r"}\n')
    assert list(read_records(path)) == [{"case": "a", "backend": "x", "status": "error"}]


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"records": 1})
    assert json.loads(path.read_text()) == {"records": 1}
    mask = os.umask(0o022)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # readable like any report, not mkstemp's 0600

    with pytest.raises(TypeError):
        write_atomic(path, 12345)  # type: ignore[arg-type]  # fails inside the write
    assert json.loads(path.read_text()) == {"records": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]  # no temp file left behind


TINY = '[matrix]\nops = ["MaxPool"]\nkernel = [2, 3]\nstride = 1\ninput_size = 5\n'


def _tiny_run(tmp_path: Path, *extra: str) -> tuple[int, Path]:
    from poolconform.cli import main

    matrix = tmp_path / "tiny.toml"
    matrix.write_text(TINY)
    out = tmp_path / "out"
    status = main(["run", "--matrix", str(matrix), "--backends", "onnx-reference", "--out", str(out), "--quiet",
                   *extra])
    return status, out


@pytest.mark.parametrize("foreign", [
    {"case": "MaxPool-2d-k5-s1-p0-f32-n8", "backend": "onnx-reference", "status": "pass"},  # not in the matrix
    {"case": "MaxPool-2d-k2-s1-p0-f32-n5", "backend": "torch-cpu", "status": "pass"},  # a backend not selected
])
def test_resume_refuses_a_record_this_run_does_not_select(tmp_path: Path, foreign: dict) -> None:
    """Its record would be reported as this run's: a backend never selected shown passing."""
    status, out = _tiny_run(tmp_path)
    assert status == 0
    with (out / "results.jsonl").open("a") as f:
        f.write(json.dumps(foreign) + "\n")
    before = lines_of(out)
    status, _ = _tiny_run(tmp_path, "--resume")
    assert status == 2
    assert lines_of(out) == before  # nothing removed or added


def test_resume_refuses_when_a_backend_with_records_is_unavailable(tmp_path: Path) -> None:
    """Its earlier records would pass beside the cases it never reached: a green with holes."""
    status, out = _tiny_run(tmp_path)
    assert status == 0
    lines = lines_of(out)
    (out / "results.jsonl").write_text(lines[0] + "\n")  # as if killed after the first record
    broken = tmp_path / "broken-python"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    status, _ = _tiny_run(tmp_path, "--resume", "--backend-python", f"onnx-reference={broken}")
    assert status == 2
    assert lines_of(out) == lines[:1]
    status, _ = _tiny_run(tmp_path, "--resume")  # where it runs, the run completes
    assert status == 0 and set(statuses(lines_of(out))) == set(statuses(lines))


def test_a_new_run_removes_the_previous_verdict_before_it_writes_records(tmp_path: Path) -> None:
    """A new run killed part way must not leave the old run's summary.json and report.html
    saying how that one ended beside the new one's records."""
    status, out = _tiny_run(tmp_path)
    assert status == 0 and (out / "summary.json").exists() and (out / "report.html").exists()
    (tmp_path / "big.toml").write_text(MATRIX)
    proc = subprocess.Popen(run_args(tmp_path / "big.toml", out), cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "results.jsonl").stat().st_size and "AveragePool" in (out / "results.jsonl").read_text():
                break
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert "AveragePool" in (out / "results.jsonl").read_text()  # the new run's records
    for name in ("summary.json", "summary.md", "report.html", "junit.xml", "findings.json"):
        assert not (out / name).exists(), name
