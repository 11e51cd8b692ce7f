"""The `lrkit` Typer application; each command lives in its own module."""

import logging

import typer

import lrkit

app = typer.Typer(
    name="lrkit",
    help="Find, schedule, adapt and compare learning rates for PyTorch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs reflow to the terminal width
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"lrkit {lrkit.__version__}")
        raise typer.Exit()


@app.callback()
def root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what the library does (INFO level)."),
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Find, schedule, adapt and compare learning rates for PyTorch.

    Start with `lrkit demo` (a complete case study on bundled data) or preview a schedule with
    `lrkit plot "warmup(cosine(lr=0.1, decay_steps=1000), steps=100)" --steps 1100 -o s.png`.
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
