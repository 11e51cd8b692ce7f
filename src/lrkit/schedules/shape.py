"""Whether a schedule holds its LR near its peak or decays it: the one fact about a schedule that
the finder's suggestion rule depends on (`lrkit.suggest.choose_rule`).

A range test measures where one LR is too high for a batch or two; how far below that a run
should stay depends on how long it keeps its LR there. The finder benchmark (docs/benchmarks.md,
"LR finder") found the conservative ``minimum`` rule best for a constant LR and ``consensus`` for
a decaying schedule; `schedule_kind` tells the two apart by evaluating the schedule:

    near = |{t < T : lr(t) >= 0.9 · max_s lr(s)}| / T    (the share of the run within 10 % of the peak)

over ``T`` = `total_steps` updates, sampled at up to ``10 001`` evenly spaced steps. A schedule
that stays near its peak for at least ``HOLD_SHARE`` = 60 % of the run is ``"constant"``
(constant, warmup then constant, a warmup-stable-decay run's long stable phase); one that
leaves it sooner is ``"decaying"`` (step and multi-step decay, exponential, cosine, one-cycle,
cyclical and restart schedules). Without `total_steps` the schedule is judged on its long run,
``LONG_RUN`` = 10⁶ updates, where any schedule that ends below its peak (cosine, one-cycle, a
warmup-stable-decay run) is decaying: pass the run's length to judge it on the run instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lrkit.schedules.base import Schedule, schedule_arg
from lrkit.validation import fail, integer

__all__ = ["HOLD_SHARE", "LONG_RUN", "NEAR_PEAK", "SCHEDULE_KINDS", "ScheduleShape", "schedule_kind"]

#: What `schedule_kind` tells apart.
SCHEDULE_KINDS = ("constant", "decaying")
#: An LR counts as at its peak from this fraction of the peak on.
NEAR_PEAK = 0.9
#: A schedule near its peak for at least this share of the run is "constant".
HOLD_SHARE = 0.6
#: The run a schedule is judged on when its length is not given.
LONG_RUN = 10**6
_SAMPLES = 10_001


@dataclass(frozen=True)
class ScheduleShape:
    """`kind` (one of `SCHEDULE_KINDS`) and what it was read from: `near_peak`, the share of the
    `total_steps` updates whose LR is within 10 % of the peak."""

    kind: str
    near_peak: float
    total_steps: int

    def describe(self) -> str:
        return f"within 10 % of its peak for {self.near_peak:.0%} of {self.total_steps} updates"


def schedule_kind(schedule: Schedule, total_steps: int | None = None) -> ScheduleShape:
    """Whether `schedule` is ``"constant"`` or ``"decaying"`` over a run of `total_steps` updates
    (default: `LONG_RUN`); see the module docstring for the rule."""
    schedule_arg("schedule_kind", "schedule", schedule)
    steps = LONG_RUN if total_steps is None else integer("schedule_kind", "total_steps", total_steps, minimum=1)
    t = np.unique(np.floor(np.linspace(0.0, steps - 1, min(steps, _SAMPLES))))
    lrs = np.asarray(schedule(t), dtype=np.float64)
    peak = float(lrs.max())
    if not peak > 0:
        raise fail("schedule_kind", "schedule", "a schedule whose LR rises above 0 within the run", schedule)
    near = float(np.mean(lrs >= NEAR_PEAK * peak))
    return ScheduleShape(kind="constant" if near >= HOLD_SHARE else "decaying", near_peak=near, total_steps=steps)
