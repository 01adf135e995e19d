"""The matrix as pytest items: `pytest --poolconform` (adds nothing unless asked)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("poolconform", "pooling conformance matrix as tests")
    group.addoption("--poolconform", action="store_true", default=False,
                    help="collect one test per (case, backend) of the poolconform matrix")
    group.addoption("--poolconform-backends", metavar="A,B", default=None,
                    help="backends to test (default: every built-in one)")
    group.addoption("--poolconform-matrix", metavar="FILE", default=None,
                    help="matrix TOML file (default: the embedded matrix)")
    group.addoption("--poolconform-timeout", metavar="SECONDS", type=float, default=60.0,
                    help="per-case limit (default 60)")
