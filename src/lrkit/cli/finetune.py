"""`lrkit finetune`: the fast.ai fine-tuning recipe on a registered task."""

from __future__ import annotations

import json
import logging

import typer

from lrkit.cli.app import app


@app.command()
def finetune(
    task: str = typer.Option("digits-transfer", "--task", "-t", help="Registered task (see lrkit.tasks)."),
    epochs: float = typer.Option(7, "--epochs",
                                 help="Epochs with the body unfrozen (SGDR cycles end at 1, 3, 7, ...)."),
    freeze_epochs: float = typer.Option(1, "--freeze-epochs", help="Epochs training the head alone (0 skips)."),
    n_groups: int = typer.Option(3, "--n-groups", min=1, help="Layer groups (split by module order)."),
    factor: float = typer.Option(2.6, "--factor", help="LR ratio between neighbouring groups (1 = one LR)."),
    gradual_every: float = typer.Option(None, "--gradual-every", help="Unfreeze one more group every N epochs."),
    head_lr: float = typer.Option(None, "--head-lr", help="Head LR of the frozen stage (default: LR range test)."),
    lr: float = typer.Option(None, "--lr", help="Head LR of the unfrozen stage (default: LR range test)."),
    cycle_len: float = typer.Option(1, "--cycle-len", help="First SGDR cycle, in epochs."),
    bn: str = typer.Option("freeze", "--bn", help="BatchNorm in frozen groups: freeze, stats or train."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed for the model head, data split and order."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every stage and epoch."),
) -> None:
    """Fine-tune a task's pretrained model with the fast.ai recipe.

    Find the LR, train the head (body frozen, one-cycle), unfreeze, give the layer groups
    discriminative LRs, find the LR again, then SGDR with doubling cycles.

    Example:  lrkit finetune --task digits-transfer --epochs 7 --gradual-every 1
    """
    from rich.console import Console
    from rich.table import Table

    from lrkit.experiments.finetune_on_task import fine_tune_task

    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        result = fine_tune_task(
            task, seed=seed, epochs=epochs, freeze_epochs=freeze_epochs, n_groups=n_groups, factor=factor,
            gradual_every=gradual_every, head_lr=head_lr, lr=lr, cycle_len=cycle_len, bn=bn, progress=progress,
        )
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    console = Console()
    for stage in result.stages:
        console.print(f"[bold]{stage.name}[/bold]: LRs per group {', '.join(f'{v:.3g}' for v in stage.lrs)} "
                      f"(head LR {stage.lr_source})")
    table = Table("stage", "epoch", "step", "train loss", "val loss", "metric", "trainable groups")
    for r in result.history:
        table.add_row(r.stage, str(r.epoch), str(r.steps), f"{r.train_loss:.4f}", f"{r.val_loss:.4f}",
                      f"{r.metric:.4f}", str(r.trainable_groups))
    console.print(table)
    console.print(f"final metric: [bold]{result.metric:.4f}[/bold]")
