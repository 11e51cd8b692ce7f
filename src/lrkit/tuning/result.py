"""`TuneResult`: the LR `tune_lr` chose, what it cost, its trials; a plot and a JSON form."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lrkit.schedules import Schedule
from lrkit.torch.finder_result import FinderResult

#: How a trial ended: reached the horizon; stopped by successive halving; its loss or metric went
#: non-finite; stopped at a rung because the budget could not pay for the next one.
STATUSES = ("complete", "pruned", "diverged", "stopped")


@dataclass(frozen=True)
class TuneTrial:
    """One candidate LR: `steps` trained, `metric` at the last rung it reached (nan if it diverged)."""

    number: int
    lr: float
    steps: int
    metric: float
    status: str

    @property
    def pruned(self) -> bool:
        """Whether it stopped before the horizon (by the pruner, divergence or the budget)."""
        return self.status != "complete"

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "lr": self.lr, "steps": self.steps,
                "metric": self.metric if math.isfinite(self.metric) else None, "status": self.status,
                "pruned": self.pruned}


@dataclass(frozen=True, eq=False)
class TuneResult:
    """The outcome of `tune_lr`.

    `best`: the chosen trial, the best by the metric among those that reached the highest rung
    any trial reached; `lr`: its LR; `schedule`: the schedule filled with it for the full run
    (``total_steps = steps_per_run``); `cost`: optimizer steps spent (range test included) over
    `steps_per_run`, at most `budget`; `trials` in the order they ran; `finder`: the range test;
    `rungs`: the steps at which trials were scored (the last is the horizon, the longest trial);
    `notes`: what was done and anything to look at.
    """

    best: TuneTrial
    schedule: Schedule
    cost: float
    budget: float
    steps_per_run: int
    finder_steps: int
    rungs: tuple[int, ...]
    metric_name: str
    higher_is_better: bool
    trials: tuple[TuneTrial, ...]
    finder: FinderResult
    notes: tuple[str, ...]

    @property
    def lr(self) -> float:
        return self.best.lr

    @property
    def horizon(self) -> int:
        return self.rungs[-1]

    def plot(self, ax=None):
        """The trials' metric against their LR (log x), marker area by steps trained, the chosen LR
        starred, diverged trials as crosses along the bottom, the range test's suggestion dashed."""
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots(figsize=(7, 4.5))
        finite = [t for t in self.trials if math.isfinite(t.metric)]
        for status, color in (("complete", "C0"), ("pruned", "C1"), ("stopped", "C7")):
            chosen = [t for t in finite if t.status == status]
            if chosen:
                ax.scatter([t.lr for t in chosen], [t.metric for t in chosen], color=color, alpha=0.8,
                           s=[20 + 180 * t.steps / self.horizon for t in chosen],
                           label=f"{status} ({len(chosen)})")
        diverged = [t.lr for t in self.trials if not math.isfinite(t.metric)]
        if diverged:
            ax.scatter(diverged, [0.03] * len(diverged), marker="x", color="C3", transform=ax.get_xaxis_transform(),
                       label=f"diverged ({len(diverged)})")
        ax.scatter([self.lr], [self.best.metric], marker="*", s=260, color="C2", zorder=3,
                   label=f"chosen: {self.lr:.3g}")
        ax.axvline(self.finder.suggestion, color="0.5", linestyle="--", linewidth=1,
                   label=f"range test: {self.finder.suggestion:.3g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel(f"{self.metric_name} ({'higher' if self.higher_is_better else 'lower'} is better)")
        ax.set_title(f"tune_lr: {self.lr:.3g} at a cost of {self.cost:.2f} runs (budget {self.budget:g}); "
                     f"marker size: steps (≤ {self.horizon})", fontsize="medium")
        ax.legend(fontsize="small")
        return ax

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: numbers, lists and nested dicts (the schedule's and the range test's own
        `to_dict`); a non-finite metric is None."""
        return {"lr": self.lr, "best": self.best.to_dict(), "schedule": self.schedule.to_dict(),
                "schedule_spec": self.schedule.to_spec(), "cost": self.cost, "budget": self.budget,
                "steps_per_run": self.steps_per_run, "finder_steps": self.finder_steps, "rungs": list(self.rungs),
                "metric": self.metric_name, "higher_is_better": self.higher_is_better,
                "trials": [t.to_dict() for t in self.trials], "finder": self.finder.to_dict(),
                "notes": list(self.notes)}
