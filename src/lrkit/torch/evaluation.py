"""One evaluation loop (device-aware), the classification metric the tasks share, and the
switch between an optimizer's training and evaluation points.

Schedule-free optimizers (Defazio et al. 2024, arXiv 2405.15682; `lrkit.torch.optimizers`)
take gradients at one point (y) and return another (x, an average): the model must hold x
whenever it is evaluated or saved, and y whenever it trains. Their ``optimizer.eval()`` and
``optimizer.train()`` move the parameters between the two (schedulefree README, "How to
Use"); `evaluation_point` wraps an evaluation in that switch, `training_point` starts training.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

Metric = Callable[[torch.Tensor, torch.Tensor], float]

#: Training batches that recompute BatchNorm statistics at the evaluation point (the number the
#: schedulefree README's BatchNorm recipe and its CIFAR-10 example use).
BN_BATCHES = 50


def accuracy(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of rows whose arg-max equals the target class."""
    return (outputs.argmax(dim=1) == targets).float().mean().item()


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable[Any], criterion: Callable[..., torch.Tensor], metric: Metric,
             device: torch.device | str | None = None) -> tuple[float, float]:
    """``(criterion, metric)`` over every ``(x, y)`` batch of `loader`, computed on the whole pass.

    Batches go to `device` (default: the model's); the model is put in eval mode for the pass
    and back in the mode it was in afterwards. With a schedule-free optimizer, call it inside
    `evaluation_point`.
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


def has_eval_switch(optimizer: torch.optim.Optimizer) -> bool:
    """Whether `optimizer` keeps separate training and evaluation points behind ``train()`` /
    ``eval()`` (every ``schedulefree`` optimizer; torch's have neither method)."""
    return callable(getattr(optimizer, "train", None)) and callable(getattr(optimizer, "eval", None))


def training_point(optimizer: torch.optim.Optimizer) -> None:
    """Put the model at `optimizer`'s training point (``optimizer.train()``), where a
    schedule-free optimizer can step; any other optimizer is left as it is."""
    if has_eval_switch(optimizer):
        optimizer.train()  # type: ignore[attr-defined]


@contextmanager
def evaluation_point(model: nn.Module, optimizer: torch.optim.Optimizer, train_loader: Iterable[Any] | None = None,
                     *, bn_batches: int = BN_BATCHES) -> Iterator[None]:
    """Inside, the model holds the point `optimizer` is to be evaluated at; afterwards it is back
    at the training point. Nothing happens for an optimizer without the switch (`has_eval_switch`).

    For a schedule-free optimizer: ``optimizer.eval()`` (parameters to x) on entry and
    ``optimizer.train()`` (back to y) on exit. BatchNorm running statistics were gathered at y;
    with `train_loader` they are recomputed at x from its first `bn_batches` batches, as the
    README's caveat on BatchNorm asks (see `recompute_bn_statistics`). The recomputed
    statistics stay: training does not read them, and the next evaluation recomputes them.
    """
    if not has_eval_switch(optimizer):
        yield
        return
    optimizer.eval()  # type: ignore[attr-defined]
    try:
        if train_loader is not None:
            recompute_bn_statistics(model, train_loader, bn_batches)
        yield
    finally:
        optimizer.train()  # type: ignore[attr-defined]


@torch.no_grad()
def recompute_bn_statistics(model: nn.Module, loader: Iterable[Any], batches: int = BN_BATCHES) -> None:
    """Running mean and variance of every BatchNorm layer recomputed at the current parameters
    as the plain average over the first `batches` ``(x, y)`` batches of `loader`, forwarded in
    training mode (PreciseBN: Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm", arXiv
    2105.07576, §3; torch's ``momentum=None``). The schedulefree README's recipe forwards 50
    batches with the usual momentum 0.1 instead, which keeps ``0.9 ** n`` of the old statistics
    when the loader has only n < 50 batches. A layer that does not run in training mode (frozen
    by `lrkit.torch.freeze`) keeps its statistics, as does a model without BatchNorm.
    """
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not layers:
        return
    saved = [(m.momentum, {name: buffer.clone() for name, buffer in m.named_buffers(recurse=False)})
             for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was_training = model.training
    device = next(model.parameters()).device
    model.train()
    try:
        for x, _ in itertools.islice(loader, batches):
            model(x.to(device))
    finally:
        model.train(was_training)
        for m, (momentum, buffers) in zip(layers, saved):
            m.momentum = momentum
            if m.num_batches_tracked == 0:  # never ran in training mode: its statistics stand
                for name, value in buffers.items():
                    getattr(m, name).copy_(value)
