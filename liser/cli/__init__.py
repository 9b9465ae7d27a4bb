"""The ``liser`` command line (typer): ``main.py`` the stage commands, ``manifest.py`` and
``teacher.py`` the sub-apps, ``errors.py`` the error reporting they share."""

from .errors import errors
from .main import app

__all__ = ["app", "errors"]
