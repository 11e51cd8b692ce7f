"""`ScheduledLR`: drive a torch optimizer's learning rates from an lrkit schedule."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from lrkit.schedules import Schedule, in_epochs

logger = logging.getLogger(__name__)


class _BlockCache:
    """Values of a schedule evaluated a block of steps at a time.

    A block always starts at a multiple of `size`, so the value at a step does not depend on
    where training started or resumed. Schedules that may not be evaluated ahead (user
    functions) are called step by step instead.
    """

    def __init__(self, schedule: Schedule, size: int = 1024):
        self.schedule = schedule
        self.size = size if schedule.cacheable else 0
        self._first = -1
        self._values: list[float] = []

    def __call__(self, step: int) -> float:
        if not self.size:
            return self.schedule(step)
        offset = step - self._first
        if self._first < 0 or not 0 <= offset < self.size:
            self._first = step - step % self.size
            self._values = self.schedule(np.arange(self._first, self._first + self.size, dtype=np.float64)).tolist()
            offset = step - self._first
        return self._values[offset]


class ScheduledLR(LRScheduler):
    """Set every parameter group's LR to ``scale_g * schedule(step)`` after each `step()`.

    ``step`` counts optimizer updates from 0: at construction the groups get ``schedule(0)``
    (the LR of update 0); after k calls to `step()` they get ``schedule(k)``. ``scale_g`` is
    the group's initial LR divided by the first group's, so discriminative LRs keep their
    ratios. Each value is computed in closed form (never from the previous LR), so
    `state_dict` holds just the step (and the scales); `load_state_dict` on a fresh
    optimizer continues the identical sequence.

    `momentum`, a schedule, sets SGD's ``momentum`` or Adam-style ``betas[0]`` the same way
    (e.g. ``one_cycle(...).momentum_schedule()``). `plateau`, a `lrkit.torch.ReduceLROnPlateau`
    built without an optimizer, multiplies the scheduled LRs through ``plateau.adjust_lrs(lrs)``;
    `report(metric)` feeds it a validation metric and applies a cut at once. Its state is saved
    under ``"plateau"`` in `state_dict`.
    """

    def __init__(self, optimizer: Optimizer, schedule: Schedule, *, momentum: Schedule | None = None,
                 plateau: Any = None):
        if not isinstance(optimizer, Optimizer):
            raise ValueError(f"ScheduledLR: optimizer must be a torch.optim.Optimizer, got {optimizer!r}")
        if not isinstance(schedule, Schedule):
            raise ValueError(f"ScheduledLR: schedule must be an lrkit schedule, got {schedule!r}")
        if momentum is not None:
            if not isinstance(momentum, Schedule):
                raise ValueError(f"ScheduledLR: momentum must be an lrkit schedule or None, got {momentum!r}")
            if any("momentum" not in g and "betas" not in g for g in optimizer.param_groups):
                raise ValueError("ScheduledLR: momentum needs an optimizer with 'momentum' or 'betas' "
                                 f"(SGD, Adam, ...), got {type(optimizer).__name__}")
        if plateau is not None:
            if not all(callable(getattr(plateau, name, None))
                       for name in ("adjust_lrs", "step", "state_dict", "load_state_dict")):
                raise ValueError(f"ScheduledLR: plateau must be a lrkit.torch.ReduceLROnPlateau (or offer "
                                 f"adjust_lrs/step/state_dict/load_state_dict), got {plateau!r}")
            if getattr(plateau, "optimizer", None) is not None:
                raise ValueError("ScheduledLR: plateau must be built without an optimizer "
                                 "(ReduceLROnPlateau(mode=..., ...)); one that drives its own optimizer "
                                 "would fight the schedule")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", float(group["lr"]))
        self.base_lrs = [float(group["initial_lr"]) for group in optimizer.param_groups]
        if self.base_lrs[0] <= 0:
            raise ValueError(f"ScheduledLR: the first param group's lr must be > 0 to define the "
                             f"group scales, got {self.base_lrs[0]!r}")
        self.scales = [lr / self.base_lrs[0] for lr in self.base_lrs]
        self.schedule = schedule
        self.momentum = momentum
        self.plateau = plateau
        self._lr_values = _BlockCache(schedule)
        self._momentum_values = _BlockCache(momentum) if momentum is not None else None
        self.last_epoch = 0  # torch's name for the step counter
        self._apply()

    @classmethod
    def from_epochs(cls, optimizer: Optimizer, schedule: Schedule, steps_per_epoch: float, *,
                    momentum: Schedule | None = None, plateau: Any = None) -> "ScheduledLR":
        """Per-step scheduling of a schedule written in epochs (`lrkit.schedules.in_epochs`)."""
        momentum = None if momentum is None else in_epochs(momentum, steps_per_epoch)
        return cls(optimizer, in_epochs(schedule, steps_per_epoch), momentum=momentum, plateau=plateau)

    def step(self, epoch: int | None = None) -> None:  # noqa: D102 (torch's signature)
        """Advance one update, or jump to update `epoch` when given (timm-style explicit step)."""
        if epoch is None:
            self.last_epoch += 1
        else:
            if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
                raise ValueError(f"ScheduledLR.step: the step must be an integer >= 0, got {epoch!r}")
            self.last_epoch = int(epoch)
        self._apply()

    def report(self, metric: float) -> bool:
        """Feed `metric` to the plateau and apply its cut to the optimizer now; True if it cut."""
        if self.plateau is None:
            raise RuntimeError("ScheduledLR.report: this scheduler has no plateau (pass plateau=...)")
        cut = self.plateau.step(metric)
        self._apply()
        return cut

    def get_lr(self) -> list[float]:
        """The LRs for the current step (closed form; a plateau only notes the LRs it scaled)."""
        reference = self._lr_values(self.last_epoch)
        lrs = [scale * reference for scale in self.scales]
        return self.plateau.adjust_lrs(lrs) if self.plateau is not None else lrs

    def _apply(self) -> None:
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        if self._momentum_values is not None:
            value = self._momentum_values(self.last_epoch)
            for group in self.optimizer.param_groups:
                if "betas" in group:
                    group["betas"] = (value, *group["betas"][1:])
                else:
                    group["momentum"] = value
        self._last_lr = lrs

    def state_dict(self) -> dict[str, Any]:
        """``{"step", "scales"[, "plateau"]}``: everything needed to resume (tensor-free)."""
        state: dict[str, Any] = {"step": self.last_epoch, "scales": list(self.scales)}
        if self.plateau is not None:
            state["plateau"] = self.plateau.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume at the saved step; the optimizer's LRs are set for that step at once."""
        try:
            step, scales = state_dict["step"], [float(s) for s in state_dict["scales"]]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"ScheduledLR.load_state_dict: expected {{'step', 'scales'}}, got {state_dict!r}") from None
        if len(scales) != len(self.optimizer.param_groups):
            raise ValueError(f"ScheduledLR.load_state_dict: saved {len(scales)} group scales, the optimizer "
                             f"has {len(self.optimizer.param_groups)} param groups")
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"ScheduledLR.load_state_dict: step must be an integer >= 0, got {step!r}")
        if self.plateau is not None:
            if "plateau" not in state_dict:
                raise ValueError("ScheduledLR.load_state_dict: this scheduler has a plateau but the saved "
                                 "state has no 'plateau' entry")
            self.plateau.load_state_dict(state_dict["plateau"])
        self.scales = scales
        self.last_epoch = int(step)
        self._apply()
