"""The matrix as pytest items: `pytest --poolconform` collects one test per (case, backend).

Loaded by every pytest in an environment where poolconform is installed (entry point
pytest11), so without --poolconform it only registers its options. With it, items are
named `poolconform::<case id>[<backend>]`; the first one to run starts one worker per
backend and runs every selected item at once (the same machinery as `poolconform
run`), then each item reports its record: pass -> passed, unsupported -> skipped with
the reason, an expected disagreement -> xfailed, anything else -> failed with the detail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ROOT = "poolconform"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("poolconform", "pooling conformance matrix as tests")
    group.addoption("--poolconform", action="store_true", default=False,
                    help="collect one test per (case, backend) of the poolconform matrix")
    group.addoption("--poolconform-backends", metavar="A,B", default=None, type=_name_list,
                    help="backends to test (default: every built-in one)")
    group.addoption("--poolconform-matrix", metavar="FILE", default=None,
                    help="matrix TOML file (default: the embedded matrix)")
    group.addoption("--poolconform-timeout", metavar="SECONDS", type=_positive_float, default=60.0,
                    help="per-case limit (default 60)")
    group.addoption("--poolconform-expectations", metavar="FILE", default=None,
                    help="expectations TOML: listed disagreements are xfailed with their reason")


def _name_list(text: str) -> str:
    """As `run --backends`: a list that names nothing is refused, not read as every backend."""
    from poolconform.commands.options import name_list

    return name_list(text)


def _positive_float(text: str) -> float:
    """As `run --timeout`: 0, a negative number or NaN is refused (it failed every item)."""
    from poolconform.commands.options import positive_float

    return positive_float(text)


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("poolconform", False):
        config.addinivalue_line("markers", "poolconform: a poolconform (case, backend) conformance item")


class ConformanceFailure(Exception):
    """A record that disagrees; its detail is the whole failure text."""


class CaseItem(pytest.Item):
    """One case on one backend; the record comes from the session's shared run."""

    def __init__(self, *, case: Any, backend: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.backend = backend
        self.add_marker("poolconform")

    def runtest(self) -> None:
        record = _session_run(self.config).record(self)
        for key in ("status", "max_abs_err", "max_ulp", "expected_shape", "actual_shape"):
            self.user_properties.append((key, record.get(key)))
        status = record["status"]
        if status == "pass":
            return
        if status == "unsupported":
            reason = record.get("detail") or "no reason given"
            _skip_here(reason if reason.startswith("unsupported") else f"unsupported: {reason}")
        if record.get("expected"):
            pytest.xfail(f"expected {status}: {record.get('expected_reason', '')}")
        raise ConformanceFailure(f"{status}: {record.get('detail') or ''}".rstrip(": "))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ConformanceFailure):
            return f"{self.case.id} on {self.backend}: {excinfo.value}"
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[Path | str, int | None, str]:
        # a line number (not None): skips are reported at the item's location
        return self.path, 0, f"{self.case.id}[{self.backend}]"


def _skip_here(reason: str) -> None:
    """Skip, reported at the item (not at this file) so -rs groups by case and reason."""
    try:
        exc = pytest.skip.Exception(reason, _use_item_location=True)
    except TypeError:  # a pytest without the keyword
        exc = pytest.skip.Exception(reason)
    raise exc


class MatrixCollector(pytest.Collector):
    """The matrix under one root node, so node ids read `poolconform::<case>[<backend>]`."""

    def collect(self) -> list[pytest.Item]:
        from poolconform.matrix import load_matrix

        matrix = self.config.getoption("poolconform_matrix")
        cases = load_matrix(Path(matrix) if matrix else None).cases
        names = [spec.name for spec in _specs(self.config)]
        return [CaseItem.from_parent(self, name=f"{case.id}[{name}]", case=case, backend=name)
                for case in cases for name in names]


def _specs(config: pytest.Config) -> list[Any]:
    from poolconform.backends.base import resolve_backend_names
    from poolconform.commands.options import names

    return resolve_backend_names(names(config.getoption("poolconform_backends")) or None)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Add the matrix items before -k / -m deselection sees the list."""
    if not config.getoption("poolconform", False):
        return
    from poolconform.errors import PoolconformError

    root = MatrixCollector.from_parent(session, name=ROOT, nodeid=ROOT)
    try:
        items.extend(root.collect())
        expectations = config.getoption("poolconform_expectations")
        if expectations:
            from poolconform.expectations import load_expectations

            _session_run(config).expectations = load_expectations(Path(expectations))
    except (PoolconformError, RecursionError) as exc:  # a bad matrix or expectations file, before any run
        raise pytest.UsageError(f"poolconform: {exc}") from None


class SessionRun:
    """Runs every selected item once, on first demand, and hands out records."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.records: dict[tuple[str, str], dict] | None = None
        self.unavailable: dict[str, str] = {}
        self.expectations: list[Any] = []
        #: Expectations that cover every record of a backend (named in the terminal summary).
        self.catch_all: list[dict] = []
        self.failure: str | None = None

    def record(self, item: CaseItem) -> dict:
        if self.records is None and self.failure is None:
            try:
                self._run_all(item.session)
            except Exception as exc:
                self.failure = f"{type(exc).__name__}: {exc}"
                raise
        if self.failure is not None:
            pytest.fail(f"the poolconform run failed: {self.failure}", pytrace=False)
        assert self.records is not None
        if item.backend in self.unavailable:
            _skip_here(f"{item.backend} unavailable: {self.unavailable[item.backend]}")
        return self.records[(item.case.id, item.backend)]

    def _run_all(self, session: pytest.Session) -> None:
        from poolconform.job import oracle_job
        from poolconform.runner import RunOptions, run_jobs, start_workers

        chosen = [i for i in session.items if isinstance(i, CaseItem)]
        wanted = {(i.case.id, i.backend) for i in chosen}
        cases = list({i.case.id: i.case for i in chosen}.values())
        specs = [s for s in _specs(self.config) if any(i.backend == s.name for i in chosen)]
        options = RunOptions(timeout=self.config.getoption("poolconform_timeout"))
        workers = start_workers(specs, options)
        self.unavailable = {n: w.info.unavailable for n, w in workers.items() if w.info.unavailable}
        skip = {(c.id, s.name) for c in cases for s in specs} - wanted
        collected: list[dict] = []
        run_jobs([oracle_job(c) for c in cases], workers, options, collected.extend, skip=skip)
        if self.expectations:
            from poolconform.expectations import apply_expectations, catch_alls

            apply_expectations(collected, self.expectations)
            self.catch_all = catch_alls(collected, self.expectations)
        self.records = {(r["case"], r["backend"]): r for r in collected}


_RUN_KEY = pytest.StashKey[SessionRun]()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Name every catch-all expectation: it xfails whatever its backend does."""
    if not config.getoption("poolconform", False) or _RUN_KEY not in config.stash:
        return
    found = config.stash[_RUN_KEY].catch_all
    if found:
        from poolconform.expectations import catch_all_line

        terminalreporter.write_line(f"poolconform: warning: {catch_all_line(found)}", yellow=True)


def _session_run(config: pytest.Config) -> SessionRun:
    if _RUN_KEY not in config.stash:
        config.stash[_RUN_KEY] = SessionRun(config)
    return config.stash[_RUN_KEY]
