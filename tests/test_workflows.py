"""The shipped CI templates are valid workflow files: a broken template fails this suite.

Each file is checked against the schema its CI service publishes, as bundled with
check-jsonschema (no network), and a deliberately broken copy must be refused, so the
check cannot pass by checking nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("check_jsonschema", reason="linting the CI templates needs check-jsonschema (the test extra)")

CI = Path(__file__).resolve().parent.parent / "ci"
TEMPLATES = {"github-workflow.yml": "vendor.github-workflows", "gitlab-ci.yml": "vendor.gitlab-ci"}


def _lint(path: Path, schema: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(path)],
                          capture_output=True, text=True, check=False, timeout=120)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_shipped_template_matches_its_schema(name):
    done = _lint(CI / name, TEMPLATES[name])
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name,broken", [
    ("github-workflow.yml", ("runs-on:", "runs_on:")),  # a job without a runner
    ("gitlab-ci.yml", ("script:", "scripts:")),  # a job without a script
])
def test_a_broken_copy_is_refused(tmp_path, name, broken):
    text = (CI / name).read_text(encoding="utf-8")
    old, new = broken
    assert old in text, f"{name} no longer holds {old!r}: pick another way to break it"
    copy = tmp_path / name
    copy.write_text(text.replace(old, new), encoding="utf-8")
    done = _lint(copy, TEMPLATES[name])
    assert done.returncode == 1, done.stdout + done.stderr
