"""The LR range test on a registered task (what `lrkit find --task NAME` runs)."""

from __future__ import annotations

from typing import Any

import torch

from lrkit.tasks import Task, get_task
from lrkit.torch.finder import find_lr
from lrkit.torch.finder_result import FinderResult
from lrkit.torch.optimizers import make_optimizer
from lrkit.validation import integer


def find_lr_on_task(task: str | Task, optimizer: str = "sgd", *, seed: int = 0, batch_size: int | None = None,
                    use_val: bool = False, **finder_kwargs: Any) -> FinderResult:
    """Build the task's model (torch seeded with `seed`) and optimizer, then run `find_lr` on its
    training loader (shuffled with `seed`); `use_val` records the validation loss instead.
    `finder_kwargs` go to `find_lr` (`FinderOptions` fields: ``schedule="constant"`` for the rule
    of a constant LR, ``check="none"`` to skip the check, ...).
    """
    integer("find_lr_on_task", "seed", seed, minimum=0)
    task = get_task(task) if isinstance(task, str) else task
    torch.manual_seed(seed)
    model = task.build_model()
    train, val = task.loaders(seed, batch_size)
    opt = make_optimizer(optimizer, model.parameters(), lr=finder_kwargs.get("start_lr", 1e-7))
    return find_lr(model, opt, task.criterion(), train, val_loader=val if use_val else None, seed=seed,
                   **finder_kwargs)
