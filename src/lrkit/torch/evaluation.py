"""One evaluation loop (device-aware) and the classification metric the tasks share."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

Metric = Callable[[torch.Tensor, torch.Tensor], float]


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of rows whose arg-max equals the target class."""
    return (outputs.argmax(dim=1) == targets).float().mean().item()


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[Any], criterion: Callable[..., torch.Tensor], metric: Metric,
             device: torch.device | str | None = None) -> tuple[float, float]:
    """``(criterion, metric)`` over every ``(x, y)`` batch of `loader`, computed on the whole pass.

    Batches go to `device` (default: the model's); the model is put in eval mode for the pass
    and back in the mode it was in afterwards.
    """
    if device is None:
        device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        outputs, targets = [], []
        for x, y in loader:
            outputs.append(model(x.to(device)))
            targets.append(y.to(device))
    finally:
        model.train(was_training)
    out, target = torch.cat(outputs), torch.cat(targets)
    return criterion(out, target).item(), metric(out, target)
