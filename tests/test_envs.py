"""Backends in their own environments: the wire format, --backend-python, `env create`,
and one backend at two versions in one run (README "Backends in their own environments")."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from poolconform import wire
from poolconform.backends.base import resolve_backend_names
from poolconform.envs import backend_pythons, create_env
from poolconform.errors import PoolconformError

ORT_OLD = "1.23.2"
MATRIX = "[matrix]\nops = [\"MaxPool\", \"AveragePool\"]\nkernel = [2, 3]\nstride = 1\ninput_size = 6\npads = [0, 1]\n"


def test_wire_carries_arrays_as_bytes_not_pickles() -> None:
    import ml_dtypes

    arrays = [np.arange(12, dtype=np.float16).reshape(3, 4).T, np.array([1, 2], dtype=np.int64),
              np.ones((2, 0), np.float32), np.array([1.5, -2], dtype=ml_dtypes.bfloat16)]
    frame = wire.encode(("batch", arrays, np.float32(2.5), np.dtype("int8")))
    assert b"numpy" not in frame and b"multiarray" not in frame  # no numpy class in the pickle
    kind, back, scalar, dtype = wire.decode(frame)
    assert kind == "batch" and dtype == np.dtype("int8") and scalar == np.float32(2.5)
    for sent, got in zip(arrays, back):
        assert got.dtype == sent.dtype and got.shape == sent.shape and np.array_equal(got, sent)
        assert got.flags.writeable  # a backend may write into its inputs
    with pytest.raises(TypeError, match="object array"):
        wire.encode(np.array([None]))


def test_tagged_name_needs_its_interpreter() -> None:
    with pytest.raises(PoolconformError, match=r"needs an interpreter: --backend-python onnxruntime-cpu@1\.23=PATH"):
        resolve_backend_names(["onnxruntime-cpu@1.23"])
    with pytest.raises(PoolconformError, match="unknown backend 'nosuch@1'"):
        resolve_backend_names(["nosuch@1"], {"nosuch@1": sys.executable})
    spec, = resolve_backend_names(["onnxruntime-cpu@1.23"], {"onnxruntime-cpu@1.23": sys.executable})
    assert (spec.name, spec.target, spec.python) == ("onnxruntime-cpu@1.23", resolve_backend_names(["onnxruntime-cpu"])[0].target, sys.executable)


def test_config_file_and_command_line(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.poolconform.backend-python]\n"onnx-reference@a" = "missing/bin/python"\n'
        f'"onnxruntime-cpu@b" = "{sys.executable}"\n')
    assert backend_pythons(None, ["onnxruntime-cpu@b"], tmp_path) == {"onnxruntime-cpu@b": sys.executable}
    with pytest.raises(PoolconformError, match=r"pyproject.toml \[tool.poolconform.backend-python\]: interpreter"):
        backend_pythons(None, ["onnx-reference@a"], tmp_path)  # checked only when that backend is wanted
    assert backend_pythons([("onnx-reference@a", sys.executable)], ["onnx-reference@a"], tmp_path) == {
        "onnx-reference@a": sys.executable}  # the command line wins


def test_create_env_removes_a_failed_build(tmp_path: Path) -> None:
    steps: list[list[str]] = []

    def fail_second(command: list[str]) -> int:
        steps.append(command)
        (tmp_path / "e").mkdir(exist_ok=True)
        return 0 if len(steps) == 1 else 3

    with pytest.raises(PoolconformError, match="exited with 3"):
        create_env("e", ["onnxruntime==9"], root=tmp_path, use_uv=False, run=fail_second)
    assert not (tmp_path / "e").exists()
    assert steps[1][1:4] == ["-m", "pip", "install"] and "onnxruntime==9" in steps[1]
    assert steps[1][4:6] == ["-e", str(Path(__file__).resolve().parent.parent)]  # this very poolconform
    with pytest.raises(PoolconformError, match="environment name"):
        create_env("../x", [], root=tmp_path, run=fail_second)


def _run_two(tmp_path: Path, python: str, *extra: str):
    matrix = tmp_path / "m.toml"
    matrix.write_text(MATRIX)
    out = tmp_path / "out"
    result = run_cli("run", "--matrix", str(matrix), "--backends", "onnxruntime-cpu,onnxruntime-cpu@other",
                     "--backend-python", f"onnxruntime-cpu@other={python}", "--out", str(out), "--quiet", *extra,
                     cwd=tmp_path)
    return result, out


def test_backend_python_naming_this_interpreter(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    import onnxruntime

    result, out = _run_two(tmp_path, sys.executable)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backends"]["onnxruntime-cpu@other"]["version"] == onnxruntime.__version__
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    by_backend = {b: [r for r in records if r["backend"] == b] for b in ("onnxruntime-cpu", "onnxruntime-cpu@other")}
    assert len(by_backend["onnxruntime-cpu"]) == len(by_backend["onnxruntime-cpu@other"]) > 0
    assert {r["status"] for r in by_backend["onnxruntime-cpu@other"]} == {"pass"}


def test_a_finding_in_its_own_environment_is_shrunk_and_explained_there(tmp_path: Path) -> None:
    """A finding of a backend run under --backend-python names that interpreter: the shrink ran
    its worker there (it shrank), and the reproduce line carries --backend-python, shell-quoted,
    so `explain` reruns that install and not this one's (or none). The summary keeps the path,
    and a merge of shards keeps it too."""
    pytest.importorskip("onnx.reference", reason="onnx is not installed")
    matrix = tmp_path / "m.toml"
    matrix.write_text('[matrix]\nops = ["AveragePool"]\nkernel = 3\nstride = 3\ninput_size = [4, 7]\n'
                      'ceil_mode = true\nbatch = 2\nchannels = 3\n')
    out = tmp_path / "out"
    name = "onnx-reference@mine"
    result = run_cli("run", "--matrix", str(matrix), "--backends", name, "--backend-python", f"{name}={sys.executable}",
                     "--out", str(out), "--quiet", cwd=tmp_path)
    assert result.returncode == 1, result.stderr  # onnx's ceil_mode average (README "Findings")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backends"][name]["python"] == sys.executable
    [finding] = [f for f in summary["findings"] if f["backend"] == name]
    assert finding["python"] == sys.executable and finding["shrunk"] is True, finding
    assert finding["reproduce"] == (f"poolconform explain {finding['minimal_case']} --backends {name} "
                                    f"--backend-python {shlex.quote(name + '=' + sys.executable)}")
    words = shlex.split(finding["reproduce"])  # as a shell reads the line
    assert words[0] == "poolconform"
    shown = run_cli(*words[1:], cwd=tmp_path)
    assert shown.returncode == 1 and "mismatch" in shown.stdout, (shown.stdout[-800:], shown.stderr[-800:])


@pytest.mark.parametrize("bad", ["/no/such/python", "NOEQUALS", str(Path(__file__))])
def test_bad_backend_python_is_one_line_exit_2(tmp_path: Path, bad: str) -> None:
    value = bad if bad == "NOEQUALS" else f"onnxruntime-cpu@x={bad}"
    result = run_cli("run", "--backends", "onnxruntime-cpu@x", "--backend-python", value, "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr


def test_interpreter_without_poolconform_is_unavailable(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    result, out = _run_two(tmp_path, str(bare / "bin" / "python"), "--require", "onnxruntime-cpu@other")
    assert result.returncode == 2, result.stderr
    assert "cannot import poolconform" in result.stderr


@pytest.mark.slow
@pytest.mark.timeout(1200)  # the build alone took 2 min here
def test_two_onnxruntime_releases_in_one_run(tmp_path: Path) -> None:
    """ORT 1.23 on numpy 1.x in its own environment beside this ORT on numpy 2.x."""
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    probe = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                            "-d", str(tmp_path / "dl"),
                            f"onnxruntime=={ORT_OLD}", "numpy<2"], capture_output=True, text=True, timeout=300)
    if probe.returncode != 0:
        pytest.skip(f"no wheels of onnxruntime=={ORT_OLD} and numpy<2 for this Python: "
                    f"{probe.stderr.strip().splitlines()[-1:]}")
    made = run_cli("env", "create", "ort-old", f"onnxruntime=={ORT_OLD}", "numpy<2", "--dir", str(tmp_path / "envs"),
                   timeout=900)
    assert made.returncode == 0, made.stderr[-2000:]
    python = made.stdout.splitlines()[0]
    assert made.stdout.splitlines()[1] == f"--backend-python ort-old={python}"
    numpy_there = subprocess.run([python, "-c", "import numpy; print(numpy.__version__)"], capture_output=True, text=True)
    assert numpy_there.stdout.startswith("1."), numpy_there
    result, out = _run_two(tmp_path, python)
    assert result.returncode == 0, result.stderr
    versions = {name: info["version"] for name, info in json.loads((out / "summary.json").read_text())["backends"].items()}
    assert versions == {"onnxruntime-cpu": ort.__version__, "onnxruntime-cpu@other": ORT_OLD}
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    old = [r for r in records if r["backend"] == "onnxruntime-cpu@other"]
    assert old and {r["status"] for r in old} == {"pass"}
    assert len(old) == len([r for r in records if r["backend"] == "onnxruntime-cpu"])
