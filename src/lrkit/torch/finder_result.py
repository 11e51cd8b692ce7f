"""`FinderResult`: the curve of an LR range test, its suggestions, the check of the suggested LR,
a plot and a JSON form."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass, fields
from typing import Any

import numpy as np

from lrkit.suggest import Suggestion, clr_bounds
from lrkit.torch.finder_check import CheckResult
from lrkit.validation import choice

STOP_REASONS = ("completed", "diverged", "non-finite")

#: The JSON key of each `Suggestion` field in `FinderResult.to_dict` (flat, next to the curve).
_SUGGESTION_KEYS = {"lr": "suggestion"}


@dataclass(frozen=True, eq=False)
class FinderResult:
    """The outcome of `find_lr`.

    ``lrs[i]`` is the LR of the update at iteration i (the swept group's, or the first group's
    when all groups move together); ``raw_losses[i]`` the loss of that iteration's batch, computed
    before the update (fastai's and torch-lr-finder's pairing), or the validation loss after it
    when a ``val_loader`` was given; ``losses`` the bias-corrected smoothed losses the
    suggestions read. ``found`` is what `lrkit.suggest.suggest` concluded from them;
    ``method``, ``suggestions``, ``interval``, ``confidence`` and ``reason`` read it. ``check``
    is what the check of the rule's LR did (`lrkit.torch.finder_check.CheckResult`; None when it
    was turned off): ``suggestion`` is the LR it returns, ``found.lr`` the rule's LR before it,
    and ``notes`` are the curve's notes, then the check's. ``group_lrs`` are the LRs to give every
    parameter group: the suggestion scaled by each group's ratio, or, for a one-group sweep, the
    suggestion for the swept group with the others unchanged. ``stop_reason`` is one of
    `STOP_REASONS`.
    """

    lrs: np.ndarray
    losses: np.ndarray
    raw_losses: np.ndarray
    found: Suggestion
    clr_bounds: tuple[float, float]
    group_lrs: tuple[float, ...]
    stop_reason: str
    group: int | None = None
    validation: bool = False
    check: CheckResult | None = None

    def __post_init__(self) -> None:
        choice("FinderResult", "stop_reason", self.stop_reason, STOP_REASONS)

    @classmethod
    def from_curve(cls, lrs, losses, raw_losses, *, found: Suggestion, check: CheckResult | None,
                   group_lrs_of: Callable[[float], list[float]], stop_reason: str, group: int | None = None,
                   validation: bool = False) -> FinderResult:
        """The result of a recorded curve, what `suggest` `found` on it and the `check` of its LR;
        `group_lrs_of(lr)` maps the suggestion to every group's LR."""
        lrs, losses, raw = (np.asarray(v, dtype=np.float64) for v in (lrs, losses, raw_losses))
        lr = found.lr if check is None else check.lr
        return cls(lrs=lrs, losses=losses, raw_losses=raw, found=found, clr_bounds=clr_bounds(lrs, losses),
                   group_lrs=tuple(float(v) for v in group_lrs_of(lr)), stop_reason=stop_reason, group=group,
                   validation=validation, check=check)

    @property
    def suggestion(self) -> float:
        """The suggested LR: the rule `method`'s, backed off by the check when it did not hold."""
        return self.found.lr if self.check is None else self.check.lr

    @property
    def method(self) -> str:
        return self.found.method

    @property
    def suggestions(self) -> dict[str, float]:
        return self.found.suggestions

    @property
    def interval(self) -> tuple[float, float]:
        return self.found.interval

    @property
    def confidence(self) -> str:
        return self.found.confidence

    @property
    def reason(self) -> str:
        """Why the rule `method` was chosen (`lrkit.suggest.choose_rule`)."""
        return self.found.reason

    @property
    def notes(self) -> tuple[str, ...]:
        """The curve's notes (`lrkit.suggest.suggest`), then what the check did."""
        return self.found.notes + (() if self.check is None else (self.check.note,))

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
        if self.check is not None and self.suggestion != self.found.lr:
            ax.axvline(self.suggestion, color="C1", linestyle="--", label=f"checked: {self.suggestion:.3g}")
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
        """JSON-ready and flat: arrays and tuples as lists, the `Suggestion` fields next to the
        curve, with ``"suggestion"`` the checked LR and ``"notes"`` the curve's and the check's
        (the rule's own LR is ``suggestions[method]``); ``"check"`` a dict or None."""
        data = {key: _jsonable(getattr(self.found if nested else self, f.name))
                for key, (nested, f) in _json_fields().items()}
        data.update(suggestion=self.suggestion, notes=list(self.notes),
                    check=None if self.check is None else self.check.to_dict())
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinderResult:
        """Rebuild a result from `to_dict` output."""
        known = _json_fields()
        unknown = sorted(set(data) - set(known))
        missing = [key for key, (_, f) in known.items() if key not in data and f.default is MISSING]
        problems = []
        if unknown:
            problems.append(f"unknown keys {unknown}")
        if missing:
            problems.append(f"missing keys {missing}")
        if problems:
            raise ValueError(f"FinderResult.from_dict: {', '.join(problems)}; allowed: {sorted(known)}")
        own = {f.name: data[key] for key, (nested, f) in known.items() if key in data and not nested}
        found = {f.name: data[key] for key, (nested, f) in known.items() if key in data and nested}
        for name in ("lrs", "losses", "raw_losses"):
            own[name] = np.asarray(own[name], dtype=np.float64)
        for name in ("clr_bounds", "group_lrs"):
            own[name] = tuple(own[name])
        check = own["check"] = None if own.get("check") is None else CheckResult.from_dict(own["check"])
        notes = tuple(found.get("notes", ()))
        if check is not None and notes[-1:] == (check.note,):
            notes = notes[:-1]  # the check's note is not the curve's
        # "suggestion" is the checked LR; the rule's own is its entry in "suggestions"
        found.update(lr=found["suggestions"][found["method"]], suggestions=dict(found["suggestions"]),
                     interval=tuple(found["interval"]), notes=notes)
        return cls(found=Suggestion(**found), **own)


def _json_fields() -> dict[str, tuple[bool, Field]]:
    """JSON key -> (whether it is a field of the `Suggestion`, the dataclass field), in `to_dict`
    order: the result's fields, with ``found`` replaced by the Suggestion's fields."""
    out: dict[str, tuple[bool, Field]] = {}
    for f in fields(FinderResult):
        if f.name == "found":
            out.update({_SUGGESTION_KEYS.get(g.name, g.name): (True, g) for g in fields(Suggestion)})
        else:
            out[f.name] = (False, f)
    return out


def _jsonable(value: Any) -> Any:
    """Arrays and tuples as lists, dicts copied; anything else unchanged."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return dict(value) if isinstance(value, dict) else value
