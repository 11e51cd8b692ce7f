"""The SQLite results store: round trip, atomic runs, refusal of foreign or corrupt files,
migration of schema-1 stores."""

import dataclasses
import json
import math
import sqlite3

import numpy as np
import pytest

from lrkit.experiments.results import RunResult, run_key
from lrkit.experiments.store import ResultsStore, StoreError
from store_v1 import FIXTURE, TRIALS, fixture_copy


def make_run(seed=0, metrics=(0.5, 0.7, 0.6), higher=True, status="complete"):
    steps = 6
    return RunResult(key=run_key("t", {"name": "s"}, seed, len(metrics), 32), task="t", strategy="s",
                     config={"name": "s"}, seed=seed, epochs=len(metrics), batch_size=32,
                     metric_name="accuracy", higher_is_better=higher, status=status, base_lr=0.1,
                     wall_time=1.5, steps_per_epoch=2, step_lr=[0.1 * i for i in range(steps)],
                     step_loss=[1.0, 0.9, math.nan, 0.7, 0.6, 0.5], epoch_train_loss=[1.0, 0.8, 0.6],
                     epoch_val_loss=[1.1, 0.9, 0.8], epoch_metric=list(metrics), epoch_time=[0.1, 0.2, 0.3],
                     environment={"torch": "x"})


def test_round_trip_keeps_every_series_and_summary(tmp_path):
    run = make_run()
    with ResultsStore(tmp_path / "r.sqlite") as store:
        store.save(run)
    with ResultsStore(tmp_path / "r.sqlite") as store:  # reopened from disk
        [row] = store.runs()
        steps, epochs = store.step_series(run.key), store.epoch_series(run.key)
    assert (row.task, row.strategy, row.seed, row.status, row.config) == ("t", "s", 0, "complete", {"name": "s"})
    assert row.final_metric == 0.6 and row.best_metric == 0.7 and row.best_epoch == 2
    assert row.environment == {"torch": "x"}
    assert row == dataclasses.replace(run, step_lr=[], step_loss=[])  # the same record; steps read on demand
    np.testing.assert_array_equal(steps["lr"], run.step_lr)
    np.testing.assert_array_equal(steps["loss"], run.step_loss)  # NaN stored as NULL, read back as NaN
    np.testing.assert_array_equal(epochs["metric"], run.epoch_metric)
    np.testing.assert_array_equal(epochs["epoch"], [1, 2, 3])


def test_report_series_read_the_stored_epochs_without_a_second_query(tmp_path):
    from lrkit.report import load_runs

    run = make_run(metrics=(0.5, math.nan, 0.6))
    with ResultsStore(tmp_path / "r.sqlite") as store:
        store.save(run)
        stored = store.epoch_series(run.key)
    [series] = load_runs(tmp_path / "r.sqlite")
    assert list(series.epochs) == list(stored)
    for name, values in stored.items():  # NaN (NULL in SQLite) included
        np.testing.assert_array_equal(series.epochs[name], values)


def test_lower_is_better_picks_the_minimum(tmp_path):
    with ResultsStore(tmp_path / "r.sqlite") as store:
        store.save(make_run(metrics=(0.9, 0.4, 0.5), higher=False))
        [row] = store.runs()
    assert row.best_metric == 0.4 and row.best_epoch == 2


def test_saving_a_key_again_replaces_the_run(tmp_path):
    with ResultsStore(tmp_path / "r.sqlite") as store:
        store.save(make_run(metrics=(0.1, 0.2, 0.3)))
        store.save(make_run(metrics=(0.4, 0.5, 0.6)))
        [row] = store.runs()
        assert row.final_metric == 0.6
        assert len(store.epoch_series(row.key)["metric"]) == 3


def test_a_failed_write_leaves_no_partial_run(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    store.save(make_run(seed=0))
    bad = make_run(seed=1)
    bad.epoch_time = [0.1, None, 0.3]  # violates NOT NULL inside the transaction, after the runs row
    with pytest.raises(sqlite3.Error):
        store.save(bad)
    assert [row.seed for row in store.runs()] == [0]
    count = store._db.execute("SELECT COUNT(*) FROM steps").fetchone()[0]
    assert count == 6  # only the first run's steps
    store.close()


def test_uses_wal_journal(tmp_path):
    with ResultsStore(tmp_path / "r.sqlite") as store:
        assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_refuses_a_file_that_is_not_sqlite(tmp_path):
    path = tmp_path / "notes.sqlite"
    path.write_text("these are my notes, not a database\n" * 50)
    with pytest.raises(StoreError, match="not an lrkit results store"):
        ResultsStore(path)
    assert path.read_text().startswith("these are my notes")  # untouched


def test_refuses_a_foreign_sqlite_database_without_touching_it(tmp_path):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (name TEXT)")
        db.execute("INSERT INTO customers VALUES ('ada')")
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not an lrkit results store.*customers"):
        ResultsStore(path)
    assert path.read_bytes() == before


def test_refuses_a_newer_schema(tmp_path):
    path = tmp_path / "r.sqlite"
    ResultsStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'lrkit_schema'")
    with pytest.raises(StoreError, match="schema 99"):
        ResultsStore(path)


def test_the_runs_table_holds_every_field_of_the_run_record(tmp_path):
    with ResultsStore(tmp_path / "r.sqlite") as store:
        columns = {row[1] for row in store._db.execute("PRAGMA table_info(runs)")}
    lists = {"step_lr", "step_loss", "epoch_train_loss", "epoch_val_loss", "epoch_metric", "epoch_time"}
    assert {f.name for f in dataclasses.fields(RunResult)} - lists <= columns


def test_a_missing_metric_reads_back_as_nan_and_no_best(tmp_path):
    with ResultsStore(tmp_path / "r.sqlite") as store:
        store.save(make_run(metrics=(math.nan, math.nan, math.nan), status="diverged"))
        [row] = store.runs()
    assert math.isnan(row.final_metric) and row.best_metric is None and row.best_epoch == 0


def _schema(db: sqlite3.Connection) -> tuple[str, set[str]]:
    version = db.execute("SELECT value FROM meta WHERE key = 'lrkit_schema'").fetchone()[0]
    return version, {row[1] for row in db.execute("PRAGMA table_info(runs)")}


def test_the_fixture_is_a_schema_1_store(tmp_path):
    assert FIXTURE.stat().st_size < 100_000
    db = sqlite3.connect(fixture_copy(tmp_path))  # even a read-only open of a WAL file writes beside it
    version, columns = _schema(db)
    assert version == "1" and "steps_per_epoch" not in columns
    assert all("baseline" not in json.loads(config) for (config,) in db.execute("SELECT config FROM runs"))
    db.close()


def test_a_schema_1_store_is_migrated_in_place(tmp_path):
    path = fixture_copy(tmp_path)
    with ResultsStore(path) as store:
        runs = {run.strategy: run for run in store.runs()}
        steps = {name: store.step_series(run.key) for name, run in runs.items()}
    db = sqlite3.connect(path)
    assert _schema(db)[0] == "2" and "steps_per_epoch" in _schema(db)[1]
    db.close()
    finder, huge = runs["constant-finder"], runs["huge"]
    assert (finder.status, huge.status) == ("complete", "diverged")
    # a complete run: step rows / epochs (354 rows / batch 32 = 12); a diverged one: unknown
    assert finder.steps_per_epoch == len(steps["constant-finder"]["step"]) / finder.epochs == 12
    assert huge.steps_per_epoch is None
    # schema 1's summary took 'constant-finder' as the baseline: now the flag says so
    assert finder.config["baseline"] is True and huge.config["baseline"] is False
    assert {key: value for key, value in huge.config.items() if key != "baseline"} == TRIALS[1].strategy.identity()
    # a range-test strategy's identity now names its rule and check: its unchecked old run is not reused
    assert finder.key != TRIALS[0].key and huge.key == TRIALS[1].key
    assert len(finder.epoch_metric) == 2 and len(huge.epoch_metric) == 1 and len(steps["huge"]["step"]) == 3
    with ResultsStore(path) as store:  # opening it again finds schema 2: nothing left to do
        assert [run.steps_per_epoch for run in store.runs()] == [12, None]


def test_a_failed_migration_leaves_the_store_as_it_was(tmp_path, monkeypatch):
    path = fixture_copy(tmp_path)
    db = sqlite3.connect(path)
    before = list(db.iterdump())
    db.close()

    def fail_midway(store):
        raise sqlite3.OperationalError("disk I/O error")  # after the column was added and filled

    monkeypatch.setattr(ResultsStore, "_flag_schema_1_baselines", fail_midway)
    with pytest.raises(StoreError, match="schema 1 and could not be migrated.*unchanged.*disk I/O error"):
        ResultsStore(path)
    db = sqlite3.connect(path)
    assert list(db.iterdump()) == before
    assert _schema(db)[0] == "1" and "steps_per_epoch" not in _schema(db)[1]
    db.close()
    monkeypatch.undo()
    with ResultsStore(path) as store:  # nothing half-done stands in the way of a later migration
        assert [run.steps_per_epoch for run in store.runs()] == [12, None]


def test_refuses_a_newer_schema_even_from_a_schema_1_file(tmp_path):
    path = fixture_copy(tmp_path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '3' WHERE key = 'lrkit_schema'")
    with pytest.raises(StoreError, match="schema 3, this lrkit reads schema 2"):
        ResultsStore(path)
    with sqlite3.connect(path) as db:
        assert "steps_per_epoch" not in _schema(db)[1]


# -- creation: one transaction, completed when a killed creation left it half-made ---------------
def _half_created(path, tables=("meta", "runs", "steps", "epochs")):
    """What a process killed between lrkit's CREATE TABLEs and its schema row left (before creation
    was one transaction): some of the tables, all empty, no schema row."""
    from lrkit.experiments.store import _SCHEMA_STATEMENTS

    with sqlite3.connect(path) as db:
        for statement in _SCHEMA_STATEMENTS:
            if statement.split("EXISTS ")[1].split()[0] in tables:
                db.execute(statement)
    db.close()


@pytest.mark.parametrize("tables", [("meta", "runs", "steps", "epochs"), ("meta", "runs"), ("meta",)])
def test_a_half_created_store_is_created_again(tmp_path, tables):
    path = tmp_path / "r.sqlite"
    _half_created(path, tables)
    with ResultsStore(path) as store:
        store.save(make_run())
    with ResultsStore(path) as store:
        assert len(store.runs()) == 1
        assert store._version() == "2"


def test_a_zero_byte_file_becomes_a_store(tmp_path):
    path = tmp_path / "r.sqlite"
    path.touch()
    with ResultsStore(path) as store:
        store.save(make_run())
        assert len(store.runs()) == 1


def test_creation_is_one_transaction(tmp_path, monkeypatch):
    """A failure after the tables were made leaves no table behind: nothing is half-created."""
    path = tmp_path / "r.sqlite"
    connect = sqlite3.connect

    class FailingOnMeta(sqlite3.Connection):
        def execute(self, sql, *args):
            if sql.startswith("INSERT INTO meta"):  # after every CREATE TABLE
                raise sqlite3.OperationalError("disk I/O error")
            return super().execute(sql, *args)

    monkeypatch.setattr(sqlite3, "connect", lambda *args, **kwargs: connect(*args, factory=FailingOnMeta, **kwargs))
    with pytest.raises(StoreError, match="disk I/O error"):
        ResultsStore(path)
    monkeypatch.undo()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == []
    db.close()


def test_tables_with_runs_but_no_schema_row_are_refused(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultsStore(path) as store:
        store.save(make_run())
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM meta")
    db.close()
    with pytest.raises(StoreError, match="schema unknown"):
        ResultsStore(path)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1  # kept
    db.close()


def test_a_foreign_database_with_a_runs_table_of_its_own_is_refused_untouched(tmp_path):
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE runs (athlete TEXT, km REAL)")  # empty, but not lrkit's columns
    db.close()
    before = path.read_bytes()
    with pytest.raises(StoreError, match="not an lrkit results store.*runs"):
        ResultsStore(path)
    assert path.read_bytes() == before


# -- paths and read-only opening ---------------------------------------------------------------
def test_a_missing_directory_is_named_in_one_line(tmp_path):
    with pytest.raises(StoreError, match=r"the directory .*nodir does not exist") as caught:
        ResultsStore(tmp_path / "nodir" / "r.sqlite")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "nodir").exists()  # not created


def test_a_directory_is_not_a_store_path(tmp_path):
    with pytest.raises(StoreError, match="is a directory"):
        ResultsStore(tmp_path)


def test_readonly_reads_and_never_writes(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultsStore(path) as store:
        store.save(make_run())
    before = path.read_bytes()
    with ResultsStore(path, readonly=True) as store:
        [row] = store.runs()
        assert len(store.step_series(row.key)["lr"]) == 6
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.save(make_run(seed=1))
    assert path.read_bytes() == before


def test_readonly_never_creates_a_store(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such results store"):
        ResultsStore(tmp_path / "missing.sqlite", readonly=True)
    assert not (tmp_path / "missing.sqlite").exists()


def test_readonly_migrates_a_schema_1_store_in_memory_only(tmp_path):
    path = fixture_copy(tmp_path)
    with ResultsStore(path, readonly=True) as store:
        assert [run.steps_per_epoch for run in store.runs()] == [12, None]
    db = sqlite3.connect(path)
    assert _schema(db)[0] == "1" and "steps_per_epoch" not in _schema(db)[1]  # the file is as it was
    db.close()


def test_readonly_refuses_a_half_created_store_with_the_remedy(tmp_path):
    path = tmp_path / "r.sqlite"
    _half_created(path)
    with pytest.raises(StoreError, match="creation was interrupted"):
        ResultsStore(path, readonly=True)
