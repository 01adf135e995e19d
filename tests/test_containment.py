"""Containment: a backend that aborts, hangs or runs out of memory costs only its own case.

The misbehaving backends are real third-party plug-ins (tests/plugins/), registered through
the `poolconform.backends` entry-point group by a throwaway *.dist-info on PYTHONPATH, and
driven through the real CLI in a subprocess.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from poolconform.matrix import expand

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "tests" / "plugins"

ENTRY_POINTS = """\
[poolconform.backends]
test-echo = poolconform_testplugins:EchoBackend
test-abort = poolconform_testplugins:AbortBackend
test-hang = poolconform_testplugins:HangBackend
test-oom = poolconform_testplugins:OomBackend
test-broken = poolconform_testplugins_broken:BrokenBackend
test-no-class = poolconform_testplugins:NoSuchBackend
"""

MATRIX = """\
[matrix]
ops = ["MaxPool"]
kernel = [1, 2, 3]
stride = [1, 2]
input_size = [5, 6]
"""


def install_plugins(root: Path) -> dict[str, str]:
    """A fake installed distribution whose entry points name the test plug-ins; returns its env."""
    dist = root / "site" / "poolconform_testplugins-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: poolconform-testplugins\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root / "site"), str(PLUGINS), str(REPO)])
    return env


def poolconform(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """The CLI in a subprocess; no core files from the aborting plug-in."""

    def no_core() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return subprocess.run([sys.executable, "-m", "poolconform", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=no_core)


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> tuple[dict[str, str], Path]:
    root = tmp_path_factory.mktemp("plugins")
    (root / "m.toml").write_text(MATRIX)
    return install_plugins(root), root


def test_plugins_are_listed_through_the_entry_point_group(plugin_env):
    env, root = plugin_env
    names = "onnxruntime-cpu,test-echo,test-abort,test-hang,test-oom,test-broken,test-no-class"
    result = poolconform(["backends", "--json", "--backends", names], env, root)
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    for name in ("test-echo", "test-abort", "test-hang", "test-oom"):
        assert rows[name]["source"] == "plug-in" and rows[name]["available"], rows[name]
    assert rows["onnxruntime-cpu"]["source"] == "built-in"
    broken = rows["test-broken"]
    assert not broken["available"] and broken["source"] == "plug-in"
    assert "poolconform_framework_that_is_not_installed" in broken["reason"]
    assert "NoSuchBackend" in rows["test-no-class"]["reason"]


@pytest.mark.slow
def test_abort_hang_and_oom_cost_one_case_each(plugin_env):
    env, root = plugin_env
    cases = [c.id for c in expand({"ops": ["MaxPool"], "kernel": [1, 2, 3], "stride": [1, 2],
                                   "input_size": [5, 6]}).cases]
    assert len(cases) == 12
    # two victims per backend, the first early in the batch and the second later, so the
    # restarted worker must pick up the rest of the batch
    victims = [cases[2], cases[7]]
    env = dict(env, POOLCONFORM_TESTPLUGIN_TRIGGER=",".join(victims))
    out = root / "contained"
    result = poolconform(["run", "--matrix", "m.toml", "--backends", "test-abort,test-hang,test-oom,test-echo",
                          "--timeout", "2", "--out", str(out), "--quiet"], env, root)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    status = {(r["case"], r["backend"]): r for r in records}
    backends = ("test-abort", "test-hang", "test-oom", "test-echo")
    assert sorted(status) == sorted((c, b) for c in cases for b in backends)  # each exactly once
    assert len(records) == len(status)
    for case in victims:
        assert status[case, "test-abort"]["status"] == "crash"
        assert "SIGABRT" in status[case, "test-abort"]["detail"]
        assert status[case, "test-hang"]["status"] == "timeout"
        assert "2 s" in status[case, "test-hang"]["detail"]
        assert status[case, "test-oom"]["status"] == "error"
        assert status[case, "test-oom"]["detail"].startswith("MemoryError: cannot allocate")
    for (case, backend), record in status.items():
        if case not in victims or backend == "test-echo":
            assert record["status"] == "pass", record
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_status"] == 1
    assert summary["backends"]["test-abort"]["restarts"] == 2
    assert summary["backends"]["test-hang"]["restarts"] == 2
    assert summary["backends"]["test-oom"]["restarts"] == 0  # an exception is not a crash
    assert summary["counts"]["crash"] == 2 and summary["counts"]["timeout"] == 2


def test_a_plugin_that_fails_to_import_is_skipped_with_its_reason(plugin_env):
    env, root = plugin_env
    out = root / "broken"
    result = poolconform(["run", "--matrix", "m.toml", "--backends", "test-echo,test-broken", "--out", str(out)],
                         env, root)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    shown = result.stdout + result.stderr  # named once, in the summary's "not run" lines
    assert sum("test-broken" in line for line in shown.splitlines()) == 1 and "not run: test-broken:" in result.stdout
    assert "poolconform_framework_that_is_not_installed" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["pass"] == 12 and summary["records"] == 12
    assert "poolconform_framework_that_is_not_installed" in summary["backends"]["test-broken"]["unavailable"]


def test_requiring_a_broken_plugin_is_a_refusal(plugin_env):
    env, root = plugin_env
    result = poolconform(["run", "--matrix", "m.toml", "--backends", "test-echo", "--require", "test-broken",
                          "--out", str(root / "required")], env, root)
    assert result.returncode == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "test-broken" in lines[0] and "Traceback" not in result.stderr
