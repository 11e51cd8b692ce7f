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

`clr_bounds` proposes ``(base_lr, max_lr)`` for cyclical schedules (Smith 2017, §3.3).
No torch import here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from lrkit.schedules.base import choice, in_range, integer, positive

__all__ = ["steepest", "valley", "minimum", "slide", "consensus", "clr_bounds", "suggest", "Suggestion",
           "HEURISTICS", "DEFAULT_METHOD"]


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


def _heuristics(lrs: np.ndarray, losses: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
    """(every heuristic on the whole curve, the classic ones as the interval reads them).

    valley and minimum are read on the whole curve (they never point past the lowest loss),
    steepest and slide on the falling part (those that have enough points there).
    """
    whole = {"steepest": steepest(lrs, losses), "valley": valley(lrs, losses), "minimum": minimum(lrs, losses)}
    if lrs.size >= 16:
        whole["slide"] = slide(lrs, losses)
    falling_lrs, falling_losses = _falling_part(lrs, losses)
    parts = {"valley": whole["valley"], "minimum": whole["minimum"]}
    if falling_lrs.size >= 2:
        parts["steepest"] = steepest(falling_lrs, falling_losses)
    if falling_lrs.size >= 16:
        parts["slide"] = slide(falling_lrs, falling_losses)
    whole["consensus"] = float(np.sqrt(parts["minimum"] * parts.get("steepest", parts["minimum"])))
    return whole, parts


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
    return _heuristics(lrs, losses)[0]["consensus"]


HEURISTICS: dict[str, Callable[..., float]] = {
    "steepest": steepest, "valley": valley, "minimum": minimum, "slide": slide, "consensus": consensus,
}

#: The heuristic `suggest` (and the finder) report by default; chosen by bench/bench_finder.py
#: (docs/benchmarks.md, "LR finder").
DEFAULT_METHOD = "consensus"


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

    ``lr``: the suggestion of ``method``; ``suggestions``: every heuristic's LR; ``interval``: the
    span of the four classic heuristics as `consensus` reads them (where the published rules land);
    ``confidence``: how far the two votes of `consensus` (minimum, falling-part steepest) agree,
    ``"high"`` (within 0.5 decade), ``"medium"`` (1 decade) or ``"low"`` (further apart, or any
    note); ``notes``: plain-language warnings about the curve.
    """

    lr: float
    method: str
    suggestions: dict[str, float]
    interval: tuple[float, float]
    confidence: str
    notes: tuple[str, ...] = field(default=())


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


def suggest(lrs, losses, raw_losses=None, method: str = DEFAULT_METHOD) -> Suggestion:
    """Run every heuristic on a range-test curve and judge how far to trust the result.

    `losses` are the smoothed losses the heuristics read; `raw_losses` (same length, optional)
    the unsmoothed ones, used only to measure noise for the confidence note.
    """
    choice("suggest", "method", method, HEURISTICS)
    lrs, losses = _curve("suggest", lrs, losses, min_points=2)
    raw = None
    if raw_losses is not None:
        _, raw = _curve("suggest", lrs, raw_losses, min_points=2)
    everything, candidates = _heuristics(lrs, losses)
    if method not in everything:
        raise ValueError(f"suggest: method {method!r} needs at least 16 points, got {lrs.size}")
    lo, hi = min(candidates.values()), max(candidates.values())
    notes = _notes(lrs, losses, raw)
    votes = candidates["minimum"], candidates.get("steepest", candidates["minimum"])
    spread = abs(float(np.log10(votes[0] / votes[1])))
    if spread > 1.0:
        notes.append(f"minimum and steepest disagree by {spread:.1f} decades: re-run with another seed or more "
                     "iterations and compare")
    confidence = "low" if notes else "high" if spread <= 0.5 else "medium"
    chosen = everything[method]
    return Suggestion(lr=chosen, method=method, suggestions=everything, interval=(lo, hi),
                      confidence=confidence, notes=tuple(notes))
