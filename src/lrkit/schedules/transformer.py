"""Schedules from transformer and LLM training: inverse square root and warmup-stable-decay."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lrkit.schedules.base import Schedule, register
from lrkit.validation import choice, non_negative, positive


@register("inverse_sqrt")
@dataclass(frozen=True)
class InverseSqrt(Schedule):
    """Linear warmup then inverse-square-root decay (Vaswani et al. 2017, "Attention Is All
    You Need", eq. 3; fairseq ``inverse_sqrt``), scaled so the peak is `lr`.

    With ``n = t + 1`` (the paper counts steps from 1):
    ``lr_t = lr * min(n / warmup_steps, sqrt(warmup_steps / n))``. The paper's
    ``d_model**-0.5 * min(n**-0.5, n * w**-1.5)`` is this with ``lr = (d_model * w) ** -0.5``.
    """

    lr: float
    warmup_steps: float

    def __post_init__(self) -> None:
        non_negative("inverse_sqrt", "lr", self.lr)
        positive("inverse_sqrt", "warmup_steps", self.warmup_steps)

    def _lr(self, t: np.ndarray) -> np.ndarray:
        n = t + 1.0
        return self.lr * np.minimum(n / self.warmup_steps, np.sqrt(self.warmup_steps / n))


@register("wsd")
@dataclass(frozen=True)
class WSD(Schedule):
    """Warmup-stable-decay (Hu et al. 2024, MiniCPM, arXiv 2404.06395; Hägele et al. 2024,
    arXiv 2405.18392 for "1-sqrt"; ``transformers.get_wsd_schedule``).

    Warmup ``lr * t / warmup_steps`` for ``t < warmup_steps``; then `lr` for `stable_steps`;
    then with ``p = min(1, (t - warmup_steps - stable_steps) / decay_steps)``:
    ``lr_t = end_lr + (lr - end_lr) * f(p)``, ``f = 1 - p`` ("linear"),
    ``0.5 * (1 + cos(pi * p))`` ("cosine") or ``1 - sqrt(p)`` ("1-sqrt"); `end_lr` after.
    """

    lr: float
    warmup_steps: float
    stable_steps: float
    decay_steps: float
    decay: str = "linear"
    end_lr: float = 0.0

    def __post_init__(self) -> None:
        non_negative("wsd", "lr", self.lr)
        non_negative("wsd", "warmup_steps", self.warmup_steps)
        non_negative("wsd", "stable_steps", self.stable_steps)
        positive("wsd", "decay_steps", self.decay_steps)
        choice("wsd", "decay", self.decay, ("linear", "cosine", "1-sqrt"))
        non_negative("wsd", "end_lr", self.end_lr)

    def _decay_factor(self, p: np.ndarray) -> np.ndarray:
        if self.decay == "linear":
            return 1.0 - p
        if self.decay == "cosine":
            return 0.5 * (1.0 + np.cos(np.pi * p))
        return 1.0 - np.sqrt(p)

    def _lr(self, t: np.ndarray) -> np.ndarray:
        p = np.clip((t - self.warmup_steps - self.stable_steps) / self.decay_steps, 0.0, 1.0)
        after_warmup = self.end_lr + (self.lr - self.end_lr) * self._decay_factor(p)
        if self.warmup_steps == 0:
            return after_warmup
        ramp = self.lr * np.minimum(t, self.warmup_steps) / self.warmup_steps  # no overflow past the ramp
        return np.where(t < self.warmup_steps, ramp, after_warmup)
