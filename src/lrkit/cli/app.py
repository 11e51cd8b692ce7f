"""The `lrkit` Typer application; each command lives in its own module."""

import typer

app = typer.Typer(
    name="lrkit",
    help="Find, schedule, adapt and compare learning rates for PyTorch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
