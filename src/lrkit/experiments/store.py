"""SQLite results store: every run, its configuration, series and environment.

One file, WAL journal. A run is written in one transaction, so a killed sweep (even
``kill -9``) keeps every completed run and none half-written; a re-run asks `completed_keys`
and trains only what is missing. A file that is not an lrkit store is refused, never altered.
A schema-1 store is migrated in place, in one transaction; a newer schema is refused.

The runs table holds `RunResult`'s fields under their own names (dicts as JSON), plus the
final / best metric derived from the epoch series, for queries; the list fields live in the
steps and epochs tables. Schema (version 2)::

    meta(key PRIMARY KEY, value)                -- 'lrkit_schema' = '2'
    runs(id, key UNIQUE, task, strategy, config JSON, seed, epochs, batch_size,
         metric_name, higher_is_better, status, base_lr, wall_time, final_metric,
         best_metric, best_epoch, environment JSON, created_at, steps_per_epoch)
    steps(run_id, step, lr, loss)               -- one row per optimizer update
    epochs(run_id, epoch, train_loss, val_loss, metric, elapsed)

Version 2 added ``runs.steps_per_epoch`` and the strategy's ``baseline`` flag in ``config``.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, get_origin, get_type_hints

import numpy as np

from lrkit.experiments.results import RunResult

SCHEMA_VERSION = "2"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    task TEXT NOT NULL,
    strategy TEXT NOT NULL,
    config TEXT NOT NULL,
    seed INTEGER NOT NULL,
    epochs INTEGER NOT NULL,
    batch_size INTEGER NOT NULL,
    metric_name TEXT NOT NULL,
    higher_is_better INTEGER NOT NULL,
    status TEXT NOT NULL,
    base_lr REAL,
    wall_time REAL NOT NULL,
    final_metric REAL,
    best_metric REAL,
    best_epoch INTEGER NOT NULL,
    environment TEXT NOT NULL,
    created_at TEXT NOT NULL,
    steps_per_epoch INTEGER  -- NULL only for a diverged run migrated from schema 1
);
CREATE TABLE IF NOT EXISTS steps (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    lr REAL NOT NULL,
    loss REAL,
    PRIMARY KEY (run_id, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS epochs (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    train_loss REAL,
    val_loss REAL,
    metric REAL,
    elapsed REAL NOT NULL,
    PRIMARY KEY (run_id, epoch)
) WITHOUT ROWID;
"""

_TYPES = get_type_hints(RunResult)
#: RunResult's fields kept in the runs table (its list fields are the steps and epochs tables).
_RUN_COLUMNS = tuple(f.name for f in fields(RunResult) if get_origin(_TYPES[f.name]) is not list)
#: steps / epochs table column -> the RunResult list field it holds, after the run id and the step / epoch
#: (epochs are numbered from 1, one row per entry of the lists)
_STEP_SERIES = {"lr": "step_lr", "loss": "step_loss"}
EPOCH_SERIES = {"train_loss": "epoch_train_loss", "val_loss": "epoch_val_loss", "metric": "epoch_metric",
                "elapsed": "epoch_time"}

#: Schema 1 had no baseline flag: its summary took, per task, the first of these names present.
_SCHEMA_1_BASELINES = ("constant", "constant-finder")

# A complete run ran every epoch, so its step rows / epochs is exact; a diverged run's last
# epoch is partial, so its length stays unknown (NULL).
_FILL_STEPS_PER_EPOCH = """
UPDATE runs SET steps_per_epoch = (SELECT COUNT(*) FROM steps WHERE run_id = runs.id) / epochs
WHERE status = 'complete' AND epochs > 0 AND (SELECT COUNT(*) FROM steps WHERE run_id = runs.id) % epochs = 0
"""


class StoreError(ValueError):
    """The file is not a usable lrkit results store (corrupt, foreign or newer schema)."""


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _encode(value: Any) -> Any:
    """A field as an SQLite value: dicts as JSON, bools as 0/1, non-finite floats as NULL."""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return _finite_or_none(value)
    return value


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _series_rows(run_id: int | None, run: RunResult, series: dict[str, str], *, first: int) -> Iterator[tuple]:
    """(run id, step or epoch number from `first`, values...) rows of one table (non-finite -> NULL)."""
    columns = zip(*(getattr(run, name) for name in series.values()))
    return ((run_id, number, *map(_finite_or_none, values)) for number, values in enumerate(columns, first))


def _decode(name: str, value: Any) -> Any:
    """RunResult field `name` from its SQLite value (the inverse of `_encode`; NULL floats read as NaN)."""
    kind = _TYPES[name]
    if get_origin(kind) is dict:
        return json.loads(value)
    if kind is bool:
        return bool(value)
    if kind is float and value is None:
        return math.nan
    return value


class ResultsStore:
    """Open (or create) the store at `path`; use as a context manager or call `close()`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        creating = not self.path.exists() or self.path.stat().st_size == 0
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0)
            self._db.execute("PRAGMA foreign_keys = ON")
            if creating:
                self._create()
            else:
                self._check()
            self._db.execute("PRAGMA journal_mode = WAL")
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{self.path} is not an lrkit results store (SQLite says: {err}); "
                             "choose another --db path") from None

    def _create(self) -> None:
        with self._db:
            self._db.executescript(_SCHEMA)
            self._db.execute("INSERT INTO meta VALUES ('lrkit_schema', ?)", (SCHEMA_VERSION,))

    def _check(self) -> None:
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables:
            raise StoreError(f"{self.path} is an SQLite file but not an lrkit results store "
                             f"(tables: {', '.join(sorted(tables)) or 'none'}); refusing to touch it")
        version = self._version()
        if version not in ("1", SCHEMA_VERSION):
            raise StoreError(f"{self.path} has lrkit schema {version or 'unknown'}, this lrkit reads schema "
                             f"{SCHEMA_VERSION} (and migrates schema 1)")
        if self._db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise StoreError(f"{self.path} is corrupt (SQLite quick_check failed)")
        if version == "1":
            self._migrate_from_1()

    def _version(self) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key='lrkit_schema'").fetchone()
        return row[0] if row else None

    def _migrate_from_1(self) -> None:
        """Schema 1 -> 2 in one transaction: add ``runs.steps_per_epoch`` (known for complete
        runs), write schema 1's baseline choice into the configs, bump the version."""
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                if self._version() == "1":  # another process may have migrated it meanwhile
                    self._db.execute("ALTER TABLE runs ADD COLUMN steps_per_epoch INTEGER")
                    self._db.execute(_FILL_STEPS_PER_EPOCH)
                    self._flag_schema_1_baselines()
                    self._db.execute("UPDATE meta SET value = ? WHERE key = 'lrkit_schema'", (SCHEMA_VERSION,))
        except sqlite3.Error as err:
            raise StoreError(f"{self.path} has lrkit schema 1 and could not be migrated to schema "
                             f"{SCHEMA_VERSION}; it is unchanged (SQLite says: {err})") from None

    def _flag_schema_1_baselines(self) -> None:
        """Set ``config["baseline"]`` on every run: true for the strategy schema 1 took as its task's baseline."""
        rows = self._db.execute("SELECT id, task, strategy, config FROM runs").fetchall()
        present: dict[str, set[str]] = {}
        for _, task, strategy, _ in rows:
            present.setdefault(task, set()).add(strategy)
        chosen = {task: next((name for name in _SCHEMA_1_BASELINES if name in names), None)
                  for task, names in present.items()}
        self._db.executemany("UPDATE runs SET config = ? WHERE id = ?", [
            (_encode({**json.loads(config), "baseline": strategy == chosen[task]}), run_id)
            for run_id, task, strategy, config in rows])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------
    def save(self, run: RunResult) -> None:
        """Store a run and its series in one transaction. A key already stored is replaced
        (re-running a finished trial on purpose)."""
        values = {name: getattr(run, name) for name in _RUN_COLUMNS}
        values.update(final_metric=run.final_metric, best_metric=run.best_metric, best_epoch=run.best_epoch,
                      created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        with self._db:
            self._db.execute("DELETE FROM runs WHERE key = ?", (run.key,))
            run_id = self._db.execute(f"INSERT INTO runs ({', '.join(values)}) VALUES ({_marks(len(values))})",
                                      [_encode(value) for value in values.values()]).lastrowid
            self._db.executemany(f"INSERT INTO steps VALUES ({_marks(2 + len(_STEP_SERIES))})",
                                 _series_rows(run_id, run, _STEP_SERIES, first=0))
            self._db.executemany(f"INSERT INTO epochs VALUES ({_marks(2 + len(EPOCH_SERIES))})",
                                 _series_rows(run_id, run, EPOCH_SERIES, first=1))

    # -- reading ---------------------------------------------------------------------
    def completed_keys(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT key FROM runs")}

    def runs(self, task: str | None = None) -> list[RunResult]:
        """Stored runs (optionally of one task), in insertion order, with their epoch series; the
        step series (one value per update) are left empty: read them with `step_series`."""
        where, args = (" WHERE task = ?", (task,)) if task else ("", ())
        rows = self._db.execute(f"SELECT id, {', '.join(_RUN_COLUMNS)} FROM runs{where} ORDER BY id", args)
        epochs = self._epoch_lists(where, args)
        return [RunResult(**{name: _decode(name, value) for name, value in zip(_RUN_COLUMNS, values)}
                          | epochs.get(run_id, {}))
                for run_id, *values in rows.fetchall()]

    def _epoch_lists(self, where: str, args: tuple[str, ...]) -> dict[int, dict[str, list[float]]]:
        """run id -> RunResult epoch field -> values (NULL read as NaN), for the runs `where` selects."""
        query = (f"SELECT run_id, {', '.join(EPOCH_SERIES)} FROM epochs "
                 f"WHERE run_id IN (SELECT id FROM runs{where}) ORDER BY run_id, epoch")
        lists: dict[int, dict[str, list[float]]] = {}
        for run_id, *values in self._db.execute(query, args):
            series = lists.setdefault(run_id, {name: [] for name in EPOCH_SERIES.values()})
            for name, value in zip(EPOCH_SERIES.values(), values):
                series[name].append(math.nan if value is None else value)
        return lists

    def step_series(self, key: str) -> dict[str, np.ndarray]:
        """``{"step", "lr", "loss"}`` arrays of the run `key` (a missing loss reads as NaN)."""
        return self._arrays("steps", "step", _STEP_SERIES, key)

    def epoch_series(self, key: str) -> dict[str, np.ndarray]:
        """``{"epoch", "train_loss", "val_loss", "metric", "elapsed"}`` arrays of the run `key` (missing -> NaN)."""
        return self._arrays("epochs", "epoch", EPOCH_SERIES, key)

    def _arrays(self, table: str, number: str, series: dict[str, str], key: str) -> dict[str, np.ndarray]:
        names = (number, *series)
        rows = self._db.execute(f"SELECT {', '.join(names)} FROM {table} "
                                f"WHERE run_id = (SELECT id FROM runs WHERE key = ?) ORDER BY {number}", (key,))
        data = np.array(rows.fetchall(), dtype=np.float64).reshape(-1, len(names))
        return {name: data[:, i] for i, name in enumerate(names)}
