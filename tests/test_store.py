"""The SQLite results store: round trip, atomic runs, refusal of foreign or corrupt files."""

import math
import sqlite3

import numpy as np
import pytest

from lrkit.experiments.results import RunResult, run_key
from lrkit.experiments.store import ResultsStore, StoreError


def make_run(seed=0, metrics=(0.5, 0.7, 0.6), higher=True, status="complete"):
    steps = 6
    return RunResult(key=run_key("t", {"name": "s"}, seed, len(metrics), 32), task="t", strategy="s",
                     config={"name": "s"}, seed=seed, epochs=len(metrics), batch_size=32,
                     metric_name="accuracy", higher_is_better=higher, status=status, base_lr=0.1,
                     wall_time=1.5, step_lr=[0.1 * i for i in range(steps)],
                     step_loss=[1.0, 0.9, math.nan, 0.7, 0.6, 0.5], epoch_train_loss=[1.0, 0.8, 0.6],
                     epoch_val_loss=[1.1, 0.9, 0.8], epoch_metric=list(metrics), epoch_time=[0.1, 0.2, 0.3],
                     environment={"torch": "x"})


def test_round_trip_keeps_every_series_and_summary(tmp_path):
    run = make_run()
    with ResultsStore(tmp_path / "r.sqlite") as store:
        run_id = store.save(run)
    with ResultsStore(tmp_path / "r.sqlite") as store:  # reopened from disk
        [row] = store.runs()
        steps, epochs = store.step_series(run_id), store.epoch_series(run_id)
    assert (row.task, row.strategy, row.seed, row.status, row.config) == ("t", "s", 0, "complete", {"name": "s"})
    assert row.final_metric == 0.6 and row.best_metric == 0.7 and row.best_epoch == 2
    assert row.environment == {"torch": "x"}
    np.testing.assert_array_equal(steps["lr"], run.step_lr)
    np.testing.assert_array_equal(steps["loss"], run.step_loss)  # NaN stored as NULL, read back as NaN
    np.testing.assert_array_equal(epochs["metric"], run.epoch_metric)
    np.testing.assert_array_equal(epochs["epoch"], [1, 2, 3])


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
        assert len(store.epoch_series(row.id)["metric"]) == 3


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
