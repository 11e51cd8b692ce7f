"""Choose the runs that may be pooled: one training setting, one configuration per strategy.

A run's identity (`lrkit.experiments.results.run_key`) holds the task, the strategy's
configuration, the seed, the epochs and the batch size. Only the seed may differ between runs
averaged together, so a store that holds several *settings* (epochs × batch size) of a task —
``--epochs 10`` and later ``--epochs 1`` into the same ``--db`` — is ranked one setting at a time:
the one asked for, else the one with the most runs (ties: the most recently stored). Within it, a
strategy whose configuration changed between sweeps (stored under the same name) is ranked with
its most recent configuration. What is left out is said in plain words (`Selection.notes`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lrkit.report.summary import RunSeries


@dataclass(frozen=True, order=True)
class Setting:
    """What a run's identity holds besides the task, the strategy and the seed."""

    epochs: int
    batch_size: int

    def __str__(self) -> str:
        return f"{self.epochs} epoch{'' if self.epochs == 1 else 's'} × batch size {self.batch_size}"

    @classmethod
    def of(cls, run: RunSeries) -> Setting:
        return cls(run.row.epochs, run.row.batch_size)


@dataclass(frozen=True)
class Selection:
    """The runs to pool, their setting, and sentences on what was left out (empty when nothing was)."""

    runs: tuple[RunSeries, ...]
    setting: Setting
    notes: tuple[str, ...]


def _runs(count: int) -> str:
    return f"{count} run{'' if count == 1 else 's'}"


def _identity(config: dict[str, Any]) -> dict[str, Any]:
    """A stored strategy configuration without `baseline`, a role in the report that changes no number."""
    return {key: value for key, value in config.items() if key != "baseline"}


def select_setting(runs: Sequence[RunSeries], *, epochs: int | None = None,
                   batch_size: int | None = None) -> Selection:
    """The runs of one setting (`epochs` / `batch_size` when given, else the most common), each
    strategy with its most recent configuration. A setting that no run has raises ValueError."""
    counts = Counter(Setting.of(run) for run in runs)
    latest = {Setting.of(run): index for index, run in enumerate(runs)}
    matching = [setting for setting in counts
                if epochs in (None, setting.epochs) and batch_size in (None, setting.batch_size)]
    held = ", ".join(f"{setting} ({_runs(counts[setting])})" for setting in sorted(counts))
    if not matching:
        wanted = " and ".join(part for part in (f"{epochs} epochs" if epochs is not None else "",
                                                f"batch size {batch_size}" if batch_size is not None else "")
                              if part)
        raise ValueError(f"no runs with {wanted}; the runs have: {held}")
    setting = max(matching, key=lambda s: (counts[s], latest[s]))
    chosen = [run for run in runs if Setting.of(run) == setting]
    newest = {run.row.strategy: _identity(run.row.config) for run in chosen}  # the last stored wins
    pooled = tuple(run for run in chosen if _identity(run.row.config) == newest[run.row.strategy])
    notes = []
    if len(counts) > 1:
        notes.append(f"Ranked: the {_runs(counts[setting])} of {setting}. Runs of different settings are never "
                     f"pooled; this store holds {held} (pick one with --epochs and --batch-size).")
    stale = Counter(run.row.strategy for run in chosen if _identity(run.row.config) != newest[run.row.strategy])
    if stale:
        names = ", ".join(f"{name} ({_runs(count)})" for name, count in sorted(stale.items()))
        notes.append(f"Left out, as they ran with an earlier configuration of their strategy: {names}.")
    return Selection(runs=pooled, setting=setting, notes=tuple(notes))
