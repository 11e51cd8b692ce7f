"""`lrkit tune`: the LR for a whole training run on a task, chosen with short real runs."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from lrkit.cli.app import app


@app.command()
def tune(
    task: str = typer.Option("digits-mlp", "--task", "-t", help="Registered task (see `lrkit compare --list`)."),
    optimizer: str = typer.Option("sgd", "--optimizer",
                                  help="sgd (momentum 0.9), adam, adamw, rmsprop, adagrad or adadelta."),
    schedule: str = typer.Option("constant", "--schedule", "-s",
                                 help='constant, cosine, one_cycle or a template such as "warmup(cosine(lr={lr}, '
                                      'decay_steps={total_steps}), steps={steps_per_epoch})".'),
    budget: float = typer.Option(1.0, "--budget", "-b",
                                 help="Compute to spend, in full training runs, counted in optimizer steps "
                                      "with the LR range test's 100 included (at least 128 steps for 9 "
                                      "candidates)."),
    epochs: int = typer.Option(None, "--epochs", "-e", min=1, help="Epochs of the run to tune (default: the task's)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the model initialisation and batch order."),
    candidates: int = typer.Option(9, "--candidates", min=2, help="Candidate LRs for successive halving."),
    storage: str = typer.Option(None, "--storage",
                                help="Optuna storage URL (e.g. sqlite:///tune.db): repeat the command to resume."),
    plot: Path | None = typer.Option(None, "--plot", help="Write the trials' metric against LR (PNG)."),
    as_json: bool = typer.Option(False, "--json",
                                 help="Print the result as JSON on stdout (the table goes to stderr)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Choose the LR of a whole training run: an LR range test bounds the candidates, then short
    real runs under successive halving (Optuna) pick one, within a budget counted in runs.

    Example:  lrkit tune --task digits-mlp --optimizer sgd --schedule cosine --budget 1 --plot trials.png
    """
    from lrkit.experiments.tune_on_task import tune_lr_on_task

    try:
        result = tune_lr_on_task(task, optimizer, schedule=schedule, budget=budget, epochs=epochs, seed=seed,
                                 candidates=candidates, storage=storage, progress=progress)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    console = Console(stderr=as_json)
    console.print(_table(result, task, optimizer))
    console.print(f"chosen LR: [bold]{result.lr:.4g}[/]  schedule: {result.schedule.to_spec()}")
    console.print(f"cost: {result.cost:.3f} runs of {result.steps_per_run} steps (budget {result.budget:g})")
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    if plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        ax = result.plot()
        ax.figure.savefig(plot, dpi=120, bbox_inches="tight")
        console.print(f"wrote {plot}")
    if as_json:
        typer.echo(json.dumps(result.to_dict()))


#: The "pruned" column: whether a trial stopped before the horizon, and why.
_PRUNED = {"complete": "no", "pruned": "by halving", "diverged": "diverged", "stopped": "out of budget"}


def _table(result, task: str, optimizer: str) -> Table:
    table = Table(title=f"tune_lr: {task}, {optimizer}, {result.metric_name} "
                        f"({'higher' if result.higher_is_better else 'lower'} is better)")
    for name in ("trial", "lr", "steps", result.metric_name, "pruned"):
        table.add_column(name, justify="left" if name == "pruned" else "right")
    for trial in result.trials:
        row = [str(trial.number), f"{trial.lr:.4g}", str(trial.steps), f"{trial.metric:.4f}", _PRUNED[trial.status]]
        table.add_row(*(f"[bold]{cell}[/]" for cell in row) if trial is result.best else row)
    return table
