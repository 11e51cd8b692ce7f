"""Schema-1 results stores for the migration tests: the fixture file and a way to make more.

``fixtures/store_v1.sqlite3`` holds two real runs (`TRIALS`) written by lrkit's schema-1 store.
It was made by running this file with the lrkit of that time (commit 9a3e259, store schema 1),
from the repository root::

    PYTHONPATH=<a copy of that lrkit's src> python tests/store_v1.py

Today's lrkit must give `TRIALS` the keys stored there, so a re-run skips them.
`downgrade_to_schema_1` turns a store written today into what schema 1 wrote, for variations.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from pathlib import Path

from lrkit.experiments.strategies import Strategy, default_strategies
from lrkit.experiments.training import Trial

FIXTURE = Path(__file__).parent / "fixtures" / "store_v1.sqlite3"

#: The default baseline, which completes, and a custom strategy that diverges in its first epoch.
TRIALS = (
    Trial("diabetes-mlp", default_strategies()["constant-finder"], seed=0, epochs=2, batch_size=32),
    Trial("diabetes-mlp", Strategy("huge", "diverges", lr=1e6), seed=0, epochs=2, batch_size=32),
)


def fixture_copy(folder: Path) -> Path:
    """A writable copy of the fixture (opening a schema-1 store migrates it in place)."""
    return Path(shutil.copy(FIXTURE, folder / "store_v1.sqlite"))


def downgrade_to_schema_1(path: Path) -> Path:
    """Make a store written today look as schema 1 wrote it: no ``runs.steps_per_epoch``, no
    ``baseline`` in the configs, version 1."""
    db = sqlite3.connect(path)
    with db:
        db.execute("ALTER TABLE runs DROP COLUMN steps_per_epoch")
        configs = db.execute("SELECT id, config FROM runs").fetchall()
        db.executemany("UPDATE runs SET config = ? WHERE id = ?", [
            (json.dumps({k: v for k, v in json.loads(config).items() if k != "baseline"}, sort_keys=True), run_id)
            for run_id, config in configs])
        db.execute("UPDATE meta SET value = '1' WHERE key = 'lrkit_schema'")
    db.close()
    return path


def main() -> None:
    from lrkit.experiments import store
    from lrkit.experiments.training import train_trial

    if store.SCHEMA_VERSION != "1":
        sys.exit("run this with an lrkit whose store writes schema 1 (see the module docstring)")
    FIXTURE.unlink(missing_ok=True)
    with store.ResultsStore(FIXTURE) as results:
        for trial in TRIALS:
            results.save(train_trial(trial))
    sys.stdout.write(f"{FIXTURE}: {FIXTURE.stat().st_size} bytes\n")


if __name__ == "__main__":
    main()
