"""The report's figures (matplotlib Figure API, no pyplot state): LR curves, smoothed training
loss, validation metric with seed bands. Every figure takes the same `colors` mapping, so a
strategy has one colour on the whole page. Diverged runs are drawn dashed and end in an ×.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.gridspec import SubplotSpec
from matplotlib.ticker import MaxNLocator, PercentFormatter

from lrkit.report.summary import RunSeries, Summary

FIG_WIDTH = 11.0  # inches; at DPI this fills the page's 1100-pixel column
DPI = 110
PANEL_COLUMNS = 4


def strategy_colors(names: Sequence[str]) -> dict[str, tuple[float, float, float, float]]:
    """One colour per strategy, in the given (rank) order: tab10's ten strong colours first,
    then tab20's lighter companions (20 distinct colours before repeating)."""
    tab20 = colormaps["tab20"]
    palette = [tab20(i) for i in (*range(0, 20, 2), *range(1, 20, 2))]  # an int indexes its 20 colours
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def smooth(values: np.ndarray, window: float) -> np.ndarray:
    """Debiased exponential moving average (as TensorBoard's smoothing, Adam's bias correction):

    s_t = β s_{t-1} + (1 - β) x_t,  s_{-1} = 0,  ŝ_t = s_t / (1 - β^{t+1}),  β = 1 - 1/window.

    Stops at the first non-finite value: from there on the result is NaN (a diverged run).
    """
    if not window >= 1:
        raise ValueError(f"smooth: window must be >= 1, got {window!r}")
    x = np.asarray(values, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    beta, state = 1.0 - 1.0 / window, 0.0
    for t, value in enumerate(x):
        if not math.isfinite(value):
            break
        state = beta * state + (1.0 - beta) * value
        out[t] = state / (1.0 - beta ** (t + 1))
    return out


def figure_png(figure: Figure) -> bytes:
    """The figure as PNG bytes (no metadata, so the page carries no URL at all)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _grouped(runs: Sequence[RunSeries]) -> dict[str, list[RunSeries]]:
    groups: dict[str, list[RunSeries]] = {}
    for run in runs:
        groups.setdefault(run.row.strategy, []).append(run)
    return groups


def _panels(count: int, *, sharey: bool, title: str) -> tuple[Figure, list[Axes]]:
    columns = min(PANEL_COLUMNS, count)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(FIG_WIDTH, 0.4 + 2.25 * rows), layout="constrained")
    grid = figure.subplots(rows, columns, sharex=True, sharey=sharey, squeeze=False)
    axes = list(grid.ravel())
    for extra in axes[count:]:
        extra.set_visible(False)
    figure.suptitle(title, fontsize=11, x=0.01, ha="left")
    return figure, axes[:count]


def _panel_title(ax: Axes, name: str, group: Sequence[RunSeries], color) -> None:
    diverged = sum(run.diverged for run in group)
    note = f"  ({diverged}/{len(group)} diverged)" if diverged else ""
    ax.set_title(name + note, fontsize=9, color="firebrick" if diverged else "black", loc="left")
    ax.spines["top"].set_color(color)
    ax.spines["top"].set_linewidth(3)


def _label_outer(axes: Sequence[Axes], xlabel: str, ylabel: str) -> None:
    for ax in axes:
        ax.grid(True, which="major", alpha=0.3)
        ax.tick_params(labelsize=8)
        ax.label_outer(remove_inner_ticks=False)
    for ax in axes:
        if _spec(ax).is_first_col():
            ax.set_ylabel(ylabel, fontsize=9)
        if _spec(ax).is_last_row() or not _has_panel_below(ax, axes):
            ax.set_xlabel(xlabel, fontsize=9)
            ax.xaxis.set_tick_params(labelbottom=True)


def _spec(ax: Axes) -> SubplotSpec:
    """Where a panel sits in its figure's grid (every panel here comes from `Figure.subplots`)."""
    spec = ax.get_subplotspec()
    if spec is None:
        raise ValueError("report panels must be grid subplots")
    return spec


def _has_panel_below(ax: Axes, axes: Sequence[Axes]) -> bool:
    spec = _spec(ax)
    return any(_spec(o).rowspan.start == spec.rowspan.stop and _spec(o).colspan.start == spec.colspan.start
               for o in axes)


def _mark_divergence(ax: Axes, x: np.ndarray, y: np.ndarray, color) -> None:
    finite = np.flatnonzero(np.isfinite(y))
    if finite.size:
        ax.plot(x[finite[-1]], y[finite[-1]], marker="x", markersize=8, markeredgewidth=2, color=color,
                linestyle="none")


def plot_lr_curves(runs: Sequence[RunSeries], summary: Summary, colors: Mapping[str, object]) -> Figure:
    """One panel per strategy (rank order): the LR of every seed at every step, log-scale y."""
    groups = _grouped(runs)
    names = [item.strategy for item in summary.ranking]
    figure, axes = _panels(len(names), sharey=True, title="Learning rate per step (every seed; log scale)")
    for ax, name in zip(axes, names):
        for run in groups[name]:
            lr = np.where(run.steps["lr"] > 0, run.steps["lr"], np.nan)
            ax.plot(run.steps["step"], lr, color=colors[name], linewidth=1.2, alpha=0.8,
                    linestyle="--" if run.diverged else "-")
            if run.diverged:
                _mark_divergence(ax, run.steps["step"], lr, "firebrick")
        ax.set_yscale("log")
        _panel_title(ax, name, groups[name], colors[name])
    _label_outer(axes, "step", "learning rate")
    return figure


def _loss_limits(curves: Sequence[np.ndarray]) -> tuple[float, float] | None:
    """Robust log-axis limits: from the smallest value to the 99th percentile (a run that
    blows up before diverging must not flatten every other curve)."""
    values = np.concatenate([c[np.isfinite(c) & (c > 0)] for c in curves]) if curves else np.array([])
    if values.size == 0:
        return None
    low, high = float(values.min()), float(np.percentile(values, 99))
    return low / 1.3, max(high * 1.3, low * 1.5)


def plot_loss_curves(runs: Sequence[RunSeries], summary: Summary, colors: Mapping[str, object]) -> Figure:
    """Training loss per step, smoothed (`smooth`, window = 2 % of the run), mean over completed
    seeds per strategy; diverged seeds dashed, ending in an × at their last finite value."""
    groups = _grouped(runs)
    figure = Figure(figsize=(FIG_WIDTH, 4.8), layout="constrained")
    ax = figure.subplots()
    drawn: list[np.ndarray] = []
    ends: list[tuple[float, float, object]] = []  # last finite point of each diverged seed
    for item in summary.ranking:
        name = item.strategy
        complete = [run for run in groups[name] if not run.diverged]
        label: str | None = name + (f" ({item.n_diverged}/{item.n_runs} diverged)" if item.n_diverged else "")
        if complete:
            length = min(len(run.steps["loss"]) for run in complete)
            window = max(1.0, 0.02 * length)
            curves = np.vstack([smooth(run.steps["loss"][:length], window) for run in complete])
            mean = curves.mean(axis=0)
            ax.plot(complete[0].steps["step"][:length], mean, color=colors[name], linewidth=1.6, label=label)
            drawn.append(mean)
            label = None
        for run in groups[name]:
            if run.diverged:
                curve = smooth(run.steps["loss"], max(1.0, 0.02 * max(len(run.steps["loss"]), 1)))
                ax.plot(run.steps["step"], curve, color=colors[name], linewidth=1.0, linestyle="--", label=label)
                finite = np.flatnonzero(np.isfinite(curve))
                if finite.size:
                    ends.append((run.steps["step"][finite[-1]], curve[finite[-1]], colors[name]))
                drawn.append(curve)
                label = None
    ax.set_yscale("log")
    limits = _loss_limits(drawn)
    if limits is not None:
        ax.set_ylim(*limits)
    top = ax.get_ylim()[1]
    for x, y, color in ends:  # a blow-up above the axis is marked at its top edge
        ax.plot(x, min(y, top), marker="x", markersize=9, markeredgewidth=2, color=color, clip_on=False)
    ax.set_xlabel("step (optimizer update)")
    ax.set_ylabel("training loss (smoothed, mean over seeds)")
    ax.set_title("Training loss", loc="left", fontsize=11)
    ax.grid(True, which="both", alpha=0.25)
    figure.legend(loc="outside right upper", fontsize=8, frameon=False)
    return figure


def _metric_axis(ax: Axes, summary: Summary) -> None:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs
    if summary.is_percent:
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))


def _seed_band(group: Sequence[RunSeries]) -> tuple[np.ndarray, np.ndarray] | None:
    """(epochs, metric matrix seeds × epochs) of the completed seeds, trimmed to a common length."""
    complete = [run for run in group if not run.diverged and len(run.epochs["metric"])]
    if not complete:
        return None
    length = min(len(run.epochs["metric"]) for run in complete)
    return complete[0].epochs["epoch"][:length], np.vstack([run.epochs["metric"][:length] for run in complete])


def _target_line(ax: Axes, summary: Summary) -> None:
    if summary.target is not None:
        ax.axhline(summary.target, color="0.35", linestyle=":", linewidth=1.0)


def plot_metric_overview(runs: Sequence[RunSeries], summary: Summary, colors: Mapping[str, object],
                         *, top: int = 6) -> Figure:
    """Validation metric per epoch of the `top` ranked strategies (plus the baseline): seed
    mean as a line, ± one standard deviation as a band; the target as a dotted line."""
    if top < 1:
        raise ValueError(f"plot_metric_overview: top must be >= 1, got {top!r}")
    groups = _grouped(runs)
    names = [item.strategy for item in summary.ranking[:top]]
    if summary.baseline is not None and summary.baseline not in names:
        names.append(summary.baseline)
    figure = Figure(figsize=(FIG_WIDTH, 4.6), layout="constrained")
    ax = figure.subplots()
    for name in names:
        band = _seed_band(groups[name])
        if band is None:
            continue
        epochs, values = band
        mean = values.mean(axis=0)
        ax.plot(epochs, mean, color=colors[name], linewidth=1.8, marker="o", markersize=3,
                label=name + (" (baseline)" if name == summary.baseline else ""))
        if len(values) >= 2:
            std = values.std(axis=0, ddof=1)
            ax.fill_between(epochs, mean - std, mean + std, color=colors[name], alpha=0.15, linewidth=0)
    if summary.target is not None:
        ax.axhline(summary.target, color="0.35", linestyle=":", linewidth=1.0, label="target")
    _metric_axis(ax, summary)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {summary.metric_name}")
    ax.set_title(f"Validation {summary.metric_name}: the leading strategies (mean over seeds, band ± 1 std)",
                 loc="left", fontsize=11)
    ax.grid(True, alpha=0.3)
    figure.legend(loc="outside right upper", fontsize=8, frameon=False)
    return figure


def plot_metric_panels(runs: Sequence[RunSeries], summary: Summary, colors: Mapping[str, object]) -> Figure:
    """One panel per strategy: seed min–max band (light), ± 1 std band (darker), seed mean
    (line), diverged seeds dashed; the winner's mean in grey and the target dotted, for reference."""
    groups = _grouped(runs)
    names = [item.strategy for item in summary.ranking]
    figure, axes = _panels(len(names), sharey=True,
                           title=f"Validation {summary.metric_name} per epoch, every strategy "
                                 "(line: seed mean; bands: min–max and ± 1 std; grey: the winner)")
    winner = _seed_band(groups[names[0]])
    for ax, name in zip(axes, names):
        color = colors[name]
        if winner is not None and name != names[0]:
            ax.plot(winner[0], winner[1].mean(axis=0), color="0.6", linewidth=1.0)
        band = _seed_band(groups[name])
        if band is not None:
            epochs, values = band
            mean = values.mean(axis=0)
            ax.fill_between(epochs, values.min(axis=0), values.max(axis=0), color=color, alpha=0.15, linewidth=0)
            if len(values) >= 2:
                std = values.std(axis=0, ddof=1)
                ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.3, linewidth=0)
            ax.plot(epochs, mean, color=color, linewidth=1.6)
        for run in groups[name]:
            if run.diverged and len(run.epochs["metric"]):
                ax.plot(run.epochs["epoch"], run.epochs["metric"], color=color, linewidth=1.0, linestyle="--")
                _mark_divergence(ax, run.epochs["epoch"], run.epochs["metric"], "firebrick")
        _target_line(ax, summary)
        _metric_axis(ax, summary)
        _panel_title(ax, name, groups[name], color)
    _label_outer(axes, "epoch", summary.metric_name)
    return figure
