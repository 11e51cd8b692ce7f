"""Command-line interface: argument parsing only; the work happens in the library."""

from lrkit.cli import demo, plot  # noqa: F401  (registers commands)
from lrkit.cli.app import app


def main() -> None:
    app()
