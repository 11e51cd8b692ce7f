"""SQLite results store: every run, its configuration, series and environment.

One file, WAL journal. A run is written in one transaction, so a killed sweep (even
``kill -9``) keeps every completed run and none half-written; a re-run asks `completed_keys`
and trains only what is missing. A file that is not an lrkit store is refused, never altered.

Schema (version 1)::

    meta(key PRIMARY KEY, value)                -- 'lrkit_schema' = '1'
    runs(id, key UNIQUE, task, strategy, config JSON, seed, epochs, batch_size,
         metric_name, higher_is_better, status, base_lr, wall_time, final_metric,
         best_metric, best_epoch, environment JSON, created_at)
    steps(run_id, step, lr, loss)               -- one row per optimizer update
    epochs(run_id, epoch, train_loss, val_loss, metric, elapsed)
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from lrkit.experiments.results import RunResult

SCHEMA_VERSION = "1"

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
    created_at TEXT NOT NULL
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


class StoreError(ValueError):
    """The file is not a usable lrkit results store (corrupt, foreign or newer schema)."""


@dataclass(frozen=True)
class RunRow:
    """A stored run's summary (the series are read on demand)."""

    id: int
    key: str
    task: str
    strategy: str
    config: dict[str, Any]
    seed: int
    epochs: int
    batch_size: int
    metric_name: str
    higher_is_better: bool
    status: str
    base_lr: float | None
    wall_time: float
    final_metric: float | None
    best_metric: float | None
    best_epoch: int
    environment: dict[str, Any]


def _finite_or_none(value: float) -> float | None:
    return value if value is not None and math.isfinite(value) else None


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
        row = self._db.execute("SELECT value FROM meta WHERE key='lrkit_schema'").fetchone()
        if row is None or row[0] != SCHEMA_VERSION:
            raise StoreError(f"{self.path} has lrkit schema {row[0] if row else 'unknown'}, this lrkit "
                             f"reads schema {SCHEMA_VERSION}")
        if self._db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise StoreError(f"{self.path} is corrupt (SQLite quick_check failed)")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "ResultsStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------
    def save(self, run: RunResult) -> int:
        """Store a run and its series in one transaction; returns its id. A key already
        stored is replaced (re-running a finished trial on purpose)."""
        best_epoch, best_metric = run.best()
        with self._db:
            self._db.execute("DELETE FROM runs WHERE key = ?", (run.key,))
            cursor = self._db.execute(
                "INSERT INTO runs (key, task, strategy, config, seed, epochs, batch_size, metric_name,"
                " higher_is_better, status, base_lr, wall_time, final_metric, best_metric, best_epoch,"
                " environment, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (run.key, run.task, run.strategy, json.dumps(run.config, sort_keys=True), run.seed,
                 run.epochs, run.batch_size, run.metric_name, int(run.higher_is_better), run.status,
                 _finite_or_none(run.base_lr), run.wall_time, _finite_or_none(run.final_metric), best_metric,
                 best_epoch, json.dumps(run.environment, sort_keys=True),
                 datetime.now(timezone.utc).isoformat(timespec="seconds")))
            run_id = cursor.lastrowid
            self._db.executemany(
                "INSERT INTO steps VALUES (?,?,?,?)",
                ((run_id, i, lr, _finite_or_none(loss)) for i, (lr, loss) in enumerate(zip(run.step_lr, run.step_loss))))
            self._db.executemany(
                "INSERT INTO epochs VALUES (?,?,?,?,?,?)",
                ((run_id, i, _finite_or_none(a), _finite_or_none(b), _finite_or_none(m), t)
                 for i, (a, b, m, t) in enumerate(zip(run.epoch_train_loss, run.epoch_val_loss,
                                                      run.epoch_metric, run.epoch_time), 1)))
        return run_id

    # -- reading ---------------------------------------------------------------------
    def completed_keys(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT key FROM runs")}

    def runs(self, task: str | None = None) -> list[RunRow]:
        """Stored runs (optionally of one task), in insertion order."""
        query = "SELECT * FROM runs" + (" WHERE task = ?" if task else "") + " ORDER BY id"
        rows = self._db.execute(query, (task,) if task else ()).fetchall()
        return [RunRow(id=r[0], key=r[1], task=r[2], strategy=r[3], config=json.loads(r[4]), seed=r[5],
                       epochs=r[6], batch_size=r[7], metric_name=r[8], higher_is_better=bool(r[9]),
                       status=r[10], base_lr=r[11], wall_time=r[12], final_metric=r[13], best_metric=r[14],
                       best_epoch=r[15], environment=json.loads(r[16])) for r in rows]

    def step_series(self, run_id: int) -> dict[str, np.ndarray]:
        """``{"step", "lr", "loss"}`` arrays (a missing loss reads as NaN)."""
        rows = self._db.execute("SELECT step, lr, loss FROM steps WHERE run_id = ? ORDER BY step", (run_id,)).fetchall()
        data = np.array(rows, dtype=np.float64).reshape(-1, 3)
        return {"step": data[:, 0], "lr": data[:, 1], "loss": data[:, 2]}

    def epoch_series(self, run_id: int) -> dict[str, np.ndarray]:
        """``{"epoch", "train_loss", "val_loss", "metric", "elapsed"}`` arrays (missing -> NaN)."""
        rows = self._db.execute("SELECT epoch, train_loss, val_loss, metric, elapsed FROM epochs "
                                "WHERE run_id = ? ORDER BY epoch", (run_id,)).fetchall()
        data = np.array(rows, dtype=np.float64).reshape(-1, 5)
        names = ("epoch", "train_loss", "val_loss", "metric", "elapsed")
        return {name: data[:, i] for i, name in enumerate(names)}
