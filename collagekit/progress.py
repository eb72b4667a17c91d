"""Rich progress bars that stay quiet when stderr is not a terminal (CI logs, pipes, tests)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)


@contextmanager
def progress_bar(description: str, total: int, *, enabled: bool = True) -> Iterator[_Bar]:
    """Yields a bar: call ``bar.advance(n)`` and ``bar.info(text)`` (a short status, e.g. the loss).

    ``enabled=False`` draws nothing (e.g. on every distributed rank but the first)."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=True,
        disable=not (enabled and console.is_terminal),
    )
    with progress:
        task_id = progress.add_task(description, total=total, info="")
        yield _Bar(progress, task_id)


class _Bar:
    def __init__(self, progress: Progress, task_id) -> None:
        self._progress = progress
        self._task_id = task_id

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task_id, n)

    def info(self, text: str) -> None:
        self._progress.update(self._task_id, info=text)
