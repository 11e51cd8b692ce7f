"""Synthetic stored sweeps for the report tests: several strategies x 3 seeds, one diverged
run with NaN losses, and a regression task where lower is better. No training involved."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from lrkit.experiments.results import RunResult, run_key
from lrkit.experiments.store import ResultsStore
from lrkit.schedules import constant, cosine, one_cycle, triangular2

EPOCHS = 8
STEPS_PER_EPOCH = 25
TOTAL = EPOCHS * STEPS_PER_EPOCH
ENV = {"python": "3.11.9", "torch": "2.13.0", "lrkit": "0.1.0", "platform": "Linux-x86_64", "cpu_count": 2}

#: strategy -> (schedule, final accuracy, time constant in epochs)
CLASSIFICATION = {
    "constant": (constant(0.05), 0.930, 2.5),
    "one-cycle": (one_cycle(0.5, TOTAL), 0.972, 1.2),
    "cosine": (cosine(0.1, TOTAL), 0.955, 1.8),
    "clr-triangular2": (triangular2(0.01, 0.2, 2 * STEPS_PER_EPOCH), 0.948, 2.0),
    "constant-large": (constant(2.0), 0.70, 1.0),
}


def make_run(task: str, strategy: str, seed: int, schedule, final: float, tau: float, *,
             higher_is_better: bool = True, metric_name: str = "accuracy", start: float = 0.1,
             diverge_at_epoch: int | None = None, baseline: bool = False) -> RunResult:
    """A plausible run: metric(e) = final - (final - start) * exp(-e / tau) + seed noise;
    per-step loss decays with noise. `diverge_at_epoch` cuts the run there with NaN losses.
    `baseline`: the strategy's config flags it as the constant-LR baseline."""
    rng = np.random.default_rng(1000 * seed + len(strategy))
    t = np.arange(TOTAL, dtype=np.float64)
    lr = np.asarray(schedule(t), dtype=np.float64)
    loss = 2.3 * np.exp(-t / (tau * STEPS_PER_EPOCH)) + 0.05 + 0.03 * rng.standard_normal(TOTAL) ** 2
    epochs = np.arange(1, EPOCHS + 1)
    offset = (0.008 if higher_is_better else 0.04 * final) * rng.standard_normal()
    metric = final - (final - start) * np.exp(-epochs / tau) + offset + 0.006 * rng.standard_normal(EPOCHS) * final
    train_loss = [float(loss[(e - 1) * STEPS_PER_EPOCH:e * STEPS_PER_EPOCH].mean()) for e in epochs]
    status = "complete"
    if diverge_at_epoch is not None:
        cut = diverge_at_epoch * STEPS_PER_EPOCH - 7
        loss = loss.copy()
        loss[cut - 5:cut] = [3.0, 9.0, 40.0, 900.0, 1e6]
        loss[cut:cut + 1] = math.nan
        lr, loss = lr[:cut + 1], loss[:cut + 1]
        epochs = epochs[:diverge_at_epoch - 1]
        metric, train_loss = metric[:diverge_at_epoch - 1], train_loss[:diverge_at_epoch - 1]
        status = "diverged"
    config = {"optimizer": "sgd", "schedule": schedule.to_spec()}
    return RunResult(
        key=run_key(task, {"name": strategy, **config}, seed, EPOCHS, 32), task=task, strategy=strategy,
        config={**config, "baseline": baseline}, seed=seed, epochs=EPOCHS, batch_size=32, metric_name=metric_name,
        higher_is_better=higher_is_better, status=status, base_lr=float(lr[0]) if lr.size else math.nan,
        wall_time=2.0 + 0.1 * seed + 0.01 * len(strategy), steps_per_epoch=STEPS_PER_EPOCH,
        step_lr=lr.tolist(), step_loss=loss.tolist(),
        epoch_train_loss=list(train_loss), epoch_val_loss=[x * 1.1 for x in train_loss],
        epoch_metric=[float(m) for m in metric], epoch_time=[0.25 * e for e in epochs], environment=ENV)


def classification_runs(task: str = "digits-mlp") -> list[RunResult]:
    """5 strategies x seeds 0-2, `constant` the baseline; `constant-large` diverges on seed 1
    (NaN loss, epoch 4)."""
    runs = []
    for name, (schedule, final, tau) in CLASSIFICATION.items():
        for seed in range(3):
            runs.append(make_run(task, name, seed, schedule, final, tau, baseline=name == "constant",
                                 diverge_at_epoch=4 if (name == "constant-large" and seed == 1) else None))
    return runs


def regression_runs(task: str = "diabetes-mse") -> list[RunResult]:
    """MSE, lower is better: one-cycle 2900, constant (the baseline) 3300, cosine 3100 (x 3 seeds)."""
    table = {"constant": (constant(0.01), 3300.0, 2.5), "one-cycle": (one_cycle(0.05, TOTAL), 2900.0, 1.2),
             "cosine": (cosine(0.02, TOTAL), 3100.0, 1.8)}
    return [make_run(task, name, seed, schedule, final, tau, higher_is_better=False, metric_name="mse",
                     start=25000.0, baseline=name == "constant")
            for name, (schedule, final, tau) in table.items() for seed in range(3)]


def write_store(path: Path, runs: list[RunResult]) -> Path:
    with ResultsStore(path) as store:
        for run in runs:
            store.save(run)
    return path
