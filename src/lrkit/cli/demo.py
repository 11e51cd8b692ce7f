"""`lrkit demo`: the main job (for now: a gallery of every schedule family)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lrkit.cli.app import app


@app.command()
def demo(
    output_dir: Path = typer.Option(Path("lrkit-demo"), "--output-dir", "-o", help="Folder for the demo's files."),
) -> None:
    """Draw every schedule family lrkit offers and list the spec that makes each one."""
    from lrkit.gallery import EXAMPLE_SPECS, render_gallery

    path = render_gallery(output_dir / "schedules.png")
    table = Table(title="lrkit schedule families (write any of these specs in `lrkit plot`)")
    table.add_column("family")
    table.add_column("spec")
    for title, spec in EXAMPLE_SPECS.items():
        table.add_row(title, escape(spec))
    console = Console()
    console.print(table)
    console.print(f"gallery written to [bold]{path}[/bold]")
