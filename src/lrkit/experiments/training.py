"""Train one (task, strategy, seed) trial and record every step and epoch.

Every epoch ends with an evaluation at the optimizer's evaluation point
(`lrkit.torch.evaluation.evaluation_point`): for a schedule-free optimizer the averaged x, with
BatchNorm statistics recomputed there, and back to y for the next epoch. `step_lr` records the
LR of each parameter update as the optimizer's ``lr``: for an LR-free optimizer that is the
multiplier of the step size it estimates, for a schedule-free one the LR before its own warm-up.
"""

from __future__ import annotations

import logging
import math
import platform
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

import lrkit
from lrkit.experiments.results import RunResult, run_key
from lrkit.experiments.strategies import Strategy
from lrkit.experiments.tune_on_task import task_metric
from lrkit.schedules import Schedule, constant, schedule_kind
from lrkit.tasks import Task, get_task
from lrkit.torch import LipschitzLR, PlateauFactor, ScheduledLR, find_lr
from lrkit.torch.evaluation import evaluate, evaluation_point
from lrkit.torch.optimizers import make_optimizer
from lrkit.tuning import tune_lr

logger = logging.getLogger(__name__)

#: LR range test settings used for ``lr="finder"`` strategies.
FINDER_ITERATIONS = 100


@dataclass(frozen=True)
class Trial:
    """One unit of work for the runner (picklable: names and numbers only)."""

    task: str
    strategy: Strategy
    seed: int
    epochs: int
    batch_size: int

    @property
    def key(self) -> str:
        return run_key(self.task, self.strategy.identity(), self.seed, self.epochs, self.batch_size,
                       get_task(self.task).version)


def environment() -> dict[str, object]:
    """Versions and machine facts stored with every run."""
    return {"lrkit": lrkit.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "machine": platform.machine(), "torch_threads": torch.get_num_threads()}


def strategy_optimizer(strategy: Strategy, model: nn.Module, lr: float | None,
                       total_steps: int) -> torch.optim.Optimizer:
    """The strategy's optimizer from the optimizer table for a run of `total_steps` updates
    (`Strategy.optimizer_settings`); `lr=None` keeps its own default LR."""
    return make_optimizer(strategy.optimizer, model.parameters(), lr, **strategy.optimizer_settings(total_steps))


def finder_lr(task: Task, strategy: Strategy, model: nn.Module, train_loader, total_steps: int) -> float:
    """The LR range test's checked suggestion for this model, optimizer and data (model restored
    after), read with the rule for the strategy's schedule over its `total_steps` (or its
    `finder_method`)."""
    optimizer = strategy_optimizer(strategy, model, lr=1e-7, total_steps=FINDER_ITERATIONS)
    if strategy.finder_method is not None:
        rule: dict[str, Any] = {"method": strategy.finder_method}
    else:
        rule = {"schedule": schedule_kind(_shape(strategy, total_steps, len(train_loader)), total_steps).kind}
    result = find_lr(model, optimizer, task.criterion(), train_loader, num_iter=FINDER_ITERATIONS,
                     check=strategy.finder_check, progress=False, **rule)
    return float(result.suggestion)


def _shape(strategy: Strategy, total_steps: int, steps_per_epoch: int) -> Schedule:
    """The strategy's schedule at unit LR (constant without one): its shape, for the finder's rule."""
    if strategy.schedule is None:
        return constant(1.0)
    return Strategy.resolve(strategy.schedule, lr=1.0, total_steps=total_steps, steps_per_epoch=steps_per_epoch,
                            epochs=total_steps / steps_per_epoch)


def train_trial(trial: Trial) -> RunResult:
    """Train `trial` from scratch; deterministic in its seed (single-threaded CPU)."""
    task, strategy = get_task(trial.task), trial.strategy
    torch.manual_seed(trial.seed)
    np.random.seed(trial.seed)
    model = task.build_model()
    train_loader, val_loader = task.loaders(trial.seed, trial.batch_size)
    started = time.perf_counter()  # the strategy's cost: LR range test (if any) + training
    steps_per_epoch = len(train_loader)
    total_steps = steps_per_epoch * trial.epochs
    optimizer = strategy_optimizer(strategy, model, _initial_lr(trial, task, model, train_loader, val_loader),
                                   total_steps)
    base_lr = optimizer.param_groups[0]["lr"]
    criterion = task.criterion()
    values = {"lr": base_lr, "total_steps": total_steps, "steps_per_epoch": steps_per_epoch, "epochs": trial.epochs}
    scheduler = _scheduler(strategy, model, optimizer, criterion, values)

    result = RunResult(key=trial.key, task=trial.task, strategy=strategy.name, config=strategy.config(),
                       seed=trial.seed, epochs=trial.epochs, batch_size=trial.batch_size,
                       metric_name=task.metric_name, higher_is_better=task.higher_is_better,
                       status="complete", base_lr=base_lr, wall_time=0.0, steps_per_epoch=steps_per_epoch,
                       environment=environment())
    for _ in range(trial.epochs):
        epoch_start, losses = time.perf_counter(), []
        for inputs, targets in train_loader:
            result.step_lr.append(optimizer.param_groups[0]["lr"])
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(inputs), targets)
            losses.append(loss.item())
            result.step_loss.append(losses[-1])
            if not math.isfinite(losses[-1]):
                result.status = "diverged"
                break
            loss.backward()
            optimizer.step()
            if isinstance(scheduler, ScheduledLR):  # a LipschitzLR steps once per epoch
                scheduler.step()
        with evaluation_point(model, optimizer, train_loader):
            val_loss, metric = evaluate(model, val_loader, criterion, task.metric)
        result.epoch_train_loss.append(float(np.mean(losses)))
        result.epoch_val_loss.append(val_loss)
        result.epoch_metric.append(metric)
        result.epoch_time.append(time.perf_counter() - epoch_start)
        if result.status == "diverged":
            logger.info("%s seed %d diverged in epoch %d", strategy.name, trial.seed, len(result.epoch_metric))
            break
        _end_of_epoch(scheduler, val_loss)
    if isinstance(scheduler, LipschitzLR):
        scheduler.remove_hooks()
    result.wall_time = time.perf_counter() - started
    return result


def _initial_lr(trial: Trial, task: Task, model: nn.Module, train_loader, val_loader) -> float | None:
    """The strategy's LR (the finder's suggestion, tune_lr's choice or its number, times
    `lr_factor`); None keeps the optimizer's default (``lr="default"``)."""
    strategy, total_steps = trial.strategy, len(train_loader) * trial.epochs
    if strategy.lr == "default":
        return None
    if strategy.lr == "finder":
        lr = finder_lr(task, strategy, model, train_loader, total_steps)
    elif strategy.lr == "tuned":
        lr = tuned_lr(trial, task, train_loader, val_loader)
    else:
        lr = float(strategy.lr)
    return lr * strategy.lr_factor


def tuned_lr(trial: Trial, task: Task, train_loader, val_loader) -> float:
    """`lrkit.tune_lr`'s LR for the trial's whole run: the strategy's optimizer and schedule, the
    task's metric, `tune_budget` runs of compute; the model, loaders and RNGs are left as found."""
    strategy, total_steps = trial.strategy, len(train_loader) * trial.epochs
    criterion = task.criterion()

    def optimizer(params, lr: float) -> torch.optim.Optimizer:
        return make_optimizer(strategy.optimizer, params, lr, **strategy.optimizer_settings(total_steps))

    result = tune_lr(task.build_model, optimizer, criterion, train_loader, val_loader, epochs=trial.epochs,
                     schedule=strategy.schedule or "constant", budget=float(strategy.tune_budget or 1.0),
                     metric=task_metric(task, criterion), higher_is_better=task.higher_is_better, seed=trial.seed,
                     progress=False)
    logger.info("%s seed %d: tune_lr chose %.3g at %.2f runs of compute", strategy.name, trial.seed, result.lr,
                result.cost)
    return result.lr


def _scheduler(strategy: Strategy, model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module,
               values: dict[str, float]) -> ScheduledLR | LipschitzLR:
    """What owns the LR: a LipschitzLR (`Strategy` refuses a schedule, momentum or plateau beside
    it), else a ScheduledLR with the strategy's schedule (constant by default), momentum and plateau."""
    if strategy.lipschitz is not None:
        return _lipschitz(model, optimizer, criterion, strategy.name, strategy.lipschitz)
    schedule = Strategy.resolve(strategy.schedule, **values) if strategy.schedule else constant(values["lr"])
    momentum = Strategy.resolve(strategy.momentum, **values) if strategy.momentum else None
    plateau = PlateauFactor(**strategy.plateau) if strategy.plateau is not None else None
    return ScheduledLR(optimizer, schedule, momentum=momentum, plateau=plateau)


def _end_of_epoch(scheduler: ScheduledLR | LipschitzLR, val_loss: float) -> None:
    """A LipschitzLR computes the next epoch's LR; a ScheduledLR's plateau hears the validation loss."""
    if isinstance(scheduler, LipschitzLR):
        scheduler.step()
    elif scheduler.plateau is not None:
        scheduler.report(val_loss)


def _lipschitz(model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module, name: str,
               kwargs: dict[str, Any]) -> LipschitzLR:
    """A LipschitzLR for the task's loss (softmax CE, MSE or BCE) with the strategy's `kwargs`."""
    losses = {nn.CrossEntropyLoss: "softmax_ce", nn.MSELoss: "mse", nn.BCEWithLogitsLoss: "bce"}
    loss = losses.get(type(criterion))
    if loss is None:
        raise ValueError(f"strategy {name!r}: LipschitzLR supports {sorted(losses.values())} losses, "
                         f"the task uses {type(criterion).__name__}")
    return LipschitzLR(optimizer, model, loss, criterion=criterion, **kwargs)
