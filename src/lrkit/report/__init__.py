"""Report: read a results store, rank the strategies, draw, and write one self-contained page.

    from lrkit.report import write_report
    write_report("runs.sqlite", "report.html")            # the store's only task
    write_report("runs.sqlite", "digits.html", task="digits-mlp", target=0.95)
"""

from __future__ import annotations

from pathlib import Path

from lrkit.report.data import load_runs
from lrkit.report.html import render_html, save_report
from lrkit.report.summary import RunSeries, StrategySummary, Summary, summarize

__all__ = ["RunSeries", "StrategySummary", "Summary", "load_runs", "render_html", "save_report", "summarize",
           "write_report"]


def write_report(db_path: str | Path, out_path: str | Path, *, task: str | None = None,
                 target: float | None = None, baseline: str | None = None, epochs: int | None = None,
                 batch_size: int | None = None) -> Path:
    """Summarize the runs of `task` in the store at `db_path` and write the HTML page to `out_path`.

    `target`: metric value for "steps to target" (default: the constant-LR baseline's median
    final metric); `baseline`: that baseline strategy (default: see `summary.pick_baseline`);
    `epochs` / `batch_size`: the setting to report when the store holds several (default: the
    one with the most runs; see `lrkit.report.settings`).
    """
    runs = load_runs(db_path, task=task)
    summary = summarize(runs, target=target, baseline=baseline, epochs=epochs, batch_size=batch_size)
    return save_report(summary, runs, out_path)
