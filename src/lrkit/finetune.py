"""The fast.ai transfer-learning recipe as one readable function, and its two stages.

fast.ai 2018 (lesson 1, "the eight steps"; Howard & Ruder 2018 for the discriminative factor):

1. find the LR for the new head (LR range test, Smith 2017);
2. train the head with the pretrained body frozen, one-cycle policy (Smith 2018);
3. unfreeze the body (at once, or gradually from the head down: ULMFiT §3.3);
4. give earlier layer groups lower LRs: ``lr_g = lr_head / factor ** (G - 1 - g)`` (ULMFiT §3.2: 2.6);
5. find the LR again, now for the whole network;
6. train everything with SGDR, cycles doubling in length (``t_mul=2``, "cycle_mult=2").

`train_head` is steps 1-2, `train_unfrozen` steps 3-6; `fine_tune` runs both. Every stage logs
its LR choice and each epoch through `logging` and returns its history. A schedule-free
optimizer (`StageOptions.optimizer` may build one) is switched to its training point when built
and evaluated at its evaluation point (`lrkit.torch.evaluation.evaluation_point`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader

from lrkit.progress import progress_bar
from lrkit.schedules import Schedule, one_cycle, sgdr
from lrkit.torch import (
    GradualUnfreezing,
    LayerGroup,
    ScheduledLR,
    discriminative_lrs,
    discriminative_param_groups,
    find_lr,
    freeze,
    layer_groups,
    unfreeze,
)
from lrkit.torch.evaluation import Metric, accuracy, evaluate, evaluation_point, training_point
from lrkit.torch.freezing import BN_MODES, BNMode
from lrkit.validation import (
    callable_arg,
    choice,
    fail,
    flag,
    instance,
    non_negative,
    optional,
    positive,
    with_overrides,
)

__all__ = ["EpochRecord", "FineTuneResult", "StageOptions", "StageResult", "adamw", "fine_tune", "train_head",
           "train_unfrozen"]

log = logging.getLogger(__name__)

OptimizerFactory = Callable[[list[dict[str, Any]]], Optimizer]


def adamw(param_groups: list[dict[str, Any]]) -> Optimizer:
    """The default optimizer: AdamW, weight decay 0.01 (fastai's default optimizer family)."""
    return torch.optim.AdamW(param_groups, weight_decay=0.01)


@dataclass(frozen=True)
class StageOptions:
    """How every stage trains, whatever its LRs: the settings `train_head`, `train_unfrozen` and
    `fine_tune` share (each takes ``options`` plus keyword overrides of these fields).

    `optimizer` builds the optimizer from param-group dicts; `metric(outputs, targets)` scores a
    validation pass; `bn` is how frozen BatchNorm layers behave (`lrkit.torch.freeze`);
    `finder` holds keyword arguments of `lrkit.torch.find_lr` for the stages that find their LR;
    `progress` shows a progress bar per stage.
    """

    optimizer: OptimizerFactory = adamw
    metric: Metric = accuracy
    bn: BNMode = "freeze"
    finder: dict[str, Any] | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        callable_arg("fine_tune", "optimizer", self.optimizer, "(param_groups) -> Optimizer")
        callable_arg("fine_tune", "metric", self.metric, "(outputs, targets) -> float")
        choice("fine_tune", "bn", self.bn, BN_MODES)
        optional(instance, "fine_tune", "finder", self.finder, dict, "a dict of find_lr keyword arguments")
        flag("fine_tune", "progress", self.progress)


@dataclass(frozen=True)
class EpochRecord:
    """One epoch of a stage: losses, validation metric, the LRs of its last update, trainable groups."""

    stage: str
    epoch: int
    steps: int
    train_loss: float
    val_loss: float
    metric: float
    lrs: tuple[float, ...]
    trainable_groups: int


@dataclass(frozen=True)
class StageResult:
    """A stage: its peak per-group LRs, where the head LR came from, and its epochs."""

    name: str
    lrs: tuple[float, ...]
    lr_source: str
    history: tuple[EpochRecord, ...]

    @property
    def metric(self) -> float:
        return self.history[-1].metric


@dataclass(frozen=True)
class FineTuneResult:
    stages: tuple[StageResult, ...]

    @property
    def metric(self) -> float:
        """Validation metric after the last epoch of the last stage."""
        return self.stages[-1].metric

    @property
    def history(self) -> list[EpochRecord]:
        return [r for s in self.stages for r in s.history]

    def to_dict(self) -> dict[str, Any]:
        return {"stages": [asdict(s) for s in self.stages]}


def train_head(
    model: nn.Module,
    groups: Sequence[LayerGroup],
    train_loader: DataLoader,
    val_loader: DataLoader,
    criterion: nn.Module,
    *,
    epochs: float = 1,
    lr: float | None = None,
    options: StageOptions | None = None,
    **overrides: Any,
) -> StageResult:
    """Steps 1-2: freeze all groups but the head, find its LR (unless `lr` is given), train it
    `epochs` epochs with the one-cycle policy (LR and Adam's beta1 / SGD's momentum cycled).
    `options` / `overrides`: see `StageOptions`."""
    opts = with_overrides("train_head", StageOptions, options, overrides)
    _check_common(groups, epochs, lr)
    total = _total_steps(epochs, _steps_per_epoch(train_loader))
    freeze(groups, bn=opts.bn)
    opt = _build_optimizer(opts, [{"params": list(groups[-1].params), "lr": lr or 1.0}])
    lr, source = _choose_lr(model, opt, criterion, train_loader, lr, opts, scale=1.0, stage="head")
    for group in opt.param_groups:
        group["lr"] = lr
    schedule = one_cycle(max_lr=lr, total_steps=total)
    scheduler = ScheduledLR(opt, schedule, momentum=schedule.momentum_schedule(0.85, 0.95))
    log.info("stage head: one-cycle, max_lr %.3g, %d steps (%g epochs), %d of %d groups trainable",
             lr, total, epochs, 1, len(groups))
    history = _fit("head", model, groups, opt, scheduler, None, train_loader, val_loader, criterion, total, opts)
    return StageResult("head", (lr,), source, history)


def train_unfrozen(
    model: nn.Module,
    groups: Sequence[LayerGroup],
    train_loader: DataLoader,
    val_loader: DataLoader,
    criterion: nn.Module,
    *,
    epochs: float,
    lr: float | None = None,
    factor: float = 2.6,
    cycle_len: float = 1,
    t_mul: float = 2.0,
    gradual_every: float | None = None,
    gradual_start: int = 2,
    options: StageOptions | None = None,
    **overrides: Any,
) -> StageResult:
    """Steps 3-6: unfreeze (at once, or one more group every `gradual_every` epochs starting with
    `gradual_start` trainable groups), discriminative LRs ``lr_g = lr / factor ** (G - 1 - g)``
    with `lr` the head's LR (found again unless given), SGDR with first cycle `cycle_len` epochs
    and cycle lengths multiplied by `t_mul`. ``factor=1`` trains every group with one LR.
    `options` / `overrides`: see `StageOptions`."""
    opts = with_overrides("train_unfrozen", StageOptions, options, overrides)
    _check_common(groups, epochs, lr)
    spe = _steps_per_epoch(train_loader)
    total = _total_steps(epochs, spe)
    positive("train_unfrozen", "cycle_len", cycle_len)
    template = sgdr(lr=1.0, first_cycle_steps=cycle_len * spe, t_mul=t_mul)  # validates t_mul before any work
    ratios = discriminative_lrs(len(groups), 1.0, factor=factor)  # lr_g / lr_head; validates factor
    if gradual_every is None:
        unfreeze(groups)
        unfreezer = None
    else:
        unfreezer = GradualUnfreezing(groups, gradual_every, steps_per_epoch=spe, start=gradual_start, bn=opts.bn)
    opt = _build_optimizer(opts, discriminative_param_groups(groups, lrs=ratios))
    head_lr, source = _choose_lr(model, opt, criterion, train_loader, lr, opts, scale=ratios[0], stage="unfrozen")
    lrs = tuple(head_lr * r for r in ratios)
    for group, value in zip(opt.param_groups, lrs):
        group["lr"] = value
    schedule: Schedule = dataclasses.replace(template, lr=lrs[0])
    scheduler = ScheduledLR(opt, schedule)
    _warn_mid_cycle(epochs, cycle_len, t_mul)
    log.info("stage unfrozen: SGDR first cycle %g epochs, t_mul %g, %d steps; LRs per group %s; %s",
             cycle_len, t_mul, total, ", ".join(f"{v:.3g}" for v in lrs),
             "all groups trainable" if unfreezer is None else f"gradual unfreezing every {gradual_every:g} epochs")
    history = _fit("unfrozen", model, groups, opt, scheduler, unfreezer, train_loader, val_loader, criterion,
                   total, opts)
    return StageResult("unfrozen", lrs, source, history)


def fine_tune(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    criterion: nn.Module,
    *,
    epochs: float,
    freeze_epochs: float = 1,
    groups: Sequence[LayerGroup] | None = None,
    n_groups: int = 3,
    head_lr: float | None = None,
    lr: float | None = None,
    factor: float = 2.6,
    cycle_len: float = 1,
    t_mul: float = 2.0,
    gradual_every: float | None = None,
    options: StageOptions | None = None,
    **overrides: Any,
) -> FineTuneResult:
    """The fast.ai recipe (module docstring): `train_head` for `freeze_epochs` epochs (skipped when
    0), then `train_unfrozen` for `epochs` epochs (gradual unfreezing starts with the head and the
    group below it after a head stage, with the head alone without one). `groups` defaults to ``layer_groups(model,
    n_groups)``; `head_lr` / `lr` skip the corresponding LR range test; `options` / `overrides`
    (see `StageOptions`) apply to both stages."""
    opts = with_overrides("fine_tune", StageOptions, options, overrides)
    non_negative("fine_tune", "freeze_epochs", freeze_epochs)
    if groups is None:
        groups = layer_groups(model, n_groups)
    stages = []
    if freeze_epochs > 0:
        stages.append(train_head(model, groups, train_loader, val_loader, criterion, epochs=freeze_epochs,
                                 lr=head_lr, options=opts))
    stages.append(train_unfrozen(model, groups, train_loader, val_loader, criterion, epochs=epochs, lr=lr,
                                 factor=factor, cycle_len=cycle_len, t_mul=t_mul, gradual_every=gradual_every,
                                 gradual_start=min(2, len(groups)) if stages else 1, options=opts))
    return FineTuneResult(tuple(stages))


def _build_optimizer(opts: StageOptions, param_groups: list[dict[str, Any]]) -> Optimizer:
    """`opts.optimizer` over `param_groups`, at its training point (a schedule-free optimizer is
    built in eval mode, where it cannot step)."""
    opt = opts.optimizer(param_groups)
    training_point(opt)
    return opt


def _check_common(groups: Sequence[LayerGroup], epochs: float, lr: float | None) -> None:
    optional(positive, "fine_tune", "lr", lr)
    if not groups:
        raise fail("fine_tune", "groups", "at least one LayerGroup", groups)
    positive("fine_tune", "epochs", epochs)


def _steps_per_epoch(loader: DataLoader) -> int:
    try:
        steps = len(loader)
    except TypeError:
        raise ValueError("train_loader: needs a length (steps per epoch) for epoch-based schedules") from None
    if steps < 1:
        raise ValueError("train_loader: is empty")
    return steps


def _total_steps(epochs: float, steps_per_epoch: int) -> int:
    total = epochs * steps_per_epoch
    if abs(total - round(total)) > 1e-9 or round(total) < 1:
        raise fail("fine_tune", "epochs", f"a whole number >= 1 of steps ({steps_per_epoch} per epoch: {total:g})",
                   epochs)
    return round(total)


def _warn_mid_cycle(epochs: float, cycle_len: float, t_mul: float) -> None:
    """SGDR ends at a low LR only at a cycle boundary: cycle_len * (1 + t_mul + t_mul^2 + ...)."""
    end, length = 0.0, float(cycle_len)
    while end + 1e-9 < epochs:
        end, length = end + length, length * t_mul
    if abs(end - epochs) > 1e-9:
        log.warning("stage unfrozen: %g epochs end inside an SGDR cycle (cycles end at epochs %s...)",
                    epochs, _cycle_ends(cycle_len, t_mul, epochs))


def _cycle_ends(cycle_len: float, t_mul: float, limit: float) -> str:
    ends, end, length = [], 0.0, float(cycle_len)
    while end <= limit:
        end, length = end + length, length * t_mul
        ends.append(f"{end:g}")
    return ", ".join(ends)


def _choose_lr(model: nn.Module, opt: Optimizer, criterion: nn.Module, loader: DataLoader, lr: float | None,
               opts: StageOptions, *, scale: float, stage: str) -> tuple[float, str]:
    """The head LR: `lr` if given, else the LR range test's suggestion on `opt` (whose groups keep
    their ratios; the finder reports the first group's LR, i.e. ``scale`` times the head's)."""
    if lr is not None:
        log.info("stage %s: head LR %.3g given", stage, lr)
        return float(lr), "given"
    result = find_lr(model, opt, criterion, loader, **{"progress": opts.progress, **(opts.finder or {})})
    head = float(result.suggestion) / scale
    if result.confidence == "low":
        low, high = result.interval
        log.warning("stage %s: low-confidence LR range test (heuristics span %.3g to %.3g%s); pass the LR "
                    "explicitly to override", stage, low, high, "".join(f"; {note}" for note in result.notes))
    log.info("stage %s: LR range test suggests %.3g for the first group, head LR %.3g", stage,
             result.suggestion, head)
    return head, "finder"


def _fit(stage: str, model: nn.Module, groups: Sequence[LayerGroup], opt: Optimizer, scheduler: ScheduledLR,
         unfreezer: GradualUnfreezing | None, train_loader: DataLoader, val_loader: DataLoader,
         criterion: nn.Module, total: int, opts: StageOptions) -> tuple[EpochRecord, ...]:
    """Train `total` updates, evaluating after every epoch (and after a final partial epoch)."""
    device = next(model.parameters()).device
    history: list[EpochRecord] = []
    step, epoch = 0, 0
    with progress_bar(f"fine-tune: {stage}", total, enabled=opts.progress) as bar:
        while step < total:
            model.train()
            running, seen = 0.0, 0
            for x, y in train_loader:
                x, y = x.to(device), y.to(device)
                lrs = tuple(g["lr"] for g in opt.param_groups)
                trainable = sum(all(p.requires_grad for p in g.params) for g in groups)
                opt.zero_grad(set_to_none=True)
                loss = criterion(model(x), y)
                loss.backward()
                opt.step()
                scheduler.step()
                if unfreezer is not None:
                    unfreezer.step()
                running += loss.item() * len(y)
                seen += len(y)
                step += 1
                bar.advance()
                if step == total:
                    break
            epoch += 1
            with evaluation_point(model, opt, train_loader):
                val_loss, score = evaluate(model, val_loader, criterion, opts.metric, device)
            record = EpochRecord(stage, epoch, step, running / seen, val_loss, score, lrs, trainable)
            history.append(record)
            log.info("stage %s: epoch %d (step %d) train loss %.4f, val loss %.4f, metric %.4f, "
                     "%d of %d groups trainable", stage, epoch, step, record.train_loss, val_loss, score,
                     trainable, len(groups))
    return tuple(history)
