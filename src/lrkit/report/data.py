"""Read the runs of one task, with their series, out of a results store."""

from __future__ import annotations

from pathlib import Path

from lrkit.experiments.store import ResultsStore, StoreError
from lrkit.report.summary import RunSeries


def load_runs(db_path: str | Path, *, task: str | None = None) -> list[RunSeries]:
    """Every run of `task` in the store at `db_path`, with step and epoch series.

    Without `task` the store must hold exactly one task. The store is opened read-only (a
    read-only file or directory is fine) and never created or changed here: a missing file raises
    `FileNotFoundError`; a foreign or corrupt file raises `StoreError`; an unknown task, several
    tasks or an empty store raise `ValueError`.
    """
    path = Path(db_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such results store (run `lrkit compare ... --db {path}` first)")
    if path.stat().st_size == 0:
        raise StoreError(f"{path} is an empty file, not an lrkit results store")
    with ResultsStore(path, readonly=True) as store:
        rows = store.runs()
        tasks = sorted({row.task for row in rows})
        if not tasks:
            raise ValueError(f"{path} holds no runs yet")
        if task is None:
            if len(tasks) > 1:
                raise ValueError(f"{path} holds several tasks ({', '.join(tasks)}); choose one with task=/--task")
            task = tasks[0]
        elif task not in tasks:
            raise ValueError(f"task {task!r} is not in {path}; it holds: {', '.join(tasks)}")
        return [RunSeries(row=row, steps=store.step_series(row.key)) for row in rows if row.task == task]
