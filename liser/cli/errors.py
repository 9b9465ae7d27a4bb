"""How every ``liser`` command reports failure: one line, an exit code, never a traceback."""

from __future__ import annotations

import contextlib
import os

import click
import typer


@contextlib.contextmanager
def errors():
    """Bad input (OSError, ValueError: every liser error is one) -> "error: ..." and exit code 2;
    any other exception -> one line naming it and exit code 1 (the traceback with LISER_DEBUG=1);
    Ctrl-C -> exit code 130. A command never shows a traceback for bad input."""
    try:
        yield
    except (typer.Exit, typer.Abort, click.ClickException):
        raise
    except KeyboardInterrupt:
        typer.echo("interrupted (long jobs resume when the same command is run again)", err=True)
        raise typer.Exit(130) from None
    except (OSError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    except Exception as error:  # noqa: BLE001 - the last line of defence against tracebacks
        if os.environ.get("LISER_DEBUG"):
            raise
        typer.echo(
            f"error: unexpected {type(error).__name__}: {error} (set LISER_DEBUG=1 for the "
            "traceback, and please report it)",
            err=True,
        )
        raise typer.Exit(1) from None
