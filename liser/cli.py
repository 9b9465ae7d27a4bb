"""The `liser` command: one typer command per stage, each a few lines calling the library."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help="Train small speech-emotion students by distillation from audio and video teachers.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
manifest_app = typer.Typer(help="Build manifests (tables of clips) from corpora and folders.")
teacher_app = typer.Typer(help="Fit, inspect and calibrate teachers.")
app.add_typer(manifest_app, name="manifest")
app.add_typer(teacher_app, name="teacher")


@app.command()
def version() -> None:
    """Print the liser version."""
    from . import __version__

    typer.echo(__version__)


# Each stage adds its commands below, importing its module inside the function so that
# `liser --help` stays fast.


def _unused(_: Path) -> None:  # keeps the Path import for commands added below
    pass
