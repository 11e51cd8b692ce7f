"""Command-line interface: argument parsing only; the work happens in the library."""

from lrkit.cli import (  # noqa: F401  (registers commands)
    compare,
    demo,
    find,
    finetune,
    plot,
    report,
    tune,
)
from lrkit.cli.app import app


def main() -> None:
    app()
