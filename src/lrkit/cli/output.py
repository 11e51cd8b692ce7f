"""The commands' output files: checked before any work, written with one-line errors.

A bad ``-o`` / ``--plot`` / ``--report`` path (a directory, a missing folder, an unknown file
type) is a usage error before anything is computed; a write that still fails (a read-only
folder, a full disk) prints ``error: cannot write <path>: <reason>`` and exits with status 1.
Missing folders are not created: a typo should not make a tree of folders.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import typer

HTML_SUFFIXES = (".html", ".htm")


def image_suffixes() -> tuple[str, ...]:
    """The file types matplotlib can write (``.png``, ``.pdf``, ``.svg``, ...), ``.png`` first."""
    from matplotlib.backend_bases import FigureCanvasBase

    return (".png", *sorted(f".{kind}" for kind in FigureCanvasBase.get_supported_filetypes() if kind != "png"))


def output_file(path: Path, suffixes: Sequence[str], option: str) -> Path:
    """`path`, if a file of one of the types `suffixes` can be made there; else a usage error for `option`."""
    if path.is_dir():
        raise typer.BadParameter(f"{path} is a directory; give a file name, e.g. {path / ('out' + suffixes[0])}",
                                 param_hint=option)
    if path.suffix.lower() not in suffixes:
        raise typer.BadParameter(f"{path}: unknown file type {path.suffix or '(no extension)'}; "
                                 f"use one of {', '.join(suffixes)}", param_hint=option)
    folder = path.parent
    if not folder.is_dir():
        raise typer.BadParameter(f"the folder {folder} does not exist (create it first)", param_hint=option)
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise typer.BadParameter(f"{path} cannot be written (permission denied)", param_hint=option)
    return path


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an OSError while writing `path` into one line on stderr and exit status 1."""
    try:
        yield
    except OSError as err:
        typer.echo(f"error: cannot write {path}: {err.strerror or err}", err=True)
        raise typer.Exit(1) from None
