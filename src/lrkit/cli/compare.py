"""`lrkit compare`: train strategies x seeds on a task into a results store."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lrkit.cli.app import app

if TYPE_CHECKING:
    from lrkit.experiments.strategies import Strategy

MAX_SEEDS = 1000


def _list_choices(console: Console) -> None:
    from lrkit.experiments.strategies import FAMILIES, LR_FREE_STRATEGIES
    from lrkit.tasks import available_tasks, get_task

    tasks = Table(title="tasks (--task)")
    tasks.add_column("name")
    tasks.add_column("family")
    tasks.add_column("description")
    for name in available_tasks():
        tasks.add_row(name, get_task(name).family, escape(get_task(name).description))
    console.print(tasks)
    for family, members in FAMILIES.items():
        of_family = [name for name in available_tasks() if get_task(name).family == family]
        title = f"family {family}, the default for {', '.join(of_family) or 'no registered task yet'}"
        console.print(_strategy_table(escape(title), members))
    console.print(_strategy_table("LR-free optimizers: any task, by name", LR_FREE_STRATEGIES))


def _strategy_table(title: str, strategies: Iterable[Strategy]) -> Table:
    table = Table(title=f"{title} (--strategies a,b,c)")
    table.add_column("name")
    table.add_column("what it does")
    for strategy in strategies:
        table.add_row(strategy.name, escape(strategy.description))
    return table


@app.command()
def compare(
    task: str = typer.Option(None, "--task", "-t", help="Bundled or registered task (see --list)."),
    strategies: str = typer.Option(None, "--strategies", "-s",
                                   help="Comma-separated strategy names, any family (default: the task family's)."),
    custom: list[str] = typer.Option(None, "--strategy", help='Extra strategy NAME=TEMPLATE, e.g. "wc=warmup('
                                     'cosine(lr={lr}, decay_steps={total_steps}), steps={steps_per_epoch})", trained '
                                     "like the task family's baseline (its optimizer). Fields: {lr} (finder LR), "
                                     "{total_steps}, {steps_per_epoch}, {epochs}."),
    seeds: int = typer.Option(3, "--seeds", min=1, max=MAX_SEEDS,
                              help=f"Seeds per strategy (0..N-1, N at most {MAX_SEEDS})."),
    epochs: int = typer.Option(None, "--epochs", "-e", min=1, help="Epochs per run (default: the task's)."),
    batch_size: int = typer.Option(None, "--batch-size", "-b", min=1, help="Batch size (default: the task's)."),
    db: Path = typer.Option(Path("runs.sqlite"), "--db", help="SQLite results store (created or resumed)."),
    workers: int = typer.Option(None, "--workers", "-w", min=1, help="Parallel trials (default: all cores)."),
    backend: str = typer.Option("process", "--backend", help="process (local pool) or ray."),
    address: str = typer.Option(None, "--address", help="Ray cluster address (with --backend ray)."),
    report: Path = typer.Option(None, "--report", "-r", help="Also write the HTML report here."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    list_choices: bool = typer.Option(False, "--list", help="List tasks and strategies, then exit."),
) -> None:
    """Train every (strategy, seed) on a task, store each run in SQLite, print the ranking.

    Without --strategies, the strategies of the task's family run (see --list).
    Re-running the same command trains only the runs the store does not hold yet, so an
    interrupted sweep (Ctrl-C, kill -9) resumes where it stopped.

    Example:  lrkit compare --task mnist1d-cnn --strategies cosine,one-cycle,adam --seeds 3 --report r.html
    """
    from lrkit.experiments.workers import start_workers_early

    if backend == "process" and workers != 1 and not list_choices:
        start_workers_early()  # the workers' imports overlap this process's own (about 3 s)

    from lrkit.cli.output import HTML_SUFFIXES, output_file
    from lrkit.experiments.runner import SweepInterrupted, plan, run_sweep
    from lrkit.experiments.store import StoreError
    from lrkit.experiments.strategies import select_strategies
    from lrkit.tasks import get_task

    console = Console()
    if list_choices:
        _list_choices(console)
        return
    if task is None:
        raise typer.BadParameter("choose a task (see --list)", param_hint="--task")
    if strategies is not None and not strategies.strip(" ,"):
        raise typer.BadParameter("name at least one strategy (leave --strategies out for the task family's)",
                                 param_hint="--strategies")
    if report is not None:
        report = output_file(report, HTML_SUFFIXES, "--report")  # checked before training
    try:
        task_spec = get_task(task)
        chosen = select_strategies(strategies, custom, family=task_spec.family)
        epochs, batch_size = epochs or task_spec.epochs, batch_size or task_spec.batch_size
        trials = plan(task, chosen, seeds, epochs, batch_size)
        sweep = run_sweep(trials, db, workers=workers, backend=backend, address=address, progress=not quiet)
    except SweepInterrupted as stop:
        console.print(str(stop))
        raise typer.Exit(128 + stop.signal) from None
    except StoreError as err:
        raise typer.BadParameter(str(err), param_hint="--db") from None
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    console.print(f"trained {len(sweep.trained)} run(s), {sweep.skipped} already stored, "
                  f"{len(sweep.failed)} failed -> {db}")
    if sweep.trained or sweep.skipped:
        _print_summary(console, db, task, report, epochs, batch_size)
    if sweep.failed:
        for trial, error in sweep.failed:
            console.print(f"[red]failed:[/red] {escape(trial.strategy.name)} seed {trial.seed}: "
                          f"{escape(error.strip().splitlines()[-1])}")
        raise typer.Exit(1)


def _print_summary(console: Console, db: Path, task: str, report: Path | None, epochs: int, batch_size: int) -> None:
    """The ranking of the setting just trained (and its HTML report when asked)."""
    from lrkit.cli.output import writing
    from lrkit.cli.ranking import print_ranking
    from lrkit.report import load_runs, summarize, write_report

    print_ranking(summarize(load_runs(db, task=task), epochs=epochs, batch_size=batch_size), console)
    if report is not None:
        with writing(report):
            path = write_report(db, report, task=task, epochs=epochs, batch_size=batch_size)
        console.print(f"report: [bold]{path}[/bold]")
