"""Batches for the range test: the default ``(x, y)`` step, endless passes, moving to a device."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

#: ``step_fn(model, batch) -> loss`` for batches that are not ``(inputs, targets)``.
StepFn = Callable[[nn.Module, Any], torch.Tensor]


def default_step(criterion: Callable) -> StepFn:
    def step(model: nn.Module, batch: Any) -> torch.Tensor:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
            raise ValueError(f"find_lr: without step_fn a batch must be (inputs, targets), got {type(batch).__name__}"
                             f"{' of length ' + str(len(batch)) if isinstance(batch, (tuple, list)) else ''}; "
                             "pass step_fn(model, batch) -> loss for other batches")
        inputs, targets = batch
        return criterion(model(inputs), targets)

    return step


def endless(loader: Iterable) -> Iterator[Any]:
    """Batches of `loader`, starting a new pass (epoch) whenever one ends."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("find_lr: train_loader yielded no batch")


def to_device(batch: Any, device: torch.device) -> Any:
    """Tensors of a (nested) batch moved to `device`; other values unchanged."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(to_device(value, device) for value in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(value, device) for value in batch)
    return batch


def batch_size(batch: Any) -> int:
    """Rows of the first tensor in a (nested) batch; 1 when it holds no tensor."""
    pending = [batch]
    while pending:
        item = pending.pop(0)
        if isinstance(item, torch.Tensor):
            return int(item.shape[0]) if item.dim() else 1
        if isinstance(item, Mapping):
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
    return 1
