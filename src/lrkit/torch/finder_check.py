"""The check after the range test: the suggested LR must hold over a longer horizon than a batch.

A sweep sees each LR for one or two batches, while divergence under momentum builds up over
many updates: on a 4-layer MLP without BatchNorm (SGD, momentum 0.9) an LR that trains as well
as the best one for 50 updates can still blow up after 60-100 (issue 11). The check trains from
the restored state with the user's optimizer (momentum, Adam's moments, param groups,
accumulation, GradScaler and autocast included) at ``margin × lr`` for `hold_steps` updates:

    it fails on a non-finite loss, or when the smoothed training loss S_i (`BiasCorrectedAverage`,
    beta = 0.9) rises above both RISE = 2 times its lowest value so far, min_{j<i} S_j, and its
    level at the start, S_5 (tested from update BURN_IN + 1 = 6 on): the hold undid its progress;

on a failure it backs off, ``lr <- lr · 10^-0.25``, and holds again from the restored state, while
the budget (the sweep's own `num_iter` updates) lasts; when it runs out, the LR returned is one
back-off below the last that failed, flagged unverified. On a quadratic the test finds the
heavy-ball edge of stability, ``lr < 2(1 + beta) / lambda_max`` (tests/test_finder_check.py).

Holding ``margin × lr`` stands in for the longer run the LR is for: the updates an LR survives
fall steeply as it grows (0.56 survives about 25 on the issue's MLP, 0.18 about 60), and no hold
the budget affords at the LR itself sees the late blow-ups. The defaults (40 updates at 10^0.5 ×)
were chosen on bench/bench_finder_check.py (MLPs without BatchNorm, 4 epochs at a constant LR,
36 runs): with the default rule no run collapsed (3 without the check), median score 0.991
(0.982 without), at 54 updates on average (98 at most); a hold at the LR itself (margin 1) left
all 3 collapses, 30 updates at 10^0.5 × came within a few updates of missing 2 of 20 further seeds
of the issue's MLP. The curvature bound of Cohen et al. 2021 ("Gradient descent on neural networks
typically occurs at the edge of stability": ``lr < 2(1 + beta) / lambda_max``) was measured too
and left out: at a fresh initialisation the sharpness is near 0 (lambda_max 0.3-1.2 on these
MLPs, bounds of 3-13) and grows during training, so the bound at the restored weights passed
every LR that diverged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from lrkit.torch.finder_batches import endless
from lrkit.torch.finder_step import BiasCorrectedAverage, Stepper, mean_over_ranks

__all__ = ["BACKOFF", "BURN_IN", "CHECKS", "RISE", "CheckResult", "Hold", "HoldTest"]

#: What `FinderOptions.check` accepts: the hold test, or no check.
CHECKS = ("hold", "none")
#: The factor on the LR after a failed hold (a quarter decade).
BACKOFF = 10**-0.25
#: A hold fails when its smoothed loss exceeds this many times its lowest so far (and its start).
RISE = 2.0
#: The smoothed loss at this update is the start a hold must not climb back above.
BURN_IN = 5
_SMOOTH = 0.9


@dataclass(frozen=True)
class Hold:
    """One hold: `lr` (the candidate) trained at `held_lr` for `updates` updates; `why` it failed
    (empty when it `passed`)."""

    lr: float
    held_lr: float
    updates: int
    passed: bool
    why: str = ""


@dataclass(frozen=True)
class CheckResult:
    """What the check did: the rule's `candidate`, the `lr` it returns, its `holds` in order and
    whether the returned LR held (`verified`: False only when the budget ran out first, and the
    LR returned is then one back-off below the last that failed)."""

    candidate: float
    lr: float
    margin: float
    hold_steps: int
    holds: tuple[Hold, ...]
    verified: bool

    @property
    def updates(self) -> int:
        """Optimizer updates the check spent (its cost, next to the sweep's `num_iter`)."""
        return sum(hold.updates for hold in self.holds)

    @property
    def note(self) -> str:
        """What the check did, in one sentence."""
        margin = f"{self.margin:.3g}x"
        failed = [f"{hold.lr:.3g} ({hold.why})" for hold in self.holds if not hold.passed]
        if not failed:
            return f"check: {self.lr:.3g} held at {margin} ({self.holds[-1].held_lr:.3g}) for {self.hold_steps} updates"
        if self.verified:
            return (f"check: {'; '.join(failed)} did not hold at {margin} for {self.hold_steps} updates; backed off "
                    f"to {self.lr:.3g}, which held ({self.updates} updates spent)")
        return (f"check: no LR held at {margin} for {self.hold_steps} updates within the budget ({'; '.join(failed)}); "
                f"returns {self.lr:.3g}, one back-off lower, unchecked")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the cost (``updates``) and the ``note``."""
        data = asdict(self)
        data["holds"] = [asdict(hold) for hold in self.holds]
        return {**data, "updates": self.updates, "note": self.note}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        """Rebuild from `to_dict` output (``updates`` and ``note`` are derived, not read)."""
        own = {key: value for key, value in data.items() if key not in ("updates", "note")}
        return cls(**{**own, "holds": tuple(Hold(**hold) for hold in own["holds"])})


@dataclass(frozen=True)
class HoldTest:
    """The hold test on one model: `restart()` puts the state back as the range test found it
    (and re-seeds), `set_lr(lr)` gives every swept parameter group its LR for a candidate `lr`;
    each hold trains `hold_steps` updates at ``margin × lr`` on `train_loader`, the holds
    together at most `budget` updates."""

    stepper: Stepper
    train_loader: Iterable
    restart: Callable[[], None]
    set_lr: Callable[[float], None]
    hold_steps: int
    margin: float
    budget: int

    def run(self, candidate: float, advance: Callable[[], None]) -> CheckResult:
        """Hold `candidate`, backing off until a hold passes or the budget is spent; `advance()`
        is called after every update (a progress bar)."""
        holds: list[Hold] = []
        lr, spent = candidate, 0
        steps = min(self.hold_steps, self.budget)
        while spent + steps <= self.budget:
            hold = self._hold(lr, steps, advance)
            holds.append(hold)
            spent += hold.updates
            if hold.passed:
                break
            lr *= BACKOFF
        return CheckResult(candidate=candidate, lr=lr, margin=self.margin, hold_steps=steps, holds=tuple(holds),
                           verified=holds[-1].passed)

    def _hold(self, lr: float, steps: int, advance: Callable[[], None]) -> Hold:
        self.restart()
        self.set_lr(lr * self.margin)
        self.stepper.model.train()
        batches = endless(self.train_loader)
        smoother, lowest, start = BiasCorrectedAverage(_SMOOTH), math.inf, math.inf
        for update in range(1, steps + 1):
            loss = mean_over_ranks(self.stepper.train_loss(batches))
            advance()
            if not math.isfinite(loss):
                return Hold(lr, lr * self.margin, update, False, f"non-finite loss at update {update}")
            smoothed = smoother(loss)
            if update == BURN_IN:
                start = smoothed
            if smoothed > max(RISE * lowest, start):
                return Hold(lr, lr * self.margin, update, False, f"loss rose {smoothed / lowest:.1f}x above its "
                            f"lowest, past where it started, by update {update}")
            lowest = min(lowest, smoothed)
        return Hold(lr, lr * self.margin, steps, True)
