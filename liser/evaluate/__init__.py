"""liser.evaluate: the public face of this stage (what other modules use)."""

from .corpora import corpus_parts, evaluate_checkpoint, evaluate_corpora
from .metrics import (
    classification_metrics,
    confusion_matrix,
    evaluate_model,
    metrics_table,
    summarize_folds,
    summary_table,
    write_confusion,
    write_report,
)
from .taxonomy import FOUR_CLASSES, ClassRules, class_scoring, parse_mapping, scored_label

__all__ = [
    "ClassRules",
    "FOUR_CLASSES",
    "class_scoring",
    "classification_metrics",
    "confusion_matrix",
    "corpus_parts",
    "evaluate_checkpoint",
    "evaluate_corpora",
    "evaluate_model",
    "metrics_table",
    "parse_mapping",
    "scored_label",
    "summarize_folds",
    "summary_table",
    "write_confusion",
    "write_report",
]
