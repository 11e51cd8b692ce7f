"""Print a report summary's ranking as a rich table (shared by compare, demo and report)."""

from __future__ import annotations

import math

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lrkit.report.summary import Summary, format_metric, format_steps


def print_ranking(summary: Summary, console: Console | None = None) -> None:
    console = console or Console()
    direction = "higher" if summary.higher_is_better else "lower"
    # Borderless columns and two-line headers keep every column whole in an 80-column terminal.
    table = Table(title=f"{summary.task}: final {summary.metric_name} ({direction} is better), "
                        f"{summary.epochs} epochs x {len(summary.seeds)} seed(s)",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("strategy", no_wrap=True)
    for column in ("final\nmean ± std", "best\nepoch", "steps to\ntarget", "wall\ns", "diverged"):
        table.add_column(column, justify="right", no_wrap=True)
    for rank, item in enumerate(summary.ranking, 1):
        table.add_row(str(rank), escape(item.strategy),
                      format_metric(item.final_mean, item.final_std, percent=summary.is_percent,
                                    decimals=summary.decimals),
                      str(item.best_epoch) if math.isfinite(item.final_mean) else "—",
                      format_steps(item.steps_to_target) if math.isfinite(item.steps_to_target) else "—",
                      f"{item.wall_time:.1f}", f"{item.n_diverged}/{item.n_runs}" if item.n_diverged else "")
    console.print(table)
    for sentence in summary.verdict:
        console.print(escape(sentence))
