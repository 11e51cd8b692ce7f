"""Schedules built from schedules: warmup, join, shift, scale, clip, epoch units and user functions.

Children see local time: a schedule joined at boundary ``b`` is evaluated at ``t - b``
(optax ``join_schedules``), and the schedule after a warmup starts at its own step 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lrkit.schedules.base import Schedule, register, schedule_arg
from lrkit.validation import choice, fail, increasing, non_negative, positive, real_sequence

#: A user function of the step: called with an int for a whole step, a float for a fractional one.
StepFunction = Callable[[float], float]


@register("warmup")
@dataclass(frozen=True)
class Warmup(Schedule):
    """Ramp from `start_lr` to ``schedule(0)`` over `steps`, then run `schedule` from its step 0
    (Goyal et al. 2017, "Accurate, Large Minibatch SGD", §2.2 gradual warmup).

    With ``f = t / steps`` and ``peak = schedule(0)``, for ``t < steps``:
    linear ``start + (peak - start) * f``; exponential ``start * (peak / start) ** f``;
    cosine ``start + (peak - start) * 0.5 * (1 - cos(pi * f))``; "1-sqrt"
    ``start + (peak - start) * (1 - sqrt(1 - f))`` (``transformers.get_wsd_schedule``'s
    ``warmup_type="1-sqrt"``: steep first, flat at the end). For ``t >= steps``:
    ``schedule(t - steps)``.
    """

    schedule: Schedule
    steps: float
    start_lr: float = 0.0
    mode: str = "linear"

    def __post_init__(self) -> None:
        schedule_arg("warmup", "schedule", self.schedule)
        non_negative("warmup", "steps", self.steps)
        non_negative("warmup", "start_lr", self.start_lr)
        choice("warmup", "mode", self.mode, ("linear", "exponential", "cosine", "1-sqrt"))
        if self.mode == "exponential" and self.start_lr == 0:
            raise fail("warmup", "start_lr", "> 0 for mode='exponential'", self.start_lr)

    @property
    def cacheable(self) -> bool:
        return self.schedule.cacheable

    def _ramp(self, fraction: np.ndarray) -> np.ndarray:
        start, peak = self.start_lr, self.schedule(0)
        if self.mode == "linear":
            return start + (peak - start) * fraction
        if self.mode == "exponential":
            return start * (peak / start) ** fraction
        if self.mode == "1-sqrt":
            return start + (peak - start) * (1.0 - np.sqrt(1.0 - fraction))
        return start + (peak - start) * 0.5 * (1.0 - np.cos(np.pi * fraction))

    def _lr(self, t: np.ndarray) -> np.ndarray:
        after = self.schedule._lr(np.maximum(t - self.steps, 0.0))
        if self.steps == 0:
            return after
        # the ramp is only used for t < steps; capping the fraction at 1 avoids overflow warnings
        return np.where(t < self.steps, self._ramp(np.minimum(t, self.steps) / self.steps), after)


@register("join")
@dataclass(frozen=True)
class Join(Schedule):
    """Run ``schedules[i]`` from ``boundaries[i-1]`` on, in its local time
    (optax ``join_schedules``): ``lr_t = schedules[i](t - boundaries[i-1])`` for
    ``boundaries[i-1] <= t < boundaries[i]``.
    """

    schedules: tuple[Schedule, ...]
    boundaries: tuple[float, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.schedules, (list, tuple)) or len(self.schedules) < 2:
            raise fail("join", "schedules", "a list of at least 2 schedules", self.schedules)
        for child in self.schedules:
            schedule_arg("join", "each of schedules", child)
        boundaries = increasing("join", "boundaries",
                                real_sequence("join", "boundaries", self.boundaries), strict=True)
        if len(boundaries) != len(self.schedules) - 1:
            raise fail("join", "boundaries", f"a list of len(schedules) - 1 = {len(self.schedules) - 1} numbers",
                       list(boundaries))
        if boundaries[0] <= 0:
            raise fail("join", "boundaries", "> 0", list(boundaries))
        object.__setattr__(self, "schedules", tuple(self.schedules))
        object.__setattr__(self, "boundaries", boundaries)

    @property
    def cacheable(self) -> bool:
        return all(child.cacheable for child in self.schedules)

    def _lr(self, t: np.ndarray) -> np.ndarray:
        out = self.schedules[0]._lr(t)
        for boundary, child in zip(self.boundaries, self.schedules[1:]):
            out = np.where(t < boundary, out, child._lr(np.maximum(t - boundary, 0.0)))
        return out


@register("shift")
@dataclass(frozen=True)
class Shift(Schedule):
    """Start `schedule` `offset` steps in: ``lr_t = schedule(t + offset)`` (``offset >= 0``).

    A time shift, for references that count from another origin: ``transformers``' inverse
    square root ``lr * sqrt(timescale / (t + timescale))`` is
    ``shift(inverse_sqrt(lr, timescale), timescale - 1)``; timm's multistep decays one update
    before torch's, ``shift(multistep(...), 1)``; and ``join([ramp, shift(schedule, w)], [w])``
    is a ramp that replaces the first `w` steps of a schedule which keeps its own time (timm's
    default warmup, ``warmup_prefix=False``), where `warmup` would delay the schedule by `w`.
    """

    schedule: Schedule
    offset: float

    def __post_init__(self) -> None:
        schedule_arg("shift", "schedule", self.schedule)
        non_negative("shift", "offset", self.offset)

    @property
    def cacheable(self) -> bool:
        return self.schedule.cacheable

    def _lr(self, t: np.ndarray) -> np.ndarray:
        return self.schedule._lr(t + self.offset)


@register("scale")
@dataclass(frozen=True)
class Scale(Schedule):
    """``lr_t = factor * schedule(t)``."""

    schedule: Schedule
    factor: float

    def __post_init__(self) -> None:
        schedule_arg("scale", "schedule", self.schedule)
        non_negative("scale", "factor", self.factor)

    @property
    def cacheable(self) -> bool:
        return self.schedule.cacheable

    def _lr(self, t: np.ndarray) -> np.ndarray:
        return self.factor * self.schedule._lr(t)


@register("clip")
@dataclass(frozen=True)
class Clip(Schedule):
    """``lr_t = min(max(schedule(t), min_lr), max_lr)`` (no upper bound if `max_lr` is None)."""

    schedule: Schedule
    min_lr: float = 0.0
    max_lr: float | None = None

    def __post_init__(self) -> None:
        schedule_arg("clip", "schedule", self.schedule)
        non_negative("clip", "min_lr", self.min_lr)
        if self.max_lr is not None and non_negative("clip", "max_lr", self.max_lr) < self.min_lr:
            raise fail("clip", "max_lr", f">= min_lr={self.min_lr!r}", self.max_lr)

    @property
    def cacheable(self) -> bool:
        return self.schedule.cacheable

    def _lr(self, t: np.ndarray) -> np.ndarray:
        return np.clip(self.schedule._lr(t), self.min_lr, self.max_lr)


@register("in_epochs")
@dataclass(frozen=True)
class InEpochs(Schedule):
    """A schedule whose parameters are in epochs, evaluated per step:
    ``lr_t = schedule(t / steps_per_epoch)``. The one place epochs become steps; fractional
    epochs follow naturally (a cosine over epochs becomes smooth per step, a step decay
    changes exactly at the epoch boundary).
    """

    schedule: Schedule
    steps_per_epoch: float

    def __post_init__(self) -> None:
        schedule_arg("in_epochs", "schedule", self.schedule)
        positive("in_epochs", "steps_per_epoch", self.steps_per_epoch)

    @property
    def cacheable(self) -> bool:
        return self.schedule.cacheable

    def _lr(self, t: np.ndarray) -> np.ndarray:
        return self.schedule._lr(t / self.steps_per_epoch)


# -- user functions --------------------------------------------------------------------
_FUNCTIONS: dict[str, StepFunction] = {}


def register_function(name: str | Callable | None = None):
    """Make a function usable in saved schedules: ``@register_function`` or
    ``@register_function("warm_then_flat")``. Only registered functions are looked up when a
    schedule is loaded, so a config can never name arbitrary code."""

    def decorate(fn: StepFunction) -> StepFunction:
        key = name if isinstance(name, str) else fn.__qualname__
        if _FUNCTIONS.get(key, fn) is not fn:
            raise fail("register_function", "name", "a name not already registered to a different function", key)
        _FUNCTIONS[key] = fn
        return fn

    return decorate(name) if callable(name) else decorate


def _registered_name(fn: Callable) -> str | None:
    return next((key for key, value in _FUNCTIONS.items() if value is fn), None)


@register("from_function")
@dataclass(frozen=True)
class FromFunction(Schedule):
    """A user function of the step: ``lr_t = lr * fn(t)`` (as ``torch.optim.lr_scheduler.LambdaLR``).

    `fn` is a callable or the name of a function registered with `register_function`. Any
    callable works in memory; saving (`to_dict`/`to_spec`) needs a registered function and
    raises a ValueError for anonymous lambdas instead of silently dropping them.
    """

    fn: StepFunction
    lr: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.fn, str) and self.fn in _FUNCTIONS:
            object.__setattr__(self, "fn", _FUNCTIONS[self.fn])
        elif not callable(self.fn):
            known = ", ".join(sorted(_FUNCTIONS)) or "none"
            raise fail("from_function", "fn", f"a callable or the name of a function registered with "
                       f"@lrkit.schedules.register_function (registered: {known})", self.fn)
        non_negative("from_function", "lr", self.lr)

    @property
    def cacheable(self) -> bool:
        return False

    def _function_name(self) -> str:
        name = _registered_name(self.fn)
        if name is None:
            raise fail("from_function", "fn", "registered to be saved (define it at module level and decorate it "
                       "with @lrkit.schedules.register_function)", self.fn)
        return name

    def to_dict(self) -> dict:
        return {"name": self.name, "fn": self._function_name(), "lr": self.lr}

    def to_spec(self) -> str:
        return f"{self.name}(fn={self._function_name()!r}, lr={self.lr!r})"

    def _lr(self, t: np.ndarray) -> np.ndarray:
        flat = t.ravel()
        steps = [int(x) if x.is_integer() else float(x) for x in flat.tolist()]
        try:
            values = np.fromiter((self.fn(s) for s in steps), dtype=np.float64, count=len(steps))
        except (TypeError, ValueError) as err:
            raise fail("from_function", "fn", f"a function returning a number for every step ({err})",
                       self.fn) from None
        if not np.all(np.isfinite(values)):
            bad = int(np.argmin(np.isfinite(values)))
            raise fail("from_function", f"fn({steps[bad]})", "a finite number", float(values[bad]))
        return self.lr * values.reshape(t.shape)
