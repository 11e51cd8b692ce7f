"""Command-line interface: argument parsing only; the work happens in the library."""

from lrkit.cli import compare, demo, plot  # noqa: F401  (registers commands)
from lrkit.cli import finetune  # noqa: F401  (registers `lrkit finetune`)
from lrkit.cli import report  # noqa: F401  (registers `lrkit report`)
from lrkit.cli import find  # noqa: F401  (registers `lrkit find`)
from lrkit.cli.app import app


def main() -> None:
    app()
