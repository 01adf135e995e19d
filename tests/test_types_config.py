"""The type check silences nothing of ours: pyproject's [tool.mypy] and the CI line that runs it."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]


def _modules(override: dict) -> list[str]:
    module = override["module"]
    return [module] if isinstance(module, str) else list(module)


def test_no_module_of_ours_is_silenced():
    assert "ignore_errors" not in CONFIG and "ignore_missing_imports" not in CONFIG
    assert CONFIG.get("follow_imports", "normal") == "normal"
    assert CONFIG["check_untyped_defs"] is True
    for override in CONFIG.get("overrides", []):
        assert set(override) == {"module", "ignore_missing_imports"}, override
        ours = [m for m in _modules(override) if m.split(".")[0] == "poolconform"]
        assert not ours, f"an override names our own modules: {ours}"


def test_only_untyped_third_party_imports_are_excused():
    excused = {m for o in CONFIG.get("overrides", []) for m in _modules(o)}
    # numpy, onnx, torch, rich, jinja2, junitparser and ml_dtypes ship types: they must be checked.
    for typed in ("numpy", "onnx", "torch", "rich", "jinja2", "junitparser", "ml_dtypes"):
        assert not {typed, f"{typed}.*"} & excused, typed


def test_ci_checks_types_before_the_tests():
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    install = next(i for i, ln in enumerate(lines) if 'pip install -q -e ".[all,test]"' in ln)
    mypy = lines.index("python -m mypy poolconform")
    assert install < mypy < lines.index("python -m pytest")
    test_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    assert any(req.startswith("mypy") for req in test_extra)
