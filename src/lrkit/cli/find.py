"""`lrkit find`: the LR range test on a bundled task, as a table, a plot and/or JSON."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from lrkit.cli.app import app

MAX_NUM_ITER = 100_000

@app.command()
def find(
    task: str = typer.Option("digits-mlp", "--task", "-t", help="Registered task (see `lrkit find --list`)."),
    optimizer: str = typer.Option("sgd", "--optimizer",
                                  help="sgd (momentum 0.9), adam, adamw, rmsprop, adagrad or adadelta."),
    start_lr: float = typer.Option(1e-7, "--start-lr", help="First LR of the sweep."),
    end_lr: float = typer.Option(10.0, "--end-lr", help="Last LR of the sweep."),
    num_iter: int = typer.Option(100, "--num-iter", "-n", max=MAX_NUM_ITER,
                                 help=f"Mini-batches (LR values) in the sweep (at most {MAX_NUM_ITER:,})."),
    mode: str = typer.Option("exp", "--mode", help="exp or linear ramp."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1,
                             help="Seed of the model initialisation and batch order (0 to 4294967295)."),
    use_val: bool = typer.Option(False, "--val", help="Record the validation loss after each step (slower)."),
    schedule: str | None = typer.Option(None, "--for", help="What the LR is for, which picks the rule "
                                        "(lrkit.suggest.SCHEDULE_RULES): constant, decaying or a schedule spec "
                                        "such as 'cosine(lr=0.1, decay_steps=1000)'. Default: consensus."),
    check: str = typer.Option("hold", "--check", help="hold: train the suggestion a few dozen updates and back "
                              "it off until it holds; none: no check."),
    plot: Path | None = typer.Option(None, "--plot", help="Write the loss curve with the suggestions marked (PNG)."),
    as_json: bool = typer.Option(False, "--json",
                                 help="Print the result as JSON on stdout (the table goes to stderr)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    list_tasks: bool = typer.Option(False, "--list", help="List the registered tasks and exit."),
) -> None:
    """Run the LR range test on a bundled task and print the suggested learning rates.

    Example:  lrkit find --task digits-mlp --optimizer sgd --for constant --plot finder.png
    """
    from lrkit.cli.output import image_suffixes, output_file, writing
    from lrkit.experiments.finder_on_task import find_lr_on_task
    from lrkit.tasks import available_tasks

    if list_tasks:
        typer.echo("\n".join(available_tasks()))
        return
    if plot is not None:
        plot = output_file(plot, image_suffixes(), "--plot")  # checked before the sweep
    try:
        result = find_lr_on_task(task, optimizer, seed=seed, use_val=use_val, start_lr=start_lr, end_lr=end_lr,
                                 num_iter=num_iter, mode=mode, schedule=schedule, check=check, progress=progress)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    console = Console(stderr=as_json)
    console.print(_table(result, task, optimizer))
    console.print(result.reason)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    if plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        ax = result.plot()
        with writing(plot):
            ax.figure.savefig(plot, dpi=120, bbox_inches="tight")
        console.print(f"wrote {plot}")
    if as_json:
        typer.echo(json.dumps(result.to_dict()))


def _table(result, task: str, optimizer: str) -> Table:
    table = Table(title=f"LR range test: {task}, {optimizer}, {len(result.lrs)} steps ({result.stop_reason})")
    table.add_column("heuristic")
    table.add_column("learning rate", justify="right")
    for name, lr in result.suggestions.items():
        chosen = name == result.method
        table.add_row(f"[bold]{name} (suggested)[/]" if chosen else name,
                      f"[bold]{lr:.3g}[/]" if chosen else f"{lr:.3g}")
    if result.check is not None:
        table.add_row("[bold]suggestion after the check[/]", f"[bold]{result.suggestion:.3g}[/]")
    low, high = result.interval
    table.add_row("span of the rules", f"{low:.3g} – {high:.3g}")
    table.add_row("confidence", result.confidence)
    base, top = result.clr_bounds
    table.add_row("cyclical bounds (base, max)", f"{base:.3g}, {top:.3g}")
    return table
