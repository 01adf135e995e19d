"""Shared test helpers: small cases and a way to run the CLI as users do."""

from __future__ import annotations

import os
import subprocess
import time
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The suite runs without poolconform's backend caches (docs/speed.md), so no test depends on what
# an earlier test or run left in ~/.cache, and none writes there; the cache tests turn them on.
os.environ.setdefault("POOLCONFORM_NO_CACHE", "1")

#: The seed tutorial's printed outputs for its 4x4 map (SEED.md): every backend must match exactly.
SEED_PRINTED = {
    "MaxPool": [[9.0, 7.0], [8.0, 6.0]],
    "AveragePool": [[4.25, 4.25], [4.25, 3.5]],
    "GlobalMaxPool": [[9.0]],
    "GlobalAveragePool": [[4.0625]],
}


def run_and_compare(backend, case):
    """Run `case` on a backend in this process and judge it against the float64 oracle."""
    from poolconform.compare import compare_outputs
    from poolconform.inputs import make_inputs
    from poolconform.oracle import reference_outputs

    inputs = make_inputs(case)
    actual = backend.run(case, inputs)
    return actual, compare_outputs(case, reference_outputs(case, inputs), actual, inputs)


def sweep_against_oracle(backend, cases) -> tuple[int, list]:
    """(cases the backend supports, failures among them); every refusal must be one clean line."""
    supported, failures = 0, []
    for case in cases:
        reason = backend.supports(case)
        if reason is not None:
            assert reason.startswith("unsupported: ") and "\n" not in reason, (case.id, reason)
            continue
        supported += 1
        _, result = run_and_compare(backend, case)
        if result.status != "pass":
            failures.append((case.id, result.status, result.detail))
    return supported, failures


def make_model(graph, opset: int):
    """A hand-built test model with the IR version poolconform's exporter writes for `opset`.

    onnx's own default is the newest IR it knows, which older runtimes (ORT 1.23 with onnx 1.19+)
    refuse to load; the exporter's rule keeps every hand-built model readable wherever it installs.
    """
    from onnx import helper

    from poolconform.onnx_export import ir_version_for

    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version_for(opset))


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600):
    """`python -m poolconform ARGS` in a subprocess: exit status, stdout and stderr as a user sees them."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), full_env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "poolconform", *args],
        cwd=cwd or ROOT, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def tiny_matrix(tmp_path: Path) -> Path:
    """A matrix of a few dozen cases that runs in seconds."""
    path = tmp_path / "tiny.toml"
    path.write_text(
        "[matrix]\n"
        'ops = ["MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool"]\n'
        "kernel = [2, 3]\nstride = [1, 2]\ninput_size = [5, 6]\npads = [0, 1]\nceil_mode = [false, true]\n"
        "batch = 2\nchannels = 2\n"
    )
    return path


def load(name: str):
    """A built-in backend, loaded in this process."""
    from poolconform.backends.base import BUILTIN_BACKENDS, BackendSpec

    return BackendSpec(name, BUILTIN_BACKENDS[name]).load()


def usable(name: str, *modules: str):
    """The backend, or a skip naming the missing module or the backend's own reason."""
    for module in modules:
        pytest.importorskip(module, reason=f"{name} needs {module}")
    backend = load(name)
    reason = backend.available()
    if reason:
        pytest.skip(f"{name}: {reason}")
    return backend


def wait_for(condition, seconds: float) -> bool:
    """Poll `condition` every 5 ms until it holds (True) or `seconds` pass (False)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return False

