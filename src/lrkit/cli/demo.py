"""`lrkit demo`: the main job — an LR case study on bundled real data."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

from lrkit.cli.app import app


@app.command()
def demo(
    quick: bool = typer.Option(False, "--quick", help="Every strategy, 1 seed, 4 epochs (1 epoch with --task)."),
    task: str = typer.Option(None, "--task", "-t",
                             help="Run the study on another task with its family's strategies, its epochs, 3 seeds "
                                  "(see `lrkit compare --list`). On 2 cores: fashion-cnn about 6 h (--quick "
                                  "about 10 min), charlm-transformer about 2 h (--quick about 12 min)."),
    output_dir: Path = typer.Option(None, "--output-dir", "-o",
                                    help="Folder for runs.sqlite, report.html and schedules.png "
                                         "(default: lrkit-demo[-TASK][-quick])."),
    workers: int = typer.Option(None, "--workers", "-w", min=1, help="Parallel trials (default: all cores)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Run the LR case study on MNIST-1D, store the runs, write the HTML report, print the ranking.

    Every strategy of the sgd family (constant LRs too small / too large / from the LR finder, step,
    multistep, exponential, cosine, warmup+cosine, SGDR, CLR, one-cycle, cosine at tune_lr's LR, plateau, Lipschitz,
    Adagrad, RMSprop, Adadelta, Adam) x 3 seeds, 30 epochs: about 5 minutes on 2 cores.
    Interrupt it at any time: re-running resumes.

    Examples:  lrkit demo --quick -o /tmp/case-study
               lrkit demo --task charlm-transformer --quick
    """
    from lrkit.experiments.workers import start_workers_early

    if workers != 1:
        start_workers_early()  # the workers' imports overlap this process's own (about 3 s)

    from lrkit.casestudy import case_study_for, run_case_study
    from lrkit.cli.ranking import print_ranking
    from lrkit.experiments.runner import SweepInterrupted
    from lrkit.experiments.store import StoreError
    from lrkit.report import load_runs, summarize

    try:
        study = case_study_for(task, quick=quick)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--task") from None
    out = output_dir or Path("lrkit-demo" + (f"-{task}" if task else "") + ("-quick" if quick else ""))
    console = Console()
    console.print(f"lrkit case study: {len(study.chosen_strategies())} strategies x {study.seeds} seed(s) x "
                  f"{study.epochs} epochs on {study.task} -> {out}/")
    _usable_folder(out)
    try:
        result = run_case_study(study, out, workers=workers, progress=not quiet)
    except SweepInterrupted as stop:
        console.print(str(stop))
        raise typer.Exit(128 + stop.signal) from None
    except StoreError as err:
        raise typer.BadParameter(str(err), param_hint="--output-dir") from None
    print_ranking(summarize(load_runs(result.db, task=study.task), epochs=study.epochs, batch_size=study.batch_size),
                  console)
    console.print(f"report:   [bold]{result.report}[/bold]\ngallery:  {result.gallery}\nresults:  {result.db}",
                  soft_wrap=True)  # paths stay whole, so they can be copied
    if result.sweep.failed:
        console.print(f"[red]{len(result.sweep.failed)} run(s) failed; see the log above[/red]")
        raise typer.Exit(1)


def _usable_folder(out: Path) -> None:
    """Create `out` (and its parents) or stop with one line saying why it cannot be used."""
    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} is a file; give a folder", param_hint="--output-dir")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise typer.BadParameter(f"cannot create the folder {out}: {err.strerror or err}",
                                 param_hint="--output-dir") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"the folder {out} cannot be written (permission denied)", param_hint="--output-dir")
