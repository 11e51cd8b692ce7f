"""timm's schedulers as lrkit schedules: the cycle families and `from_timm`.

The cycle families transcribe ``timm.scheduler``'s ``CosineLRScheduler``, ``TanhLRScheduler``
and ``PolyLRScheduler`` (their ``_get_lr(t)`` without the warmup); `from_timm` mirrors
``timm.scheduler.create_scheduler_v2`` and adds timm's warmup and its step and multistep
schedules with general combinators.

Step convention: timm evaluates ``_get_lr(t)`` with ``t`` the epoch (``scheduler.step(epoch)``,
called with ``epoch + 1`` at the end of each epoch) or the update count
(``scheduler.step_update(num_updates)`` after each update). Either way epoch or update ``t``
runs with ``_get_lr(t)``, and lrkit's step ``t`` is timm's ``t``: ``sched(t) == _get_lr(t)``.
The only difference is before the first call: timm starts at its base LR (or ``warmup_lr_init``),
lrkit at ``sched(0)``; the two differ only for tanh without warmup (``_get_lr(0)`` is
``lr_min + (lr - lr_min) * 0.5 * (1 - tanh(lb))``, 8.3e-7 relative below `lr` for ``lb=-7``)
and for a multistep milestone at 0 or 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lrkit.schedules.base import Schedule, register
from lrkit.schedules.combinators import Join, Shift, Warmup
from lrkit.schedules.cosine import MAX_T_MUL, MIN_CYCLE_STEPS, cycle_index
from lrkit.schedules.decay import Constant, MultiStepDecay, StepDecay
from lrkit.validation import choice, fail, flag, in_range, integer, non_negative, positive, real_sequence

__all__ = ["TANH_LB", "TANH_UB", "TIMM_SCHEDULES", "TimmCosine", "TimmPoly", "TimmTanh", "from_timm", "timm_warmup"]

#: The ``sched`` names of ``timm.scheduler.create_scheduler_v2`` that `from_timm` builds.
TIMM_SCHEDULES = ("cosine", "tanh", "step", "multistep", "poly")


class _Cycles(Schedule):
    """timm's cycles, shared by its cosine, tanh and poly schedulers.

    Cycle ``i`` (from 0) starts at ``t_initial * (cycle_mul**i - 1) / (cycle_mul - 1)`` (at
    ``t_initial * i`` when ``cycle_mul == 1``), lasts ``t_i = t_initial * cycle_mul**i`` steps and
    starts from ``lr_max = lr * cycle_decay**i``; ``t_curr`` counts its steps. From cycle
    `cycle_limit` on the LR holds at `lr_min`. timm finds ``i`` with a floating-point logarithm,
    which can put a restart one step late (``cycle_mul=3``, ``t_initial=10``: restart 5 at
    ``t = 1210``, where timm's ``log(243, 3)`` is 4.999...); here ``i`` is corrected against the
    exact cycle starts, as in `sgdr`.
    """

    lr: float
    t_initial: float
    lr_min: float
    cycle_mul: float
    cycle_decay: float
    cycle_limit: int

    def _check_cycles(self) -> None:
        owner = self.name
        non_negative(owner, "lr", self.lr)
        if positive(owner, "t_initial", self.t_initial) < MIN_CYCLE_STEPS:
            raise fail(owner, "t_initial", f">= {MIN_CYCLE_STEPS}", self.t_initial)
        non_negative(owner, "lr_min", self.lr_min)
        in_range(owner, "cycle_mul", self.cycle_mul, 1.0, MAX_T_MUL)
        in_range(owner, "cycle_decay", self.cycle_decay, 0.0, 1.0)
        integer(owner, "cycle_limit", self.cycle_limit, minimum=1)

    def _start(self, i: np.ndarray) -> np.ndarray:
        """Where cycle `i` starts, in timm's arithmetic."""
        if self.cycle_mul == 1.0:
            return self.t_initial * i
        return (1 - self.cycle_mul**i) / (1 - self.cycle_mul) * self.t_initial

    def _lr(self, t: np.ndarray) -> np.ndarray:
        mul = self.cycle_mul
        i = cycle_index(t, self.t_initial, mul, self._start)
        held = i >= self.cycle_limit
        i = np.minimum(i, self.cycle_limit)  # held steps: any finite cycle, their value is lr_min
        t_i = mul**i * self.t_initial
        t_curr = t - self._start(i)
        lr_max = self.lr * self.cycle_decay**i
        return np.where(held, self.lr_min, self._within(lr_max, t_curr, t_i))

    def _within(self, lr_max: np.ndarray, t_curr: np.ndarray, t_i: np.ndarray) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover - abstract


@register("timm_cosine")
@dataclass(frozen=True)
class TimmCosine(_Cycles):
    """Cosine decay with restarts and k-decay (timm ``CosineLRScheduler``, without its warmup;
    Loshchilov & Hutter 2017, SGDR; Zhang & Li 2020, "k-decay", arXiv 2004.05909).

    In cycle ``i`` (cycles below),
    ``lr_t = lr_min + 0.5 * (lr_max - lr_min) * (1 + cos(pi * t_curr**k / t_i**k))``, with
    ``k = k_decay``; ``lr_min`` from cycle `cycle_limit` on. Unlike `sgdr`, whose amplitude above
    its floor shrinks, here the peak itself decays (towards `lr_min`). With ``cycle_limit=1``
    (timm's default) it is a `cosine` to `lr_min` over `t_initial` steps, held after.

    Cycle ``i`` (from 0) starts at ``t_initial * (cycle_mul**i - 1) / (cycle_mul - 1)`` (``t_initial * i``
    for ``cycle_mul=1``) and lasts ``t_i = t_initial * cycle_mul**i`` steps; ``t_curr`` counts its
    steps and ``lr_max = lr * cycle_decay**i``.
    """

    lr: float
    t_initial: float
    lr_min: float = 0.0
    cycle_mul: float = 1.0
    cycle_decay: float = 1.0
    cycle_limit: int = 1
    k_decay: float = 1.0

    def __post_init__(self) -> None:
        self._check_cycles()
        positive(self.name, "k_decay", self.k_decay)

    def _within(self, lr_max: np.ndarray, t_curr: np.ndarray, t_i: np.ndarray) -> np.ndarray:
        k = self.k_decay
        return self.lr_min + 0.5 * (lr_max - self.lr_min) * (1 + np.cos(np.pi * t_curr**k / t_i**k))


#: The bounds of timm's tanh decay: ``TanhLRScheduler``'s defaults, which its factory
#: (``create_scheduler_v2``) and ``train.py`` never change.
TANH_LB, TANH_UB = -7.0, 3.0


@register("timm_tanh")
@dataclass(frozen=True)
class TimmTanh(_Cycles):
    """Hyperbolic-tangent decay with restarts (timm ``TanhLRScheduler``, without its warmup;
    Hsueh et al. 2019, "Stochastic Gradient Descent with Hyperbolic-Tangent Decay on
    Classification", arXiv 1806.01593).

    In cycle ``i``, with ``r = t_curr / t_i``, ``lb = TANH_LB = -7`` and ``ub = TANH_UB = 3``:
    ``lr_t = lr_min + 0.5 * (lr_max - lr_min) * (1 - tanh(lb * (1 - r) + ub * r))``;
    ``lr_min`` from cycle `cycle_limit` on. At ``r = 0`` this is ``0.5 * (1 - tanh(-7))`` =
    0.9999992 of the way from `lr_min` to ``lr_max``, not quite ``lr_max``.

    Cycle ``i`` (from 0) starts at ``t_initial * (cycle_mul**i - 1) / (cycle_mul - 1)`` (``t_initial * i``
    for ``cycle_mul=1``) and lasts ``t_i = t_initial * cycle_mul**i`` steps; ``t_curr`` counts its
    steps and ``lr_max = lr * cycle_decay**i``.
    """

    lr: float
    t_initial: float
    lr_min: float = 0.0
    cycle_mul: float = 1.0
    cycle_decay: float = 1.0
    cycle_limit: int = 1

    def __post_init__(self) -> None:
        self._check_cycles()

    def _within(self, lr_max: np.ndarray, t_curr: np.ndarray, t_i: np.ndarray) -> np.ndarray:
        r = t_curr / t_i
        return self.lr_min + 0.5 * (lr_max - self.lr_min) * (1 - np.tanh(TANH_LB * (1.0 - r) + TANH_UB * r))


@register("timm_poly")
@dataclass(frozen=True)
class TimmPoly(_Cycles):
    """Polynomial decay with restarts and k-decay (timm ``PolyLRScheduler``, without its warmup;
    Zhang & Li 2020, "k-decay", arXiv 2004.05909).

    In cycle ``i``: ``lr_t = lr_min + (lr_max - lr_min) * (1 - t_curr**k / t_i**k) ** power``,
    with ``k = k_decay``; ``lr_min`` from cycle `cycle_limit` on. timm's default power is 0.5;
    its factory passes ``decay_rate`` (default 0.1) as the power.

    Cycle ``i`` (from 0) starts at ``t_initial * (cycle_mul**i - 1) / (cycle_mul - 1)`` (``t_initial * i``
    for ``cycle_mul=1``) and lasts ``t_i = t_initial * cycle_mul**i`` steps; ``t_curr`` counts its
    steps and ``lr_max = lr * cycle_decay**i``.
    """

    lr: float
    t_initial: float
    power: float = 0.5
    lr_min: float = 0.0
    cycle_mul: float = 1.0
    cycle_decay: float = 1.0
    cycle_limit: int = 1
    k_decay: float = 1.0

    def __post_init__(self) -> None:
        self._check_cycles()
        positive(self.name, "power", self.power)
        positive(self.name, "k_decay", self.k_decay)

    def _within(self, lr_max: np.ndarray, t_curr: np.ndarray, t_i: np.ndarray) -> np.ndarray:
        k = self.k_decay
        # t_curr < t_i, but rounding may put the ratio a hair above 1: no negative base for the power
        remaining = np.maximum(1 - t_curr**k / t_i**k, 0.0)
        return self.lr_min + (lr_max - self.lr_min) * remaining**self.power


def timm_warmup(schedule: Schedule, warmup_t: float, warmup_lr_init: float, target: float,
                prefix: bool) -> Schedule:
    """timm's warmup: ``warmup_lr_init + t * (target - warmup_lr_init) / warmup_t`` for
    ``t < warmup_t``; then ``schedule(t - warmup_t)`` with `prefix` (``warmup_prefix=True``), or
    ``schedule(t)`` without: the ramp replaces the first `warmup_t` steps of a schedule that keeps
    its own time, timm's default. `target` is the base LR, except for tanh without prefix, whose
    ramp ends at its schedule's value at `warmup_t`.

    As lrkit: ``join([warmup(constant(target), warmup_t, start_lr=warmup_lr_init),
    schedule if prefix else shift(schedule, warmup_t)], [warmup_t])``.
    """
    if warmup_t == 0:
        return schedule
    ramp = Warmup(Constant(target), warmup_t, start_lr=warmup_lr_init)
    if prefix:
        return Join((ramp, schedule), (warmup_t,))
    if isinstance(schedule, Shift):  # one shift, not two
        return Join((ramp, Shift(schedule.schedule, schedule.offset + warmup_t)), (warmup_t,))
    return Join((ramp, Shift(schedule, warmup_t)), (warmup_t,))


def from_timm(sched: str, lr: float, *, num_epochs: float = 300, decay_epochs: float = 90,
              decay_milestones: Sequence[float] = (90, 180, 270), cooldown_epochs: float = 0,
              patience_epochs: float = 10, decay_rate: float = 0.1, min_lr: float = 0.0, warmup_lr: float = 1e-5,
              warmup_epochs: float = 0, warmup_prefix: bool = False, noise: float | Sequence[float] | None = None,
              noise_pct: float = 0.67, noise_std: float = 1.0, noise_seed: int = 42, cycle_mul: float = 1.0,
              cycle_decay: float = 0.1, cycle_limit: int = 1, k_decay: float = 1.0, plateau_mode: str = "max",
              step_on_epochs: bool = True, updates_per_epoch: int = 0) -> Schedule:
    """The schedule ``timm.scheduler.create_scheduler_v2(optimizer, sched, ...)`` sets on an
    optimizer whose LR is `lr`, as a composed lrkit schedule. The arguments are timm's, with its
    defaults, so ``from_timm(lr=lr, **timm.scheduler.scheduler_kwargs(args))`` works.

    - ``"cosine"``, ``"tanh"``, ``"poly"``: `timm_cosine`, `timm_tanh`, `timm_poly` over
      ``t_initial = num_epochs``, with ``lr_min = min_lr`` and the cycle arguments; poly takes
      `decay_rate` as its power, as timm's factory does.
    - ``"step"``: ``step(lr, decay_epochs, decay_rate)``, ``lr * decay_rate ** (t // decay_t)``.
    - ``"multistep"``: timm counts the milestones ``m <= t + 1`` (``bisect_right(decay_t, t + 1)``),
      so the LR drops one update (or epoch) before torch's ``MultiStepLR``, which counts
      ``m <= t``: ``shift(multistep(lr, decay_milestones, decay_rate), 1)``.
    - With ``warmup_epochs > 0``: `timm_warmup`, a linear ramp from `warmup_lr`.

    With `step_on_epochs` (timm's default) the schedule's step is the epoch: step a
    ``ScheduledLR`` once per epoch. Otherwise every epoch count is multiplied by
    `updates_per_epoch` (> 0, as timm requires) and the step counts updates.

    Arguments that do not shape the chosen scheduler's LR are ignored, as in timm:
    `cooldown_epochs` only lengthens the training timm returns next to its scheduler (the
    schedule already holds `min_lr` after its cycles), `patience_epochs` and `plateau_mode`
    are the plateau's, `noise_*` shape a noise this function refuses. ``"plateau"`` reacts to a
    metric (use ``lrkit.torch.ReduceLROnPlateau``), and timm's LR `noise` draws from torch's
    generator, which a torch-free schedule cannot reproduce: both raise a ValueError.
    """
    owner = "from_timm"
    if sched == "plateau":
        raise fail(owner, "sched", "a schedule of the step; 'plateau' reacts to a metric: use "
                   "lrkit.torch.ReduceLROnPlateau, or a ScheduledLR with a lrkit.torch.PlateauFactor to warm "
                   f"up first (one of {', '.join(map(repr, TIMM_SCHEDULES))})", sched)
    choice(owner, "sched", sched, TIMM_SCHEDULES)
    if noise is not None:
        raise fail(owner, "noise", "None (timm's LR noise draws from torch's generator; "
                   "noisy_linear_cosine is lrkit's seeded noisy schedule)", noise)
    flag(owner, "warmup_prefix", warmup_prefix)
    per = 1 if flag(owner, "step_on_epochs", step_on_epochs) else integer(
        owner, "updates_per_epoch (with step_on_epochs=False)", updates_per_epoch, minimum=1)
    t_initial = positive(owner, "num_epochs", num_epochs) * per
    warmup_t = non_negative(owner, "warmup_epochs", warmup_epochs) * per
    main: Schedule
    if sched == "cosine":
        main = TimmCosine(lr, t_initial, min_lr, cycle_mul, cycle_decay, cycle_limit, k_decay)
    elif sched == "tanh":
        main = TimmTanh(lr, t_initial, lr_min=min_lr, cycle_mul=cycle_mul, cycle_decay=cycle_decay,
                        cycle_limit=cycle_limit)
    elif sched == "poly":
        main = TimmPoly(lr, t_initial, decay_rate, min_lr, cycle_mul, cycle_decay, cycle_limit, k_decay)
    elif sched == "step":
        main = StepDecay(lr, positive(owner, "decay_epochs", decay_epochs) * per, decay_rate)
    else:
        milestones = real_sequence(owner, "decay_milestones", decay_milestones)
        main = Shift(MultiStepDecay(lr, tuple(m * per for m in milestones), decay_rate), 1)
    target = main(warmup_t) if sched == "tanh" and not warmup_prefix else lr
    return timm_warmup(main, warmup_t, non_negative(owner, "warmup_lr", warmup_lr), target, warmup_prefix)
