"""Per-strategy aggregates of a sweep, a ranking and a plain-language verdict.

Pure: takes the stored runs with their series (`RunSeries`) and returns a `Summary`; draws
nothing and reads no file. Conventions:

* A strategy's *final metric* is the mean ± sample standard deviation (ddof = 1) over its
  completed seeds; diverged runs are counted, never averaged.
* Ranking: strategies that never diverged first, then those that diverged on some seeds,
  then those that diverged on every seed; within a group by the mean final metric
  (descending if the task's metric is higher-is-better, else ascending).
* *Steps to target*: for each seed, the optimizer steps until the end of the first epoch
  whose validation metric reaches the target (``k * steps_per_epoch``, as the run recorded it);
  the strategy shows the median over seeds, a seed that never reaches it counting as
  infinitely many steps.
* Default target: the median final metric of the constant-LR baseline (`pick_baseline`: the
  strategy whose config sets ``baseline``, or the caller's choice).
* Only runs that differ in nothing but the seed are pooled: one setting (epochs × batch size)
  and one configuration per strategy (`lrkit.report.settings`); the verdict ends by saying what
  was left out.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lrkit.experiments.results import RunResult
from lrkit.experiments.store import EPOCH_SERIES
from lrkit.report.settings import select_setting


@dataclass(frozen=True)
class RunSeries:
    """One stored run (as `ResultsStore.runs` reads it, with its epoch lists) and its step series
    as arrays (as `ResultsStore.step_series` gives them)."""

    row: RunResult
    steps: Mapping[str, np.ndarray]

    @functools.cached_property
    def epochs(self) -> dict[str, np.ndarray]:
        """The run's epoch lists as float arrays under the store's column names, with ``epoch``
        numbered from 1 (what `ResultsStore.epoch_series` reads, without a second query)."""
        series = {column: np.asarray(getattr(self.row, name), dtype=np.float64)
                  for column, name in EPOCH_SERIES.items()}
        return {"epoch": np.arange(1, len(self.row.epoch_metric) + 1, dtype=np.float64), **series}

    @property
    def diverged(self) -> bool:
        return self.row.status != "complete"


@dataclass(frozen=True)
class StrategySummary:
    """Aggregates of one strategy over its seeds (see the module docstring for definitions)."""

    strategy: str
    seeds: tuple[int, ...]
    n_diverged: int
    final_values: tuple[float, ...]
    final_mean: float
    final_std: float
    best_epoch: int
    steps_to_target: float
    n_reached: int
    total_steps: float
    wall_time: float
    peak_lr: float
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def n_runs(self) -> int:
        return len(self.seeds)

    @property
    def n_complete(self) -> int:
        return self.n_runs - self.n_diverged


@dataclass(frozen=True)
class Summary:
    """The ranked strategies of one task, the target used and the verdict sentences."""

    task: str
    metric_name: str
    higher_is_better: bool
    epochs: int
    batch_size: int
    seeds: tuple[int, ...]
    ranking: tuple[StrategySummary, ...]
    baseline: str | None
    target: float | None
    target_source: str
    verdict: tuple[str, ...]
    environment: dict[str, Any]
    decimals: int = 2
    run_keys: frozenset[str] = frozenset()

    def ranked_runs(self, runs: Sequence[RunSeries]) -> list[RunSeries]:
        """The runs among `runs` that this summary ranks (its setting, its strategies' configurations)."""
        return [run for run in runs if run.row.key in self.run_keys]

    @property
    def is_percent(self) -> bool:
        return is_percent_metric(self.metric_name, [v for s in self.ranking for v in s.final_values])

    def strategy(self, name: str) -> StrategySummary:
        for item in self.ranking:
            if item.strategy == name:
                return item
        raise KeyError(name)


# -- formatting ---------------------------------------------------------------------------
def is_percent_metric(metric_name: str, values: Sequence[float]) -> bool:
    """Accuracy-like metrics in [0, 1] are shown in percent."""
    finite = [v for v in values if math.isfinite(v)]
    return "acc" in metric_name.lower() and all(0.0 <= v <= 1.0 for v in finite)


def _decimals_for(std: float, mean: float) -> int:
    """Decimals that show the std with two significant digits (the mean with three if the std
    is 0 or unknown)."""
    ref, digits = (std, 2) if math.isfinite(std) and std > 0 else (abs(mean), 3)
    if not math.isfinite(ref) or ref == 0:
        return 2
    return int(min(6, max(0, digits - 1 - math.floor(math.log10(ref)))))


def format_metric(mean: float, std: float = math.nan, *, percent: bool = False, decimals: int | None = None) -> str:
    """``97.31 % ± 0.42`` (percent), ``2935 ± 41`` or ``0.01234 ± 0.00056``; "—" if undefined.

    Without `decimals`, as many as show the std with two significant digits."""
    if not math.isfinite(mean):
        return "—"
    scale = 100.0 if percent else 1.0
    mean, std = mean * scale, std * scale
    if decimals is None:
        decimals = _decimals_for(std, mean)
    text = f"{mean:,.{decimals}f}" + (" %" if percent else "")
    if math.isfinite(std):
        text += f" ± {std:,.{decimals}f}"
    return text


def format_gap(gap: float, *, percent: bool, decimals: int) -> str:
    """An absolute difference: percentage points for percent metrics, else metric units."""
    if percent:
        return f"{abs(gap) * 100:.{decimals}f} percentage points"
    return f"{abs(gap):,.{decimals}f}"


def common_decimals(items: Sequence[StrategySummary], percent: bool) -> int:
    """One precision for a whole table: enough for the most precise strategy's std."""
    scale = 100.0 if percent else 1.0
    found = [_decimals_for(item.final_std * scale, item.final_mean * scale) for item in items if item.final_values]
    return max(found) if found else 2


def format_steps(steps: float) -> str:
    return f"{steps:,.0f}" if math.isfinite(steps) else "not reached"


# -- statistics ---------------------------------------------------------------------------
def welch_t_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Welch's unequal-variance t-test (Welch 1947, Biometrika 34): two-sided ``(t, p)``.

    t = (mean_a - mean_b) / sqrt(s_a²/n_a + s_b²/n_b),
    df = (s_a²/n_a + s_b²/n_b)² / ((s_a²/n_a)²/(n_a-1) + (s_b²/n_b)²/(n_b-1)),
    p = 2 · P(T_df > |t|).  Both samples need ≥ 2 values; zero variance on both sides gives
    ``t = ±inf, p = 0`` for different means and ``(0, 1)`` for equal ones.
    """
    from scipy.stats import t as student_t

    a_arr, b_arr = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a_arr.size < 2 or b_arr.size < 2:
        raise ValueError(f"welch_t_test: each sample needs at least 2 values, got {a_arr.size} and {b_arr.size}")
    va, vb = a_arr.var(ddof=1) / a_arr.size, b_arr.var(ddof=1) / b_arr.size
    diff = a_arr.mean() - b_arr.mean()
    if va + vb == 0:
        return (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (a_arr.size - 1) + vb**2 / (b_arr.size - 1))
    return float(t), float(2.0 * student_t.sf(abs(t), df))


# -- per-strategy aggregates --------------------------------------------------------------
def _reaches(values: np.ndarray, target: float, higher_is_better: bool) -> np.ndarray:
    finite = np.isfinite(values)
    return finite & (values >= target if higher_is_better else values <= target)


def _steps_per_epoch(runs: Sequence[RunSeries]) -> dict[str, float]:
    """Updates per epoch of each run (by key): the recorded `steps_per_epoch`. A diverged run
    migrated from a schema-1 store lacks it and gets that schema's estimate: the median recorded
    value of its batch size, else len(steps) // recorded epochs of such runs (median)."""
    recorded: dict[int, list[float]] = {}
    estimated: dict[int, list[float]] = {}
    for run in runs:
        if run.row.steps_per_epoch is not None:
            recorded.setdefault(run.row.batch_size, []).append(run.row.steps_per_epoch)
        elif len(run.epochs["epoch"]):
            estimated.setdefault(run.row.batch_size, []).append(len(run.steps["step"]) // len(run.epochs["epoch"]))
    fallback = {size: float(np.median(values)) for size, values in {**estimated, **recorded}.items()}
    return {run.row.key: float(run.row.steps_per_epoch) if run.row.steps_per_epoch is not None
            else fallback.get(run.row.batch_size, math.nan) for run in runs}


def steps_to_target(run: RunSeries, target: float, steps_per_epoch: float) -> float:
    """Updates until the end of the first epoch whose metric reaches `target` (inf if never)."""
    hits = np.flatnonzero(_reaches(run.epochs["metric"], target, run.row.higher_is_better))
    return float(run.epochs["epoch"][hits[0]] * steps_per_epoch) if hits.size else math.inf


def _best_epoch(complete: Sequence[RunSeries], higher_is_better: bool) -> int:
    """1-based epoch where the seed-mean validation curve is best (0 if no finite value)."""
    if not complete:
        return 0
    length = min(len(run.epochs["metric"]) for run in complete)
    if length == 0:
        return 0
    curves = np.vstack([run.epochs["metric"][:length] for run in complete])
    curves = np.where(np.isfinite(curves), curves, np.nan)
    if np.isnan(curves).all():
        return 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN epoch column
        mean = np.nanmean(curves, axis=0)
    pick = np.nanargmax if higher_is_better else np.nanargmin
    return int(pick(mean)) + 1


def _strategy_summary(name: str, runs: Sequence[RunSeries], target: float | None,
                      spe: Mapping[str, float]) -> StrategySummary:
    complete = [run for run in runs if not run.diverged]
    finals = tuple(float(run.row.final_metric) for run in complete if math.isfinite(run.row.final_metric))
    higher = runs[0].row.higher_is_better
    if target is None:
        per_seed = []
    else:
        per_seed = [steps_to_target(run, target, spe[run.row.key]) for run in runs]
    timed = complete or list(runs)
    peaks = [float(np.nanmax(run.steps["lr"])) for run in runs if np.isfinite(run.steps["lr"]).any()]
    return StrategySummary(
        strategy=name,
        seeds=tuple(sorted(run.row.seed for run in runs)),
        n_diverged=len(runs) - len(complete),
        final_values=finals,
        final_mean=float(np.mean(finals)) if finals else math.nan,
        final_std=float(np.std(finals, ddof=1)) if len(finals) >= 2 else math.nan,
        best_epoch=_best_epoch(complete, higher),
        steps_to_target=float(np.median(per_seed)) if per_seed else math.nan,
        n_reached=sum(math.isfinite(s) for s in per_seed),
        total_steps=float(np.median([len(run.steps["step"]) for run in complete])) if complete else math.nan,
        wall_time=float(np.mean([run.row.wall_time for run in timed])),
        peak_lr=float(np.median(peaks)) if peaks else math.nan,
        config=runs[0].row.config,
    )


def _rank_key(item: StrategySummary, higher_is_better: bool) -> tuple[int, float, str]:
    group = 2 if item.n_complete == 0 or not item.final_values else (1 if item.n_diverged else 0)
    value = item.final_mean if math.isfinite(item.final_mean) else math.inf
    return group, (-value if higher_is_better else value), item.strategy


def pick_baseline(runs: Sequence[RunSeries]) -> str | None:
    """The constant-LR baseline: the first strategy (in store order) whose config sets
    ``baseline`` (`Strategy.baseline`), else None (then the caller names one, or gives a target)."""
    return next((run.row.strategy for run in runs if run.row.config.get("baseline") is True), None)


# -- the verdict --------------------------------------------------------------------------
def _verdict(ranking: Sequence[StrategySummary], *, metric: str, higher: bool, percent: bool, decimals: int,
             baseline: str | None, target: float | None) -> tuple[str, ...]:
    """Who won, by how much, whether the gap beats the seed noise, the baseline, divergences."""
    def fmt(item: StrategySummary) -> str:
        return format_metric(item.final_mean, item.final_std, percent=percent, decimals=decimals)

    sentences: list[str] = []
    ranked = [s for s in ranking if s.final_values]
    if not ranked:
        return ("Every run diverged: no strategy finished training. Lower the learning rates.",)
    win = ranked[0]
    seeds = f"{len(win.final_values)} seed" + ("s" if len(win.final_values) != 1 else "")
    sentences.append(f"{win.strategy} wins with a final {metric} of "
                     f"{fmt(win)} ({seeds}).")
    if len(ranked) > 1:
        second = ranked[1]
        gap = win.final_mean - second.final_mean
        lead = (f"It beats the runner-up, {second.strategy} "
                f"({fmt(second)}), by {format_gap(gap, percent=percent, decimals=decimals)}")
        if len(win.final_values) >= 2 and len(second.final_values) >= 2:
            _, p = welch_t_test(win.final_values, second.final_values)
            p_text = "p < 0.001" if p < 0.001 else f"p = {p:.2g}"
            if p < 0.05:
                sentences.append(f"{lead}; the gap is larger than the seed noise (Welch's t-test, {p_text}).")
            else:
                sentences.append(f"{lead}, but that gap is within the seed noise (Welch's t-test, {p_text}): "
                                 "treat the two as tied, or run more seeds.")
        else:
            sentences.append(f"{lead}; with a single seed the seed noise is unknown, so run more seeds "
                             "before trusting the order.")
    if baseline is not None and baseline != win.strategy and target is not None:
        base = next(s for s in ranking if s.strategy == baseline)
        gap = win.final_mean - base.final_mean
        direction = ("higher" if gap > 0 else "lower") + (" (better)" if (gap > 0) == higher else " (worse)")
        text = (f"Against the constant-LR baseline {baseline} "
                f"({fmt(base)}), the winner's {metric} is "
                f"{format_gap(gap, percent=percent, decimals=decimals)} {direction}")
        if math.isfinite(win.steps_to_target) and math.isfinite(base.total_steps) and base.total_steps > 0:
            share = win.steps_to_target / base.total_steps
            text += (f" and reaches the baseline's final {metric} after {format_steps(win.steps_to_target)} steps, "
                     f"{share:.0%} of the baseline's {format_steps(base.total_steps)}.")
        else:
            text += " but never reaches the baseline's final " + metric + " (median over seeds)."
        sentences.append(text)
    diverged = [s for s in ranking if s.n_diverged]
    if diverged:
        names = ", ".join(f"{s.strategy} ({s.n_diverged}/{s.n_runs})" for s in diverged)
        count = len(diverged)
        sentences.append(f"{count} strateg{'y' if count == 1 else 'ies'} diverged on some seeds: {names}; "
                         f"{'it ranks' if count == 1 else 'they rank'} below every strategy that never diverged.")
    else:
        sentences.append("No run diverged.")
    return tuple(sentences)


# -- entry point --------------------------------------------------------------------------
def summarize(runs: Sequence[RunSeries], *, target: float | None = None, baseline: str | None = None,
              epochs: int | None = None, batch_size: int | None = None) -> Summary:
    """Aggregate the runs of ONE task per strategy, rank them and write the verdict.

    `target`: the metric value for "steps to target" (default: the baseline's median final
    metric). `baseline`: the constant-LR strategy to compare with (default: `pick_baseline`).
    `epochs` / `batch_size`: the setting to rank when the runs hold several (default: the one
    with the most runs; see `lrkit.report.settings`).
    """
    if not runs:
        raise ValueError("summarize: runs is empty; nothing to summarize")
    tasks = sorted({run.row.task for run in runs})
    if len(tasks) > 1:
        raise ValueError(f"summarize: runs must come from one task, got tasks {tasks}")
    metrics = {(run.row.metric_name, run.row.higher_is_better) for run in runs}
    if len(metrics) > 1:
        raise ValueError(f"summarize: runs of task {tasks[0]!r} disagree on the metric: {sorted(metrics)}")
    if target is not None and not math.isfinite(target):
        raise ValueError(f"summarize: target must be a finite number, got {target!r}")
    metric_name, higher = metrics.pop()
    try:
        selection = select_setting(runs, epochs=epochs, batch_size=batch_size)
    except ValueError as err:
        raise ValueError(f"summarize: task {tasks[0]!r} has {err}") from None
    runs = selection.runs
    by_strategy: dict[str, list[RunSeries]] = {}
    for run in runs:
        by_strategy.setdefault(run.row.strategy, []).append(run)
    if baseline is not None and baseline not in by_strategy:
        raise ValueError(f"summarize: baseline {baseline!r} is not a strategy of task {tasks[0]!r}; "
                         f"choose one of {sorted(by_strategy)}")
    if baseline is None:
        baseline = pick_baseline(runs)
    finals = [r.row.final_metric for r in by_strategy.get(baseline or "", [])
              if not r.diverged and math.isfinite(r.row.final_metric)]
    if target is not None:
        source = "given"
    elif finals:
        target, source = float(np.median(finals)), f"median final {metric_name} of {baseline}"
    else:
        source = "none (no constant-LR baseline finished; pass a target)"
    spe = _steps_per_epoch(runs)
    items = [_strategy_summary(name, group, target, spe) for name, group in by_strategy.items()]
    ranking = tuple(sorted(items, key=lambda s: _rank_key(s, higher)))
    percent = is_percent_metric(metric_name, [v for s in ranking for v in s.final_values])
    decimals = common_decimals(ranking, percent)
    verdict = _verdict(ranking, metric=metric_name, higher=higher, percent=percent, decimals=decimals,
                       baseline=baseline, target=target)
    return Summary(task=tasks[0], metric_name=metric_name, higher_is_better=higher,
                   epochs=selection.setting.epochs, batch_size=selection.setting.batch_size,
                   seeds=tuple(sorted({run.row.seed for run in runs})), ranking=ranking,
                   baseline=baseline, target=target, target_source=source, verdict=verdict + selection.notes,
                   environment=runs[0].row.environment, decimals=decimals,
                   run_keys=frozenset(run.row.key for run in runs))
