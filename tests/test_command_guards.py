"""Output paths and Ctrl-C in export, scan --export, env create, bench and diff.

Each unusable path is one line on stderr and exit status 2, refused before any work where
it can be, with the user's file untouched; a write that fails at the end still leaves what
was computed on the screen. Ctrl-C in bench and export exits 130 with its own message
(not the run commands' `--resume` advice), keeping what finished.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT, wait_for
from poolconform import testdirs
from poolconform.cli import build_parser, main
from poolconform.results import make_record
from poolconform.validation import make_case

ONE_CASE = '[matrix]\nops = ["MaxPool"]\nkernel = 2\nstride = 2\ninput_size = 4\n'
USER_TEXT = "the user's own file\n"
#: Linux's /proc: a folder that exists but where nothing can be created.
HAS_PROC = Path("/proc/self/stat").exists()


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "userfile.txt"
    path.write_text(USER_TEXT)
    return path


@pytest.fixture
def matrix(tmp_path: Path) -> Path:
    path = tmp_path / "one.toml"
    path.write_text(ONE_CASE)
    return path


def refused(capsys, *argv: str) -> str:
    """Run the CLI in-process; assert exit 2, one clean stderr line and nothing on stdout
    (refused before any work), and return that line."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    assert status == 2 and out == "", (out, err)
    assert err.count("\n") == 1 and err.startswith("poolconform") and "Traceback" not in err, err
    return err


def bad_paths(user_file: Path) -> list[str]:
    paths = [str(user_file), str(user_file / "sub")]
    return paths + (["/proc/poolconform-guards/x"] if HAS_PROC else [])


# ----------------------------------------------------------------------------- export


def test_export_into_a_file_or_below_one_is_one_line(capsys, tmp_path, user_file, matrix):
    for out in bad_paths(user_file):
        line = refused(capsys, "export", "--matrix", str(matrix), "--out", out)
        assert repr(out) in line, line
    assert user_file.read_text() == USER_TEXT
    assert main(["export", "--matrix", str(matrix), "--out", str(tmp_path / "fine")]) == 0  # the same, writable
    assert len(list((tmp_path / "fine").glob("test_*/model.onnx"))) == 1


@pytest.mark.parametrize("content", ['{"mine": 1}\n', "not json at all\n", '{"format": "someone-else/2", "cases": []}\n',
                                     '["poolconform-testdirs/1"]\n', ""])
def test_export_refuses_a_manifest_it_did_not_write(capsys, tmp_path, matrix, content):
    out = tmp_path / "folder"
    out.mkdir()
    (out / "manifest.json").write_text(content)
    line = refused(capsys, "export", "--matrix", str(matrix), "--out", str(out))
    assert "manifest.json" in line, line
    assert (out / "manifest.json").read_text() == content
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"], "export wrote before refusing"


def test_export_refuses_a_manifest_json_that_is_a_folder(capsys, tmp_path, matrix):
    out = tmp_path / "folder"
    (out / "manifest.json").mkdir(parents=True)
    (out / "manifest.json" / "keep.txt").write_text(USER_TEXT)
    refused(capsys, "export", "--matrix", str(matrix), "--out", str(out))
    assert (out / "manifest.json" / "keep.txt").read_text() == USER_TEXT


def test_export_rewrites_its_own_manifest(tmp_path, matrix):
    """The refusal is for foreign manifests only: export's own is re-exported over."""
    out = tmp_path / "corpus"
    assert main(["export", "--matrix", str(matrix), "--out", str(out)]) == 0
    first = (out / "manifest.json").read_bytes()
    assert json.loads(first)["format"] == testdirs.MANIFEST_FORMAT
    assert main(["export", "--matrix", str(matrix), "--out", str(out)]) == 0
    assert (out / "manifest.json").read_bytes() == first


def test_scan_export_into_a_file_is_one_line(capsys, tmp_path, user_file):
    model = tmp_path / "m" / "model.onnx"
    testdirs.write_case_dir(make_case("MaxPool", (1, 1, 4, 4), kernel=2, strides=2), model.parent)
    for target in bad_paths(user_file):
        line = refused(capsys, "scan", str(model), "--backends", "onnxruntime-cpu", "--out", str(tmp_path / "o"),
                       "--export", target)
        assert repr(target) in line, line
    assert user_file.read_text() == USER_TEXT


# ----------------------------------------------------------------------------- env


def test_env_create_in_a_file_is_one_line(capsys, user_file):
    for folder in bad_paths(user_file):
        line = refused(capsys, "env", "create", "ok", "--dir", folder)
        assert repr(folder) in line, line
    assert user_file.read_text() == USER_TEXT


# ----------------------------------------------------------------------------- bench

TINY_BENCH = ("bench", "--backends", "onnxruntime-cpu", "--op", "MaxPool", "--shape", "1x1x8x8", "--repeat", "3")


def _not_plain_files(tmp_path: Path, user_file: Path) -> list[str]:
    """A link to the user's file and /dev/null: a whole-file write would replace the path itself."""
    link = tmp_path / "link.json"
    link.symlink_to(user_file)
    return [str(link), *(["/dev/null"] if Path("/dev/null").is_char_device() else [])]


def test_bench_refuses_an_unwritable_json_before_timing(capsys, tmp_path, user_file):
    for target in ["/", str(tmp_path), *bad_paths(user_file)[1:], *_not_plain_files(tmp_path, user_file)]:
        status = main([*TINY_BENCH, "--json", target])
        out, err = capsys.readouterr()
        assert status == 2 and err.count("\n") == 1 and repr(target) in err, err
        assert out == "", "refused only after timing (the table was printed)"
    assert user_file.read_text() == USER_TEXT and (tmp_path / "link.json").is_symlink()
    assert not Path("/dev/null").exists() or Path("/dev/null").is_char_device()


@pytest.mark.skipif(not HAS_PROC or not os.access("/proc", os.W_OK), reason="needs a folder that says writable but is not")
def test_bench_json_that_fails_at_the_end_still_prints_the_table(tmp_path):
    from conftest import run_cli

    proc = run_cli(*TINY_BENCH, "--json", "/proc/poolconform-guards.json")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr and "/proc/poolconform-guards.json" in proc.stderr
    assert "MaxPool" in proc.stdout and "onnxruntime-cpu" in proc.stdout and " ok" in proc.stdout, proc.stdout


def test_bench_json_is_written_through_a_whole_file(tmp_path, capsys):
    target = tmp_path / "bench.json"
    target.write_text("old")
    assert main([*TINY_BENCH, "--json", str(target)]) == 0
    rows = json.loads(target.read_text())["rows"]
    assert [(r["backend"], r["status"], r["runs"]) for r in rows] == [("onnxruntime-cpu", "ok", 3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json"]  # no temporary file left


@pytest.mark.parametrize("option", ["--repeat", "--warmup"])
def test_bench_run_counts_are_bounded_at_parsing(capsys, option):
    from poolconform import bench

    for value in ("100000000000", str(bench.MAX_RUNS + 1)):
        started = time.perf_counter()
        with pytest.raises(SystemExit) as stop:
            main(["bench", "--backends", "onnxruntime-cpu", option, value])
        assert stop.value.code == 2 and time.perf_counter() - started < 10
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and option in err and str(bench.MAX_RUNS) in err, err
    args = build_parser().parse_args(["bench", option, str(bench.MAX_RUNS)])  # the bound itself is allowed
    assert getattr(args, option[2:]) == bench.MAX_RUNS


def test_run_bench_refuses_run_counts_over_the_bound():
    from poolconform import bench
    from poolconform.errors import PoolconformError

    with pytest.raises(PoolconformError, match=str(bench.MAX_RUNS)):
        bench.run_bench([], [], 10**11, 1.0)


# ----------------------------------------------------------------------------- diff


def _run_folder(folder: Path) -> Path:
    folder.mkdir()
    case = make_case("MaxPool", (1, 1, 4, 4), kernel=2, strides=2)
    record = make_record(case.id, "onnxruntime-cpu", "pass", digest="d0", params=case.describe())
    (folder / "results.jsonl").write_text(json.dumps(record) + "\n")
    return folder


def test_diff_refuses_a_json_inside_a_compared_folder(capsys, tmp_path):
    a, b = _run_folder(tmp_path / "runA"), _run_folder(tmp_path / "runB")
    before = {p: p.read_bytes() for p in (a / "results.jsonl", b / "results.jsonl")}
    (tmp_path / "linkA").symlink_to(a, target_is_directory=True)
    (tmp_path / "out.json").symlink_to(a / "results.jsonl")
    targets = [a / "results.jsonl", b / "results.jsonl", b / "new.json", a, a / ".." / "runA" / "x.json",
               tmp_path / "linkA" / "x.json", tmp_path / "out.json"]
    for target in targets:
        line = refused(capsys, "diff", str(a), str(b), "--json", str(target))
        assert "--json" in line, line
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in a.iterdir()) == ["results.jsonl"] and sorted(p.name for p in b.iterdir()) == ["results.jsonl"]
    assert main(["diff", str(a), str(b), "--json", str(tmp_path / "d.json")]) == 0  # outside both: written
    assert json.loads((tmp_path / "d.json").read_text())["exit_status"] == 0


def test_diff_refuses_an_unwritable_json_before_comparing(capsys, tmp_path, user_file):
    a, b = _run_folder(tmp_path / "runA"), _run_folder(tmp_path / "runB")
    for target in ["/", *bad_paths(user_file)[1:], *_not_plain_files(tmp_path, user_file)]:
        refused(capsys, "diff", str(a), str(b), "--json", target)  # before comparing: nothing printed
    assert user_file.read_text() == USER_TEXT and (tmp_path / "link.json").is_symlink()
    assert not Path("/dev/null").exists() or Path("/dev/null").is_char_device()


@pytest.mark.skipif(not HAS_PROC or not os.access("/proc", os.W_OK), reason="needs a folder that says writable but is not")
def test_diff_json_that_fails_at_the_end_keeps_the_printed_comparison(capsys, tmp_path):
    a, b = _run_folder(tmp_path / "runA"), _run_folder(tmp_path / "runB")
    assert main(["diff", str(a), str(b), "--json", "/proc/poolconform-guards.json"]) == 2
    out, err = capsys.readouterr()
    assert "diff: OK" in out and err.count("\n") == 1 and "/proc/poolconform-guards.json" in err, err


# ----------------------------------------------------------------------------- Ctrl-C


def _as_from_a_terminal() -> None:
    """In the child before exec: SIGINT at its default and unblocked, as a shell in a terminal
    starts a command. A test runner started in the background (`cmd &` in a script) ignores
    SIGINT, exec keeps that, and Python then installs no KeyboardInterrupt at all."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _start(*args: str, **popen) -> subprocess.Popen:
    """The CLI in its own session, so the whole group gets the SIGINT, as from a terminal."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TERM="xterm", COLUMNS="200")
    return subprocess.Popen([sys.executable, "-m", "poolconform", *args], cwd=ROOT, env=env,
                            start_new_session=True, preexec_fn=_as_from_a_terminal, **popen)


@pytest.mark.skipif(not HAS_PROC, reason="the Ctrl-C tests signal a process group (POSIX)")
def test_ctrl_c_in_export_says_what_was_written_and_lists_it(tmp_path, matrix):
    """An earlier export left the corpus's last 40 cases; Ctrl-C early in a corpus export
    leaves the first ones rewritten and the earlier ones untouched, all in the manifest."""
    out = tmp_path / "corpus"
    corpus = sorted(testdirs.corpus_cases(), key=testdirs.dir_name)
    testdirs.export_cases(corpus[-40:], out)
    earlier = {testdirs.dir_name(c) for c in corpus[-40:]}
    process = _start("export", "--out", str(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert wait_for(lambda: process.poll() is not None or len(list(out.glob("test_*"))) > 45, 120)
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr and "--resume" not in stderr, stderr
    assert "interrupted" in stderr and "replaces them" in stderr and stdout == "", stderr
    written = int(stderr.split("interrupted; ")[1].split(" of ")[0])
    assert stderr.split(" of ")[1].startswith(f"{len(corpus)} case(s)"), stderr
    assert 0 < written < len(corpus) - 40, "the export was not caught early"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == testdirs.MANIFEST_FORMAT
    on_disk = {p.name for p in out.iterdir() if p.name.startswith("test_")}
    assert on_disk == {testdirs.dir_name(c) for c in corpus[:written]} | earlier  # the half-written one is gone
    assert {e["dir"] for e in manifest["cases"]} == on_disk and manifest["count"] == len(on_disk)
    for name in sorted(on_disk)[:written + 1:10]:  # the folders left are whole
        testdirs.load_test_dir(out / name)
    # a later export into the same folder replaces them all
    assert main(["export", "--matrix", str(matrix), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "test_MaxPool-2d-k2-s2-p0-f32-n4"]


class _Terminal:
    """A pseudo-terminal whose output a thread collects (a full one would block the writer)."""

    def __init__(self) -> None:
        self.leader, self.follower = pty.openpty()
        self.seen = b""
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        while True:
            try:
                chunk = os.read(self.leader, 65536)
            except OSError:  # EIO once every writer is gone
                return
            if not chunk:
                return
            self.seen += chunk

    def text(self) -> str:
        return self.seen.decode(errors="replace")


@pytest.mark.skipif(not HAS_PROC, reason="the Ctrl-C tests signal a process group (POSIX)")
def test_ctrl_c_in_bench_prints_the_rows_already_timed():
    """Four timings: the small shape on both backends, then the large one on ORT finish in
    seconds; the Python evaluator on the large shape takes minutes and is interrupted."""
    terminal = _Terminal()  # stderr a terminal: the progress bar says what is being timed
    process = _start("bench", "--backends", "onnxruntime-cpu,onnx-reference", "--op", "MaxPool",
                     "--shape", "1x1x4x4,1x64x112x112", "--repeat", "1000", "--warmup", "1",
                     stdout=subprocess.PIPE, stderr=terminal.follower)
    os.close(terminal.follower)
    try:
        busy = b"1x64x112x112 on onnx-reference"
        assert wait_for(lambda: busy in terminal.seen or process.poll() is not None, 240), terminal.text()[-2000:]
        assert process.poll() is None, terminal.text()[-2000:]
        os.killpg(process.pid, signal.SIGINT)
        stdout, _ = process.communicate(timeout=60)
        terminal.thread.join(5)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        os.close(terminal.leader)
    stderr = terminal.text()
    assert process.returncode == 130, stderr[-2000:]
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if "poolconform" in line]
    assert len(lines) == 1 and "Traceback" not in stderr and "--resume" not in stderr, lines
    assert "interrupted after 3 of 4 timing(s)" in lines[0], lines
    table = stdout.decode()
    assert table.count("onnxruntime-cpu") == 2 and table.count("onnx-reference") == 1, table
    assert "1x64x112x112" in table and table.count(" ok") == 3, table
