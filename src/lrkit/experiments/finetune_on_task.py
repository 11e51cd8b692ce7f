"""The fine-tuning recipe on a registered task (what `lrkit finetune --task NAME` runs)."""

from __future__ import annotations

from typing import Any

import torch

from lrkit.finetune import FineTuneResult, fine_tune
from lrkit.tasks import Task, get_task
from lrkit.validation import integer


def fine_tune_task(task: str | Task, *, seed: int = 0, batch_size: int | None = None, **options: Any) -> FineTuneResult:
    """`lrkit.fine_tune` on a registered task: torch seeded with `seed`, then the task's model (for
    ``digits-transfer`` the pretrained body with a new head), its loaders for `seed`, its loss and
    metric; `options` go to `fine_tune` (``epochs`` is required)."""
    task = get_task(task) if isinstance(task, str) else task
    integer("fine_tune_task", "seed", seed, minimum=0)
    torch.manual_seed(seed)
    model = task.build_model()
    train_loader, val_loader = task.loaders(seed, batch_size)
    options.setdefault("metric", task.metric)
    return fine_tune(model, train_loader, val_loader, task.criterion(), **options)
