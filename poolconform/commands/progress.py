"""A transient progress bar for `poolconform bench` and `bench --oracle`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


@contextmanager
def progress_bar() -> Iterator[Callable[[str, int, int], None]]:
    """A transient bar on stderr while the bench runs, when stderr is a terminal (stdout and
    --json stay clean); elsewhere nothing."""
    err = Console(stderr=True, highlight=False)
    if not err.is_terminal:
        yield lambda what, done, total: None
        return
    bar = Progress(SpinnerColumn(), TextColumn("bench: {task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=err, transient=True)
    task = bar.add_task("starting", total=None)

    def show(what: str, done: int, total: int) -> None:
        bar.update(task, description=what, completed=done, total=total or None)

    with bar:
        yield show
