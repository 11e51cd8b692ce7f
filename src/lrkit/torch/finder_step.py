"""One training iteration of the range test and of its check, and the losses they record.

`Stepper` holds what every iteration needs (the model, optimizer, step function, device,
gradient accumulation, GradScaler and autocast); `train_loss` makes one optimizer step,
`validation_loss` measures the validation loader after it. `mean_over_ranks` turns either loss
into one float that every rank of ``torch.distributed`` agrees on; `BiasCorrectedAverage` is the
smoothing the sweep and the check both read.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lrkit.torch.finder_batches import StepFn, batch_size, to_device


class BiasCorrectedAverage:
    """fastai's smoothed loss (``AvgSmoothLoss``): an exponential moving average divided by its
    bias, so early values are not pulled towards 0 (Kingma & Ba 2015, §3).

    ``a_i = beta * a_{i-1} + (1 - beta) * L_i`` with ``a_{-1} = 0``; ``S_i = a_i / (1 - beta ** (i + 1))``.
    """

    def __init__(self, beta: float):
        self.beta, self.average, self.count = beta, 0.0, 0

    def __call__(self, loss: float) -> float:
        self.count += 1
        self.average = self.beta * self.average + (1.0 - self.beta) * loss
        return self.average / (1.0 - self.beta ** self.count)


@dataclass(frozen=True)
class Stepper:
    """How the range test trains: `step(model, batch) -> loss` on `device`, `accumulation_steps`
    batches per optimizer step, through `grad_scaler` and under ``torch.autocast(autocast_dtype)``
    when given."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    step: StepFn
    device: torch.device
    accumulation_steps: int = 1
    grad_scaler: Any = None
    autocast_dtype: torch.dtype | None = None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def train_loss(self, batches: Iterator[Any]) -> torch.Tensor:
        """One optimizer step on `accumulation_steps` batches; their summed (already divided) losses."""
        self.optimizer.zero_grad(set_to_none=True)
        losses = []
        for _ in range(self.accumulation_steps):
            with self.autocast():
                loss = self.step(self.model, to_device(next(batches), self.device)) / self.accumulation_steps
            (self.grad_scaler.scale(loss) if self.grad_scaler is not None else loss).backward()
            losses.append(loss.detach())
        if self.grad_scaler is not None:
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            self.optimizer.step()
        return sum(losses[1:], losses[0])  # summed in order: L_0 + L_1 + ...

    def validation_loss(self, val_loader: Iterable) -> torch.Tensor:
        """Example-weighted mean loss over the whole validation loader, as ``[sum, count]``."""
        self.model.eval()
        total, count = None, 0
        with torch.no_grad(), self.autocast():
            for batch in val_loader:
                batch = to_device(batch, self.device)
                size = batch_size(batch)
                loss = self.step(self.model, batch).detach().float() * size
                total = loss if total is None else total + loss
                count += size
        self.model.train()
        if total is None:
            raise ValueError("find_lr: val_loader yielded no batch")
        return torch.stack([total, torch.tensor(float(count), device=total.device)])


def model_device(model: nn.Module, device: torch.device | str | None) -> torch.device:
    """`device` if given, else where the model's first parameter lives (the CPU for none)."""
    if device is not None:
        return torch.device(device)
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def mean_over_ranks(loss: torch.Tensor) -> float:
    """The loss as a float, averaged over ranks under torch.distributed. A validation loss comes
    as ``[sum, count]`` and is averaged per example."""
    loss = loss.detach().float()
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if loss.dim() == 1:  # [sum, count]
        if distributed:
            torch.distributed.all_reduce(loss)
        return (loss[0] / loss[1]).item()
    if distributed:
        torch.distributed.all_reduce(loss)
        loss /= torch.distributed.get_world_size()
    return loss.item()


def rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0
