"""Cyclical schedules: CLR (triangular, triangular2, exp_range), one-cycle with its momentum
curve, and ULMFiT's slanted triangular LR."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lrkit.schedules.base import Schedule, register
from lrkit.validation import choice, fail, flag, in_range, integer, non_negative, positive


# -- cyclical learning rates (Smith 2017, "Cyclical Learning Rates for Training Neural Networks")
@dataclass(frozen=True)
class _Cyclic(Schedule):
    """Shared CLR triangle; subclasses give the amplitude scale of each cycle.

    ``cycle = floor(1 + t / (up + down))``, ``x = 1 + t / (up + down) - cycle``,
    ``h = x / r`` if ``x <= r`` else ``(x - 1) / (r - 1)`` with ``r = up / (up + down)``;
    ``lr_t = base_lr + (max_lr - base_lr) * h * scale``. Matches
    ``torch.optim.lr_scheduler.CyclicLR`` (``step_size_down=None`` means ``= step_size_up``).
    """

    base_lr: float
    max_lr: float
    step_size_up: float
    step_size_down: float | None = None

    def __post_init__(self) -> None:
        non_negative(self.name, "base_lr", self.base_lr)
        non_negative(self.name, "max_lr", self.max_lr)
        positive(self.name, "step_size_up", self.step_size_up)
        if self.step_size_down is not None:
            positive(self.name, "step_size_down", self.step_size_down)

    def _triangle(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(height in [0, 1], 1-based cycle number) at each step."""
        down = self.step_size_up if self.step_size_down is None else self.step_size_down
        total = self.step_size_up + down
        ratio = self.step_size_up / total
        cycle = np.floor(1.0 + t / total)
        x = 1.0 + t / total - cycle
        height = np.where(x <= ratio, x / ratio, (x - 1.0) / (ratio - 1.0))
        return height, cycle

    def _scale(self, t: np.ndarray, cycle: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _lr(self, t: np.ndarray) -> np.ndarray:
        height, cycle = self._triangle(t)
        return self.base_lr + (self.max_lr - self.base_lr) * height * self._scale(t, cycle)


@register("triangular")
@dataclass(frozen=True)
class Triangular(_Cyclic):
    """CLR "triangular": every cycle reaches `max_lr` (scale 1)."""

    def _scale(self, t: np.ndarray, cycle: np.ndarray) -> np.ndarray:
        return np.ones_like(t)


@register("triangular2")
@dataclass(frozen=True)
class Triangular2(_Cyclic):
    """CLR "triangular2": the amplitude halves every cycle, ``scale = 1 / 2 ** (cycle - 1)``."""

    def _scale(self, t: np.ndarray, cycle: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):  # 2 ** cycle overflows to inf after ~1024 cycles: scale 0
            return 1.0 / 2.0 ** (cycle - 1.0)


@register("exp_range")
@dataclass(frozen=True)
class ExpRange(_Cyclic):
    """CLR "exp_range": the amplitude decays every step, ``scale = gamma ** t``."""

    gamma: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        in_range(self.name, "gamma", self.gamma, 0.0, 1.0, open_low=True)

    def _scale(self, t: np.ndarray, cycle: np.ndarray) -> np.ndarray:
        return self.gamma**t


# -- one-cycle (Smith & Topin 2018, "Super-Convergence"; torch.optim.lr_scheduler.OneCycleLR)
def _anneal(start: float, end: float, pct: np.ndarray, anneal: str) -> np.ndarray:
    """torch's ``_annealing_cos`` (``end + (start - end) / 2 * (cos(pi * pct) + 1)``) or linear."""
    if anneal == "cos":
        return end + (start - end) / 2.0 * (np.cos(np.pi * pct) + 1.0)
    return (end - start) * pct + start


def _phase_ends(total_steps: int, pct_start: float, three_phase: bool) -> list[float]:
    """Last step of each phase, exactly as OneCycleLR computes them."""
    if three_phase:
        return [float(pct_start * total_steps) - 1, float(2 * pct_start * total_steps) - 2,
                float(total_steps - 1)]
    return [float(pct_start * total_steps) - 1, float(total_steps - 1)]


def _phased(t: np.ndarray, ends: list[float], levels: list[float], anneal: str) -> np.ndarray:
    """Anneal from ``levels[i]`` to ``levels[i+1]`` over phase ``i``; hold the end after the last step."""
    t = np.minimum(t, ends[-1])
    out = np.empty_like(t)
    done = np.zeros(t.shape, dtype=bool)
    start = 0.0
    for i, end in enumerate(ends):
        mask = ~done if i == len(ends) - 1 else (~done & (t <= end))
        out[mask] = _anneal(levels[i], levels[i + 1], (t[mask] - start) / (end - start), anneal)
        done |= mask
        start = end
    return out


def _check_timing(owner: str, total_steps: int, pct_start: float, anneal: str, three_phase: bool) -> None:
    integer(owner, "total_steps", total_steps, minimum=2)
    in_range(owner, "pct_start", pct_start, 0.0, 1.0, open_low=True, open_high=True)
    choice(owner, "anneal", anneal, ("cos", "linear"))
    flag(owner, "three_phase", three_phase)
    ends = _phase_ends(total_steps, pct_start, three_phase)
    if any(b <= a for a, b in zip([0.0, *ends], ends)):
        raise fail(owner, "pct_start", f"a fraction that leaves every phase at least one of total_steps={total_steps!r}"
                   " steps", pct_start)


@register("one_cycle")
@dataclass(frozen=True)
class OneCycle(Schedule):
    """One-cycle policy, equal to ``torch.optim.lr_scheduler.OneCycleLR``.

    ``initial = max_lr / div_factor``, ``final = initial / final_div_factor``. Two phases:
    initial -> max_lr until step ``pct_start * total_steps - 1``, then max_lr -> final until
    ``total_steps - 1``; `three_phase` goes initial -> max -> initial -> final. Each phase
    anneals with ``end + (start - end) / 2 * (cos(pi * pct) + 1)`` ("cos") or linearly.
    After ``total_steps - 1`` the LR stays at `final` (torch raises instead).
    Use `momentum_schedule` for the matching momentum curve.
    """

    max_lr: float
    total_steps: int
    pct_start: float = 0.3
    anneal: str = "cos"
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    three_phase: bool = False

    def __post_init__(self) -> None:
        non_negative("one_cycle", "max_lr", self.max_lr)
        _check_timing("one_cycle", self.total_steps, self.pct_start, self.anneal, self.three_phase)
        positive("one_cycle", "div_factor", self.div_factor)
        positive("one_cycle", "final_div_factor", self.final_div_factor)

    def _lr(self, t: np.ndarray) -> np.ndarray:
        initial = self.max_lr / self.div_factor
        final = initial / self.final_div_factor
        levels = [initial, self.max_lr, initial, final] if self.three_phase else [initial, self.max_lr, final]
        ends = _phase_ends(self.total_steps, self.pct_start, self.three_phase)
        return _phased(t, ends, levels, self.anneal)

    def momentum_schedule(self, base_momentum: float = 0.85, max_momentum: float = 0.95) -> OneCycleMomentum:
        """The momentum (or Adam beta1) curve OneCycleLR cycles inversely to this LR."""
        return OneCycleMomentum(self.total_steps, self.pct_start, self.anneal, self.three_phase,
                                base_momentum, max_momentum)


@register("one_cycle_momentum")
@dataclass(frozen=True)
class OneCycleMomentum(Schedule):
    """OneCycleLR's momentum curve: max -> base while the LR rises, base -> max while it falls
    (three-phase: max -> base -> max, then held at max). Phase timing as in `one_cycle`."""

    total_steps: int
    pct_start: float = 0.3
    anneal: str = "cos"
    three_phase: bool = False
    base_momentum: float = 0.85
    max_momentum: float = 0.95

    def __post_init__(self) -> None:
        _check_timing("one_cycle_momentum", self.total_steps, self.pct_start, self.anneal, self.three_phase)
        in_range("one_cycle_momentum", "base_momentum", self.base_momentum, 0.0, 1.0)
        in_range("one_cycle_momentum", "max_momentum", self.max_momentum, 0.0, 1.0)

    def _lr(self, t: np.ndarray) -> np.ndarray:
        low, high = self.base_momentum, self.max_momentum
        levels = [high, low, high, high] if self.three_phase else [high, low, high]
        ends = _phase_ends(self.total_steps, self.pct_start, self.three_phase)
        return _phased(t, ends, levels, self.anneal)


@register("slanted_triangular")
@dataclass(frozen=True)
class SlantedTriangular(Schedule):
    """Slanted triangular LR (Howard & Ruder 2018, ULMFiT, eq. 3).

    ``cut = floor(total_steps * cut_frac)``; ``p = t / cut`` if ``t < cut`` else
    ``1 - (t - cut) / (cut * (1 / cut_frac - 1))``;
    ``lr_t = max_lr * (1 + p * (ratio - 1)) / ratio``. After `total_steps` the LR holds at
    ``max_lr / ratio``.
    """

    max_lr: float
    total_steps: int
    cut_frac: float = 0.1
    ratio: float = 32.0

    def __post_init__(self) -> None:
        non_negative("slanted_triangular", "max_lr", self.max_lr)
        integer("slanted_triangular", "total_steps", self.total_steps, minimum=1)
        in_range("slanted_triangular", "cut_frac", self.cut_frac, 0.0, 1.0, open_low=True, open_high=True)
        in_range("slanted_triangular", "ratio", self.ratio, 1.0, float("inf"), open_high=True)
        if np.floor(self.total_steps * self.cut_frac) < 1:
            raise fail("slanted_triangular", "total_steps * cut_frac", ">= 1", self.total_steps * self.cut_frac)

    def _lr(self, t: np.ndarray) -> np.ndarray:
        cut = np.floor(self.total_steps * self.cut_frac)
        p = np.where(t < cut, t / cut, 1.0 - (t - cut) / (cut * (1.0 / self.cut_frac - 1.0)))
        p = np.maximum(p, 0.0)
        return self.max_lr * (1.0 + p * (self.ratio - 1.0)) / self.ratio
