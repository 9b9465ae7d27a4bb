"""liser.experiment: the public face of this stage (what other modules use)."""

from .grid import apply_settings, expand_rows, run_experiment
from .results import results_table
from .teacher import teacher_identity

__all__ = ["apply_settings", "expand_rows", "results_table", "run_experiment", "teacher_identity"]
