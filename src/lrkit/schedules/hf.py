"""transformers' schedules by name: `from_hf` builds the schedule ``transformers.get_scheduler``
sets, as an ordinary composed lrkit schedule (it previews, saves and drives ``ScheduledLR``).

The formulas are those of ``transformers/optimization.py`` (the ``_get_*_lr_lambda`` functions);
each builder below writes its reference next to the composition. Step convention:
transformers' schedules are ``LambdaLR``s, so after ``k`` calls to ``scheduler.step()`` the LR
is ``lr * lr_lambda(k)``; lrkit's ``sched(k)`` is that LR, the LR of update ``k`` (a
``ScheduledLR`` sets ``sched(k)`` after ``k`` steps too). They agree on every step, also past
`num_training_steps` where transformers' formulas go on (its cosines rise again).

No torch and no transformers here: this module only knows the names and the formulas.
"""

from __future__ import annotations

import inspect
import itertools
import logging
from collections.abc import Callable
from typing import Any

from lrkit.schedules.base import Schedule
from lrkit.schedules.combinators import Join, Shift, Warmup
from lrkit.schedules.cosine import SGDR, CosineWave
from lrkit.schedules.decay import Constant, Polynomial
from lrkit.schedules.transformer import WSD, InverseSqrt
from lrkit.validation import choice, fail, in_range, integer, non_negative, positive

__all__ = ["HF_SCHEDULES", "from_hf"]

logger = logging.getLogger(__name__)
OWNER = "from_hf"

#: transformers' names that are not a function of the step, and where lrkit has their kind.
_REACTIVE = {
    "reduce_lr_on_plateau": "use lrkit.torch.ReduceLROnPlateau (or a ScheduledLR with a lrkit.torch.PlateauFactor)",
    "greedy": "transformers' GreedyLR raises and lowers the LR from a metric; lrkit's reactive schedulers are "
              "lrkit.torch.ReduceLROnPlateau and lrkit.torch.PlateauFactor",
}


def _warm(schedule: Schedule, warmup: int, start_lr: float = 0.0, mode: str = "linear") -> Schedule:
    """transformers' warmup: ``start + (peak - start) * f(k / warmup)`` for ``k < warmup``, then
    `schedule` from its step 0 (none when `warmup` is 0)."""
    return Warmup(schedule, warmup, start_lr=start_lr, mode=mode) if warmup else schedule


def _then(pieces: list[tuple[Schedule, int]], last: Schedule) -> Schedule:
    """Each of `pieces` for its number of steps (empty ones dropped), one after the other, then `last`."""
    kept = [(schedule, steps) for schedule, steps in pieces if steps > 0]
    if not kept:
        return last
    boundaries = tuple(itertools.accumulate(steps for _, steps in kept))
    return Join((*(schedule for schedule, _ in kept), last), boundaries)


def _count(name: str, parameter: str, value: Any, minimum: int) -> int:
    """A required count of steps."""
    if value is None:
        raise fail(OWNER, parameter, f"an integer >= {minimum} (required by {name!r})", value)
    return integer(OWNER, parameter, value, minimum=minimum)


def _min_lr_rate(lr: float, min_lr: float | None, min_lr_rate: float | None) -> float:
    """``min_lr_rate``, or ``min_lr / lr``: exactly one of them, as transformers requires."""
    if min_lr is None and min_lr_rate is not None:
        return in_range(OWNER, "min_lr_rate", min_lr_rate, 0.0, 1.0)
    if min_lr is not None and min_lr_rate is None:
        if positive(OWNER, "lr (with min_lr)", lr) < non_negative(OWNER, "min_lr", min_lr):
            raise fail(OWNER, "min_lr", f"<= lr={lr!r}", min_lr)
        return min_lr / lr
    raise fail(OWNER, "exactly one of min_lr and min_lr_rate", "given", {"min_lr": min_lr, "min_lr_rate": min_lr_rate})


# -- one builder per name: (lr, warmup, total, **scheduler_specific_kwargs) -------------------------
def _linear(lr: float, warmup: int, total: int) -> Schedule:
    """``k / warmup``, then ``max(0, (total - k) / (total - warmup))``."""
    return _warm(Polynomial(lr, total - warmup, end_lr=0.0, power=1.0), warmup)


def _cosine(lr: float, warmup: int, total: int, num_cycles: float = 0.5) -> Schedule:
    """``k / warmup``, then ``0.5 * (1 + cos(pi * num_cycles * 2 * p))``,
    ``p = (k - warmup) / (total - warmup)`` (not clamped at 1)."""
    return _warm(CosineWave(lr, total - warmup, cycles=num_cycles), warmup)


def _cosine_with_restarts(lr: float, warmup: int, total: int, num_cycles: float = 1) -> Schedule:
    """``k / warmup``, then ``0.5 * (1 + cos(pi * ((num_cycles * p) % 1)))`` for ``p < 1``, 0 after:
    `num_cycles` hard restarts, each ``(total - warmup) / num_cycles`` steps long."""
    span = total - warmup
    cycle = span / positive(OWNER, "num_cycles", num_cycles)
    return _warm(Join((SGDR(lr, cycle, t_mul=1.0), Constant(0.0)), (span,)), warmup)


def _polynomial(lr: float, warmup: int, total: int, lr_end: float = 1e-7, power: float = 1.0) -> Schedule:
    """``k / warmup``, then ``(lr - lr_end) * (1 - (k - warmup) / (total - warmup)) ** power + lr_end``,
    `lr_end` after `total`."""
    if non_negative(OWNER, "lr_end", lr_end) >= lr:
        raise fail(OWNER, "lr_end", f"< lr={lr!r} (transformers requires it)", lr_end)
    return _warm(Polynomial(lr, total - warmup, end_lr=lr_end, power=power), warmup)


def _constant(lr: float, warmup: int, total: int | None) -> Schedule:
    """``1``."""
    return Constant(lr)


def _constant_with_warmup(lr: float, warmup: int, total: int | None) -> Schedule:
    """``k / warmup``, then ``1``."""
    return _warm(Constant(lr), warmup)


def _inverse_sqrt(lr: float, warmup: int, total: int | None, timescale: int | None = None) -> Schedule:
    """``k / warmup``, then ``1 / sqrt((k + timescale - warmup) / timescale)`` (after big_vision's
    ``rsqrt``); `timescale` defaults to `warmup`, or 10 000 without warmup.

    With ``t = k - warmup`` the decay is ``lr * sqrt(timescale / (t + timescale))``: `inverse_sqrt`
    (``lr * sqrt(w / (t + 1))`` after its peak) with ``w = timescale``, `timescale` - 1 steps in.
    """
    timescale = integer(OWNER, "timescale", (warmup or 10_000) if timescale is None else timescale, minimum=1)
    decay = InverseSqrt(lr, timescale)
    return _warm(Shift(decay, timescale - 1) if timescale > 1 else decay, warmup)


def _cosine_with_min_lr(lr: float, warmup: int, total: int, num_cycles: float = 0.5, min_lr: float | None = None,
                        min_lr_rate: float | None = None) -> Schedule:
    """`_cosine` from `lr` down to ``m = min_lr_rate`` (or ``min_lr / lr``): ``factor * (1 - m) + m``."""
    rate = _min_lr_rate(lr, min_lr, min_lr_rate)
    return _warm(CosineWave(lr, total - warmup, cycles=num_cycles, alpha=rate), warmup)


def _cosine_warmup_with_min_lr(lr: float, warmup: int, total: int, num_cycles: float = 0.5,
                               min_lr: float | None = None, min_lr_rate: float | None = None,
                               warmup_lr_rate: float | None = None) -> Schedule:
    """As `_cosine_with_min_lr`, one step ahead: for ``k < warmup`` the ramp is ``(k + 1) / warmup``
    or, with `warmup_lr_rate` ``r``, ``r + (1 - r) * k / max(1, warmup - 1)``; after it,
    ``p = (k - warmup + 1) / (total - warmup)``.

    So the ramp reaches `lr` at ``k = warmup - 1`` and the cosine runs from there in its own time:
    ``warmup(cosine_wave, warmup - 1, start_lr)`` with ``start_lr = lr / warmup`` or ``r * lr``. With
    one warmup step the ramp is that step alone (`lr`, or ``r * lr`` and then the cosine at its
    step 1); without warmup the cosine starts at its step 1.
    """
    rate = _min_lr_rate(lr, min_lr, min_lr_rate)
    decay = CosineWave(lr, total - warmup, cycles=num_cycles, alpha=rate)
    if warmup == 0:
        return Shift(decay, 1)
    if warmup_lr_rate is None:
        return _warm(decay, warmup - 1, start_lr=lr / warmup)
    start = lr * in_range(OWNER, "warmup_lr_rate", warmup_lr_rate, 0.0, 1.0)
    return Warmup(Shift(decay, 1), 1, start_lr=start) if warmup == 1 else Warmup(decay, warmup - 1, start_lr=start)


_WSD_TYPES = ("linear", "cosine", "1-sqrt")


def _warmup_stable_decay(lr: float, warmup: int, total: int | None, num_decay_steps: int | None = None,
                         num_stable_steps: int | None = None, warmup_type: str = "linear",
                         decay_type: str = "cosine", min_lr_ratio: float = 0.0, num_cycles: float = 0.5) -> Schedule:
    """With ``m = min_lr_ratio`` and ``f`` of `warmup_type` / `decay_type`: ``f(k / warmup) * (1 - m) + m``
    for ``k < warmup`` (linear ``p``, cosine ``0.5 * (1 - cos(pi * p))``, 1-sqrt ``1 - sqrt(1 - p)``);
    ``1`` for `num_stable_steps` (default ``total - warmup - num_decay_steps``); then
    ``f(p) * (1 - m) + m`` with ``p = (k - warmup - stable) / num_decay_steps`` (linear ``1 - p``,
    cosine ``0.5 * (1 + cos(pi * num_cycles * 2 * p))``, 1-sqrt ``1 - sqrt(p)``); ``m`` after.
    """
    decay_steps = _count("warmup_stable_decay", "num_decay_steps", num_decay_steps, 0)
    if num_stable_steps is None:
        if total is None:
            raise fail(OWNER, "num_training_steps or num_stable_steps", "given for 'warmup_stable_decay'", None)
        stable = total - warmup - decay_steps
        if stable < 0:
            raise fail(OWNER, "num_training_steps", f">= num_warmup_steps + num_decay_steps = {warmup + decay_steps}",
                       total)
    else:
        stable = integer(OWNER, "num_stable_steps", num_stable_steps, minimum=0)
        if total is not None and warmup + stable + decay_steps != total:
            logger.warning("from_hf: warmup_stable_decay uses num_stable_steps=%d; the phases end at step %d, "
                           "not at num_training_steps=%d", stable, warmup + stable + decay_steps, total)
    choice(OWNER, "warmup_type", warmup_type, _WSD_TYPES)
    choice(OWNER, "decay_type", decay_type, _WSD_TYPES)
    end = lr * in_range(OWNER, "min_lr_ratio", min_lr_ratio, 0.0, 1.0)
    decay: Schedule
    if decay_type == "linear":
        decay = Polynomial(lr, max(decay_steps, 1), end_lr=end, power=1.0)
    elif decay_type == "cosine":
        decay = CosineWave(lr, max(decay_steps, 1), cycles=num_cycles, alpha=min_lr_ratio)
    else:
        decay = WSD(lr, 0, 0, max(decay_steps, 1), decay="1-sqrt", end_lr=end)
    head = _warm(Constant(lr), warmup, start_lr=end, mode=warmup_type)
    return _then([(head, warmup + stable), (decay, decay_steps)], Constant(end))


_BUILDERS: dict[str, Callable[..., Schedule]] = {
    "linear": _linear,
    "cosine": _cosine,
    "cosine_with_restarts": _cosine_with_restarts,
    "polynomial": _polynomial,
    "constant": _constant,
    "constant_with_warmup": _constant_with_warmup,
    "inverse_sqrt": _inverse_sqrt,
    "cosine_with_min_lr": _cosine_with_min_lr,
    "cosine_warmup_with_min_lr": _cosine_warmup_with_min_lr,
    "warmup_stable_decay": _warmup_stable_decay,
}
#: The ``transformers.SchedulerType`` names `from_hf` builds (all but the reactive ones).
HF_SCHEDULES = tuple(_BUILDERS)
#: The names that need ``num_training_steps`` (the others ignore it, as transformers does;
#: warmup_stable_decay takes it or ``num_stable_steps``).
_NEED_TOTAL = ("linear", "cosine", "cosine_with_restarts", "polynomial", "cosine_with_min_lr",
               "cosine_warmup_with_min_lr")


def from_hf(name: str, lr: float, num_warmup_steps: int | None = None, num_training_steps: int | None = None,
            **scheduler_specific_kwargs: Any) -> Schedule:
    """The schedule ``transformers.get_scheduler(name, optimizer, num_warmup_steps,
    num_training_steps, scheduler_specific_kwargs=...)`` sets on an optimizer whose LR is `lr`.

    Every schedule of the step that transformers names (`HF_SCHEDULES`, or a
    ``transformers.SchedulerType``), equal on every step ``k >= 0`` to the LR after ``k`` calls
    to ``scheduler.step()``:

    - ``linear``: ``warmup(polynomial(lr, N - W, end_lr=0), W)``
    - ``cosine``: ``warmup(cosine_wave(lr, N - W, cycles=num_cycles), W)``
    - ``cosine_with_restarts``: ``warmup(join([sgdr(lr, (N - W) / num_cycles, t_mul=1), constant(0)], [N - W]), W)``
    - ``polynomial``: ``warmup(polynomial(lr, N - W, end_lr=lr_end, power=power), W)``
    - ``constant``: ``constant(lr)``; ``constant_with_warmup``: ``warmup(constant(lr), W)``
    - ``inverse_sqrt``: ``warmup(shift(inverse_sqrt(lr, timescale), timescale - 1), W)``
    - ``cosine_with_min_lr``: ``warmup(cosine_wave(lr, N - W, num_cycles, alpha=min_lr_rate), W)``
    - ``cosine_warmup_with_min_lr``: ``warmup(cosine_wave(...), W - 1, start_lr=lr / W)``: its
      warmup ends one step early
    - ``warmup_stable_decay``: ``join([warmup(constant(lr), W, start_lr=m * lr, mode=warmup_type),
      <decay_type over num_decay_steps>, constant(m * lr)], [W + S, W + S + D])``

    (``W``, ``N``: `num_warmup_steps`, `num_training_steps`; a warmup of 0 steps is left out.)

    Arguments are checked where transformers would fail late or not at all: missing required
    ones, unknown keyword arguments (also for ``constant`` and ``constant_with_warmup``, whose
    keyword arguments transformers ignores), a warmup given to ``constant``, and
    ``num_training_steps <= num_warmup_steps`` (transformers then divides by zero, or by its
    ``max(1, ...)``). ``reduce_lr_on_plateau`` and ``greedy`` react to a metric and raise a
    ValueError that names lrkit's reactive scheduler.
    """
    name = getattr(name, "value", name)  # a transformers.SchedulerType is a str Enum
    if name in _REACTIVE:
        raise fail(OWNER, "name", f"a schedule of the step; {name!r} reacts to a metric: {_REACTIVE[name]}", name)
    build = _BUILDERS[choice(OWNER, "name", name, HF_SCHEDULES)]
    allowed = [p for p in inspect.signature(build).parameters if p not in ("lr", "warmup", "total")]
    unknown = sorted(set(scheduler_specific_kwargs) - set(allowed))
    if unknown:
        raise fail(OWNER, f"the scheduler_specific_kwargs of {name!r}", f"among {allowed}", unknown)
    non_negative(OWNER, "lr", lr)
    if name == "constant":
        if num_warmup_steps not in (None, 0):
            raise fail(OWNER, "num_warmup_steps", "0 or None for 'constant' (transformers ignores it; "
                       "'constant_with_warmup' warms up)", num_warmup_steps)
        warmup = 0
    else:
        warmup = _count(name, "num_warmup_steps", num_warmup_steps, 0)
    total = num_training_steps
    if name in _NEED_TOTAL:
        if total is None:
            raise fail(OWNER, "num_training_steps", f"an integer > num_warmup_steps (required by {name!r})", total)
        if integer(OWNER, "num_training_steps", total, minimum=1) <= warmup:
            raise fail(OWNER, "num_training_steps", f"> num_warmup_steps={warmup}", total)
    elif total is not None:
        total = integer(OWNER, "num_training_steps", total, minimum=0)
    return build(lr, warmup, total, **scheduler_specific_kwargs)
