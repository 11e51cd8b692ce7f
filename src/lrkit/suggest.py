"""Learning-rate suggestions from an LR range test curve: pure numpy, ``(lrs, losses) -> lr``.

Every heuristic takes the learning rates of the sweep (increasing) and the (smoothed) losses
recorded at them, and returns one learning rate. They are the published ones, kept separate and
swappable as in fastai (``fastai/callback/schedule.py``):

- `steepest`: where the loss falls fastest per unit of log-LR (fastai ``steep``);
- `valley`: about halfway along the longest descending stretch (fastai ``valley``, the fastai default);
- `minimum`: a tenth of the LR at the lowest loss (fastai ``minimum``);
- `slide`: fastai's interval-slide rule (``slide``);
- `consensus`: lrkit's robust rule, the geometric mean of `minimum` and `steepest` read on the
  falling part of the curve; `suggest` adds the heuristics' interval and a confidence note.

Each is a `Rule` (name, function, minimum number of points, where the interval reads it) in the
registry `HEURISTICS`; `register` adds one, and `suggest` runs every registered rule that has
enough points. `suggest(method=...)` takes a registered name or any callable ``(lrs, losses) -> lr``
(fastai's ``suggest_funcs``); `suggest(schedule=...)` picks the rule for the schedule the LR is
for instead (`SCHEDULE_RULES`, `choose_rule`). `clr_bounds` proposes ``(base_lr, max_lr)`` for
cyclical schedules (Smith 2017, §3.3). No torch import here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np

from lrkit.schedules import Schedule, parse
from lrkit.schedules.shape import SCHEDULE_KINDS, schedule_kind
from lrkit.validation import callable_arg, choice, fail, in_range, instance, integer, optional, positive

__all__ = ["DEFAULT_METHOD", "HEURISTICS", "INTERVAL_READS", "SCHEDULE_RULES", "Method", "Rule", "RuleFn",
           "ScheduleFor", "Suggestion", "choose_rule", "clr_bounds", "consensus", "minimum", "register",
           "resolve_rule", "slide", "steepest", "suggest", "valley"]

#: A suggestion rule: ``(lrs, losses) -> lr`` on an increasing LR sweep and its (smoothed) losses.
RuleFn: TypeAlias = Callable[[np.ndarray, np.ndarray], float]
#: What `suggest` and the finder accept as ``method``: a registered rule's name or a callable rule.
Method: TypeAlias = str | RuleFn
#: What `suggest` and the finder accept as ``schedule``: a kind of `SCHEDULE_RULES`, a `Schedule` or its spec.
ScheduleFor: TypeAlias = str | Schedule


def _curve(owner: str, lrs, losses, *, min_points: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 copies: same length >= `min_points`, finite, lrs > 0 and increasing."""
    lrs = np.asarray(lrs, dtype=np.float64).reshape(-1)
    losses = np.asarray(losses, dtype=np.float64).reshape(-1)
    if lrs.shape != losses.shape:
        raise ValueError(f"{owner}: lrs and losses must have the same length, got {lrs.size} and {losses.size}")
    if lrs.size < min_points:
        raise ValueError(f"{owner}: needs at least {min_points} points, got {lrs.size}")
    if not (np.all(np.isfinite(lrs)) and np.all(np.isfinite(losses))):
        raise ValueError(f"{owner}: lrs and losses must be finite (cut the curve at the first non-finite loss)")
    if np.any(lrs <= 0) or np.any(np.diff(lrs) <= 0):
        raise ValueError(f"{owner}: lrs must be > 0 and strictly increasing")
    return lrs, losses


def steepest(lrs, losses) -> float:
    """The LR where the loss falls fastest against log-LR (fastai ``steep``).

    ``g_i = (L_{i+1} - L_i) / (ln lr_{i+1} - ln lr_i)``, suggestion ``lr_{i*+1}`` with
    ``i* = argmin_i g_i``. (torch-lr-finder's rule, ``np.gradient`` over the index after skipping
    10 + 5 points, is the same slope on an exponential sweep, with central differences.)
    """
    lrs, losses = _curve("steepest", lrs, losses)
    slopes = np.diff(losses) / np.diff(np.log(lrs))
    return float(lrs[1:][np.argmin(slopes)])


def valley(lrs, losses) -> float:
    """About halfway along the longest descending stretch (fastai ``valley``, Zachary Mueller 2021).

    ``d_i`` = length of the longest strictly decreasing subsequence of the losses that ends at i
    (``d_i = 1 + max{d_j : j < i, L_j > L_i}``); ``e`` = the first index with the largest ``d``,
    ``s = e - d_e``; suggestion ``lr_k`` with ``k = s + int((e - s)/3) + int((e - s)/6)``.
    fastai's ``k`` is -1 (wrapping to the last point) when the longest descent has 2 points
    starting at index 0; lrkit clamps it to 0.
    """
    lrs, losses = _curve("valley", lrs, losses, min_points=1)
    lengths = np.ones(losses.size, dtype=np.int64)
    for i in range(1, losses.size):
        higher = losses[:i] > losses[i]
        if higher.any():
            lengths[i] = 1 + lengths[:i][higher].max()
    end = int(np.argmax(lengths))
    start = end - int(lengths[end])
    sections = (end - start) / 3
    index = max(0, start + int(sections) + int(sections / 2))
    return float(lrs[index])


def minimum(lrs, losses) -> float:
    """A tenth of the LR at the lowest loss (fastai ``minimum``): ``lr_{argmin L} / 10``."""
    lrs, losses = _curve("minimum", lrs, losses, min_points=1)
    return float(lrs[np.argmin(losses)] / 10.0)


def slide(lrs, losses, lr_diff: int = 15, thresh: float = 0.005, adjust_value: float = 1.0) -> float:
    """fastai's interval-slide rule (``slide``, Andrew Chang / fastai 2021).

    With ``g = np.gradient(L)`` (per index), slide a window ``(l, r) = (r - lr_diff, r)`` leftwards
    from the right end while ``|g_r - g_l| > thresh``; the suggestion is ``adjust_value * lr_l`` for
    the last window that still differed (the first window's ``lr_l`` if none did).
    """
    integer("slide", "lr_diff", lr_diff, minimum=1)
    positive("slide", "thresh", thresh)
    positive("slide", "adjust_value", adjust_value)
    lrs, losses = _curve("slide", lrs, losses, min_points=lr_diff + 1)
    grads = np.gradient(losses)
    n = losses.size
    right, left = n - 1, n - 1 - lr_diff
    found = lrs[left]
    while left >= 0 and abs(grads[right] - grads[left]) > thresh:
        found = lrs[left]
        right, left = right - 1, left - 1
    return float(found * adjust_value)


def _falling_part(lrs: np.ndarray, losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The curve from its first tenth (fastai's ``lr_find`` also drops the first ``num_it // 10``
    points, where the loss is still pure batch noise) up to its lowest loss (where it stops
    falling); from the start when that leaves fewer than 2 points."""
    end = int(np.argmin(losses)) + 1
    start = losses.size // 10 if end - losses.size // 10 >= 2 else 0
    return lrs[start:end], losses[start:end]


def _votes(lrs: np.ndarray, losses: np.ndarray) -> tuple[float, float]:
    """`consensus`'s two votes: `minimum` on the whole curve and `steepest` on its falling part
    (`minimum` again when the falling part has fewer than 2 points)."""
    low = minimum(lrs, losses)
    falling_lrs, falling_losses = _falling_part(lrs, losses)
    return low, steepest(falling_lrs, falling_losses) if falling_lrs.size >= 2 else low


def consensus(lrs, losses) -> float:
    """lrkit's robust rule: the geometric mean of the conservative, stable `minimum` (a decade
    below the lowest loss) and the aggressive, noisy `steepest`, the latter read only on the falling
    part of the curve (from its first tenth to its lowest loss), so that neither the noise of the
    first batches nor the diverging tail can attract it.

    ``lr* = sqrt(minimum(lrs, L) * steepest(lrs[n//10 : argmin L + 1], L[n//10 : argmin L + 1]))``

    (valley and slide, the other classic rules, were measured lower and less stable in
    bench/bench_finder.py; they still count in `suggest`'s interval.) When the falling part has
    fewer than 2 points, `minimum` alone.
    """
    lrs, losses = _curve("consensus", lrs, losses)
    low, steep = _votes(lrs, losses)
    return float(np.sqrt(low * steep))


#: Where `suggest`'s interval reads a rule: the whole curve, or its falling part (`_falling_part`).
INTERVAL_READS = ("curve", "falling")


@dataclass(frozen=True)
class Rule:
    """A suggestion rule: ``fn(lrs, losses) -> lr``, run only on curves of at least `min_points`.

    `interval`: where `suggest`'s interval reads the rule, ``"curve"`` (the whole curve),
    ``"falling"`` (its falling part) or None (the rule does not count in the interval).
    A rule is called like its function.
    """

    name: str
    fn: RuleFn
    min_points: int
    interval: str | None = None

    def __post_init__(self) -> None:
        instance("Rule", "name", self.name, str, "a string")
        callable_arg("Rule", "fn", self.fn, "(lrs, losses) -> lr")
        integer("Rule", "min_points", self.min_points, minimum=1)
        optional(choice, "Rule", "interval", self.interval, INTERVAL_READS)

    def __call__(self, lrs, losses) -> float:
        return self.fn(lrs, losses)


#: The registered rules by name, in report order: `suggest` runs every one that has enough points.
HEURISTICS: dict[str, Rule] = {}


def register(rule: Rule) -> Rule:
    """Add `rule` to `HEURISTICS` under a new name; `suggest` (and the finder) run it from then on."""
    instance("register", "rule", rule, Rule, "a Rule")
    if rule.name in HEURISTICS:
        raise fail("register", "rule.name", f"a new name (taken: {', '.join(map(repr, HEURISTICS))})", rule.name)
    HEURISTICS[rule.name] = rule
    return rule


# valley and minimum never point past the lowest loss: the interval reads them on the whole curve;
# steepest and slide on the falling part, where neither the first batches' noise nor the diverging
# tail can attract them. slide needs lr_diff + 1 points (fastai's lr_diff = 15).
register(Rule("steepest", steepest, min_points=2, interval="falling"))
register(Rule("valley", valley, min_points=1, interval="curve"))
register(Rule("minimum", minimum, min_points=1, interval="curve"))
register(Rule("slide", slide, min_points=16, interval="falling"))
register(Rule("consensus", consensus, min_points=2))

#: The heuristic `suggest` (and the finder) report by default; chosen by bench/bench_finder.py
#: (docs/benchmarks.md, "LR finder").
DEFAULT_METHOD = "consensus"


def resolve_rule(method: Method, owner: str = "suggest") -> Rule:
    """The rule `method` names or is: a registered name, a registered rule or its function, or any
    other callable ``(lrs, losses) -> lr`` (a `Rule`, or a function that becomes a rule named after
    it that needs 2 points; its name must not be a registered rule's)."""
    if isinstance(method, str) and method in HEURISTICS:
        return HEURISTICS[method]
    if isinstance(method, str) or not callable(method):
        raise fail(owner, "method", f"one of {', '.join(map(repr, HEURISTICS))} or a callable (lrs, losses) -> lr",
                   method)
    for rule in HEURISTICS.values():
        if method in (rule, rule.fn):
            return rule
    custom = method if isinstance(method, Rule) else Rule(getattr(method, "__name__", type(method).__name__),
                                                          method, min_points=2)
    if custom.name in HEURISTICS:
        raise fail(owner, "method", f"a callable not named like a registered rule, {custom.name!r} is taken", method)
    return custom


#: The rule for each kind of schedule (`lrkit.schedules.shape.SCHEDULE_KINDS`). Both read
#: ``consensus`` since the held-out benchmark (docs/heldout.md, 2026-12-03): ``minimum``, chosen for
#: a constant LR on the MLP tasks of bench/bench_finder.py, scored a median 0.954 / worst 0.641 of
#: the best grid LR at a constant LR on four tasks it was never tuned on, ``consensus`` 0.992 / 0.785
#: (with the check, which also keeps ``consensus`` from the collapses it had on those MLPs: worst
#: 0.822, docs: bench/bench_finder_check.py). A rule for one kind must beat ``consensus`` on
#: held-out tasks to take its place.
SCHEDULE_RULES = {"constant": "consensus", "decaying": "consensus"}


def choose_rule(method: Method = DEFAULT_METHOD, schedule: ScheduleFor | None = None,
                owner: str = "suggest") -> tuple[Rule, str]:
    """The rule of the reported suggestion and why it was chosen.

    `schedule` None: `method`'s rule (`resolve_rule`). Otherwise the rule of `SCHEDULE_RULES` for
    the schedule's kind: ``"constant"`` or ``"decaying"`` as given, or a `Schedule` (or its spec,
    see `lrkit.schedules.parse`) classified by `lrkit.schedules.shape.schedule_kind` over its long
    run. A schedule picks the rule, so `method` must then be left at `DEFAULT_METHOD`.
    """
    if schedule is None:
        rule = resolve_rule(method, owner)
        given = "the default rule" if isinstance(method, str) and method == DEFAULT_METHOD else "the method given"
        return rule, f"rule {rule.name!r}: {given} (no schedule given)"
    if not (isinstance(method, str) and method == DEFAULT_METHOD):
        raise fail(owner, "method", f"left at {DEFAULT_METHOD!r} when schedule is given (schedule={schedule!r} picks "
                   "the rule); pass method or schedule, not both", method)
    if isinstance(schedule, str) and schedule in SCHEDULE_KINDS:
        return HEURISTICS[SCHEDULE_RULES[schedule]], f"rule {SCHEDULE_RULES[schedule]!r} for a {schedule} LR"
    allowed = f"one of {', '.join(map(repr, SCHEDULE_KINDS))}, a Schedule or a schedule spec"
    if isinstance(schedule, str):
        try:
            schedule = parse(schedule)
        except ValueError as err:
            raise fail(owner, "schedule", f"{allowed} ({err})", schedule) from None
    shape = schedule_kind(instance(owner, "schedule", schedule, Schedule, allowed))
    name = SCHEDULE_RULES[shape.kind]
    return HEURISTICS[name], f"rule {name!r} for a {shape.kind} schedule: {schedule} is {shape.describe()}"


def _lr(rule: Rule, lrs: np.ndarray, losses: np.ndarray) -> float:
    """``rule(lrs, losses)``, checked: a learning rate is a finite number > 0."""
    return float(positive("suggest", f"the LR of rule {rule.name!r}", rule(lrs, losses)))


def _interval(lrs: np.ndarray, losses: np.ndarray, on_curve: dict[str, float]) -> tuple[float, float]:
    """``(min, max)`` over the rules that count in the interval, each read where its `Rule.interval`
    says, among those with enough points there; `on_curve` holds the rules' LRs on the whole
    curve already (only the falling-part readings are computed here)."""
    falling_lrs, falling_losses = _falling_part(lrs, losses)
    marks = []
    for rule in HEURISTICS.values():
        if rule.interval == "curve" and rule.name in on_curve:
            marks.append(on_curve[rule.name])
        elif rule.interval == "falling" and falling_lrs.size >= rule.min_points:
            marks.append(_lr(rule, falling_lrs, falling_losses))
    return min(marks), max(marks)


def clr_bounds(lrs, losses, ratio: float = 4.0) -> tuple[float, float]:
    """``(base_lr, max_lr)`` for a cyclical schedule (Smith 2017, "Cyclical Learning Rates", §3.3).

    ``max_lr`` = the LR where the loss stops falling (the lowest loss of the sweep);
    ``base_lr = max_lr / ratio`` (Smith: "set base_lr to 1/3 or 1/4 of max_lr").
    """
    in_range("clr_bounds", "ratio", ratio, 1.0, float("inf"), open_low=True, open_high=True)
    lrs, losses = _curve("clr_bounds", lrs, losses, min_points=1)
    max_lr = float(lrs[np.argmin(losses)])
    return max_lr / ratio, max_lr


@dataclass(frozen=True)
class Suggestion:
    """What `suggest` concluded about a range-test curve.

    ``lr``: the suggestion of the rule ``method``; ``suggestions``: every rule's LR (``lr`` under
    ``method``); ``interval``: the span of the rules that count in it (the four classic ones), read
    as `consensus` reads them (where the published rules land);
    ``confidence``: how far the two votes of `consensus` (minimum, falling-part steepest) agree,
    ``"high"`` (within 0.5 decade), ``"medium"`` (1 decade) or ``"low"`` (further apart, or any
    note); ``notes``: plain-language warnings about the curve; ``reason``: why ``method`` was
    chosen (`choose_rule`).
    """

    lr: float
    method: str
    suggestions: dict[str, float]
    interval: tuple[float, float]
    confidence: str
    notes: tuple[str, ...] = field(default=())
    reason: str = ""


def _noise(raw_losses: np.ndarray) -> float:
    """Batch-to-batch noise (standard deviation) of raw losses, from the median absolute first
    difference: ``sigma = 1.4826 * median|diff L| / sqrt(2)`` (robust to the trend and outliers)."""
    return float(1.4826 * np.median(np.abs(np.diff(raw_losses))) / np.sqrt(2.0))


def _notes(lrs: np.ndarray, losses: np.ndarray, raw_losses: np.ndarray | None) -> list[str]:
    notes = []
    low = int(np.argmin(losses))
    if low == losses.size - 1:
        notes.append("the loss was still falling at the end of the sweep: raise end_lr to see where it stops")
    elif low < max(2, losses.size // 10):
        notes.append("the loss hardly fell before it rose: lower start_lr, or check the model and data")
    drop = float(np.max(losses[: low + 1]) - losses[low])
    if raw_losses is not None and raw_losses.size >= 3:
        noise = _noise(raw_losses[: low + 1] if low >= 2 else raw_losses)
        if drop < 3.0 * noise:
            notes.append(f"the loss fell by {drop:.3g}, less than 3x its batch-to-batch noise ({noise:.3g}): "
                         "the curve is too noisy to trust; use more iterations, larger batches or val_loader")
    return notes


def suggest(lrs, losses, raw_losses=None, method: Method = DEFAULT_METHOD,
            schedule: ScheduleFor | None = None) -> Suggestion:
    """Run every registered rule that has enough points on a range-test curve, and judge how far
    to trust the result.

    `losses` are the smoothed losses the rules read; `raw_losses` (same length, optional) the
    unsmoothed ones, used only to measure noise for the confidence note. `method` picks the
    reported LR (see `resolve_rule`), or `schedule` does: the rule for the schedule the LR is for
    (see `choose_rule`); a callable rule is added to ``suggestions`` under its name.
    """
    rule, reason = choose_rule(method, schedule)
    lrs, losses = _curve("suggest", lrs, losses, min_points=2)
    raw = None if raw_losses is None else _curve("suggest", lrs, raw_losses)[1]
    if lrs.size < rule.min_points:
        raise ValueError(f"suggest: rule {rule.name!r} needs at least {rule.min_points} points, got {lrs.size}")
    everything = {r.name: _lr(r, lrs, losses) for r in HEURISTICS.values() if lrs.size >= r.min_points}
    if rule.name not in everything:  # a callable rule of the caller's
        everything[rule.name] = _lr(rule, lrs, losses)
    notes = _notes(lrs, losses, raw)
    low, steep = _votes(lrs, losses)
    spread = abs(float(np.log10(low / steep)))
    if spread > 1.0:
        notes.append(f"minimum and steepest disagree by {spread:.1f} decades: re-run with another seed or more "
                     "iterations and compare")
    confidence = "low" if notes else "high" if spread <= 0.5 else "medium"
    return Suggestion(lr=everything[rule.name], method=rule.name, suggestions=everything,
                      interval=_interval(lrs, losses, everything), confidence=confidence, notes=tuple(notes),
                      reason=reason)
