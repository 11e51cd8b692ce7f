"""One trial of `tune_lr`: a fresh model trained at one LR up to the rungs it is allowed to reach.

Every trial starts from the same state: torch, numpy, Python and the training loader's generators
are seeded with the same seed before ``make_model()``, so all trials see the same initial weights
and the same batches in the same order (common random numbers: the trials differ only in the
LR, which lowers the variance of their comparison).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lrkit.schedules import Schedule
from lrkit.torch.evaluation import accuracy, evaluate
from lrkit.torch.finder_batches import endless, to_device
from lrkit.torch.finder_state import loader_generators
from lrkit.torch.scheduler import ScheduledLR
from lrkit.validation import callable_arg, choice, fail, flag

#: ``metric(model, val_loader) -> float``, called with the model in eval mode under ``torch.no_grad()``.
MetricFn = Callable[[nn.Module, Iterable], float]
METRICS = ("accuracy", "loss")


@dataclass(frozen=True)
class Metric:
    """What scores a trial: `fn(model, val_loader)`, its `name` and direction."""

    fn: MetricFn
    name: str
    higher_is_better: bool

    def worst(self) -> float:
        return -math.inf if self.higher_is_better else math.inf


def resolve_metric(metric: str | MetricFn, higher_is_better: bool | None, criterion: Callable) -> Metric:
    """``"accuracy"`` (arg-max accuracy, higher is better), ``"loss"`` (`criterion` over the
    validation set, lower is better) or a callable with its direction, which must be given."""
    if isinstance(metric, str):
        choice("tune_lr", "metric", metric, METRICS)
        natural = metric == "accuracy"
        if higher_is_better is not None and flag("tune_lr", "higher_is_better", higher_is_better) != natural:
            raise fail("tune_lr", "higher_is_better", f"None or {natural} with metric={metric!r}", higher_is_better)
        if natural:
            return Metric(lambda model, loader: evaluate(model, loader, criterion, accuracy)[1], metric, True)
        return Metric(lambda model, loader: evaluate(model, loader, criterion, _no_metric)[0], metric, False)
    callable_arg("tune_lr", "metric", metric, f"one of {', '.join(map(repr, METRICS))} or a callable "
                 "(model, val_loader) -> float")
    if higher_is_better is None:
        raise fail("tune_lr", "higher_is_better", "True or False with a callable metric (its direction)", None)
    flag("tune_lr", "higher_is_better", higher_is_better)
    return Metric(metric, getattr(metric, "__name__", "metric"), higher_is_better)


def _no_metric(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """`evaluate`'s second value when only the loss is wanted."""
    return math.nan


@dataclass(frozen=True)
class Setup:
    """What every trial shares (the arguments of `tune_lr`)."""

    make_model: Callable[[], nn.Module]
    make_optimizer: Callable[[Any, float], torch.optim.Optimizer]
    criterion: Callable[..., torch.Tensor]
    train_loader: Iterable
    val_loader: Iterable
    metric: Metric
    seed: int

    def fresh_model(self) -> nn.Module:
        """``make_model()`` after seeding every generator with `seed`."""
        torch.manual_seed(self.seed)
        np.random.seed(self.seed % 2**32)
        random.seed(self.seed)
        for generator in loader_generators([self.train_loader]):
            generator.manual_seed(self.seed)
        return self.make_model()

    def score(self, model: nn.Module) -> float:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                return float(self.metric.fn(model, self.val_loader))
        finally:
            model.train(was_training)


@dataclass
class Outcome:
    """How a trial ended: `steps` trained, `metric` at its last rung (nan if none), `status`."""

    steps: int = 0
    metric: float = math.nan
    status: str = "complete"


def train_candidate(setup: Setup, lr: float, schedule: Schedule, rungs: tuple[int, ...],
                    affords: Callable[[int], bool], on_step: Callable[[], None],
                    on_rung: Callable[[float, int], bool]) -> Outcome:
    """Train a fresh model at `lr` (the optimizer's LR set by `schedule` every step) up to each rung
    in turn, score it there and ask ``on_rung(value, steps)`` whether to go on.

    Before each stretch ``affords(steps)`` says whether the budget covers it; if not, the trial
    stops at its last rung (``"stopped"``). ``on_step()`` is called after every optimizer step.
    A non-finite training loss or metric ends it as ``"diverged"`` (metric nan); a False from
    `on_rung` as ``"pruned"`` (it returns True at the last rung). `on_rung` also hears the worst
    value at the rung a diverged trial did not reach, so the pruner counts it among the trials there.
    """
    model = setup.fresh_model()
    optimizer = setup.make_optimizer(model.parameters(), lr)
    scheduler = ScheduledLR(optimizer, schedule)
    device = next(model.parameters()).device
    model.train()
    batches = endless(setup.train_loader)
    outcome = Outcome()
    for rung in rungs:
        if not affords(rung - outcome.steps):
            outcome.status = "stopped"
            return outcome
        if not _train_to(model, optimizer, scheduler, batches, setup.criterion, device, rung, outcome, on_step):
            return _diverged(outcome, setup.metric, on_rung, rung)
        value = setup.score(model)
        if not math.isfinite(value):
            return _diverged(outcome, setup.metric, on_rung, rung)
        outcome.metric = value
        if not on_rung(value, rung):
            outcome.status = "pruned"
            return outcome
    return outcome


def _train_to(model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: ScheduledLR, batches: Iterator[Any],
              criterion: Callable[..., torch.Tensor], device: torch.device, rung: int, outcome: Outcome,
              on_step: Callable[[], None]) -> bool:
    """Optimizer steps until `outcome.steps` reaches `rung`; False at the first non-finite loss."""
    while outcome.steps < rung:
        inputs, targets = to_device(next(batches), device)
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(inputs), targets)
        if not math.isfinite(loss.item()):
            return False
        loss.backward()
        optimizer.step()
        scheduler.step()
        outcome.steps += 1
        on_step()
    return True


def _diverged(outcome: Outcome, metric: Metric, on_rung: Callable[[float, int], bool], rung: int) -> Outcome:
    on_rung(metric.worst(), rung)
    outcome.metric, outcome.status = math.nan, "diverged"
    return outcome
