"""What keeps the suite honest on every Python and dependency version the package claims."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from conftest import ROOT
from versioned import known_behaviour, pinned_finding

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib


def _floors_file() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "ci" / "floors.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[req.name.lower().replace("_", "-")] = Version(spec.version)
    return pins


def _pyproject_floors() -> dict[str, Version]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floors = {}
    for line in project["dependencies"] + project["optional-dependencies"]["cpu"] + project["optional-dependencies"]["test"]:
        req = Requirement(line)
        (low,) = [s for s in req.specifier if s.operator == ">="]
        floors[req.name.lower().replace("_", "-")] = Version(low.version)
    return floors


def test_floors_file_pins_exactly_the_pyproject_floors() -> None:
    """ci/floors.txt is what the floors CI job installs: it must be the floors pyproject claims."""
    assert _floors_file() == _pyproject_floors()


def test_ci_runs_every_python_job_then_the_readme_test_command() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    last = [line.strip() for line in script.splitlines() if line.strip() and not line.lstrip().startswith("#")][-1]
    assert last == "python -m pytest"
    assert 'for job in "base 3.10" "base 3.13" "floors"; do' in script and "ci/python-matrix.sh $job" in script
    assert script.index("ci/python-matrix.sh $job") < script.index("python -m pytest")


def test_a_version_outside_the_known_ranges_names_the_finding_and_the_version() -> None:
    table = {("0.0.1", "0.0.2"): "old"}
    with pytest.raises(pytest.fail.Exception) as exc:
        known_behaviour("some finding", "pytest", table)
    message = str(exc.value)
    assert "finding 'some finding'" in message and f"pytest {pytest.__version__}" in message
    assert "[0.0.1, 0.0.2)" in message


def test_a_changed_behaviour_names_the_finding_and_the_version() -> None:
    behaviour = known_behaviour("pinned", "pytest", {("1", "2"): "one", ("2", None): "two or later"})
    assert behaviour == "two or later"
    with pytest.raises(pytest.fail.Exception, match=f"finding 'pinned' changed in pytest {pytest.__version__}"):
        with pinned_finding("pinned", "pytest", behaviour):
            assert behaviour == "one"
    with pinned_finding("pinned", "pytest", behaviour):  # an unchanged behaviour passes through
        assert behaviour == "two or later"


@pytest.mark.parametrize("ci", [None, "false"])
def test_openvino_is_imported_with_its_telemetry_declined(ci: str | None) -> None:
    """No usage event and no forking sender thread; the user's CI variable is left as it was."""
    pytest.importorskip("openvino_telemetry", reason="openvino is not installed")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    code = (
        "import os, threading\n"
        "from poolconform.backends.openvino_backend import OpenVINOCPU\n"
        "assert OpenVINOCPU().available() is None\n"
        "import openvino_telemetry as tm\n"
        "print(tm.Telemetry().consent, os.environ.get('CI'), threading.active_count())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    consent, ci_after, threads = proc.stdout.split()
    assert consent == "False" and ci_after == str(ci) and threads == "1", proc.stdout
    assert "fork" not in proc.stderr, proc.stderr
