"""The comparison runner: determinism, resume, crash safety, failure isolation, Ray."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from torch import nn

from lrkit.experiments import runner
from lrkit.experiments.runner import plan, run_sweep
from lrkit.experiments.store import ResultsStore
from lrkit.experiments.strategies import Strategy
from lrkit.experiments.training import Trial, train_trial
from lrkit.tasks import Task, register_task
from lrkit.tasks.bundled import load_diabetes, mean_squared_error
from store_v1 import TRIALS, fixture_copy

FAST = [
    Strategy("cosine", "test", lr=0.05, schedule="cosine(lr={lr}, decay_steps={total_steps})"),
    Strategy("adam", "test", optimizer="adam", lr="default"),
]


def series(db):
    with ResultsStore(db) as store:
        return {(row.strategy, row.seed): (store.step_series(row.key)["loss"].tolist(),
                                           store.epoch_series(row.key)["metric"].tolist())
                for row in store.runs()}


def test_identical_seeds_give_identical_results_in_process_and_in_a_pool(tmp_path):
    trials = plan("diabetes-mlp", FAST, seeds=2, epochs=3, batch_size=32)
    run_sweep(trials, tmp_path / "a.sqlite", workers=1, progress=False)
    run_sweep(trials, tmp_path / "b.sqlite", workers=2, progress=False)
    a, b = series(tmp_path / "a.sqlite"), series(tmp_path / "b.sqlite")
    assert a.keys() == {("cosine", 0), ("cosine", 1), ("adam", 0), ("adam", 1)}
    assert a == b
    assert a[("cosine", 0)] != a[("cosine", 1)]  # the seed matters


def test_rerunning_the_same_sweep_trains_only_what_is_missing(tmp_path):
    db = tmp_path / "r.sqlite"
    first = run_sweep(plan("diabetes-mlp", FAST[:1], seeds=2, epochs=2, batch_size=32), db, workers=1, progress=False)
    second = run_sweep(plan("diabetes-mlp", FAST, seeds=2, epochs=2, batch_size=32), db, workers=1, progress=False)
    assert len(first.trained) == 2
    assert second.skipped == 2 and {(r.strategy, r.seed) for r in second.trained} == {("adam", 0), ("adam", 1)}
    with ResultsStore(db) as store:
        assert len(store.runs()) == 4


def test_records_every_step_and_epoch(tmp_path):
    report = run_sweep(plan("diabetes-mlp", FAST[:1], seeds=1, epochs=3, batch_size=32), tmp_path / "r.sqlite",
                       workers=1, progress=False)
    [run] = report.trained
    steps_per_epoch = 12  # 354 training rows / 32
    assert len(run.step_lr) == len(run.step_loss) == 3 * steps_per_epoch
    assert run.steps_per_epoch == steps_per_epoch
    assert run.step_lr[0] == pytest.approx(0.05) and run.step_lr[-1] < 0.01  # cosine towards 0
    assert len(run.epoch_metric) == 3 and run.status == "complete"
    assert run.environment["torch"].startswith("2.")


def test_a_diverging_run_is_stopped_and_flagged(tmp_path):
    huge = Strategy("huge", "test", lr=1e6)
    [run] = run_sweep(plan("diabetes-mlp", [huge], seeds=1, epochs=5, batch_size=32), tmp_path / "r.sqlite",
                      workers=1, progress=False).trained
    assert run.status == "diverged"
    assert not np.isfinite(run.step_loss[-1])
    assert len(run.epoch_metric) < 5


def _broken_model() -> nn.Module:
    raise RuntimeError("model factory exploded")


def test_a_failing_trial_does_not_sink_the_sweep(tmp_path):
    register_task(Task(name="broken-test-task", description="raises", build_model=_broken_model,
                       load_data=load_diabetes, criterion=nn.MSELoss, metric=mean_squared_error,
                       metric_name="mse", higher_is_better=False))
    trials = plan("broken-test-task", FAST[:1], 1, 1, 32) + plan("diabetes-mlp", FAST[:1], 1, 1, 32)
    report = run_sweep(trials, tmp_path / "r.sqlite", workers=1, progress=False)
    assert len(report.trained) == 1 and len(report.failed) == 1
    assert "model factory exploded" in report.failed[0][1]


SWEEP_SCRIPT = textwrap.dedent("""
    import sys
    from lrkit.experiments.runner import plan, run_sweep
    from lrkit.experiments.strategies import Strategy
    strategies = [Strategy(f"s{i}", "test", lr=0.01 * (i + 1)) for i in range(8)]
    if __name__ == "__main__":
        report = run_sweep(plan("diabetes-mlp", strategies, seeds=2, epochs=20, batch_size=32), sys.argv[1],
                           workers=1, progress=False)
        print(f"trained={len(report.trained)} skipped={report.skipped}")
""")


def test_kill_9_loses_no_completed_run_and_a_rerun_resumes(tmp_path):
    script, db = tmp_path / "sweep.py", tmp_path / "r.sqlite"
    script.write_text(SWEEP_SCRIPT)
    process = subprocess.Popen([sys.executable, str(script), str(db)], stdout=subprocess.PIPE, text=True,
                               start_new_session=True)
    deadline = time.time() + 120
    stored = 0
    while time.time() < deadline and stored < 3:
        time.sleep(0.05)
        if db.exists():
            try:
                with ResultsStore(db) as store:
                    stored = len(store.runs())
            except Exception:  # the store may be mid-creation
                continue
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert stored >= 3, "the sweep did not store runs in time"
    with ResultsStore(db) as store:
        runs = store.runs()
        survivors = len(runs)
        assert 3 <= survivors < 16, "kill must have happened mid-sweep"
        for row in runs:  # every stored run is whole
            assert len(store.epoch_series(row.key)["metric"]) == 20
            assert len(store.step_series(row.key)["lr"]) == 20 * 12
    rerun = subprocess.run([sys.executable, str(script), str(db)], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"trained={16 - survivors} skipped={survivors}" in rerun.stdout
    with ResultsStore(db) as store:
        assert len(store.runs()) == 16


def test_ray_backend_runs_the_same_trials_into_the_same_store(tmp_path):
    pytest.importorskip("ray")
    trials = plan("diabetes-mlp", FAST, seeds=1, epochs=2, batch_size=32)
    run_sweep(trials, tmp_path / "local.sqlite", workers=1, progress=False)
    report = run_sweep(trials, tmp_path / "ray.sqlite", workers=2, backend="ray", progress=False)
    assert not report.failed and len(report.trained) == 2
    assert series(tmp_path / "ray.sqlite") == series(tmp_path / "local.sqlite")


def test_rerunning_the_sweep_on_a_schema_1_store_trains_only_the_range_test_strategy(tmp_path):
    """The fixed-LR run keeps its key through the migration; the range-test strategy's run was made
    with an unchecked LR by a rule named outright, so it is trained again (and the old run kept)."""
    db = fixture_copy(tmp_path)
    with ResultsStore(db) as store:
        old_keys = store.completed_keys()
    report = run_sweep(list(TRIALS), db, workers=1, progress=False)
    assert report.skipped == 1 and [run.strategy for run in report.trained] == ["constant-finder"]
    with ResultsStore(db) as store:
        assert store.completed_keys() == old_keys | {trial.key for trial in TRIALS}


def test_lipschitz_sets_the_lr_once_per_epoch_and_plateau_cuts_it():
    lipschitz = train_trial(Trial("diabetes-mlp", Strategy("l", "test", lr=0.01, lipschitz={},
                                                           optimizer_kwargs={"momentum": 0.0}), 0, 3, 32))
    per_epoch = [lipschitz.step_lr[k * 12:(k + 1) * 12] for k in range(3)]
    assert all(len(set(epoch)) == 1 for epoch in per_epoch)  # constant within an epoch
    assert per_epoch[0][0] == pytest.approx(0.01) and per_epoch[1][0] != per_epoch[0][0]
    plateau = train_trial(Trial("diabetes-mlp", Strategy("p", "test", lr=0.01, plateau={"factor": 0.5, "patience": 0,
                                                                                         "threshold": 1.0}), 0, 3, 32))
    assert plateau.step_lr[12] == pytest.approx(0.005) and plateau.step_lr[24] == pytest.approx(0.0025)


def test_the_sweep_shows_the_shared_progress_bar(tmp_path, monkeypatch):
    calls = []
    real = runner.progress_bar

    def spy(label, total, **kwargs):
        calls.append((label, total, kwargs))
        return real(label, total, **kwargs)

    monkeypatch.setattr(runner, "progress_bar", spy)
    run_sweep(plan("diabetes-mlp", FAST[:1], seeds=1, epochs=1, batch_size=32), tmp_path / "r.sqlite", workers=1)
    assert calls == [("training", 1, {"enabled": True, "transient": False})]


def test_bad_sweep_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="backend"):
        run_sweep([], tmp_path / "r.sqlite", backend="spark")
    with pytest.raises(ValueError, match="seed"):
        plan("diabetes-mlp", FAST, seeds=[], epochs=1, batch_size=1)


def test_the_workers_forkserver_can_start_before_the_sweep_and_the_sweep_uses_it(tmp_path):
    from multiprocessing import forkserver

    from lrkit.experiments.workers import start_workers_early

    start_workers_early()
    server = forkserver._forkserver._forkserver_pid
    assert server is not None and os.path.exists(f"/proc/{server}")
    trials = plan("diabetes-mlp", [Strategy("early", "test", lr=0.01)], seeds=2, epochs=1, batch_size=32)
    report = run_sweep(trials, tmp_path / "r.sqlite", workers=2, progress=False)
    assert len(report.trained) == 2 and forkserver._forkserver._forkserver_pid == server


def test_a_tasks_version_is_part_of_its_run_keys_from_version_2_on():
    import dataclasses

    from lrkit.experiments.results import run_key
    from lrkit.tasks import available_tasks, get_task, register_task

    strategy = Strategy("v", "test", lr=0.01)
    for version in (1, 2):
        name = f"diabetes-mlp-version-{version}-test"
        if name not in available_tasks():
            register_task(dataclasses.replace(get_task("diabetes-mlp"), name=name, version=version))
    one, two = (Trial(f"diabetes-mlp-version-{v}-test", strategy, 0, 1, 32).key for v in (1, 2))
    assert one == run_key("diabetes-mlp-version-1-test", strategy.identity(), 0, 1, 32)  # as before versions
    assert two != run_key("diabetes-mlp-version-2-test", strategy.identity(), 0, 1, 32)
    assert two == run_key("diabetes-mlp-version-2-test", strategy.identity(), 0, 1, 32, task_version=2)
