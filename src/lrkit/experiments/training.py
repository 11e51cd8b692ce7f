"""Train one (task, strategy, seed) trial and record every step and epoch."""

from __future__ import annotations

import logging
import math
import platform
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

import lrkit
from lrkit.experiments.results import RunResult, run_key
from lrkit.experiments.strategies import Strategy
from lrkit.schedules import constant
from lrkit.tasks import Task, get_task
from lrkit.torch import ScheduledLR
from lrkit.torch.evaluation import evaluate
from lrkit.torch.optimizers import make_optimizer

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
        return run_key(self.task, self.strategy.config(), self.seed, self.epochs, self.batch_size)


def environment() -> dict[str, object]:
    """Versions and machine facts stored with every run."""
    return {"lrkit": lrkit.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "machine": platform.machine(), "torch_threads": torch.get_num_threads()}


def strategy_optimizer(strategy: Strategy, model: nn.Module, lr: float | None) -> torch.optim.Optimizer:
    """The strategy's optimizer from the optimizer table; `lr=None` keeps its own default LR."""
    return make_optimizer(strategy.optimizer, model.parameters(), lr, **strategy.optimizer_kwargs)


def finder_lr(task: Task, strategy: Strategy, model: nn.Module, train_loader) -> float:
    """The LR range test's suggestion by the strategy's `finder_method` for this model, optimizer
    and data (model restored after)."""
    from lrkit.torch import find_lr

    optimizer = strategy_optimizer(strategy, model, lr=1e-7)
    result = find_lr(model, optimizer, task.criterion(), train_loader, num_iter=FINDER_ITERATIONS,
                     method=strategy.finder_method, progress=False)
    return float(result.suggestion)


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

    if strategy.lr == "finder":
        base_lr = finder_lr(task, strategy, model, train_loader) * strategy.lr_factor
    elif strategy.lr == "default":
        base_lr = None
    else:
        base_lr = float(strategy.lr) * strategy.lr_factor
    optimizer = strategy_optimizer(strategy, model, base_lr)
    base_lr = optimizer.param_groups[0]["lr"]
    values = {"lr": base_lr, "total_steps": total_steps, "steps_per_epoch": steps_per_epoch, "epochs": trial.epochs}
    schedule = Strategy.resolve(strategy.schedule, **values) if strategy.schedule else constant(base_lr)
    momentum = Strategy.resolve(strategy.momentum, **values) if strategy.momentum else None
    plateau = _plateau(strategy)
    criterion = task.criterion()
    lipschitz = _lipschitz(model, optimizer, criterion, strategy)
    # LipschitzLR owns the LR (it sets it every epoch); otherwise a ScheduledLR does.
    scheduler = None if lipschitz else ScheduledLR(optimizer, schedule, momentum=momentum, plateau=plateau)

    result = RunResult(key=trial.key, task=trial.task, strategy=strategy.name, config=strategy.config(),
                       seed=trial.seed, epochs=trial.epochs, batch_size=trial.batch_size,
                       metric_name=task.metric_name, higher_is_better=task.higher_is_better,
                       status="complete", base_lr=base_lr, wall_time=0.0, environment=environment())
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
            if scheduler is not None:
                scheduler.step()
        val_loss, metric = evaluate(model, val_loader, criterion, task.metric)
        result.epoch_train_loss.append(float(np.mean(losses)))
        result.epoch_val_loss.append(val_loss)
        result.epoch_metric.append(metric)
        result.epoch_time.append(time.perf_counter() - epoch_start)
        if result.status == "diverged":
            logger.info("%s seed %d diverged in epoch %d", strategy.name, trial.seed, len(result.epoch_metric))
            break
        if plateau is not None:
            scheduler.report(val_loss)
        if lipschitz is not None:
            lipschitz.step()
    if lipschitz is not None:
        lipschitz.remove_hooks()
    result.wall_time = time.perf_counter() - started
    return result


def _plateau(strategy: Strategy):
    if strategy.plateau is None:
        return None
    from lrkit.torch import ReduceLROnPlateau

    return ReduceLROnPlateau(**strategy.plateau)


def _lipschitz(model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module, strategy: Strategy):
    """A LipschitzLR for the task's loss (softmax CE or MSE), or None."""
    if strategy.lipschitz is None:
        return None
    from lrkit.torch import LipschitzLR

    losses = {nn.CrossEntropyLoss: "softmax_ce", nn.MSELoss: "mse", nn.BCEWithLogitsLoss: "bce"}
    loss = losses.get(type(criterion))
    if loss is None:
        raise ValueError(f"strategy {strategy.name!r}: LipschitzLR supports {sorted(losses.values())} losses, "
                         f"the task uses {type(criterion).__name__}")
    return LipschitzLR(optimizer, model, loss, criterion=criterion, **strategy.lipschitz)
