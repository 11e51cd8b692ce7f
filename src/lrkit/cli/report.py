"""`lrkit report`: turn a results store into one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from lrkit.cli.app import app


@app.command()
def report(
    db: Path = typer.Argument(..., help="Results store written by `lrkit compare` (SQLite)."),
    output: Path = typer.Option(Path("report.html"), "--output", "-o", help="HTML file to write."),
    task: str = typer.Option(None, "--task", "-t", help="Task to report (needed when the store holds several)."),
    target: float = typer.Option(None, "--target",
                                 help="Metric value for 'steps to target' (default: the constant-LR baseline's "
                                      "median final metric)."),
    baseline: str = typer.Option(None, "--baseline", help="Constant-LR baseline strategy (default: the one "
                                                           "flagged as baseline, e.g. 'constant-finder')."),
) -> None:
    """Write a self-contained HTML report (ranking, verdict, LR / loss / metric plots) of a sweep.

    Example:  lrkit report runs.sqlite -o report.html --task digits-mlp
    """
    from lrkit.cli.ranking import print_ranking
    from lrkit.experiments.store import StoreError
    from lrkit.report import load_runs, save_report, summarize

    console = Console()
    try:
        runs = load_runs(db, task=task)
        summary = summarize(runs, target=target, baseline=baseline)
    except (FileNotFoundError, StoreError, ValueError) as err:
        console.print(f"[red]error:[/red] {escape(str(err))}")
        raise typer.Exit(code=1) from None
    path = save_report(summary, runs, output)
    print_ranking(summary, console)
    console.print(f"report written to [bold]{escape(str(path))}[/bold]")
