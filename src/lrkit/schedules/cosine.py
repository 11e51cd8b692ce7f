"""Cosine family: cosine decay, the cosine wave, linear-cosine, noisy-linear-cosine and SGDR restarts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lrkit.schedules.base import Schedule, register
from lrkit.schedules.noise import standard_normal
from lrkit.validation import fail, in_range, integer, non_negative, positive


def _half_cosine(fraction: np.ndarray) -> np.ndarray:
    """``0.5 * (1 + cos(pi * fraction))``: 1 at fraction 0, 0 at fraction 1."""
    return 0.5 * (1.0 + np.cos(np.pi * fraction))


@register("cosine")
@dataclass(frozen=True)
class Cosine(Schedule):
    """Cosine decay to ``alpha * lr`` (``keras.optimizers.schedules.CosineDecay``;
    Loshchilov & Hutter 2017, SGDR, eq. 5 without restarts).

    ``lr_t = lr * ((1 - alpha) * 0.5 * (1 + cos(pi * min(t, decay_steps) / decay_steps)) + alpha)``

    Equals ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=decay_steps, eta_min=alpha*lr)``
    for ``t <= decay_steps``; afterwards it stays at ``alpha * lr`` (torch's curve rises again).
    """

    lr: float
    decay_steps: float
    alpha: float = 0.0

    def __post_init__(self) -> None:
        non_negative("cosine", "lr", self.lr)
        positive("cosine", "decay_steps", self.decay_steps)
        in_range("cosine", "alpha", self.alpha, 0.0, 1.0)

    def _lr(self, t: np.ndarray) -> np.ndarray:
        decayed = _half_cosine(np.minimum(t, self.decay_steps) / self.decay_steps)
        return self.lr * ((1.0 - self.alpha) * decayed + self.alpha)


@register("cosine_wave")
@dataclass(frozen=True)
class CosineWave(Schedule):
    """A cosine that does not stop: `cycles` waves over `decay_steps`, and on after them
    (``transformers.get_cosine_schedule_with_warmup`` after its warmup, with ``num_cycles``;
    ``get_cosine_with_min_lr_schedule_with_warmup`` with ``alpha = min_lr_rate``).

    ``lr_t = lr * (0.5 * (1 + cos(pi * cycles * 2 * t / decay_steps)) * (1 - alpha) + alpha)``
    for every ``t >= 0``.

    With ``cycles=0.5`` it is `cosine` up to ``decay_steps`` and then rises again, back to `lr`
    at ``2 * decay_steps`` (the closed form of ``torch.optim.lr_scheduler.CosineAnnealingLR``
    with ``T_max=decay_steps``, ``eta_min=alpha*lr``), where `cosine` stays at ``alpha * lr``.
    """

    lr: float
    decay_steps: float
    cycles: float = 0.5
    alpha: float = 0.0

    def __post_init__(self) -> None:
        non_negative("cosine_wave", "lr", self.lr)
        positive("cosine_wave", "decay_steps", self.decay_steps)
        non_negative("cosine_wave", "cycles", self.cycles)
        in_range("cosine_wave", "alpha", self.alpha, 0.0, 1.0)

    def _lr(self, t: np.ndarray) -> np.ndarray:
        # the order of the operations is transformers', so its values are matched to the last bits
        wave = 0.5 * (1.0 + np.cos(np.pi * self.cycles * 2.0 * (t / self.decay_steps)))
        return self.lr * (wave * (1.0 - self.alpha) + self.alpha)


def _linear_cosine_factor(t: np.ndarray, decay_steps: float, num_periods: float, alpha: float,
                          beta: float, noise: np.ndarray | float = 0.0) -> np.ndarray:
    """``(alpha + linear + noise) * cosine + beta`` of tf.compat.v1.train.(noisy_)linear_cosine_decay."""
    t = np.minimum(t, decay_steps)
    linear = (decay_steps - t) / decay_steps
    cosine = _half_cosine(2.0 * num_periods * t / decay_steps)
    return (alpha + linear + noise) * cosine + beta


@register("linear_cosine")
@dataclass(frozen=True)
class LinearCosine(Schedule):
    """Linear-cosine decay (``tf.compat.v1.train.linear_cosine_decay``; Bello et al. 2017,
    "Neural Optimizer Search with Reinforcement Learning").

    With ``t' = min(t, decay_steps)``:
    ``linear = (decay_steps - t') / decay_steps``,
    ``cosine = 0.5 * (1 + cos(pi * 2 * num_periods * t' / decay_steps))``,
    ``lr_t = lr * ((alpha + linear) * cosine + beta)``.
    """

    lr: float
    decay_steps: float
    num_periods: float = 0.5
    alpha: float = 0.0
    beta: float = 0.001

    def __post_init__(self) -> None:
        non_negative("linear_cosine", "lr", self.lr)
        positive("linear_cosine", "decay_steps", self.decay_steps)
        non_negative("linear_cosine", "num_periods", self.num_periods)
        non_negative("linear_cosine", "alpha", self.alpha)
        non_negative("linear_cosine", "beta", self.beta)

    def _lr(self, t: np.ndarray) -> np.ndarray:
        return self.lr * _linear_cosine_factor(t, self.decay_steps, self.num_periods, self.alpha, self.beta)


@register("noisy_linear_cosine")
@dataclass(frozen=True)
class NoisyLinearCosine(Schedule):
    """Noisy linear-cosine decay (``tf.compat.v1.train.noisy_linear_cosine_decay``).

    As `linear_cosine`, with Gaussian noise added to the linear term:
    ``lr_t = lr * ((alpha + linear + eps_t) * cosine + beta)``,
    ``eps_t ~ N(0, initial_variance / (1 + t') ** variance_decay)``. TF draws ``eps_t`` from
    a stateful RNG; here ``eps_t = std_t * z(seed, t)`` with ``z`` a counter-based normal
    (`lrkit.schedules.noise`), so the curve is reproducible and resumes identically.
    As in TF, large noise can push the value below 0; wrap in ``clip(..., min_lr=0)`` to forbid it.
    """

    lr: float
    decay_steps: float
    initial_variance: float = 1.0
    variance_decay: float = 0.55
    num_periods: float = 0.5
    alpha: float = 0.0
    beta: float = 0.001
    seed: int = 0

    def __post_init__(self) -> None:
        owner = "noisy_linear_cosine"
        non_negative(owner, "lr", self.lr)
        positive(owner, "decay_steps", self.decay_steps)
        non_negative(owner, "initial_variance", self.initial_variance)
        non_negative(owner, "variance_decay", self.variance_decay)
        non_negative(owner, "num_periods", self.num_periods)
        non_negative(owner, "alpha", self.alpha)
        non_negative(owner, "beta", self.beta)
        integer(owner, "seed", self.seed, minimum=0)
        if self.seed >= 2**64:
            raise fail(owner, "seed", "an integer in [0, 2**64)", self.seed)

    def _lr(self, t: np.ndarray) -> np.ndarray:
        clipped = np.minimum(t, self.decay_steps)
        std = np.sqrt(self.initial_variance / (1.0 + clipped) ** self.variance_decay)
        noise = std * standard_normal(self.seed, t)
        return self.lr * _linear_cosine_factor(t, self.decay_steps, self.num_periods, self.alpha,
                                               self.beta, noise)


#: sgdr's bounds (see `SGDR`): a cycle at most a million times longer than the one before, at least
#: a millionth of a step long.
MAX_T_MUL = 1e6
MIN_CYCLE_STEPS = 1e-6


def cycle_index(t: np.ndarray, first: float, mul: float, start: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """The index ``i`` of the cycle each step `t` falls in, for cycles of ``first * mul**i`` steps:
    ``floor(log1p(t / first * (mul - 1)) / log(mul))`` (``floor(t / first)`` for ``mul = 1``), then
    moved by one where `start` (the exact step cycle ``i`` starts at, in the caller's arithmetic)
    disagrees, so rounding in the logarithm never moves a restart by a step (`sgdr`, timm's cycles)."""
    if mul == 1.0:
        i = np.floor(t / first)
    else:
        i = np.floor(np.log1p(t / first * (mul - 1.0)) / np.log(mul))
    i = np.where(t < start(i), i - 1, i)
    return np.where(t >= start(i + 1), i + 1, i)


@register("sgdr")
@dataclass(frozen=True)
class SGDR(Schedule):
    """Cosine decay with warm restarts (Loshchilov & Hutter 2017, SGDR;
    ``keras.optimizers.schedules.CosineDecayRestarts``).

    Cycle ``i`` (from 0) lasts ``first_cycle_steps * t_mul**i`` steps and peaks at
    ``lr * m_mul**i``; with ``T_i`` the steps into cycle ``i`` and ``L_i`` its length,
    ``lr_t = lr * ((1 - alpha) * m_mul**i * 0.5 * (1 + cos(pi * T_i / L_i)) + alpha)``.
    Equals ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(T_0=first_cycle_steps,
    T_mult=t_mul, eta_min=alpha*lr)`` for integer ``t_mul`` and ``m_mul=1``. The cycle index
    is computed in closed form and then corrected against the exact cycle boundaries, so
    rounding in the logarithm never moves a restart by a step.

    Bounds keep every step's LR finite in float64 (up to 2**53 steps): `first_cycle_steps` ≥
    `MIN_CYCLE_STEPS` (fractions are fine, e.g. inside ``in_epochs``), `t_mul` in [1, `MAX_T_MUL`]
    (beyond, the restart times overflow to inf and the LRs become NaN), `m_mul` in (0, 1] (the
    peaks decay; a growing peak overflows to an infinite LR).
    """

    lr: float
    first_cycle_steps: float
    t_mul: float = 2.0
    m_mul: float = 1.0
    alpha: float = 0.0

    def __post_init__(self) -> None:
        non_negative("sgdr", "lr", self.lr)
        if positive("sgdr", "first_cycle_steps", self.first_cycle_steps) < MIN_CYCLE_STEPS:
            raise fail("sgdr", "first_cycle_steps", f">= {MIN_CYCLE_STEPS}", self.first_cycle_steps)
        in_range("sgdr", "t_mul", self.t_mul, 1.0, MAX_T_MUL)
        in_range("sgdr", "m_mul", self.m_mul, 0.0, 1.0, open_low=True)
        in_range("sgdr", "alpha", self.alpha, 0.0, 1.0)

    def _cycle_start(self, i: np.ndarray) -> np.ndarray:
        """Step at which cycle `i` starts: ``first * (t_mul**i - 1) / (t_mul - 1)`` (or ``first * i``)."""
        if self.t_mul == 1.0:
            return self.first_cycle_steps * i
        return self.first_cycle_steps * (self.t_mul**i - 1.0) / (self.t_mul - 1.0)

    def _lr(self, t: np.ndarray) -> np.ndarray:
        i = cycle_index(t, self.first_cycle_steps, self.t_mul, self._cycle_start)
        length = self.first_cycle_steps * self.t_mul**i
        fraction = (t - self._cycle_start(i)) / length
        decayed = self.m_mul**i * _half_cosine(fraction)
        return self.lr * ((1.0 - self.alpha) * decayed + self.alpha)
