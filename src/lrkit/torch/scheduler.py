"""`ScheduledLR`: drive a torch optimizer's learning rates from an lrkit schedule."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from lrkit.schedules import Schedule, in_epochs
from lrkit.torch._group_lrs import current_lrs, group_scales, write_lrs
from lrkit.torch.plateau import PlateauFactor
from lrkit.validation import fail, instance, integer, optional, positive


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

    It is a torch ``LRScheduler`` through torch's own code: the constructor calls
    ``LRScheduler.__init__`` (its initial step takes ``last_epoch``, the step, from −1 to 0 and
    sets ``schedule(0)``) and `step` calls ``LRScheduler.step`` with `get_lr` as the closed form.
    So ``_step_count``, ``base_lrs``, `get_last_lr`, the wrapped ``optimizer.step`` behind torch's
    "``scheduler.step()`` before ``optimizer.step()``" warning, and whatever else a torch version
    keeps are set by torch itself rather than imitated (``_step_count`` counts this object's
    `step` calls, as in torch; it is not saved). `step(k)` jumps to update k without torch's
    deprecated epoch path.

    Inside torch's composers: ``SequentialLR`` restarts it at its milestone, so it runs in local
    time, ``schedule(k − milestone)`` (as `lrkit.schedules.join`); a member it has not started yet
    saves ``"step": -1`` and loading that leaves the optimizer's LRs alone, so a ``SequentialLR``
    resumes identically at any step. ``ChainedScheduler`` steps its members in turn and this one
    overwrites the LRs with its closed form: members before it have no effect, and a multiplicative
    one after it (e.g. ``ExponentialLR(γ)``) multiplies only the current value, giving
    ``scale_g·schedule(k)·γ`` from step 1 on, not ``·γᵏ`` (and `load_state_dict` sets
    ``scale_g·schedule(k)``, without the ``·γ``, until the next step). Compose schedules with
    `lrkit.schedules` (``join``, ``warmup``, ``scale``, ``clip``) instead.

    `momentum`, a schedule, sets SGD's ``momentum`` or Adam-style ``betas[0]`` the same way
    (e.g. ``one_cycle(...).momentum_schedule()``); it follows `step`, `report`, `load_state_dict`
    and ``SequentialLR``'s restart at a milestone. `plateau`, a
    `lrkit.torch.PlateauFactor`, multiplies the scheduled LRs through ``plateau.adjust_lrs(lrs)``;
    `report(metric)` feeds it a validation metric and applies a cut at once. Its state is saved
    under ``"plateau"`` in `state_dict`.
    """

    def __init__(self, optimizer: Optimizer, schedule: Schedule, *, momentum: Schedule | None = None,
                 plateau: PlateauFactor | None = None):
        owner = "ScheduledLR"
        instance(owner, "optimizer", optimizer, Optimizer, "a torch.optim.Optimizer")
        instance(owner, "schedule", schedule, Schedule, "an lrkit schedule")
        optional(instance, owner, "momentum", momentum, Schedule, "an lrkit schedule or None")
        if momentum is not None and any("momentum" not in g and "betas" not in g for g in optimizer.param_groups):
            raise fail(owner, "optimizer", "one with 'momentum' or 'betas' (SGD, Adam, ...) to take a momentum "
                       "schedule", type(optimizer).__name__)
        optional(instance, owner, "plateau", plateau, PlateauFactor,
                 "a lrkit.torch.PlateauFactor (a factor built without an optimizer) or None")
        self.scales = group_scales(owner, optimizer)
        self.schedule = schedule
        self.momentum = momentum
        self.plateau = plateau
        self._lr_values = _BlockCache(schedule)
        self._momentum_values = _BlockCache(momentum) if momentum is not None else None
        super().__init__(optimizer)

    @classmethod
    def from_epochs(cls, optimizer: Optimizer, schedule: Schedule, steps_per_epoch: float, *,
                    momentum: Schedule | None = None, plateau: PlateauFactor | None = None) -> ScheduledLR:
        """Per-step scheduling of a schedule written in epochs (`lrkit.schedules.in_epochs`)."""
        momentum = None if momentum is None else in_epochs(momentum, steps_per_epoch)
        return cls(optimizer, in_epochs(schedule, steps_per_epoch), momentum=momentum, plateau=plateau)

    def step(self, epoch: int | None = None) -> None:
        """Advance one update, or jump to update `epoch` when given (timm-style explicit step)."""
        if epoch is not None:
            integer("ScheduledLR.step", "epoch", epoch, minimum=0,
                    allowed="an update number, an integer >= 0 (a metric goes to report(metric); in Lightning "
                    "use the callback lrkit.lightning.ReportMetric, not 'monitor')")
            self.last_epoch = int(epoch) - 1  # torch's step() adds the 1
        super().step()
        self._set_momentum()  # torch versions whose step() does not go through _update_lr

    def _update_lr(self, epoch: int | None = None) -> None:
        """Torch's LR update (``step`` calls it, ``SequentialLR`` calls it alone at a milestone), then the momentum."""
        super()._update_lr(epoch)
        self._set_momentum()

    def report(self, metric: float) -> bool:
        """Feed `metric` to the plateau and apply its cut to the optimizer now; True if it cut."""
        if self.plateau is None:
            raise RuntimeError("ScheduledLR.report: this scheduler has no plateau (pass plateau=...)")
        cut = self.plateau.step(metric)
        self._refresh()
        return cut

    def get_lr(self) -> list[float | Tensor]:
        """The LRs for the current step (closed form; a plateau only notes the LRs it scaled)."""
        reference = self._lr_values(self.last_epoch)
        lrs = [scale * reference for scale in self.scales]
        return list(self.plateau.adjust_lrs(lrs) if self.plateau is not None else lrs)

    def _set_momentum(self) -> None:
        if self._momentum_values is None:
            return
        value = self._momentum_values(self.last_epoch)
        for group in self.optimizer.param_groups:
            if "betas" in group:
                group["betas"] = (value, *group["betas"][1:])
            else:
                group["momentum"] = value

    def _refresh(self) -> None:
        """Set the current step's LRs and momentum again, counting no step (after a cut or a load)."""
        write_lrs(self.optimizer, self.get_lr())
        self._last_lr = current_lrs(self.optimizer)
        self._set_momentum()

    def state_dict(self) -> dict[str, Any]:
        """``{"step", "scales"[, "plateau"]}``: everything needed to resume (tensor-free)."""
        state: dict[str, Any] = {"step": self.last_epoch, "scales": list(self.scales)}
        if self.plateau is not None:
            state["plateau"] = self.plateau.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume at the saved step; the optimizer's LRs are set for that step at once.

        Step −1 is a scheduler not started yet (a later member of a ``SequentialLR``): it is
        restored as such and the optimizer's LRs, which belong to the running member, are left alone.
        """
        owner = "ScheduledLR.load_state_dict"
        instance(owner, "state_dict", state_dict, dict, "a dict saved by state_dict()")
        if "step" not in state_dict or "scales" not in state_dict:
            raise fail(owner, "state_dict", "a dict with the keys 'step' and 'scales'", state_dict)
        step, saved = integer(owner, "step", state_dict["step"], minimum=-1), state_dict["scales"]
        instance(owner, "scales", saved, (list, tuple), "a list of numbers > 0")
        groups = len(self.optimizer.param_groups)
        if len(saved) != groups:
            raise fail(owner, "scales", f"one per param group ({groups})", saved)
        scales = [float(positive(owner, "each of scales", scale)) for scale in saved]
        if self.plateau is not None:
            if "plateau" not in state_dict:
                raise fail(owner, "state_dict", "a dict with a 'plateau' entry (this scheduler has a plateau)",
                           state_dict)
            self.plateau.load_state_dict(state_dict["plateau"])
        self.scales = scales
        self.last_epoch = int(step)
        if self.last_epoch >= 0:
            self._refresh()
