"""The LR range test (Smith 2015, "Cyclical Learning Rates for Training Neural Networks", §3.3;
fastai ``lr_find``): raise the LR every mini-batch, record the loss, read off where it falls fastest.

`find_lr` sweeps every parameter group together (keeping their LR ratios); `find_group_lrs`
sweeps one group at a time, holding the others at their current LR. The suggestion is read by the
rule for the schedule the LR is for (`lrkit.suggest.choose_rule`), then checked: it must hold
for a few dozen updates from the starting state, or it is backed off (`finder_check`). Both
leave the model, optimizer, GradScaler, random generators and loader generators exactly as they
found them (see `finder_state`), whether the test completes, diverges, meets a NaN or is
interrupted. Under ``torch.distributed`` every loss is averaged over the ranks, so all ranks see
one curve.
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

from lrkit.suggest import DEFAULT_METHOD, Method, ScheduleFor, choose_rule, suggest
from lrkit.torch.finder_batches import StepFn, default_step, endless
from lrkit.torch.finder_check import CHECKS, CheckResult, HoldTest
from lrkit.torch.finder_result import FinderResult
from lrkit.torch.finder_state import TrainingSnapshot, loader_generators
from lrkit.torch.finder_step import BiasCorrectedAverage, Stepper, mean_over_ranks, model_device, rank
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
    - `schedule`: what the LR is for, instead of `method`: ``"constant"`` (the ``minimum`` rule),
      ``"decaying"`` (``consensus``), or a `lrkit.schedules.Schedule` or its spec, classified
      as one of them (`lrkit.suggest.choose_rule`). Refused together with a `method` other than
      the default.
    - `check`: ``"hold"`` (default) trains from the starting state at `hold_margin` (10^0.5)
      times the suggestion for `hold_steps` (40) updates, and backs the suggestion off by a
      quarter decade while the loss does not hold (`finder_check`), spending at most `num_iter`
      updates; ``"none"`` skips it. The check reads the training loss, also with `val_loader`.
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
    schedule: ScheduleFor | None = None
    check: str = "hold"
    hold_steps: int = 40
    hold_margin: float = 10**0.5
    progress: bool = True

    def __post_init__(self) -> None:
        ramp(self.start_lr, self.end_lr, self.num_iter, self.mode)  # validates the four
        in_range("find_lr", "smooth", self.smooth, 0.0, 1.0, open_high=True)
        in_range("find_lr", "diverge_factor", self.diverge_factor, 1.0, math.inf, open_low=True, open_high=True)
        integer("find_lr", "accumulation_steps", self.accumulation_steps, minimum=1)
        optional(callable_arg, "find_lr", "step_fn", self.step_fn, "(model, batch) -> loss")
        optional(integer, "find_lr", "seed", self.seed, minimum=0)
        choose_rule(self.method, self.schedule, owner="find_lr")
        choice("find_lr", "check", self.check, CHECKS)
        integer("find_lr", "hold_steps", self.hold_steps, minimum=1)
        in_range("find_lr", "hold_margin", self.hold_margin, 1.0, math.inf, open_high=True)
        flag("find_lr", "progress", self.progress)

    @property
    def lrs(self) -> np.ndarray:
        return ramp(self.start_lr, self.end_lr, self.num_iter, self.mode)


def find_lr(model: nn.Module, optimizer: torch.optim.Optimizer, criterion: Callable | None, train_loader: Iterable,
            options: FinderOptions | None = None, **overrides: Any) -> FinderResult:
    """Run the LR range test on every parameter group at once, check its suggestion, and restore
    everything afterwards.

    Group g gets ``lr_g(i) = ramp(i) * lr_g / lr_0`` (its current LR relative to the first
    group's), so discriminative ratios are kept; ``result.group_lrs`` scales the suggestion the
    same way (and so does the check). Each iteration trains on a batch at the next LR of the ramp
    and records its loss (the loss before the step, or the validation loss after it).

    `criterion(model(x), y)` computes the loss of an ``(x, y)`` batch (None when `step_fn` does).
    The settings are `options` (`FinderOptions`), with any of its fields replaced by keyword:
    ``find_lr(model, opt, criterion, loader, num_iter=50, progress=False)``.
    """
    options = with_overrides("find_lr", FinderOptions, options, overrides)
    _check_criterion(criterion, options)
    scales = _group_scales(optimizer.param_groups)
    with _restored(model, optimizer, train_loader, options) as restart:
        return _range_test(model, optimizer, criterion, train_loader, dict(enumerate(scales)), options, restart,
                           "LR range test", lambda lr: [lr * s for s in scales], None)


def find_group_lrs(model: nn.Module, optimizer: torch.optim.Optimizer, criterion: Callable | None,
                   train_loader: Iterable, options: FinderOptions | None = None,
                   **overrides: Any) -> tuple[FinderResult, ...]:
    """One range test per parameter group: group g sweeps the ramp (and its check holds group g's
    suggestion) while every other group keeps its current LR; everything is restored between
    sweeps and afterwards.

    Takes `find_lr`'s arguments. ``results[g].suggestion`` is the suggested LR of group g;
    ``results[g].group_lrs`` are all groups' LRs with group g set to it. With `seed` given,
    every sweep sees the same batches in the same order.
    """
    options = with_overrides("find_group_lrs", FinderOptions, options, overrides)
    _check_criterion(criterion, options)
    current = [float(group["lr"]) for group in optimizer.param_groups]
    results = []
    for g in range(len(current)):
        with _restored(model, optimizer, train_loader, options) as restart:
            results.append(_range_test(model, optimizer, criterion, train_loader, {g: 1.0}, options, restart,
                                       f"LR range test, group {g}", _with_group(current, g), g))
    return tuple(results)


# -- set-up -----------------------------------------------------------------------------------
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
def _restored(model, optimizer, train_loader, options: FinderOptions) -> Iterator[Callable[[], None]]:
    """Snapshot on entry (then seed, if asked) and yield ``restart()``, which puts the snapshot
    back and seeds again (the check starts every hold with it); restore in a ``finally`` on any exit."""
    loaders = [loader for loader in (train_loader, options.val_loader) if loader is not None]
    snapshot = TrainingSnapshot.take(model, optimizer, loaders=loaders, grad_scaler=options.grad_scaler)

    def seed() -> None:
        if options.seed is not None:
            torch.manual_seed(options.seed)
            np.random.seed(options.seed % 2**32)
            random.seed(options.seed)
            for generator in loader_generators(loaders):
                generator.manual_seed(options.seed)

    def restart() -> None:
        snapshot.restore()
        seed()

    try:
        seed()
        yield restart
    finally:
        snapshot.restore()


def _lr_setter(optimizer: torch.optim.Optimizer, scales: Mapping[int, float]) -> Callable[[float], None]:
    """``set_lr(lr)``: group g's LR becomes ``scale_g * lr`` for the groups in `scales`. Reads
    ``optimizer.param_groups`` on every call: a restore replaces them (``load_state_dict``)."""
    def set_lr(lr: float) -> None:
        for g, scale in scales.items():
            optimizer.param_groups[g]["lr"] = lr * scale

    return set_lr


def _progress_bar(label: str, total: int, options: FinderOptions) -> contextlib.AbstractContextManager:
    """The shared bar (`lrkit.progress`), imported here, inside the snapshot: importing rich draws
    from Python's `random` (``rich.style`` seeds an id counter with ``getrandbits``), which the
    restore then undoes, so even the first call in a process leaves `random` as it found it."""
    from lrkit.progress import progress_bar

    return progress_bar(label, total, enabled=options.progress and rank() == 0, transient=True)


# -- the range test ---------------------------------------------------------------------------
def _range_test(model, optimizer, criterion, train_loader, scales: Mapping[int, float], options: FinderOptions,
                restart: Callable[[], None], label: str, group_lrs_of: Callable[[float], list[float]],
                group: int | None) -> FinderResult:
    """The sweep, its suggestion and the check of it, inside the caller's snapshot (`_restored`)."""
    stepper = Stepper(model, optimizer, options.step_fn if options.step_fn is not None else default_step(criterion),
                      model_device(model, options.device), options.accumulation_steps, options.grad_scaler,
                      options.autocast_dtype)
    set_lr = _lr_setter(optimizer, scales)
    curve = _sweep(stepper, train_loader, set_lr, options, label)
    if len(curve.raw) < 2:
        raise RuntimeError(f"the LR range test recorded {len(curve.raw)} finite loss(es) before it stopped "
                           f"({curve.stop}); it needs at least 2: lower start_lr or check the model and data")
    lrs = options.lrs[: len(curve.raw)]
    found = suggest(lrs, curve.smoothed, curve.raw, method=options.method, schedule=options.schedule)
    check = None
    if options.check == "hold":
        check = _check(found.lr, HoldTest(stepper, train_loader, restart, set_lr, options.hold_steps,
                                          options.hold_margin, budget=options.num_iter), options, label)
    return FinderResult.from_curve(lrs, curve.smoothed, curve.raw, found=found, check=check,
                                   group_lrs_of=group_lrs_of, stop_reason=curve.stop, group=group,
                                   validation=options.val_loader is not None)


@dataclass
class _Curve:
    raw: list[float]
    smoothed: list[float]
    stop: str


def _sweep(stepper: Stepper, train_loader: Iterable, set_lr: Callable[[float], None], options: FinderOptions,
           label: str) -> _Curve:
    """Train along the ramp, one `set_lr(ramp(i))` per iteration."""
    batches = endless(train_loader)
    smoother = BiasCorrectedAverage(options.smooth)
    curve, best = _Curve([], [], "completed"), math.inf
    stepper.model.train()
    lrs = options.lrs.tolist()
    with _progress_bar(label, len(lrs), options) as bar:
        for lr in lrs:
            set_lr(lr)
            loss = stepper.train_loss(batches)
            if options.val_loader is not None:
                loss = stepper.validation_loss(options.val_loader)
            value = mean_over_ranks(loss)
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


def _check(candidate: float, test: HoldTest, options: FinderOptions, label: str) -> CheckResult:
    """Run the hold test on the suggestion, with its own bar (up to its budget of updates)."""
    with _progress_bar(f"{label}: check", test.budget, options) as bar:
        result = test.run(candidate, bar.advance)
    logger.log(logging.INFO if result.verified else logging.WARNING, "%s: %s", label, result.note)
    return result
