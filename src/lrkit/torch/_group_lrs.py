"""Reading and writing the param groups' LRs the way torch's schedulers do (shared by the adapters)."""

from __future__ import annotations

from torch import Tensor
from torch.optim import Optimizer

from lrkit.validation import positive


def group_scales(owner: str, optimizer: Optimizer) -> list[float]:
    """``scale_g = initial_lr_g / initial_lr_0``: the group ratios a scheduler keeps.

    ``initial_lr`` is torch's key (set from ``lr`` by the first scheduler built on the optimizer).
    """
    initial = [float(group.get("initial_lr", group["lr"])) for group in optimizer.param_groups]
    positive(owner, "the first param group's initial lr", initial[0])
    return [lr / initial[0] for lr in initial]


def current_lrs(optimizer: Optimizer) -> list[float | Tensor]:
    """The groups' LRs as torch's ``_last_lr`` holds them: tensors copied, never aliased."""
    return [group["lr"].clone() if isinstance(group["lr"], Tensor) else group["lr"]
            for group in optimizer.param_groups]


def write_lrs(optimizer: Optimizer, lrs: list[float | Tensor]) -> None:
    """Set each group's LR, filling a tensor LR in place as torch's `LRScheduler.step` does."""
    for group, lr in zip(optimizer.param_groups, lrs):
        if isinstance(group["lr"], Tensor):
            group["lr"].fill_(float(lr))
        else:
            group["lr"] = lr
