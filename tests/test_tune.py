"""`lrkit.tune_lr`: budget accounting, the choice, determinism, schedules, metrics, resume, CLI."""

from __future__ import annotations

import json
import logging
import math
import random

import numpy as np
import optuna
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from typer.testing import CliRunner

import lrkit
import lrkit.schedules as S
from lrkit.cli import app
from lrkit.tuning import TuneResult, tune_lr
from lrkit.tuning.plan import bracket_cost, candidate_lrs, check_budget, plan_rungs, trial_order
from lrkit.tuning.runs import Metric, Setup, train_candidate

EPOCHS = 8
BATCHES = 10  # 160 examples / 16
RUN = EPOCHS * BATCHES
FINDER = 20


def _data(n: int, seed: int) -> TensorDataset:
    """Three overlapping Gaussian blobs in 2-d: accuracy depends on how well the LR trains."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centres = torch.tensor([[0.0, 0.0], [1.5, 0.5], [0.5, 1.5]])
    return TensorDataset(centres[y] + 0.7 * torch.randn(n, 2, generator=g), y)


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))


class Counted:
    """`make_optimizer` (SGD, momentum 0.9) that counts every optimizer step, the range test's too."""

    def __init__(self):
        self.steps = 0
        self.lrs: list[list[float]] = []

    def __call__(self, params, lr):
        optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9)
        record: list[float] = []
        self.lrs.append(record)

        def hook(opt, args, kwargs):
            self.steps += 1
            record.append(opt.param_groups[0]["lr"])

        optimizer.register_step_post_hook(hook)
        return optimizer


@pytest.fixture
def problem():
    train = DataLoader(_data(160, 0), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
    val = DataLoader(_data(200, 1), batch_size=100)
    return train, val


def _tune(problem, optimizer=None, **kwargs) -> TuneResult:
    """`tune_lr` on the blobs, with a 20-iteration range test (runs here are 80 steps)."""
    train, val = problem
    kwargs.setdefault("epochs", EPOCHS)
    kwargs.setdefault("finder", {"num_iter": FINDER})
    return tune_lr(_model, optimizer or Counted(), nn.CrossEntropyLoss(), train, val, progress=False, **kwargs)


# -- budget ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("budget", [0.85, 1.0, 1.7, 4.0])
def test_cost_never_exceeds_the_budget_and_counts_every_step(problem, budget):
    counted = Counted()
    result = _tune(problem, counted, budget=budget)
    assert result.cost <= budget
    assert round(result.cost * RUN) == counted.steps <= math.floor(budget * RUN)  # every optimizer step counted
    assert result.finder_steps == len(counted.lrs[0]) >= len(result.finder.lrs)  # the range test's, included
    assert counted.steps == result.finder_steps + sum(t.steps for t in result.trials)
    assert sum(t.steps for t in result.trials) == sum(len(lrs) for lrs in counted.lrs[1:])
    assert result.horizon <= RUN


def test_a_budget_too_small_for_the_range_test_and_one_bracket_is_refused_before_any_step(problem):
    least = 100 + bracket_cost(9, 3)  # the default range test + every candidate at one step per rung
    counted = Counted()
    with pytest.raises(ValueError, match=rf"tune_lr: budget must be >= {least / RUN:.3g} runs here \({least} "
                                         r"optimizer steps: 100 for the range test \+ about 28 for 9 candidates"):
        _tune(problem, counted, budget=1.5, finder=None)
    with pytest.raises(ValueError, match=r"budget must be >= 0.6 runs here \(48 optimizer steps: 20 for the range"):
        _tune(problem, counted, budget=0.5)
    assert counted.steps == 0
    with pytest.raises(ValueError, match="epochs × len.train_loader. must be >= 27 .a run must hold the 4 rungs"):
        _tune(problem, epochs=2, budget=20.0, candidates=27)


def test_the_budget_plan():
    assert bracket_cost(9, 3) == 28 and bracket_cost(4, 2) == 10
    rungs = plan_rungs(trial_steps=280, run_steps=1000, candidates=9, reduction_factor=3)
    assert rungs is not None and rungs.steps == (10, 30, 90)
    capped = plan_rungs(trial_steps=10_000, run_steps=100, candidates=9, reduction_factor=3)
    assert capped is not None and capped.horizon == 99  # never longer than one run
    assert plan_rungs(trial_steps=27, run_steps=100, candidates=9, reduction_factor=3) is None
    assert check_budget(1.0, 100, 20, 100, 9, 3).steps == (2, 6, 18)
    assert check_budget(0.48, 48, 20, 100, 9, 3).steps == (1, 3, 9)  # the smallest budget: 20 + 28 steps
    with pytest.raises(ValueError, match=r"budget must be >= 0\.48 runs here \(48 optimizer steps"):
        check_budget(0.47, 47, 20, 100, 9, 3)


def test_candidates_reach_below_the_loss_minimum_and_start_near_the_suggestion():
    lrs = candidate_lrs(top=1.0, count=9)
    assert len(lrs) == 9 and list(lrs) == sorted(lrs)
    assert lrs[-1] == 1.0 and lrs[0] == pytest.approx(10**-1.5, rel=1e-3)
    order = trial_order(lrs, 0.1)
    assert sorted(order) == sorted(lrs) and order[0] == pytest.approx(0.1, rel=0.2)
    assert [abs(math.log(lr / 0.1)) for lr in order] == sorted(abs(math.log(lr / 0.1)) for lr in order)
    outside = trial_order(lrs, 1e-4)
    assert outside == trial_order(lrs, 10.0) and outside[0] == lrs[4] and set(outside[1:3]) == {lrs[3], lrs[5]}


# -- the choice and determinism -------------------------------------------------------------------
def test_the_chosen_lr_is_the_best_trial_at_the_highest_rung(problem):
    result = _tune(problem, budget=2.0)
    assert result.best in result.trials and result.lr == result.best.lr
    reached = [t for t in result.trials if math.isfinite(t.metric) and t.steps == result.best.steps]
    assert result.best.steps == max(t.steps for t in result.trials if math.isfinite(t.metric)) == result.horizon
    assert result.best.metric == max(t.metric for t in reached)
    assert {t.status for t in result.trials} <= {"complete", "pruned", "diverged", "stopped"}
    assert any(t.pruned for t in result.trials) and result.best.status == "complete"
    assert len({t.lr for t in result.trials}) == len(result.trials) >= 7


def test_deterministic_in_seed_and_the_callers_random_state_is_kept(problem):
    torch.manual_seed(123)
    np.random.seed(5)
    random.seed(7)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    loader_state = problem[0].generator.get_state()
    first, second = _tune(problem, budget=1.5), _tune(problem, budget=1.5)
    assert [(t.lr, t.steps, t.metric, t.status) for t in first.trials] == \
           [(t.lr, t.steps, t.metric, t.status) for t in second.trials]
    assert first.lr == second.lr and first.cost == second.cost
    other = _tune(problem, budget=1.5, seed=1)
    assert not np.array_equal(other.finder.raw_losses, first.finder.raw_losses)
    assert torch.equal(torch.get_rng_state(), states[0]) and np.array_equal(np.random.get_state()[1], states[1])
    assert random.getstate() == states[2] and torch.equal(problem[0].generator.get_state(), loader_state)


def test_optuna_stays_quiet_and_its_verbosity_is_restored(problem):
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    level = optuna.logging.get_verbosity()
    logging.getLogger("optuna").addHandler(handler)
    optuna.logging.set_verbosity(optuna.logging.INFO)
    try:
        _tune(problem, budget=1.0)
        assert optuna.logging.get_verbosity() == optuna.logging.INFO and not records
        optuna.create_study().optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
        assert records  # at INFO, Optuna would have logged every trial
    finally:
        optuna.logging.set_verbosity(level)
        logging.getLogger("optuna").removeHandler(handler)


# -- schedules ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("schedule", "expected"), [
    ("constant", lambda lr: S.constant(lr)),
    ("cosine", lambda lr: S.cosine(lr, RUN)),
    ("one_cycle", lambda lr: S.one_cycle(lr, RUN)),
    ("warmup(cosine(lr={lr}, decay_steps={total_steps}), steps={steps_per_epoch})",
     lambda lr: S.warmup(S.cosine(lr, RUN), BATCHES)),
])
def test_the_schedule_is_filled_for_the_full_run(problem, schedule, expected):
    result = _tune(problem, budget=1.0, schedule=schedule)
    assert result.schedule == expected(result.lr)
    assert result.to_dict()["schedule"] == expected(result.lr).to_dict()


def test_a_trial_is_the_first_steps_of_the_full_run(problem):
    counted = Counted()
    result = _tune(problem, counted, budget=2.0, schedule="cosine")
    chosen = next(lrs for lrs in counted.lrs[1:] if lrs and lrs[0] == result.lr)
    assert len(chosen) == result.horizon  # the chosen trial ran to the horizon, on the run's own schedule
    assert chosen == pytest.approx(S.cosine(result.lr, RUN)(np.arange(result.horizon)).tolist())


# -- metrics --------------------------------------------------------------------------------------
def test_a_callable_metric_where_lower_is_better(problem):
    def val_error(model, loader):
        return sum((model(x).argmax(1) != y).sum().item() for x, y in loader) / 200

    result = _tune(problem, budget=1.5, metric=val_error, higher_is_better=False)
    assert result.metric_name == "val_error" and not result.higher_is_better
    reached = [t for t in result.trials if math.isfinite(t.metric) and t.steps == result.best.steps]
    assert result.best.metric == min(t.metric for t in reached)
    loss = _tune(problem, budget=1.5, metric="loss")
    assert not loss.higher_is_better and loss.best.metric == min(
        t.metric for t in loss.trials if math.isfinite(t.metric) and t.steps == loss.best.steps)


def test_a_diverging_trial_counts_as_the_worst_at_its_rung(problem):
    heard = []
    setup = Setup(_model, lambda p, lr: torch.optim.SGD(p, lr=lr), nn.CrossEntropyLoss(), *problem,
                  Metric(lambda m, v: 0.5, "m", True), seed=0)
    outcome = train_candidate(setup, 1e30, S.constant(1e30), (4, 12), lambda n: True, lambda: None,
                              lambda value, steps: heard.append((value, steps)) or True)
    assert outcome.status == "diverged" and math.isnan(outcome.metric) and outcome.steps < 4
    assert heard == [(-math.inf, 4)]


# -- result ---------------------------------------------------------------------------------------
def test_plot_notes_and_json(problem, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    result = _tune(problem, budget=1.0)
    ax = result.plot()
    assert ax.get_xscale() == "log" and "tune_lr" in ax.get_title()
    ax.figure.savefig(tmp_path / "t.png")
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["lr"] == result.lr and len(data["trials"]) == len(result.trials) and data["cost"] <= 1.0
    assert any(note.startswith("range test:") for note in result.notes)
    assert lrkit.tune_lr is tune_lr and lrkit.TuneResult is TuneResult


# -- resume ---------------------------------------------------------------------------------------
def test_a_study_in_sqlite_is_resumed_without_retraining(problem, tmp_path):
    storage = f"sqlite:///{tmp_path / 'tune.db'}"
    calls = {"n": 0}

    def crashing_model():
        calls["n"] += 1
        if calls["n"] == 5:  # the range test's model, then three trials, then the crash
            raise KeyboardInterrupt
        return _model()

    train, val = problem
    args = (Counted(), nn.CrossEntropyLoss(), train, val)
    settings = {"epochs": EPOCHS, "budget": 2.0, "storage": storage, "progress": False, "finder": {"num_iter": FINDER}}
    with pytest.raises(KeyboardInterrupt):
        tune_lr(crashing_model, *args, **settings)
    counted = Counted()
    calls["n"] = 10
    resumed = tune_lr(crashing_model, counted, *args[1:], **settings)
    assert calls["n"] - 10 == len(resumed.trials) - 3  # no second range test, the 3 finished trials reused
    assert counted.lrs and len(counted.lrs) == len(resumed.trials) - 3
    assert any("resumed study" in note for note in resumed.notes) and resumed.cost <= 2.0
    fresh = _tune(problem, budget=2.0)
    assert [(t.lr, t.metric) for t in resumed.trials[:3]] == [(t.lr, t.metric) for t in fresh.trials[:3]]
    again = tune_lr(crashing_model, Counted(), *args[1:], **settings)
    assert calls["n"] - 10 == len(resumed.trials) - 3 and again.lr == resumed.lr  # nothing left to train
    with pytest.raises(ValueError, match=r"study 'lrkit-tune_lr' in sqlite.* was run with other settings "
                                         r"\(changed: budget\)"):
        tune_lr(_model, *args, **{**settings, "budget": 3.0})


# -- arguments ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"schedule": "linear"}, r"schedule must be one of 'constant', 'cosine', 'one_cycle' or a spec template "
                             r"with '\{lr\}'"),
    ({"schedule": "cosine(lr=0.1, decay_steps={total_steps})"}, r"with '\{lr\}'"),
    ({"schedule": "cosine(lr={lr}, decay_steps={steps})"}, r"unknown field\(s\) \['steps'\]"),
    ({"schedule": "cosine(lr={lr}, decay={total_steps})"}, "parse: bad schedule spec"),
    ({"metric": "f1"}, "tune_lr: metric must be one of 'accuracy', 'loss'"),
    ({"metric": "loss", "higher_is_better": True}, "higher_is_better must be None or False with metric='loss'"),
    ({"metric": lambda model, loader: 0.0}, "higher_is_better must be True or False with a callable metric"),
    ({"epochs": 0}, "tune_lr: epochs must be an integer >= 1, got 0"),
    ({"budget": -1.0}, "tune_lr: budget must be > 0, got -1.0"),
    ({"candidates": 1}, "candidates must be an integer >= 2"),
    ({"finder": {"seed": 3}}, "finder must be find_lr settings other than 'seed' and 'progress'"),
    ({"finder": {"num_iters": 3}}, "finder must be a dict of FinderOptions fields"),
    ({"finder": {"num_iter": 1}}, "ramp: num_iter must be an integer >= 2"),
    ({"finder": [("num_iter", 30)]}, "finder must be a dict of find_lr settings or None"),
])
def test_invalid_arguments_are_refused_clearly(problem, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _tune(problem, **{"budget": 1.0, **kwargs})


# -- CLI ------------------------------------------------------------------------------------------
def test_cli_tunes_a_task_prints_a_table_and_json(tmp_path):
    out = tmp_path / "trials.png"
    result = CliRunner().invoke(app, ["tune", "--task", "digits-mlp", "--schedule", "cosine", "--epochs", "10",
                                      "--budget", "1", "--plot", str(out), "--json", "--no-progress"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["cost"] <= 1 and data["lr"] in [t["lr"] for t in data["trials"]]
    assert data["schedule"]["name"] == "cosine" and data["schedule"]["decay_steps"] == data["steps_per_run"]
    assert "tune_lr: digits-mlp, sgd, accuracy" in result.stderr and "chosen LR" in result.stderr
    assert out.stat().st_size > 10_000


def test_cli_refuses_bad_arguments_and_teaches_in_help():
    result = CliRunner().invoke(app, ["tune", "--task", "digits-mlp", "--budget", "0.01", "--no-progress"])
    flat = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2 and "budget must be >=" in flat
    result = CliRunner().invoke(app, ["tune", "--task", "digits-mlp", "--optimizer", "lion", "--no-progress"])
    assert result.exit_code == 2 and "optimizer must be one of" in " ".join(result.output.replace("│", " ").split())
    help_text = CliRunner().invoke(app, ["tune", "--help"]).output
    assert "Example:" in help_text and "lrkit tune --task digits-mlp" in help_text
