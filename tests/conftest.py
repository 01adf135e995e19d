"""Shared test helpers: small cases and a way to run the CLI as users do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: The seed tutorial's printed outputs for its 4x4 map (SEED.md): every backend must match exactly.
SEED_PRINTED = {
    "MaxPool": [[9.0, 7.0], [8.0, 6.0]],
    "AveragePool": [[4.25, 4.25], [4.25, 3.5]],
    "GlobalMaxPool": [[9.0]],
    "GlobalAveragePool": [[4.0625]],
}


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
