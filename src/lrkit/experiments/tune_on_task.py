"""`tune_lr` on a registered task (what `lrkit tune --task NAME` runs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from lrkit.tasks import Task, get_task
from lrkit.torch.evaluation import evaluate
from lrkit.torch.optimizers import OPTIMIZERS, make_optimizer
from lrkit.tuning import TuneResult, tune_lr
from lrkit.validation import choice, integer, optional


def tune_lr_on_task(task: str | Task, optimizer: str = "sgd", *, schedule: str = "constant", budget: float = 1.0,
                    epochs: int | None = None, seed: int = 0, batch_size: int | None = None, progress: bool = True,
                    **options: Any) -> TuneResult:
    """`tune_lr` for a run of the task's model with the optimizer called `optimizer` (the optimizer
    table) for `epochs` epochs (default: the task's), scored by the task's metric on its validation
    split; the loaders are the task's for `seed`. `options` go to `tune_lr` (``candidates``,
    ``storage``, ...)."""
    task = get_task(task) if isinstance(task, str) else task
    integer("tune_lr_on_task", "seed", seed, minimum=0)
    optional(integer, "tune_lr_on_task", "epochs", epochs, minimum=1)
    choice("tune_lr_on_task", "optimizer", optimizer, OPTIMIZERS)
    train_loader, val_loader = task.loaders(seed, batch_size)
    criterion = task.criterion()
    return tune_lr(task.build_model, lambda params, lr: make_optimizer(optimizer, params, lr), criterion,
                   train_loader, val_loader, epochs=epochs or task.epochs, schedule=schedule, budget=budget,
                   metric=task_metric(task, criterion), higher_is_better=task.higher_is_better, seed=seed,
                   progress=progress, **options)


def task_metric(task: Task, criterion: nn.Module) -> Callable[[nn.Module, Any], float]:
    """`tune_lr`'s metric for `task`: the task's metric over a validation loader (named after it)."""
    def metric(model: nn.Module, loader: Any) -> float:
        return evaluate(model, loader, criterion, task.metric)[1]

    metric.__name__ = task.metric_name
    return metric
