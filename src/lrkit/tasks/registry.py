"""A registry of training tasks: data + model + loss + metric, offline and real.

A task is what the finder, the fine-tuning recipe and the comparison runner train on.
Bundled tasks register themselves on import; users add their own with `register_task`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lrkit.validation import choice, fail


@dataclass(frozen=True)
class TaskData:
    """The train and validation splits of a task (already shuffled and normalised)."""

    train: Dataset
    val: Dataset


@dataclass(frozen=True)
class Task:
    """A trainable problem.

    `build_model()` returns a fresh, untrained model (the caller seeds torch first);
    `load_data(seed)` returns the splits, deterministic in `seed`;
    `metric(outputs, targets)` scores a whole validation pass (higher is better
    unless `higher_is_better` is False).
    `version`: raise it when the task's data, model, loss or metric change, so that runs stored
    before are not mistaken for runs of the task as it is now (it is part of every run key).
    `family` names the strategies that fit the task (``"sgd"``: the SGD+momentum families of
    the CNN/MLP tasks; ``"transformer"``: AdamW with warmup schedules); `lrkit compare` and
    `lrkit demo` run that family's strategies by default.
    """

    name: str
    description: str
    build_model: Callable[[], nn.Module]
    load_data: Callable[[int], TaskData]
    criterion: Callable[[], nn.Module]
    metric: Callable[[torch.Tensor, torch.Tensor], float]
    metric_name: str
    higher_is_better: bool = True
    batch_size: int = 64
    epochs: int = 10
    family: str = "sgd"
    version: int = 1

    def loaders(self, seed: int = 0, batch_size: int | None = None) -> tuple[DataLoader, DataLoader]:
        """Train loader (shuffled by a generator seeded with `seed`) and validation loader."""
        data = self.load_data(seed)
        size = batch_size or self.batch_size
        generator = torch.Generator().manual_seed(seed)
        train = DataLoader(data.train, batch_size=size, shuffle=True, generator=generator)
        val = DataLoader(data.val, batch_size=1024, shuffle=False)
        return train, val


_TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Add `task` to the registry (a name may be registered once)."""
    if task.name in _TASKS:
        raise fail("register_task", "task.name", "a name not registered yet", task.name)
    _TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    """The registered task called `name`; a ValueError lists the known names otherwise."""
    return _TASKS[choice("get_task", "name", name, sorted(_TASKS))]


def available_tasks() -> list[str]:
    return sorted(_TASKS)
