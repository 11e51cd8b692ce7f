"""Monotone decays: constant, step, multistep, piecewise, exponential, natural-exp,
inverse-time and polynomial (with cycle).

Names and parameters follow the framework that made each formula known (PyTorch for
step/multistep, TensorFlow/Keras for the others) and tests check them against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lrkit.schedules.base import Schedule, register
from lrkit.validation import fail, flag, increasing, non_negative, positive, real_sequence


def _progress(t: np.ndarray, decay_steps: float, staircase: bool) -> np.ndarray:
    """``p = t / decay_steps``, floored when `staircase` (the TF/Keras convention)."""
    p = t / decay_steps
    return np.floor(p) if staircase else p


@register("constant")
@dataclass(frozen=True)
class Constant(Schedule):
    """A fixed learning rate: ``lr_t = lr``."""

    lr: float

    def __post_init__(self) -> None:
        non_negative("constant", "lr", self.lr)

    def _lr(self, t: np.ndarray) -> np.ndarray:
        return np.full_like(t, self.lr)


@register("step")
@dataclass(frozen=True)
class StepDecay(Schedule):
    """Decay by `gamma` every `step_size` steps (``torch.optim.lr_scheduler.StepLR``).

    ``lr_t = lr * gamma ** floor(t / step_size)``
    """

    lr: float
    step_size: float
    gamma: float = 0.1

    def __post_init__(self) -> None:
        non_negative("step", "lr", self.lr)
        positive("step", "step_size", self.step_size)
        positive("step", "gamma", self.gamma)

    def _lr(self, t: np.ndarray) -> np.ndarray:
        return self.lr * self.gamma ** np.floor(t / self.step_size)


@register("multistep")
@dataclass(frozen=True)
class MultiStepDecay(Schedule):
    """Decay by `gamma` at each milestone (``torch.optim.lr_scheduler.MultiStepLR``).

    ``lr_t = lr * gamma ** #{m in milestones : m <= t}`` (a repeated milestone counts twice,
    as in torch).
    """

    lr: float
    milestones: tuple[float, ...]
    gamma: float = 0.1

    def __post_init__(self) -> None:
        non_negative("multistep", "lr", self.lr)
        milestones = real_sequence("multistep", "milestones", self.milestones)
        increasing("multistep", "milestones", milestones, strict=False)
        if milestones[0] < 0:
            raise fail("multistep", "milestones", ">= 0", list(milestones))
        object.__setattr__(self, "milestones", milestones)
        positive("multistep", "gamma", self.gamma)

    def _lr(self, t: np.ndarray) -> np.ndarray:
        passed = np.searchsorted(np.asarray(self.milestones, dtype=np.float64), t, side="right")
        return self.lr * self.gamma ** passed


@register("piecewise")
@dataclass(frozen=True)
class Piecewise(Schedule):
    """Piecewise constant (``keras.optimizers.schedules.PiecewiseConstantDecay``).

    ``values[0]`` while ``t <= boundaries[0]``, ``values[i]`` while
    ``boundaries[i-1] < t <= boundaries[i]``, ``values[-1]`` after the last boundary.
    """

    boundaries: tuple[float, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        boundaries = increasing("piecewise", "boundaries",
                                real_sequence("piecewise", "boundaries", self.boundaries), strict=True)
        values = real_sequence("piecewise", "values", self.values)
        if len(values) != len(boundaries) + 1:
            raise fail("piecewise", "values", f"a list of len(boundaries) + 1 = {len(boundaries) + 1} numbers",
                       list(values))
        for value in values:
            non_negative("piecewise", "each of values", value)
        object.__setattr__(self, "boundaries", boundaries)
        object.__setattr__(self, "values", values)

    def _lr(self, t: np.ndarray) -> np.ndarray:
        index = np.searchsorted(np.asarray(self.boundaries, dtype=np.float64), t, side="left")
        return np.asarray(self.values, dtype=np.float64)[index]


@register("exponential")
@dataclass(frozen=True)
class Exponential(Schedule):
    """Exponential decay (``keras.optimizers.schedules.ExponentialDecay``).

    ``lr_t = lr * decay_rate ** p``, ``p = t / decay_steps`` (floored if `staircase`).
    With ``decay_steps=1`` this is ``torch.optim.lr_scheduler.ExponentialLR(gamma=decay_rate)``.
    """

    lr: float
    decay_steps: float
    decay_rate: float
    staircase: bool = False

    def __post_init__(self) -> None:
        non_negative("exponential", "lr", self.lr)
        positive("exponential", "decay_steps", self.decay_steps)
        positive("exponential", "decay_rate", self.decay_rate)
        flag("exponential", "staircase", self.staircase)

    def _lr(self, t: np.ndarray) -> np.ndarray:
        return self.lr * self.decay_rate ** _progress(t, self.decay_steps, self.staircase)


@register("natural_exp")
@dataclass(frozen=True)
class NaturalExp(Schedule):
    """Natural exponential decay (``tf.compat.v1.train.natural_exp_decay``).

    ``lr_t = lr * exp(-decay_rate * p)``, ``p = t / decay_steps`` (floored if `staircase`).
    """

    lr: float
    decay_steps: float
    decay_rate: float
    staircase: bool = False

    def __post_init__(self) -> None:
        non_negative("natural_exp", "lr", self.lr)
        positive("natural_exp", "decay_steps", self.decay_steps)
        non_negative("natural_exp", "decay_rate", self.decay_rate)
        flag("natural_exp", "staircase", self.staircase)

    def _lr(self, t: np.ndarray) -> np.ndarray:
        return self.lr * np.exp(-self.decay_rate * _progress(t, self.decay_steps, self.staircase))


@register("inverse_time")
@dataclass(frozen=True)
class InverseTime(Schedule):
    """Inverse-time decay (``keras.optimizers.schedules.InverseTimeDecay``).

    ``lr_t = lr / (1 + decay_rate * p)``, ``p = t / decay_steps`` (floored if `staircase`).
    """

    lr: float
    decay_steps: float
    decay_rate: float
    staircase: bool = False

    def __post_init__(self) -> None:
        non_negative("inverse_time", "lr", self.lr)
        positive("inverse_time", "decay_steps", self.decay_steps)
        non_negative("inverse_time", "decay_rate", self.decay_rate)
        flag("inverse_time", "staircase", self.staircase)

    def _lr(self, t: np.ndarray) -> np.ndarray:
        return self.lr / (1.0 + self.decay_rate * _progress(t, self.decay_steps, self.staircase))


@register("polynomial")
@dataclass(frozen=True)
class Polynomial(Schedule):
    """Polynomial decay (``keras.optimizers.schedules.PolynomialDecay``).

    ``lr_t = (lr - end_lr) * (1 - t' / D) ** power + end_lr`` where, without `cycle`,
    ``t' = min(t, decay_steps)`` and ``D = decay_steps``; with `cycle`, ``t' = t`` and
    ``D = decay_steps * max(1, ceil(t / decay_steps))`` (each cycle restarts higher and
    decays over a longer span). ``end_lr=0`` matches ``torch.optim.lr_scheduler.PolynomialLR``.
    """

    lr: float
    decay_steps: float
    end_lr: float = 1e-4
    power: float = 1.0
    cycle: bool = False

    def __post_init__(self) -> None:
        non_negative("polynomial", "lr", self.lr)
        positive("polynomial", "decay_steps", self.decay_steps)
        non_negative("polynomial", "end_lr", self.end_lr)
        positive("polynomial", "power", self.power)
        flag("polynomial", "cycle", self.cycle)

    def _lr(self, t: np.ndarray) -> np.ndarray:
        span: np.ndarray | float
        if self.cycle:
            span = self.decay_steps * np.maximum(1.0, np.ceil(t / self.decay_steps))
        else:
            span = self.decay_steps
            t = np.minimum(t, self.decay_steps)
        return (self.lr - self.end_lr) * (1.0 - t / span) ** self.power + self.end_lr

