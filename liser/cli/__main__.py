"""``python -m liser.cli ...`` (as ``torchrun -m liser.cli train CONFIG`` starts it)."""

from .main import app

app(prog_name="liser")
