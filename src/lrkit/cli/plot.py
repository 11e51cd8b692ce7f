"""`lrkit plot`: preview a schedule spec as an image or as JSON values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer

from lrkit.cli.app import app
from lrkit.cli.output import image_suffixes, output_file, writing
from lrkit.schedules import Schedule, parse

#: The most steps `lrkit plot` draws or prints (at the limit: about 6 s and 0.7 GB for a PNG).
MAX_STEPS = 10_000_000


def parse_spec(spec: str, option: str = "SPEC") -> Schedule:
    """Parse a schedule spec, turning a bad one into a CLI usage error."""
    try:
        return parse(spec)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint=option) from None


def json_values(values) -> list[float | None]:
    """An array of LRs as a JSON-ready list: non-finite values (inf, NaN) become None (null)."""
    import numpy as np

    listed = values.tolist()
    if np.isfinite(values).all():
        return listed
    return [value if math.isfinite(value) else None for value in listed]


@app.command()
def plot(
    spec: str = typer.Argument(..., help='Schedule spec, e.g. "warmup(cosine(lr=0.1, decay_steps=1000), steps=100)".'),
    steps: int = typer.Option(..., "--steps", "-n", min=1, max=MAX_STEPS,
                              help=f"Number of optimizer updates to draw (at most {MAX_STEPS:,})."),
    output: Path = typer.Option(Path("schedule.png"), "--output", "-o",
                                help="Image to write: .png, .pdf, .svg, ... (its folder must exist)."),
    log: bool = typer.Option(False, "--log", help="Logarithmic LR axis."),
    momentum: str = typer.Option(None, "--momentum", help="Optional momentum schedule spec, drawn on a second axis."),
    as_json: bool = typer.Option(False, "--json", help="Print the values as JSON instead of drawing "
                                                        "(a non-finite value prints as null)."),
) -> None:
    """Preview a schedule: the LR at every step, as a plot or as JSON.

    Example:  lrkit plot "sgdr(lr=0.1, first_cycle_steps=100, t_mul=2, m_mul=0.5)" --steps 1500 -o s.png --log
    """
    import numpy as np

    schedule = parse_spec(spec)
    momentum_schedule = parse_spec(momentum, "--momentum") if momentum else None
    if as_json:
        t = np.arange(steps, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow prints as null
            values = {"spec": schedule.to_spec(), "steps": steps, "lr": json_values(schedule(t))}
            if momentum_schedule is not None:
                values["momentum"] = json_values(momentum_schedule(t))
        typer.echo(json.dumps(values, allow_nan=False))
        return
    output = output_file(output, image_suffixes(), "--output")
    from lrkit.plotting import plot_schedule

    with np.errstate(over="ignore", invalid="ignore"):  # matplotlib leaves non-finite values out
        ax = plot_schedule(schedule, steps, log=log, momentum=momentum_schedule)
    figure = ax.get_figure(root=True)
    assert figure is not None  # plot_schedule draws on a figure of its own
    with writing(output):
        figure.savefig(output, dpi=120)
    typer.echo(f"wrote {output}")
