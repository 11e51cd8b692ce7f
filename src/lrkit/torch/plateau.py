"""Reduce-on-plateau: torch's rule, standalone or as a resumable factor on an lrkit schedule.

The rule is PyTorch's ``torch.optim.lr_scheduler.ReduceLROnPlateau`` (torch docs, "Reduce learning
rate when a metric has stopped improving"; Keras ``ReduceLROnPlateau`` before it):

    better(a)  =  a < best·(1 − threshold)   (min, rel)     a < best − threshold   (min, abs)
                  a > best·(1 + threshold)   (max, rel)     a > best + threshold   (max, abs)
    bad epochs counted while not better; cooldown epochs count none;
    when bad epochs > patience:  lr_g ← max(lr_g·factor, min_lr_g)  if the drop exceeds eps.

Two classes share the counting (`_PlateauRule`, one copy): `ReduceLROnPlateau`, torch's class with
lrkit's checks, cuts the optimizer's LRs; `PlateauFactor` cuts a multiplier on a `ScheduledLR`.
"""

from __future__ import annotations

import logging
import math
from numbers import Real
from typing import Any, Literal, SupportsFloat

from torch.optim import Optimizer, lr_scheduler

from lrkit.torch._group_lrs import current_lrs
from lrkit.validation import choice, fail, in_range, instance, integer, non_negative

logger = logging.getLogger(__name__)

_MODES = ("min", "max")
_THRESHOLD_MODES = ("rel", "abs")
_COUNTERS = ("num_bad_epochs", "cooldown_counter", "last_epoch", "nan_reports")


class _PlateauRule:
    """The counting of the module docstring's rule, as in torch's ``ReduceLROnPlateau.step``.

    A NaN metric is ignored (no counter moves), counted in ``nan_reports`` and logged as a warning.
    """

    mode: str
    threshold: float
    threshold_mode: str
    patience: int
    cooldown: int
    best: float
    num_bad_epochs: int
    cooldown_counter: int
    last_epoch: int
    nan_reports: int

    def _is_better(self, a: float, best: float) -> bool:
        """Whether `a` improves on `best` by more than the threshold (torch's ``_is_better``)."""
        if self.mode == "min":
            return a < (best * (1.0 - self.threshold) if self.threshold_mode == "rel" else best - self.threshold)
        return a > (best * (self.threshold + 1.0) if self.threshold_mode == "rel" else best + self.threshold)

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _cut_due(self, metrics: SupportsFloat) -> bool:
        """Count one report of the metric; True when the LR must be cut now."""
        value = float(metrics)
        if math.isnan(value):
            self.nan_reports += 1
            logger.warning("%s: ignoring a NaN metric (report %d, %d NaN so far); no counter changed",
                           type(self).__name__, self.last_epoch + 1, self.nan_reports)
            return False
        self.last_epoch += 1
        if self._is_better(value, self.best):
            self.best = value
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in cooldown do not count (torch)
        if self.num_bad_epochs <= self.patience:
            return False
        self.cooldown_counter = self.cooldown
        self.num_bad_epochs = 0
        return True


def _check_rule(owner: str, mode: str, factor: float, patience: int, threshold: float, threshold_mode: str,
                cooldown: int, min_lr: float | list[float], eps: float) -> None:
    choice(owner, "mode", mode, _MODES)
    in_range(owner, "factor", factor, 0.0, 1.0, open_low=True, open_high=True)
    integer(owner, "patience", patience, minimum=0)
    non_negative(owner, "threshold", threshold)
    choice(owner, "threshold_mode", threshold_mode, _THRESHOLD_MODES)
    integer(owner, "cooldown", cooldown, minimum=0)
    for value in min_lr if isinstance(min_lr, (list, tuple)) else [min_lr]:
        non_negative(owner, "each of min_lr", value)
    non_negative(owner, "eps", eps)


def _checked_state(owner: str, state: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """`state` if it holds `keys` with usable values: a number or ±inf for ``best``, counters >= 0."""
    instance(owner, "state_dict", state, dict, "a dict saved by state_dict()")
    missing = [key for key in keys if key not in state]
    if missing:
        raise fail(owner, "state_dict", f"a plateau state with the keys {list(keys)} (missing keys {missing})",
                   state)
    if not isinstance(state["best"], Real) or math.isnan(state["best"]):
        raise fail(owner, "best", "a number or ±inf", state["best"])
    for key in _COUNTERS:
        integer(owner, key, state[key], minimum=0)
    return state


class ReduceLROnPlateau(_PlateauRule, lr_scheduler.ReduceLROnPlateau):
    """Torch's ``ReduceLROnPlateau`` (a subclass: Lightning's ``monitor`` and the HF Trainer see it as
    one), making the same cuts to the same floats, with lrkit's extras:

    * arguments checked at construction (``ValueError`` naming the parameter);
    * a NaN metric is ignored and counted in ``nan_reports`` (torch counts it as a bad epoch);
    * `step(metrics)` returns whether it cut the LRs now;
    * `load_state_dict` refuses a state without the counters or with negative ones.

    Torch's ``__init__``, ``_reduce_lr`` (the cut), ``state_dict`` and ``load_state_dict`` run as
    they are; the counting in `step` is `_PlateauRule`'s, shared with `PlateauFactor` (tested equal
    to torch's float for float). To cut a schedule's LRs instead of the optimizer's, use `PlateauFactor`.
    """

    def __init__(self, optimizer: Optimizer, mode: Literal["min", "max"] = "min", factor: float = 0.1,
                 patience: int = 10, threshold: float = 1e-4, threshold_mode: Literal["rel", "abs"] = "rel",
                 cooldown: int = 0, min_lr: float | list[float] = 0.0, eps: float = 1e-8):
        owner = "ReduceLROnPlateau"
        instance(owner, "optimizer", optimizer, Optimizer, "a torch.optim.Optimizer")
        _check_rule(owner, mode, factor, patience, threshold, threshold_mode, cooldown, min_lr, eps)
        groups = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)) and len(min_lr) != groups:
            raise fail(owner, "min_lr", f"a number or one per param group ({groups})", min_lr)
        super().__init__(optimizer, mode=mode, factor=factor, patience=patience, threshold=threshold,
                         threshold_mode=threshold_mode, cooldown=cooldown,
                         min_lr=list(min_lr) if isinstance(min_lr, (list, tuple)) else min_lr, eps=eps)
        self.nan_reports = 0

    # returns whether it cut and takes no deprecated `epoch`; torch's returns None
    def step(self, metrics: SupportsFloat) -> bool:  # type: ignore[override]
        """Report one value of the monitored metric; True if the optimizer's LRs were cut now."""
        cut = False
        if self._cut_due(metrics):
            before = [float(group["lr"]) for group in self.optimizer.param_groups]
            self._reduce_lr(self.last_epoch)
            cut = before != [float(group["lr"]) for group in self.optimizer.param_groups]
        self._last_lr = current_lrs(self.optimizer)
        if cut:
            logger.info("ReduceLROnPlateau: LRs cut to %s at report %d", self._last_lr, self.last_epoch)
        return cut

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Torch's load (settings and counters as saved), once the state is checked: the counters,
        the rule's settings as the constructor checks them, and no key `state_dict` does not save
        (torch's load sets every key as an attribute, an ``optimizer`` one included)."""
        owner = "ReduceLROnPlateau.load_state_dict"
        state = _checked_state(owner, state_dict, ("best", *_COUNTERS))
        own = self.state_dict()
        unknown = sorted(set(state) - set(own))
        if unknown:
            raise fail(owner, "state_dict", f"a state saved by ReduceLROnPlateau.state_dict() (unknown keys {unknown})",
                       state)
        merged = own | state
        _check_rule(owner, merged["mode"], merged["factor"], merged["patience"], merged["threshold"],
                    merged["threshold_mode"], merged["cooldown"], merged["min_lrs"], merged["eps"])
        groups = len(self.optimizer.param_groups)
        if not isinstance(merged["min_lrs"], list) or len(merged["min_lrs"]) != groups:
            raise fail(owner, "min_lrs", f"a list of one LR >= 0 per param group ({groups})", merged["min_lrs"])
        super().load_state_dict(state)


class PlateauFactor(_PlateauRule):
    """Reduce-on-plateau as a factor on a schedule: ``ScheduledLR(optimizer, schedule, plateau=PlateauFactor())``.

    Each group's LR becomes

        lr_g = max(schedule_lr_g · m_g,  min(schedule_lr_g, min_lr_g))

    where the multiplier ``m_g`` starts at 1 and is multiplied by `factor` at every cut (a cut is
    made when it lowers the current LR by more than `eps`, as in torch). So "warm up, then cosine,
    and also cut on plateau" is one scheduler; `min_lr` floors the plateau's cuts but never lifts
    the schedule's own values. ``ScheduledLR.report(metric)`` steps it and applies a cut at once.
    Same arguments and counting as `ReduceLROnPlateau`, without an optimizer. `state_dict` holds the
    counters and multipliers, so a resumed run cuts identically.
    """

    _STATE_KEYS = ("best", *_COUNTERS, "multipliers")

    def __init__(self, mode: Literal["min", "max"] = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: Literal["rel", "abs"] = "rel", cooldown: int = 0,
                 min_lr: float | list[float] = 0.0, eps: float = 1e-8):
        _check_rule("PlateauFactor", mode, factor, patience, threshold, threshold_mode, cooldown, min_lr, eps)
        self.mode = mode
        self.factor = float(factor)
        self.patience = patience
        self.threshold = float(threshold)
        self.threshold_mode = threshold_mode
        self.cooldown = cooldown
        self.eps = float(eps)
        self._min_lr = [float(v) for v in min_lr] if isinstance(min_lr, (list, tuple)) else float(min_lr)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0
        self.nan_reports = 0
        self.multipliers: list[float] = []  # one per group, created by the first adjust_lrs
        self._schedule_lrs: list[float] | None = None  # the LRs last passed to adjust_lrs
        self._last_lr: list[float] = []

    def step(self, metrics: SupportsFloat) -> bool:
        """Report one value of the monitored metric; True if the multipliers were cut now.

        The cut lands in the optimizer at the next ``ScheduledLR.step()`` (or at once through
        ``ScheduledLR.report``).
        """
        return self._cut_due(metrics) and self._cut_multipliers()

    def _cut_multipliers(self) -> bool:
        if self._schedule_lrs is None:
            raise RuntimeError("PlateauFactor: it is a factor on a schedule; pass it to "
                               "ScheduledLR(..., plateau=...) before reporting metrics")
        cut = False
        for g, lr in enumerate(self._schedule_lrs):
            old = self._adjusted(g, lr)
            new = max(lr * self.multipliers[g] * self.factor, min(lr, self._min_lrs(len(self.multipliers))[g]))
            if old - new > self.eps:
                self.multipliers[g] *= self.factor
                cut = True
        if cut:
            logger.info("PlateauFactor: multipliers cut to %s at report %d", self.multipliers, self.last_epoch)
        return cut

    def adjust_lrs(self, lrs: list[float]) -> list[float]:
        """The scheduled LRs with the plateau's cuts applied (the `ScheduledLR` hook)."""
        if not self.multipliers:
            self.multipliers = [1.0] * len(lrs)
        elif len(self.multipliers) != len(lrs):
            raise fail("PlateauFactor.adjust_lrs", "lrs", f"one LR per multiplier ({len(self.multipliers)})", lrs)
        self._min_lrs(len(lrs))  # checks a per-group min_lr list against the groups
        self._schedule_lrs = [float(lr) for lr in lrs]
        self._last_lr = [self._adjusted(g, lr) for g, lr in enumerate(self._schedule_lrs)]
        return list(self._last_lr)

    def _adjusted(self, group: int, lr: float) -> float:
        return max(lr * self.multipliers[group], min(lr, self._min_lrs(len(self.multipliers))[group]))

    def _min_lrs(self, groups: int) -> list[float]:
        if not isinstance(self._min_lr, list):
            return [self._min_lr] * groups
        if len(self._min_lr) != groups:
            raise fail("PlateauFactor", "min_lr", f"a number or one per param group ({groups})", self._min_lr)
        return self._min_lr

    def get_last_lr(self) -> list[float]:
        """The LRs after the last `adjust_lrs`."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """Counters, best value and group multipliers (the optimizer saves its own LRs)."""
        return {"best": self.best, "num_bad_epochs": self.num_bad_epochs, "cooldown_counter": self.cooldown_counter,
                "last_epoch": self.last_epoch, "nan_reports": self.nan_reports, "multipliers": list(self.multipliers)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what `state_dict` saved; the next reports behave as in the saved run."""
        owner = "PlateauFactor.load_state_dict"
        state = _checked_state(owner, state_dict, self._STATE_KEYS)
        instance(owner, "multipliers", state["multipliers"], list, "a list of numbers in (0, 1]")
        for value in state["multipliers"]:
            in_range(owner, "each of multipliers", value, 0.0, 1.0, open_low=True)
        self.best = float(state["best"])
        self.num_bad_epochs = int(state["num_bad_epochs"])
        self.cooldown_counter = int(state["cooldown_counter"])
        self.last_epoch = int(state["last_epoch"])
        self.nan_reports = int(state["nan_reports"])
        self.multipliers = [float(m) for m in state["multipliers"]]
