"""SQLite results store: every run, its configuration, series and environment.

One file, WAL journal. A run is written in one transaction, so a killed sweep (even
``kill -9``) keeps every completed run and none half-written; a re-run asks `completed_keys`
and trains only what is missing. A file that is not an lrkit store is refused, never altered.
A schema-1 store is migrated in place, in one transaction; a newer schema is refused.

Creation is one transaction under SQLite's write lock (``BEGIN IMMEDIATE``): two processes
opening the same new path create it once, and a file left empty or half-created by a process
killed mid-creation (lrkit's tables, all empty, without the schema row) is created again. A
store opened with ``readonly=True`` is never written (SQLite ``mode=ro``; it works on a read-only
file or directory); opened for writing, a store that cannot be written is refused at once. The
guarantees are listed in docs/reliability.md.

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

import contextlib
import json
import logging
import math
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, get_origin, get_type_hints

import numpy as np

from lrkit.experiments.results import RunResult

logger = logging.getLogger(__name__)

SCHEMA_VERSION = "2"
#: Seconds to wait for another process's lock on the store (a sweep writing a run, a first opener creating it).
LOCK_TIMEOUT = 30.0

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


#: Every statement of the schema, to run one by one inside the creating transaction.
_SCHEMA_STATEMENTS = tuple(statement.strip() for statement in _SCHEMA.split(";") if statement.strip())


def _schema_columns() -> dict[str, set[str]]:
    """Table -> its column names, as `_SCHEMA` creates them."""
    with contextlib.closing(sqlite3.connect(":memory:")) as db:
        db.executescript(_SCHEMA)
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {table: {row[1] for row in db.execute(f"PRAGMA table_info({table})")} for table in tables}


_COLUMNS = _schema_columns()


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
    """Open (or create) the store at `path`; use as a context manager or call `close()`.

    `readonly`: open an existing store for reading only (never created, migrated or written; a
    schema-1 store is migrated in a copy in memory). Otherwise the store must be writable, which
    is checked here, before any work is done. A missing directory is an error (it is not created).
    """

    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self._check_path()
        self._db = self._connect_readonly() if readonly else self._connect(str(self.path), uri=False)
        try:
            if readonly:
                self._check()
            else:
                self._prepare()
        except BaseException as err:
            self._db.close()
            if isinstance(err, sqlite3.DatabaseError):
                raise self._error(err) from None
            raise

    def _check_path(self) -> None:
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a directory; give the results store a file name, "
                             f"e.g. {self.path / 'runs.sqlite'}")
        if self.readonly and not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such results store")
        if not self.path.parent.is_dir():
            raise StoreError(f"cannot create the results store {self.path}: the directory {self.path.parent} "
                             "does not exist (create it first)")

    def _error(self, err: sqlite3.DatabaseError) -> StoreError:
        """The StoreError for an SQLite failure while opening: unwritable, unopenable or not a store."""
        message = str(err)
        if "readonly" in message:
            return StoreError(f"cannot write to the results store {self.path}: the file or its directory is "
                              f"read-only (SQLite says: {message}); choose another --db path, or read it with "
                              "`lrkit report`")
        if "unable to open" in message and self.readonly:
            return StoreError(f"cannot read the results store {self.path} (SQLite says: {message}); "
                              "check its permissions")
        if "unable to open" in message:
            return StoreError(f"cannot open or create the results store {self.path} (SQLite says: {message}); "
                              f"check that {self.path.parent} is writable")
        return StoreError(f"{self.path} is not an lrkit results store (SQLite says: {message}); "
                          "choose another --db path")

    def _connect(self, target: str, *, uri: bool) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(target, timeout=LOCK_TIMEOUT, uri=uri)
            db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as err:
            raise self._error(err) from None
        return db

    def _connect_readonly(self) -> sqlite3.Connection:
        """SQLite's read-only mode. A WAL store whose directory we cannot write, closed cleanly (no
        ``-wal`` file beside it, so nothing is left to replay), cannot get the ``-shm`` file that mode
        needs: it is opened as immutable instead (a concurrent writer would not be seen)."""
        uri = self.path.absolute().as_uri()
        db = self._connect(f"{uri}?mode=ro", uri=True)
        try:
            db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as err:
            db.close()
            if "readonly" not in str(err) or Path(f"{self.path}-wal").exists():
                raise self._error(err) from None
            db = self._connect(f"{uri}?mode=ro&immutable=1", uri=True)
        return db

    def _prepare(self) -> None:
        """Create (or complete), check and switch to WAL a store opened for writing. Retried while
        SQLite reports a lock it does not wait for: its deadlock rule when processes opening the same
        new file switch it to WAL while another holds the write lock."""
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                self._create_or_complete()
                self._check()
                self._db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _create_or_complete(self) -> None:
        """Create the schema in a new or empty file, or again in a half-created one, in one transaction
        under SQLite's write lock: a second process opening the same new path waits, then finds it
        made. Taking the lock also proves the store writable before a sweep trains anything."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            objects = self._objects()
            if objects and not self._half_created(objects):
                return
            if objects:
                logger.warning("%s: re-creating a results store whose creation was interrupted (it held no run)",
                               self.path)
            for table in objects:
                self._db.execute(f"DROP TABLE {table}")
            for statement in _SCHEMA_STATEMENTS:
                self._db.execute(statement)
            self._db.execute("INSERT INTO meta VALUES ('lrkit_schema', ?)", (SCHEMA_VERSION,))

    def _objects(self) -> set[str]:
        """Names of the tables, views, indexes and triggers (SQLite's own excepted)."""
        return {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")}

    def _half_created(self, objects: set[str]) -> bool:
        """Some of lrkit's tables with lrkit's columns, all empty (so no schema row): what a process
        killed while creating the store leaves. Nothing in it can be lost; anything else is refused."""
        if not objects <= _COLUMNS.keys():
            return False
        for table in objects:
            columns = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if not columns <= _COLUMNS[table] or self._db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone():
                return False
        return True

    def _check(self) -> None:
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables:
            raise StoreError(f"{self.path} is an SQLite file but not an lrkit results store "
                             f"(tables: {', '.join(sorted(tables)) or 'none'}); refusing to touch it")
        version = self._version()
        if version is None and self.readonly and self._half_created(self._objects()):
            raise StoreError(f"{self.path} holds no runs: its creation was interrupted (opening it for writing, "
                             "e.g. with `lrkit compare`, creates it again)")
        if version not in ("1", SCHEMA_VERSION):
            raise StoreError(f"{self.path} has lrkit schema {version or 'unknown'}, this lrkit reads schema "
                             f"{SCHEMA_VERSION} (and migrates schema 1)")
        if self._db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise StoreError(f"{self.path} is corrupt (SQLite quick_check failed)")
        if version == "1":
            if self.readonly:  # migrate a copy: the file is not ours to change
                memory = sqlite3.connect(":memory:")
                self._db.backup(memory)
                self._db.close()
                self._db = memory
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
