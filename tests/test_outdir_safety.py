"""The --out folder under careless and hostile use: one run at a time, no writes through symlinks,
no resume that mixes two runs, no edited record taken on trust, a full disk, no stray logs.

Every refusal is exit 2 with one line and no traceback, and records already written stay.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from poolconform.outdir import OutLock

BACKEND = "onnxruntime-cpu"
BOTH = "onnxruntime-cpu,onnx-reference"


def one_line_error(proc: subprocess.CompletedProcess, *texts: str) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for text in texts:
        assert text in lines[0], lines[0]
    return lines[0]


def run(matrix: Path, out: Path, *extra: str, backends: str = BACKEND) -> subprocess.CompletedProcess:
    return run_cli("run", "--matrix", str(matrix), "--backends", backends, "--out", str(out), "--quiet", *extra)


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """A small matrix and a finished run of it on onnxruntime-cpu (copied by the tests that change it)."""
    root = tmp_path_factory.mktemp("outdir")
    matrix = root / "m.toml"
    matrix.write_text('[matrix]\nops = ["MaxPool", "AveragePool"]\nkernel = [2, 3]\nstride = [1, 2]\n'
                      "input_size = [5, 6]\n")
    out = root / "done"
    proc = run(matrix, out)
    assert proc.returncode == 0, proc.stderr
    assert len(lines_of(out / "results.jsonl")) == 16
    return matrix, out


def copy_of(out: Path, dest: Path) -> Path:
    dest.mkdir()
    for name in ("results.jsonl", "run.json", "summary.json"):
        (dest / name).write_bytes((out / name).read_bytes())
    return dest


def test_a_second_run_on_a_locked_out_exits_2_naming_the_holder(finished, tmp_path):
    matrix, _ = finished
    out = tmp_path / "busy"
    out.mkdir()
    lock = OutLock(out)  # this test process plays the first run
    try:
        proc = run(matrix, out)
        one_line_error(proc, "in use by another poolconform run", f"pid {os.getpid()}")
        assert not (out / "results.jsonl").exists()  # it wrote nothing
    finally:
        lock.release()
    assert run(matrix, out).returncode == 0  # the lock is gone with its holder


def test_symlinks_in_out_are_refused_and_their_targets_untouched(finished, tmp_path):
    matrix, _ = finished
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    for name in ("results.jsonl", "summary.json", "logs", "run.json"):
        out = tmp_path / f"hostile-{name}"
        out.mkdir()
        (out / name).symlink_to(victim if name != "logs" else tmp_path)
        one_line_error(run(matrix, out), repr(str(out / name)), "symlink")
        assert victim.read_text() == "precious\n"
        assert not (out / "results.jsonl").exists() or (out / "results.jsonl").is_symlink()


def test_out_naming_a_file_or_a_path_under_a_file_exits_2(finished, tmp_path):
    matrix, _ = finished
    a_file = tmp_path / "report.txt"
    a_file.write_text("not a folder\n")
    one_line_error(run(matrix, a_file), "is a file, not a folder")
    one_line_error(run(matrix, a_file / "sub"), "cannot create --out")
    assert a_file.read_text() == "not a folder\n"


def test_resume_refuses_another_matrix_other_backends_or_another_version(finished, tmp_path):
    matrix, out = finished
    other = tmp_path / "other.toml"
    other.write_text('[matrix]\nops = ["MaxPool"]\nkernel = 2\ninput_size = [5, 6]\n')
    before = lines_of(out / "results.jsonl")
    one_line_error(run(other, out, "--resume"), "holds another run", "other cases (16 then, 2 now)")
    one_line_error(run(matrix, out, "--resume", backends=BOTH), "other backends (onnxruntime-cpu then, "
                                                                 "onnx-reference,onnxruntime-cpu now)")
    assert lines_of(out / "results.jsonl") == before

    edited = copy_of(out, tmp_path / "edited")
    identity = json.loads((edited / "run.json").read_text())
    assert identity["backends"] == [BACKEND] and identity["cases"] == 16 and len(identity["matrix_digest"]) == 16
    identity["poolconform"] = "0.0.1"
    (edited / "run.json").write_text(json.dumps(identity))
    one_line_error(run(matrix, edited, "--resume"), "another poolconform (0.0.1 then")
    (edited / "run.json").unlink()
    one_line_error(run(matrix, edited, "--resume"), "no run.json")

    same = copy_of(out, tmp_path / "same")
    proc = run(matrix, same, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert lines_of(same / "results.jsonl") == before  # nothing rerun, nothing added


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.update(case=7), "case must be a non-empty string, not 7"),
    (lambda r: r.pop("status"), "the record has no status"),
    (lambda r: r.update(status="passed"), "unknown status 'passed'"),
    (lambda r: r.update(backend=None), "backend must be a non-empty string, not None"),
])
def test_hand_edited_records_on_resume_exit_2_naming_the_line(finished, tmp_path, edit, message):
    matrix, out = finished
    edited = copy_of(out, tmp_path / "edited")
    lines = lines_of(edited / "results.jsonl")
    record = json.loads(lines[2])
    edit(record)
    lines[2] = json.dumps(record)
    (edited / "results.jsonl").write_text("\n".join(lines) + "\n")
    one_line_error(run(matrix, edited, "--resume"), "line 3: " + message)
    assert lines_of(edited / "results.jsonl") == lines  # refused before touching anything


def _limited(nbytes: int):
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return limit


def _run_with_file_size_limit(matrix: Path, out: Path, nbytes: int, *extra: str) -> subprocess.CompletedProcess:
    """A full disk, for real: writes past RLIMIT_FSIZE fail with EFBIG (Python ignores SIGXFSZ)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-m", "poolconform", "run", "--matrix", str(matrix), "--backends", BOTH,
                           "--out", str(out), "--quiet", *extra], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, preexec_fn=_limited(nbytes))


def test_a_full_disk_while_writing_records_exits_2_keeping_whole_records(finished, tmp_path):
    matrix, _ = finished
    out = tmp_path / "full"
    proc = _run_with_file_size_limit(matrix, out, 15000)  # one backend's batch (16 records, ~11 kB) fits
    one_line_error(proc, "results.jsonl", "File too large", "records before this batch are kept")
    data = (out / "results.jsonl").read_bytes()
    assert len(data) <= 15000 and data.endswith(b"\n")
    kept = [json.loads(line) for line in data.splitlines()]  # whole records only, none torn
    assert len(kept) == 16 and len({r["backend"] for r in kept}) == 1


def test_a_full_disk_while_writing_reports_exits_2_keeping_every_record(finished, tmp_path):
    matrix, _ = finished
    out = tmp_path / "full"
    assert _run_with_file_size_limit(matrix, out, 10**9).returncode == 0  # every record, with room
    for report in ("report.html", "junit.xml", "summary.json", "summary.md"):
        (out / report).unlink()
    # The disk fills up: results.jsonl has nothing left to append, the reports no longer fit.
    proc = _run_with_file_size_limit(matrix, out, 2000, "--resume")
    one_line_error(proc, "cannot write the reports", "File too large", "32 records are kept")
    assert len(lines_of(out / "results.jsonl")) == 32
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []


def test_logs_are_written_only_when_something_was_logged(finished):
    _, out = finished
    logs = out / "logs"
    assert not logs.exists() or all(p.stat().st_size > 0 for p in logs.iterdir())


def test_check_without_out_leaves_no_log_folder_in_tmpdir(tmp_path):
    from test_cli import _seed_dirs

    root = _seed_dirs(tmp_path / "seed")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = run_cli("check", str(root), "--backends", BOTH, env={"TMPDIR": str(tmp)})
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in tmp.iterdir() if p.name.startswith("poolconform-logs-")] == []


def test_a_folder_of_the_users_own_files_is_never_written_over(tmp_path: Path, tiny_matrix: Path) -> None:
    """A project folder holding its own summary.md and results.jsonl (or $HOME, /): run and
    merge refuse it before writing anything; an empty --out is refused too."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "summary.md").write_text("my notes\n")
    (project / "results.jsonl").write_text('{"mine": 1}\n')
    one_line_error(run(tiny_matrix, project), "holds 'results.jsonl' (and summary.md)", "did not write")
    assert (project / "summary.md").read_text() == "my notes\n"
    assert sorted(p.name for p in project.iterdir()) == ["results.jsonl", "summary.md"]
    one_line_error(run_cli("run", "--matrix", str(tiny_matrix), "--out", ""), "--out", "empty path")
    # a folder poolconform wrote (run.json beside its files) is reused as before
    first = run(tiny_matrix, tmp_path / "ours")
    assert first.returncode == 0 and run(tiny_matrix, tmp_path / "ours").returncode == 0


@pytest.mark.parametrize("kind", ["fifo", "device", "huge"])
def test_a_matrix_that_is_no_regular_file_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    """/dev/zero would fill the memory, a FIFO block forever, a 2 MB file is no matrix."""
    path = tmp_path / "m.toml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path = Path("/dev/zero")
    else:
        path.write_text("# " + "x" * (2 << 20) + "\n")
    proc = run_cli("run", "--matrix", str(path), "--out", str(tmp_path / "o"), timeout=60)
    one_line_error(proc, "matrix file", "not a regular file" if kind != "huge" else "larger than 1 MiB")
    proc = run_cli("run", "--expectations", str(path), "--out", str(tmp_path / "o"), timeout=60)
    one_line_error(proc, "expectations file")
