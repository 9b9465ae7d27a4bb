"""Scores of a student: UAR, WAR, macro-F1, per-class recall, confusion matrices, fold summaries.

- UAR (unweighted average recall) = mean recall over the classes present in the true labels
  (as sklearn's ``balanced_accuracy_score``); WAR = accuracy.
- Macro-F1 = mean F1 over the classes present in the true *or* predicted labels (as sklearn's
  ``f1_score(average="macro")``); a class never predicted has precision 0 and F1 0.
- A clip's prediction is the mean of its windows' probabilities (windows as in ``predict``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from liser.files import atomic_write
from liser.student import Student

MAIN_METRICS = {"uar": "UAR", "war": "WAR", "macro_f1": "macro-F1"}  # key -> table label


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """Counts (n_classes, n_classes) int64: rows = true class, columns = predicted class."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{y_true.shape[0]} labels but {y_pred.shape[0]} predictions")
    if y_true.size and (
        min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= n_classes
    ):
        raise ValueError(f"class indices must be in [0, {n_classes})")
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def classification_metrics(y_true, y_pred, classes: Sequence[str]) -> dict:
    """Scores of integer predictions against integer labels (indices into ``classes``).

    Returns {"uar", "war", "macro_f1" (floats in [0, 1]), "n", "per_class_recall" and
    "per_class_f1" ({class: value, or None for a class absent from the labels}), "support"
    ({class: count}), "classes", "confusion" (list of rows: true class, columns: predicted)}.
    """
    classes = list(classes)
    matrix = confusion_matrix(y_true, y_pred, len(classes))
    if matrix.sum() == 0:
        raise ValueError("no labeled clips to score")
    support, predicted, correct = matrix.sum(1), matrix.sum(0), np.diag(matrix)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, correct / support, 0.0)
        precision = np.where(predicted > 0, correct / predicted, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = support > 0
    either = present | (predicted > 0)
    return {
        "uar": float(recall[present].mean()),
        "war": float(correct.sum() / matrix.sum()),
        "macro_f1": float(f1[either].mean()),
        "n": int(matrix.sum()),
        "per_class_recall": {
            c: float(r) if s else None for c, r, s in zip(classes, recall, present, strict=True)
        },
        "per_class_f1": {
            c: float(v) if s else None for c, v, s in zip(classes, f1, either, strict=True)
        },
        "support": {c: int(n) for c, n in zip(classes, support, strict=True)},
        "classes": classes,
        "confusion": matrix.tolist(),
    }


# --------------------------------------------------------------------------------------------
# A model in memory (validation during training)


@torch.no_grad()
def window_probabilities(
    model: Student, features: torch.Tensor, batch_size: int = 256
) -> torch.Tensor:
    """Supervised-head softmax of windows: features (W, n_mels, T), any float dtype, on any
    device -> (W, C) float32 on CPU, computed in batches on the model's device. The model is put
    in eval mode for the call and restored after."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = [
            torch.softmax(model(batch.to(device, torch.float32))["logits"].float(), -1).cpu()
            for batch in torch.as_tensor(features).split(batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, model.sizes["logits"])


def clip_probabilities(window_probs: torch.Tensor, clip_of, n_clips: int) -> torch.Tensor:
    """Mean of each clip's window probabilities: (W, C), clip index (W,) -> (n_clips, C)."""
    clip_of = torch.as_tensor(clip_of, dtype=torch.long)
    sums = torch.zeros(n_clips, window_probs.shape[1]).index_add_(0, clip_of, window_probs)
    counts = torch.bincount(clip_of, minlength=n_clips).clamp_min(1)
    return sums / counts[:, None]


def evaluate_model(
    model: Student,
    inputs,
    labels,
    classes: Sequence[str],
    clip_of=None,
    logmel=None,
    hop_seconds: float | None = None,
    batch_size: int = 256,
) -> dict:
    """Score a student in memory (validation in training); returns classification_metrics + probs.

    inputs : either windows of features, tensor/array (W, n_mels, T) normalised as in training,
        with ``clip_of`` (W,) the clip index of each window (None: one window per clip), e.g.
        from ``data.eval_windows``; or a list of 1-D waveforms at the front end's rate, covered by
        windows as in ``predict`` (``logmel``: the front end, default ``LogMel(model.frontend)``).
    labels : (n_clips,) class indices into ``classes``.

    The returned dict also holds "probs": np.ndarray (n_clips, C), the clip probabilities.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if isinstance(inputs, (list, tuple)) and (len(inputs) == 0 or np.ndim(inputs[0]) == 1):
        inputs, clip_of = _windows_of_waves(model, inputs, logmel, hop_seconds)
    features = torch.as_tensor(inputs)
    if clip_of is None:
        clip_of = torch.arange(features.shape[0])
    probs = window_probabilities(model, features, batch_size)
    clip = clip_probabilities(probs, clip_of, len(labels)).numpy()
    metrics = classification_metrics(labels, clip.argmax(1), classes)
    return {**metrics, "probs": clip}


def _windows_of_waves(model: Student, waves, logmel, hop_seconds):
    from liser.features import LogMel

    frontend = model.frontend
    logmel = logmel if logmel is not None else LogMel(frontend)
    spec = frontend.windows(hop_seconds)
    windows, clip_of = [], []
    for i, wave in enumerate(waves):
        cut, _ = spec.cut(np.asarray(wave, np.float32), frontend.sample_rate)
        windows.extend(cut)
        clip_of.extend([i] * len(cut))
    with torch.no_grad():
        features = torch.cat([logmel(torch.from_numpy(np.stack(b))) for b in _batches(windows, 64)])
    return features, torch.tensor(clip_of)


def _batches(items: list, size: int):
    return [items[i : i + size] for i in range(0, len(items), size)]


# --------------------------------------------------------------------------------------------
# Reports (checkpoints on manifests: corpus_eval.py)


def write_report(metrics: dict, out_dir: str | os.PathLike, rows=None, probs=None) -> Path:
    """metrics.json, confusion.csv and confusion.png in ``out_dir`` (and predictions.csv from
    manifest ``rows`` with clip ``probs`` (n, C) when given), each written atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    classes = metrics["classes"]
    atomic_write(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    write_confusion(metrics["confusion"], classes, out)
    if rows is not None:
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(
            ["id", "path", "start", "duration", "label", "predicted", "correct", *classes]
        )
        for row, p in zip(rows, probs, strict=True):
            pred = classes[int(np.argmax(p))]
            values = [f"{v:.6f}" for v in p]
            writer.writerow(
                [
                    row.id,
                    row.path,
                    row.start,
                    row.duration,
                    row.label,
                    pred,
                    int(pred == row.label),
                    *values,
                ]
            )
        atomic_write(out / "predictions.csv", text.getvalue())
    return out


def write_confusion(matrix, classes: Sequence[str], out_dir: Path, title: str = "") -> None:
    """confusion.csv (counts, true class per row) and confusion.png in ``out_dir``."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["true \\ predicted", *classes])
    writer.writerows([c, *counts] for c, counts in zip(classes, matrix, strict=True))
    atomic_write(out_dir / "confusion.csv", text.getvalue())
    atomic_write(out_dir / "confusion.png", confusion_png(np.array(matrix), classes, title))


def confusion_png(matrix: np.ndarray, classes: Sequence[str], title: str = "") -> bytes:
    """A confusion matrix as PNG bytes: colours = row-normalised recall, text = counts."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(classes)
    rows = matrix.sum(1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    fig = Figure(figsize=(1.2 + 0.65 * n, 1.0 + 0.6 * n), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    for i in range(n):
        for j in range(n):
            color = "white" if share[i, j] > 0.5 else "black"
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", color=color, fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# Cross-validation summaries and tables


def summarize_folds(metrics: Sequence[dict]) -> dict:
    """Mean and sample standard deviation (ddof=1; 0 for one fold) over folds.

    Returns {"n_folds", "uar": {"mean", "std"}, "war": ..., "macro_f1": ...,
    "per_class_recall": {class: {"mean", "std"}} (over the folds where the class occurs)}, and
    "classes" and "confusion" (summed over folds) when every fold has the same classes.
    """
    if not metrics:
        raise ValueError("no folds to summarise")

    def stats(values):
        values = np.array([v for v in values if v is not None], dtype=np.float64)
        if values.size == 0:
            return {"mean": None, "std": None}
        std = float(values.std(ddof=1)) if values.size > 1 else 0.0
        return {"mean": float(values.mean()), "std": std}

    summary = {"n_folds": len(metrics)}
    for key in MAIN_METRICS:
        summary[key] = stats(m[key] for m in metrics)
    classes = list(dict.fromkeys(c for m in metrics for c in m.get("per_class_recall", {})))
    summary["per_class_recall"] = {
        c: stats(m.get("per_class_recall", {}).get(c) for m in metrics) for c in classes
    }
    if all(m.get("confusion") is not None and m.get("classes") == classes for m in metrics):
        summary["classes"] = classes  # every fold scored the same classes: pool their counts
        summary["confusion"] = np.sum([m["confusion"] for m in metrics], axis=0).tolist()
    return summary


def metrics_table(metrics: dict, title: str = "evaluation"):
    """A rich Table of one evaluation: main scores, then recall and support per class."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("support", justify="right")
    for key in MAIN_METRICS:
        table.add_row(MAIN_METRICS[key], f"{100 * metrics[key]:.2f} %", "")
    for c, r in metrics["per_class_recall"].items():
        value = "-" if r is None else f"{100 * r:.2f} %"
        table.add_row(f"recall {c}", value, str(metrics["support"][c]))
    table.caption = f"{metrics['n']} clips" + (
        f", {len(metrics['skipped'])} skipped" if metrics.get("skipped") else ""
    )
    return table


def summary_table(summary: dict, title: str = "cross-validation"):
    """A rich Table of ``summarize_folds``: mean ± std in percent."""
    from rich.table import Table

    def cell(s):
        return "-" if s["mean"] is None else f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}"

    table = Table(title=f"{title} ({summary['n_folds']} folds)")
    table.add_column("metric")
    table.add_column("mean ± std (%)", justify="right")
    for key in MAIN_METRICS:
        table.add_row(MAIN_METRICS[key], cell(summary[key]))
    for c, s in summary["per_class_recall"].items():
        table.add_row(f"recall {c}", cell(s))
    return table
