"""`lrkit plot`: preview a schedule spec as a PNG or as JSON values."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from lrkit.cli.app import app
from lrkit.schedules import Schedule, parse


def parse_spec(spec: str, option: str = "SPEC") -> Schedule:
    """Parse a schedule spec, turning a bad one into a CLI usage error."""
    try:
        return parse(spec)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint=option) from None


@app.command()
def plot(
    spec: str = typer.Argument(..., help='Schedule spec, e.g. "warmup(cosine(lr=0.1, decay_steps=1000), steps=100)".'),
    steps: int = typer.Option(..., "--steps", "-n", min=1, help="Number of optimizer updates to draw."),
    output: Path = typer.Option(Path("schedule.png"), "--output", "-o", help="PNG file to write."),
    log: bool = typer.Option(False, "--log", help="Logarithmic LR axis."),
    momentum: str = typer.Option(None, "--momentum", help="Optional momentum schedule spec, drawn on a second axis."),
    as_json: bool = typer.Option(False, "--json", help="Print the values as JSON instead of drawing."),
) -> None:
    """Preview a schedule: the LR at every step, as a plot or as JSON.

    Example:  lrkit plot "sgdr(lr=0.1, first_cycle_steps=100, t_mul=2, m_mul=0.5)" --steps 1500 -o s.png --log
    """
    import numpy as np

    schedule = parse_spec(spec)
    momentum_schedule = parse_spec(momentum, "--momentum") if momentum else None
    if as_json:
        t = np.arange(steps, dtype=np.float64)
        values = {"spec": schedule.to_spec(), "steps": steps, "lr": schedule(t).tolist()}
        if momentum_schedule is not None:
            values["momentum"] = momentum_schedule(t).tolist()
        typer.echo(json.dumps(values))
        return
    from lrkit.plotting import plot_schedule

    ax = plot_schedule(schedule, steps, log=log, momentum=momentum_schedule)
    figure = ax.get_figure(root=True)
    assert figure is not None  # plot_schedule draws on a figure of its own
    figure.savefig(output, dpi=120)
    typer.echo(f"wrote {output}")
