"""Print a report summary's ranking as a rich table (shared by compare, demo and report)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lrkit.report.summary import Summary, format_metric, format_steps


def print_ranking(summary: Summary, console: Console | None = None) -> None:
    console = console or Console()
    direction = "higher" if summary.higher_is_better else "lower"
    table = Table(title=f"{summary.task}: final {summary.metric_name} ({direction} is better), "
                        f"{summary.epochs} epochs x {len(summary.seeds)} seed(s)")
    for column, justify in (("#", "right"), ("strategy", "left"), ("final (mean ± std)", "right"),
                            ("best epoch", "right"), ("steps to target", "right"), ("wall s", "right"),
                            ("diverged", "right")):
        table.add_column(column, justify=justify)
    for rank, item in enumerate(summary.ranking, 1):
        table.add_row(str(rank), escape(item.strategy),
                      format_metric(item.final_mean, item.final_std, percent=summary.is_percent),
                      str(item.best_epoch), format_steps(item.steps_to_target), f"{item.wall_time:.1f}",
                      f"{item.n_diverged}/{item.n_runs}" if item.n_diverged else "")
    console.print(table)
    for sentence in summary.verdict:
        console.print(escape(sentence))
