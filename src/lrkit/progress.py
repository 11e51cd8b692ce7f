"""One progress bar for every long loop in lrkit (range test, fine-tuning, sweeps).

`progress_bar` is a context manager that yields a `ProgressBar`; ``bar.advance()`` moves it one
unit, optionally with a new description. Disabled, it draws nothing and costs nothing, so
library code calls it the same way whether the user asked for a bar or not. The bar writes to
stderr through rich, never to stdout (so ``--json`` output stays parseable).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class ProgressBar:
    """A handle on one running bar; `advance` is a no-op when the bar is disabled."""

    def __init__(self, progress: Progress | None, label: str, total: int):
        self._progress = progress
        self._task = progress.add_task(label, total=total) if progress is not None else None

    def advance(self, description: str | None = None) -> None:
        if self._progress is None or self._task is None:
            return
        if description is None:
            self._progress.advance(self._task)
        else:
            self._progress.update(self._task, advance=1, description=description)


@contextlib.contextmanager
def progress_bar(label: str, total: int, *, enabled: bool = True, transient: bool = True) -> Iterator[ProgressBar]:
    """A rich bar ``label [=====     ] 12/40 0:00:03`` over `total` units while the block runs.

    `transient` bars disappear when done (the finder's, the fine-tuning stages'); a sweep keeps
    its bar on screen as a record of what ran.
    """
    if not enabled:
        yield ProgressBar(None, label, total)
        return
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), transient=transient, console=Console(stderr=True))
    with progress:
        yield ProgressBar(progress, label, total)
