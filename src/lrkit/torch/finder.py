"""The LR range test (Smith 2015, "Cyclical Learning Rates for Training Neural Networks", §3.3;
fastai ``lr_find``): raise the LR every mini-batch, record the loss, read off where it falls fastest.

`find_lr` sweeps every parameter group together (keeping their LR ratios); `find_group_lrs`
sweeps one group at a time, holding the others at their current LR. Both leave the model,
optimizer, GradScaler, random generators and loader generators exactly as they found them
(see `finder_state`), whether the test completes, diverges, meets a NaN or is interrupted.
Under ``torch.distributed`` every loss is averaged over the ranks, so all ranks see one curve.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lrkit.progress import progress_bar
from lrkit.suggest import DEFAULT_METHOD, Method, resolve_rule
from lrkit.torch.finder_batches import StepFn, batch_size, default_step, endless, to_device
from lrkit.torch.finder_result import FinderResult
from lrkit.torch.finder_state import TrainingSnapshot, loader_generators
from lrkit.validation import callable_arg, choice, flag, in_range, integer, optional, positive, with_overrides

__all__ = ["BiasCorrectedAverage", "FinderOptions", "FinderResult", "find_group_lrs", "find_lr", "ramp"]

logger = logging.getLogger(__name__)


def ramp(start_lr: float, end_lr: float, num_iter: int, mode: str = "exp") -> np.ndarray:
    """The LR of each iteration ``i = 0 .. n-1`` of the range test (``n = num_iter``).

    exp:    ``lr_i = start_lr * (end_lr / start_lr) ** (i / (n - 1))``
    linear: ``lr_i = start_lr + (end_lr - start_lr) * i / (n - 1)``

    Smith 2015 §3.3 raises the LR linearly; the exponential ramp is fastai ``lr_find``'s
    (``SchedExp``, which uses ``i / n`` and so never reaches ``end_lr``) and torch-lr-finder's
    ``ExponentialLR`` (``i / (n - 1)``, as here: the last iteration uses exactly ``end_lr``).
    """
    positive("ramp", "start_lr", start_lr)
    in_range("ramp", "end_lr", end_lr, start_lr, math.inf, open_low=True, open_high=True)
    integer("ramp", "num_iter", num_iter, minimum=2)
    choice("ramp", "mode", mode, ("exp", "linear"))
    fraction = np.arange(num_iter, dtype=np.float64) / (num_iter - 1)
    if mode == "exp":
        return start_lr * (end_lr / start_lr) ** fraction
    return start_lr + (end_lr - start_lr) * fraction


@dataclass(frozen=True)
class FinderOptions:
    """The settings of a range test (`find_lr`, `find_group_lrs`), validated at construction.

    - `start_lr`, `end_lr`, `num_iter`, `mode`: the ramp, one LR per iteration (see `ramp`).
    - `smooth`: ``beta`` of the bias-corrected average of the recorded losses (`BiasCorrectedAverage`).
    - `diverge_factor`: the test stops after the first iteration whose smoothed loss exceeds this
      many times the lowest so far; it also stops before the first non-finite loss (not recorded).
    - `accumulation_steps`: batches per iteration; each loss is divided by this number and
      back-propagated, then one optimizer step. The recorded loss is the mean over them.
    - `val_loader`: when given, the recorded loss is the example-weighted mean loss over this
      loader after each step, instead of the training loss.
    - `device`: where batches are moved (default: the model's device); the model is not moved.
    - `step_fn`: ``step_fn(model, batch) -> loss`` for batches that are not ``(x, y)`` (dicts,
      several inputs); then the finder's `criterion` may be None.
    - `seed`: seeds torch, numpy, Python and the loaders' generators for the test only.
    - `grad_scaler`: a ``torch.amp.GradScaler`` the step goes through.
    - `autocast_dtype`: run the forward passes under ``torch.autocast(dtype=autocast_dtype)``.
    - `method`: the rule of the reported suggestion, a name registered in `lrkit.suggest.HEURISTICS`
      or a callable ``(lrs, losses) -> lr`` (see `lrkit.suggest.resolve_rule`).
    - `progress`: show a progress bar (on rank 0 only under ``torch.distributed``).
    """

    start_lr: float = 1e-7
    end_lr: float = 10.0
    num_iter: int = 100
    mode: str = "exp"
    smooth: float = 0.98
    diverge_factor: float = 4.0
    accumulation_steps: int = 1
    val_loader: Iterable | None = None
    device: torch.device | str | None = None
    step_fn: StepFn | None = None
    seed: int | None = None
    grad_scaler: Any = None
    autocast_dtype: torch.dtype | None = None
    method: Method = DEFAULT_METHOD
    progress: bool = True

    def __post_init__(self) -> None:
        ramp(self.start_lr, self.end_lr, self.num_iter, self.mode)  # validates the four
        in_range("find_lr", "smooth", self.smooth, 0.0, 1.0, open_high=True)
        in_range("find_lr", "diverge_factor", self.diverge_factor, 1.0, math.inf, open_low=True, open_high=True)
        integer("find_lr", "accumulation_steps", self.accumulation_steps, minimum=1)
        optional(callable_arg, "find_lr", "step_fn", self.step_fn, "(model, batch) -> loss")
        optional(integer, "find_lr", "seed", self.seed, minimum=0)
        resolve_rule(self.method, owner="find_lr")
        flag("find_lr", "progress", self.progress)

    @property
    def lrs(self) -> np.ndarray:
        return ramp(self.start_lr, self.end_lr, self.num_iter, self.mode)


def find_lr(model: nn.Module, optimizer: torch.optim.Optimizer, criterion: Callable | None, train_loader: Iterable,
            options: FinderOptions | None = None, **overrides: Any) -> FinderResult:
    """Run the LR range test on every parameter group at once and restore everything afterwards.

    Group g gets ``lr_g(i) = ramp(i) * lr_g / lr_0`` (its current LR relative to the first
    group's), so discriminative ratios are kept; ``result.group_lrs`` scales the suggestion the
    same way. Each iteration trains on a batch at the next LR of the ramp and records its loss
    (the loss before the step, or the validation loss after it).

    `criterion(model(x), y)` computes the loss of an ``(x, y)`` batch (None when `step_fn` does).
    The settings are `options` (`FinderOptions`), with any of its fields replaced by keyword:
    ``find_lr(model, opt, criterion, loader, num_iter=50, progress=False)``.
    """
    options = with_overrides("find_lr", FinderOptions, options, overrides)
    _check_criterion(criterion, options)
    scales = _group_scales(optimizer.param_groups)
    with _restored(model, optimizer, train_loader, options):
        curve = _sweep(model, optimizer, criterion, train_loader, dict(enumerate(scales)), options, "LR range test")
    return _result(curve, options, lambda lr: [lr * s for s in scales], None)


def find_group_lrs(model: nn.Module, optimizer: torch.optim.Optimizer, criterion: Callable | None,
                   train_loader: Iterable, options: FinderOptions | None = None,
                   **overrides: Any) -> tuple[FinderResult, ...]:
    """One range test per parameter group: group g sweeps the ramp while every other group keeps
    its current LR; everything is restored between sweeps and afterwards.

    Takes `find_lr`'s arguments. ``results[g].suggestion`` is the suggested LR of group g;
    ``results[g].group_lrs`` are all groups' LRs with group g set to it. With `seed` given,
    every sweep sees the same batches in the same order.
    """
    options = with_overrides("find_group_lrs", FinderOptions, options, overrides)
    _check_criterion(criterion, options)
    current = [float(group["lr"]) for group in optimizer.param_groups]
    results = []
    for g in range(len(current)):
        with _restored(model, optimizer, train_loader, options):
            curve = _sweep(model, optimizer, criterion, train_loader, {g: 1.0}, options, f"LR range test, group {g}")
        results.append(_result(curve, options, _with_group(current, g), g))
    return tuple(results)


# -- set-up and result --------------------------------------------------------------------
def _check_criterion(criterion: Callable | None, options: FinderOptions) -> None:
    if criterion is None and options.step_fn is None:
        raise ValueError("find_lr: criterion must be given unless step_fn computes the loss, got criterion=None")


def _with_group(current: list[float], g: int) -> Callable[[float], list[float]]:
    """``lr -> current`` LRs with group g's replaced by `lr`."""
    return lambda lr: [lr if k == g else v for k, v in enumerate(current)]


def _group_scales(groups: Sequence[dict]) -> list[float]:
    """``lr_g / lr_0`` for every group (1.0 for a single group, whatever its LR)."""
    if len(groups) == 1:
        return [1.0]
    first = float(groups[0]["lr"])
    if not first > 0:
        raise ValueError(f"find_lr: with several parameter groups the first group's lr must be > 0 (the groups "
                         f"keep their ratios to it), got {first!r}")
    return [float(group["lr"]) / first for group in groups]


@contextlib.contextmanager
def _restored(model, optimizer, train_loader, options: FinderOptions) -> Iterator[None]:
    """Snapshot on entry (then seed, if asked); restore in a ``finally`` on any exit."""
    loaders = [loader for loader in (train_loader, options.val_loader) if loader is not None]
    snapshot = TrainingSnapshot.take(model, optimizer, loaders=loaders, grad_scaler=options.grad_scaler)
    try:
        if options.seed is not None:
            torch.manual_seed(options.seed)
            np.random.seed(options.seed % 2**32)
            random.seed(options.seed)
            for generator in loader_generators(loaders):
                generator.manual_seed(options.seed)
        yield
    finally:
        snapshot.restore()


def _result(curve: _Curve, options: FinderOptions, group_lrs_of: Callable[[float], list[float]],
            group: int | None) -> FinderResult:
    if len(curve.raw) < 2:
        raise RuntimeError(f"the LR range test recorded {len(curve.raw)} finite loss(es) before it stopped "
                           f"({curve.stop}); it needs at least 2: lower start_lr or check the model and data")
    return FinderResult.from_curve(options.lrs[: len(curve.raw)], curve.smoothed, curve.raw, method=options.method,
                                   group_lrs_of=group_lrs_of, stop_reason=curve.stop, group=group,
                                   validation=options.val_loader is not None)


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


@dataclass
class _Curve:
    raw: list[float]
    smoothed: list[float]
    stop: str


# -- the sweep ----------------------------------------------------------------------------
def _sweep(model, optimizer, criterion, train_loader, scales: Mapping[int, float], options: FinderOptions,
           label: str) -> _Curve:
    """Train along the ramp, moving the groups in `scales` (``lr_g = scale * ramp(i)``)."""
    step = options.step_fn if options.step_fn is not None else default_step(criterion)
    device = _device(model, options.device)
    autocast = (torch.autocast(device_type=device.type, dtype=options.autocast_dtype)
                if options.autocast_dtype is not None else contextlib.nullcontext())
    batches = endless(train_loader)
    groups = optimizer.param_groups
    smoother = BiasCorrectedAverage(options.smooth)
    curve, best = _Curve([], [], "completed"), math.inf
    model.train()
    lrs = options.lrs.tolist()
    with progress_bar(label, len(lrs), enabled=options.progress and _rank() == 0, transient=True) as bar:
        for lr in lrs:
            for g, scale in scales.items():
                groups[g]["lr"] = lr * scale
            loss = _train_iteration(model, optimizer, batches, step, device, options.accumulation_steps,
                                    options.grad_scaler, autocast)
            if options.val_loader is not None:
                loss = _validation_loss(model, options.val_loader, step, device, autocast)
            value = _mean_over_ranks(loss)
            if not math.isfinite(value):
                curve.stop = "non-finite"
                break
            current = smoother(value)
            curve.raw.append(value)
            curve.smoothed.append(current)
            best = min(best, current)
            bar.advance()
            if current > options.diverge_factor * best:
                curve.stop = "diverged"
                break
    logger.info("%s: %d iterations, stopped: %s", label, len(curve.raw), curve.stop)
    return curve


def _device(model: nn.Module, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def _train_iteration(model: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterator[Any], step: StepFn,
                     device: torch.device, accumulation_steps: int, grad_scaler: Any,
                     autocast: contextlib.AbstractContextManager) -> torch.Tensor:
    """One optimizer step on `accumulation_steps` batches; their summed (already divided) losses."""
    optimizer.zero_grad(set_to_none=True)
    losses = []
    for _ in range(accumulation_steps):
        with autocast:
            loss = step(model, to_device(next(batches), device)) / accumulation_steps
        (grad_scaler.scale(loss) if grad_scaler is not None else loss).backward()
        losses.append(loss.detach())
    if grad_scaler is not None:
        grad_scaler.step(optimizer)
        grad_scaler.update()
    else:
        optimizer.step()
    return sum(losses[1:], losses[0])  # summed in order: L_0 + L_1 + ...


def _validation_loss(model, val_loader, step, device, autocast) -> torch.Tensor:
    """Example-weighted mean loss over the whole validation loader (summed over ranks)."""
    model.eval()
    total, count = None, 0
    with torch.no_grad(), autocast:
        for batch in val_loader:
            batch = to_device(batch, device)
            size = batch_size(batch)
            loss = step(model, batch).detach().float() * size
            total = loss if total is None else total + loss
            count += size
    model.train()
    if total is None:
        raise ValueError("find_lr: val_loader yielded no batch")
    return torch.stack([total, torch.tensor(float(count), device=total.device)])


def _mean_over_ranks(loss: torch.Tensor) -> float:
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


def _rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0
