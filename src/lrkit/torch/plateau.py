"""Reduce-on-plateau: torch's rule, standalone or as a resumable factor on an lrkit schedule.

The rule is PyTorch's ``torch.optim.lr_scheduler.ReduceLROnPlateau`` (torch docs, "Reduce learning
rate when a metric has stopped improving"; Keras ``ReduceLROnPlateau`` before it):

    better(a)  =  a < best·(1 − threshold)   (min, rel)     a < best − threshold   (min, abs)
                  a > best·(1 + threshold)   (max, rel)     a > best + threshold   (max, abs)
    bad epochs counted while not better; cooldown epochs count none;
    when bad epochs > patience:  lr_g ← max(lr_g·factor, min_lr_g)  if the drop exceeds eps.
"""

from __future__ import annotations

import logging
import math
from numbers import Real
from typing import Any, SupportsFloat

from torch.optim import Optimizer

logger = logging.getLogger(__name__)

_MODES = ("min", "max")
_THRESHOLD_MODES = ("rel", "abs")


class ReduceLROnPlateau:
    """Cut the LR by `factor` when a metric has not improved for more than `patience` reports.

    Two ways to use it:

    * **standalone**, ``ReduceLROnPlateau(optimizer, ...)`` then ``step(metric)`` after each
      validation: it rewrites the optimizer's group LRs exactly as torch's class does (same
      floats, tested against it).
    * **as a factor on a schedule**, ``ReduceLROnPlateau(...)`` without an optimizer, handed to
      ``ScheduledLR(optimizer, schedule, plateau=...)``: each group's LR becomes

          lr_g = max(schedule_lr_g · m_g,  min(schedule_lr_g, min_lr_g))

      where the multiplier ``m_g`` starts at 1 and is multiplied by `factor` at every cut (a cut
      is made when it lowers the current LR by more than `eps`, as in torch). So "warm up, then
      cosine, and also cut on plateau" is one scheduler; `min_lr` floors the plateau's cuts but
      never lifts the schedule's own values. Call ``scheduler.report(metric)`` to step the
      plateau and apply a cut at once.

    A NaN metric is ignored (no counter moves) and logged as a warning; ``nan_reports`` counts
    them. `state_dict` holds the counters and multipliers, so a resumed run cuts identically.
    """

    def __init__(self, optimizer: Optimizer | None = None, mode: str = "min", factor: float = 0.1,
                 patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel",
                 cooldown: int = 0, min_lr: float | list[float] = 0.0, eps: float = 1e-8):
        if optimizer is not None and not isinstance(optimizer, Optimizer):
            raise ValueError(f"ReduceLROnPlateau: optimizer must be a torch.optim.Optimizer or None, got {optimizer!r}")
        if mode not in _MODES:
            raise ValueError(f"ReduceLROnPlateau: mode must be one of {_MODES}, got {mode!r}")
        if threshold_mode not in _THRESHOLD_MODES:
            raise ValueError(f"ReduceLROnPlateau: threshold_mode must be one of {_THRESHOLD_MODES}, got {threshold_mode!r}")
        if not _is_real(factor) or not 0.0 < factor < 1.0:
            raise ValueError(f"ReduceLROnPlateau: factor must be a number in (0, 1), got {factor!r}")
        for name, value in (("patience", patience), ("cooldown", cooldown)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"ReduceLROnPlateau: {name} must be an integer >= 0, got {value!r}")
        for name, value in (("threshold", threshold), ("eps", eps)):
            if not _is_real(value) or not value >= 0 or not math.isfinite(value):
                raise ValueError(f"ReduceLROnPlateau: {name} must be a finite number >= 0, got {value!r}")
        min_lrs = list(min_lr) if isinstance(min_lr, (list, tuple)) else None
        for value in (min_lrs if min_lrs is not None else [min_lr]):
            if not _is_real(value) or not value >= 0 or not math.isfinite(value):
                raise ValueError(f"ReduceLROnPlateau: min_lr must be a finite number >= 0 or a list of them, got {min_lr!r}")
        if optimizer is not None and min_lrs is not None and len(min_lrs) != len(optimizer.param_groups):
            raise ValueError(f"ReduceLROnPlateau: min_lr has {len(min_lrs)} values, the optimizer has "
                             f"{len(optimizer.param_groups)} param groups")
        self.optimizer = optimizer
        self.mode = mode
        self.factor = float(factor)
        self.patience = patience
        self.threshold = float(threshold)
        self.threshold_mode = threshold_mode
        self.cooldown = cooldown
        self.eps = float(eps)
        self._min_lr = [float(v) for v in min_lrs] if min_lrs is not None else float(min_lr)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0
        self.nan_reports = 0
        self.multipliers: list[float] = []  # factor mode: one per group, created on first use
        self._schedule_lrs: list[float] | None = None  # factor mode: the LRs last passed to adjust_lrs
        self._last_lr = [float(g["lr"]) for g in optimizer.param_groups] if optimizer is not None else []

    # ---- the rule -------------------------------------------------------------------------
    def is_better(self, value: float) -> bool:
        """Whether `value` improves on ``best`` by more than the threshold (torch's ``_is_better``)."""
        if self.mode == "min":
            return value < (self.best * (1.0 - self.threshold) if self.threshold_mode == "rel"
                            else self.best - self.threshold)
        return value > (self.best * (self.threshold + 1.0) if self.threshold_mode == "rel"
                        else self.best + self.threshold)

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def step(self, metric: SupportsFloat) -> bool:
        """Report one value of the monitored metric; returns whether the LR was cut now.

        Standalone, the optimizer's LRs change at once. As a schedule factor, the cut lands in
        the optimizer at the next ``ScheduledLR.step()`` (or at once through ``report``).
        """
        value = float(metric)
        if math.isnan(value):
            self.nan_reports += 1
            logger.warning("ReduceLROnPlateau: ignoring a NaN metric (report %d, %d NaN so far); "
                           "no counter changed", self.last_epoch + 1, self.nan_reports)
            return False
        self.last_epoch += 1
        if self.is_better(value):
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
        return self._cut_optimizer() if self.optimizer is not None else self._cut_multipliers()

    def _cut_optimizer(self) -> bool:
        groups = self.optimizer.param_groups
        min_lrs = self._min_lrs(len(groups))
        cut = False
        for group, min_lr in zip(groups, min_lrs):
            old = float(group["lr"])
            new = max(old * self.factor, min_lr)
            if old - new > self.eps:
                group["lr"] = new
                cut = True
        self._last_lr = [float(g["lr"]) for g in groups]
        if cut:
            logger.info("ReduceLROnPlateau: LRs cut to %s at report %d", self._last_lr, self.last_epoch)
        return cut

    def _cut_multipliers(self) -> bool:
        if self._schedule_lrs is None:
            raise RuntimeError("ReduceLROnPlateau: without an optimizer it is a factor on a schedule; "
                               "pass it to ScheduledLR(..., plateau=...) before reporting metrics")
        cut = False
        for g, lr in enumerate(self._schedule_lrs):
            old = self._adjusted(g, lr)
            new = max(lr * self.multipliers[g] * self.factor, min(lr, self._min_lrs(len(self.multipliers))[g]))
            if old - new > self.eps:
                self.multipliers[g] *= self.factor
                cut = True
        if cut:
            logger.info("ReduceLROnPlateau: multipliers cut to %s at report %d", self.multipliers, self.last_epoch)
        return cut

    # ---- factor on a schedule ----------------------------------------------------------------
    def adjust_lrs(self, lrs: list[float]) -> list[float]:
        """The scheduled LRs with the plateau's cuts applied (the `ScheduledLR` hook)."""
        if self.optimizer is not None:
            raise RuntimeError("ReduceLROnPlateau: this plateau drives its optimizer directly; build it "
                               "without an optimizer to use it as a factor on a schedule")
        if not self.multipliers:
            self.multipliers = [1.0] * len(lrs)
        elif len(self.multipliers) != len(lrs):
            raise ValueError(f"ReduceLROnPlateau: it holds {len(self.multipliers)} group multipliers, "
                             f"got {len(lrs)} LRs")
        self._min_lrs(len(lrs))  # validates a per-group min_lr list against the groups
        self._schedule_lrs = [float(lr) for lr in lrs]
        self._last_lr = [self._adjusted(g, lr) for g, lr in enumerate(self._schedule_lrs)]
        return list(self._last_lr)

    def _adjusted(self, group: int, lr: float) -> float:
        return max(lr * self.multipliers[group], min(lr, self._min_lrs(len(self.multipliers))[group]))

    def _min_lrs(self, groups: int) -> list[float]:
        if not isinstance(self._min_lr, list):
            return [self._min_lr] * groups
        if len(self._min_lr) != groups:
            raise ValueError(f"ReduceLROnPlateau: min_lr has {len(self._min_lr)} values for {groups} param groups")
        return self._min_lr

    def get_last_lr(self) -> list[float]:
        """The LRs after the last report (standalone) or the last `adjust_lrs` (factor mode)."""
        return list(self._last_lr)

    # ---- resume ------------------------------------------------------------------------------
    _STATE_KEYS = ("best", "num_bad_epochs", "cooldown_counter", "last_epoch", "nan_reports", "multipliers")

    def state_dict(self) -> dict[str, Any]:
        """Counters, best value and group multipliers (the optimizer saves its own LRs)."""
        return {"best": self.best, "num_bad_epochs": self.num_bad_epochs, "cooldown_counter": self.cooldown_counter,
                "last_epoch": self.last_epoch, "nan_reports": self.nan_reports, "multipliers": list(self.multipliers)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what `state_dict` saved; the next reports behave as in the saved run."""
        missing = [key for key in self._STATE_KEYS if key not in state_dict]
        if missing:
            raise ValueError(f"ReduceLROnPlateau.load_state_dict: missing keys {missing} in {state_dict!r}")
        self.best = float(state_dict["best"])
        self.num_bad_epochs = int(state_dict["num_bad_epochs"])
        self.cooldown_counter = int(state_dict["cooldown_counter"])
        self.last_epoch = int(state_dict["last_epoch"])
        self.nan_reports = int(state_dict["nan_reports"])
        self.multipliers = [float(m) for m in state_dict["multipliers"]]


def _is_real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)
