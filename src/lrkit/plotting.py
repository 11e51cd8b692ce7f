"""Previews: draw a schedule before training with it."""

from __future__ import annotations

import textwrap

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lrkit.schedules import Schedule
from lrkit.validation import integer


def plot_schedule(schedule: Schedule, steps: int, *, ax: Axes | None = None, log: bool = False,
                  momentum: Schedule | None = None, label: str | None = None) -> Axes:
    """Plot ``schedule(0 .. steps-1)`` (and optionally a momentum schedule on a twin axis).

    Returns the axes; without `ax` a new figure is made (``ax.figure.savefig(path)`` saves it).
    """
    integer("plot_schedule", "steps", steps, minimum=1)
    if ax is None:
        ax = Figure(figsize=(8, 4.5), layout="constrained").add_subplot()
    t = np.arange(steps, dtype=np.float64)
    ax.plot(t, schedule(t), color="tab:blue", linewidth=1.6, label=label or "learning rate")
    ax.set_xlabel("step (optimizer update)")
    ax.set_ylabel("learning rate")
    ax.set_xlim(0, max(steps - 1, 1))
    if log:
        ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("\n".join(textwrap.wrap(schedule.to_spec(), 90)), fontsize=9)
    if momentum is not None:
        twin = ax.twinx()
        twin.plot(t, momentum(t), color="tab:orange", linewidth=1.2, linestyle="--", label="momentum")
        twin.set_ylabel("momentum", color="tab:orange")
        twin.tick_params(axis="y", labelcolor="tab:orange")
    return ax
