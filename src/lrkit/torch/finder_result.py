"""`FinderResult`: the curve of an LR range test, its suggestions, a plot and a JSON form."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from lrkit.suggest import Suggestion, clr_bounds, suggest

STOP_REASONS = ("completed", "diverged", "non-finite")


@dataclass(frozen=True, eq=False)
class FinderResult:
    """The outcome of `find_lr`.

    ``lrs[i]`` is the LR of the update at iteration i (the swept group's, or the first group's
    when all groups move together); ``raw_losses[i]`` the loss of that iteration's batch, computed
    before the update (fastai's and torch-lr-finder's pairing), or the validation loss after it
    when a ``val_loader`` was given; ``losses`` the bias-corrected smoothed losses the
    suggestions read. ``group_lrs`` are the LRs to give every parameter group: the suggestion
    scaled by each group's ratio, or, for a one-group sweep, the suggestion for the swept group
    with the others unchanged.
    """

    lrs: np.ndarray
    losses: np.ndarray
    raw_losses: np.ndarray
    suggestion: float
    method: str
    suggestions: dict[str, float]
    interval: tuple[float, float]
    confidence: str
    notes: tuple[str, ...]
    clr_bounds: tuple[float, float]
    group_lrs: tuple[float, ...]
    stop_reason: str
    group: int | None = None
    validation: bool = False

    @classmethod
    def from_curve(cls, lrs, losses, raw_losses, *, method: str, group_lrs_of, stop_reason: str,
                   group: int | None = None, validation: bool = False) -> "FinderResult":
        """Suggestions for a recorded curve; `group_lrs_of(lr)` maps a suggestion to every group's LR."""
        lrs, losses, raw = (np.asarray(v, dtype=np.float64) for v in (lrs, losses, raw_losses))
        found: Suggestion = suggest(lrs, losses, raw, method=method)
        return cls(lrs=lrs, losses=losses, raw_losses=raw, suggestion=found.lr, method=method,
                   suggestions=found.suggestions, interval=found.interval, confidence=found.confidence,
                   notes=found.notes, clr_bounds=clr_bounds(lrs, losses),
                   group_lrs=tuple(float(v) for v in group_lrs_of(found.lr)), stop_reason=stop_reason,
                   group=group, validation=validation)

    def plot(self, ax=None, *, show_raw: bool = True):
        """Loss against LR (log x), each suggestion marked, the heuristics' interval shaded."""
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(7, 4.5))
        if show_raw:
            ax.plot(self.lrs, self.raw_losses, color="0.75", linewidth=0.8, label="raw loss")
        ax.plot(self.lrs, self.losses, color="C0", linewidth=1.8, label="smoothed loss")
        ax.axvspan(*self.interval, color="C2", alpha=0.12, label="span of the rules")
        log_lrs = np.log10(self.lrs)
        for k, (name, lr) in enumerate(sorted(self.suggestions.items())):
            y = np.interp(np.log10(lr), log_lrs, self.losses)
            chosen = name == self.method
            ax.scatter([lr], [y], s=90 if chosen else 40, marker="*" if chosen else "o", zorder=3,
                       color=f"C{k + 3}", label=f"{name}: {lr:.3g}" + (" (suggested)" if chosen else ""))
        ax.set_xscale("log")
        # Frame the falling part: a diverging tail (often 100x the loss) would flatten the curve.
        falling = self.losses[: int(np.argmin(self.losses)) + 1]
        low, high = min(float(self.losses.min()), float(self.raw_losses.min())), float(falling.max())
        span = max(high - low, 1e-12)
        ax.set_ylim(low - 0.1 * span, high + 0.4 * span)
        ax.set_xlabel("learning rate" + ("" if self.group is None else f" (group {self.group})"))
        ax.set_ylabel("validation loss" if self.validation else "training loss")
        ax.set_title(f"LR range test: suggestion {self.suggestion:.3g} ({self.method}, {self.confidence} confidence)")
        ax.legend(fontsize="small")
        return ax

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: arrays as lists, tuples as lists."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.tolist() if isinstance(value, np.ndarray) else list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FinderResult":
        """Rebuild a result from `to_dict` output."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"FinderResult.from_dict: unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
        values = dict(data)
        for name in ("lrs", "losses", "raw_losses"):
            values[name] = np.asarray(values[name], dtype=np.float64)
        for name in ("interval", "notes", "clr_bounds", "group_lrs"):
            values[name] = tuple(values[name])
        return cls(**values)
