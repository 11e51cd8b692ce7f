"""`lrkit report`: turn a results store into one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from lrkit.cli.app import app
from lrkit.cli.output import HTML_SUFFIXES, output_file, writing


@app.command()
def report(
    db: Path = typer.Argument(..., help="Results store written by `lrkit compare` (SQLite)."),
    output: Path = typer.Option(Path("report.html"), "--output", "-o",
                                help="HTML file to write (.html; its folder must exist)."),
    task: str = typer.Option(None, "--task", "-t", help="Task to report (needed when the store holds several)."),
    epochs: int = typer.Option(None, "--epochs", "-e", min=1,
                               help="Report the runs of this many epochs (default: the setting with the most runs; "
                                    "runs of different settings are never pooled)."),
    batch_size: int = typer.Option(None, "--batch-size", "-b", min=1,
                                   help="Report the runs of this batch size (default: as --epochs)."),
    target: float = typer.Option(None, "--target",
                                 help="Metric value for 'steps to target' (default: the constant-LR baseline's "
                                      "median final metric)."),
    baseline: str = typer.Option(None, "--baseline", help="Constant-LR baseline strategy (default: the one "
                                                           "flagged as baseline, e.g. 'constant-finder')."),
) -> None:
    """Write a self-contained HTML report (ranking, verdict, LR / loss / metric plots) of a sweep.

    The store is only read (a read-only file or folder is fine). When it holds runs of several
    settings (epochs x batch size), the one with the most runs is reported and the verdict says
    so; --epochs / --batch-size pick another.

    Example:  lrkit report runs.sqlite -o report.html --task digits-mlp
    """
    from lrkit.cli.ranking import print_ranking
    from lrkit.experiments.store import StoreError
    from lrkit.report import load_runs, save_report, summarize

    output = output_file(output, HTML_SUFFIXES, "--output")
    console = Console()
    try:
        runs = load_runs(db, task=task)
        summary = summarize(runs, target=target, baseline=baseline, epochs=epochs, batch_size=batch_size)
    except (FileNotFoundError, StoreError, ValueError) as err:
        console.print(f"[red]error:[/red] {escape(str(err))}")
        raise typer.Exit(code=1) from None
    with writing(output):
        path = save_report(summary, runs, output)
    print_ranking(summary, console)
    console.print(f"report written to [bold]{escape(str(path))}[/bold]")
