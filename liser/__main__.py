"""``python -m liser ...``: the ``liser`` command."""

from .cli import app

app(prog_name="liser")
