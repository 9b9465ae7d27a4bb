"""How far a teacher's confidence can be trusted: ECE, reliability diagrams, confidence-correctness
correlation, and temperature scaling (Guo et al., 2017) fitted on validation data.

LiSER weights each unlabeled window by the teacher's max probability; that is only sound when the
confidence tracks correctness. ``calibrate_teacher`` measures it on a labeled manifest and stores
the fitted temperature with the teacher (``calibration.json``), where every later
``load_audio_teacher`` applies it: ``p = softmax(z / T)``.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from liser.files import atomic_write, write_json

log = logging.getLogger(__name__)


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> dict:
    """Equal-width confidence bins over (0, 1]: per bin the count, mean confidence and accuracy
    (NaN for empty bins). probs (N, C), labels (N,) int."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
    confidence = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(np.float64)
    which = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(which, confidence, n_bins) / count
        acc = np.bincount(which, correct, n_bins) / count
    return {
        "count": count,
        "confidence": conf,
        "accuracy": acc,
        "edges": np.linspace(0, 1, n_bins + 1),
    }


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE = sum over bins of |bin| / N * |accuracy(bin) - confidence(bin)|."""
    bins = reliability_bins(probs, labels, n_bins)
    full = bins["count"] > 0
    gaps = np.abs(bins["accuracy"][full] - bins["confidence"][full])
    return float((bins["count"][full] * gaps).sum() / max(1, bins["count"].sum()))


def confidence_correctness(probs: np.ndarray, labels: np.ndarray) -> dict:
    """How well max-probability confidence separates right from wrong predictions: Pearson
    (point-biserial) correlation, Spearman correlation and AUROC (0.5 = no information)."""
    import pandas as pd

    confidence = np.asarray(probs).max(1).astype(np.float64)
    correct = (np.asarray(probs).argmax(1) == np.asarray(labels)).astype(np.float64)
    out = {"accuracy": float(correct.mean()), "mean_confidence": float(confidence.mean())}
    if correct.min() == correct.max() or confidence.min() == confidence.max():
        return out | {"pearson": float("nan"), "spearman": float("nan"), "auroc": float("nan")}
    ranks = pd.Series(confidence).rank().to_numpy()  # ties get their average rank
    n_right = correct.sum()
    n_wrong = len(correct) - n_right
    auroc = (ranks[correct == 1].sum() - n_right * (n_right + 1) / 2) / (n_right * n_wrong)
    return out | {
        "pearson": float(np.corrcoef(confidence, correct)[0, 1]),
        "spearman": float(np.corrcoef(ranks, pd.Series(correct).rank().to_numpy())[0, 1]),
        "auroc": float(auroc),
    }


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> float:
    """The temperature T > 0 minimising the NLL of ``softmax(logits / T)`` (LBFGS on log T).
    logits (N, C) float, labels (N,) int."""
    logits = torch.as_tensor(logits, dtype=torch.float64).detach()
    labels = torch.as_tensor(labels, dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optim = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optim.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optim.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def reliability_figure(probs: np.ndarray, labels: np.ndarray, title: str = "", n_bins: int = 15):
    """A reliability diagram as a matplotlib ``Figure`` (no pyplot, no global state): per bin of
    confidence, the accuracy (first bars) and the share of samples (second bars), the diagonal of
    perfect calibration, and the ECE in the title."""
    from matplotlib.figure import Figure

    bins = reliability_bins(probs, labels, n_bins)
    centres = (bins["edges"][:-1] + bins["edges"][1:]) / 2
    width = 1.0 / n_bins
    fig = Figure(figsize=(4.5, 4.5), dpi=120)
    ax = fig.add_subplot()
    ax.bar(centres, np.nan_to_num(bins["accuracy"]), width=width * 0.9, color="tab:blue",
           label="accuracy")  # fmt: skip
    ax.bar(centres, bins["count"] / max(1, bins["count"].sum()), width=width * 0.4,
           color="tab:gray", alpha=0.6, label="share of samples")  # fmt: skip
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ece = expected_calibration_error(probs, labels, n_bins)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (max probability)", ylabel="accuracy")
    ax.set_title(f"{title}  ECE {100 * ece:.1f} %".strip(), fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def reliability_diagram(
    probs: np.ndarray, labels: np.ndarray, path: str | Path, title: str = "", n_bins: int = 15
) -> Path:
    """``reliability_figure`` as a PNG, written atomically."""
    buffer = io.BytesIO()
    reliability_figure(probs, labels, title, n_bins).savefig(buffer, format="png")
    return atomic_write(path, buffer.getvalue())


def calibrate_teacher(
    spec: str,
    manifest: str,
    output_dir: str | Path,
    fold: int | None = None,
    split: str = "val",
    store: bool = True,
    device: str = "cpu",
    progress: bool = True,
) -> dict:
    """Score an audio teacher's windows on a labeled manifest (the ``split`` of test fold ``fold``,
    or every labeled clip when ``fold`` is None): ECE, correlation and reliability diagrams before
    and after temperature scaling; the temperature is stored with the teacher when ``store``.
    Writes ``output_dir/calibration.json`` and ``reliability_{before,after}.png``."""
    from liser.config import DataConfig
    from liser.manifest import read_manifest, split_fold

    from . import load_audio_teacher
    from .audio import resolve_spec
    from .base import write_calibration
    from .clips import Clips, uar

    teacher = load_audio_teacher(spec, device=device)
    df = read_manifest(manifest)
    if fold is not None:
        df = split_fold(df, DataConfig(manifest=str(manifest), fold=fold), seed=0)[split]
    dropped = int((~df["label"].isin(list(teacher.classes))).sum())
    if dropped:
        log.warning(
            "calibrate: %d clips have labels outside the teacher's classes; skipped", dropped
        )
    rate = 16000
    clips = Clips.load(
        df,
        teacher.classes,
        round(teacher.window_seconds * rate),
        round(teacher.hop_seconds * rate),
        progress,
    )
    if len(clips) == 0:
        raise ValueError(
            f"{manifest}: no labeled clip with a class of the teacher ({', '.join(teacher.classes)})"
        )
    probs = np.concatenate([teacher.predict(*clips.clip(i)) for i in range(len(clips))])
    labels = clips.labels[clips.owner]
    t_old = teacher.temperature
    t_new = t_old * fit_temperature(
        torch.from_numpy(np.log(np.clip(probs, 1e-12, 1))), torch.from_numpy(labels)
    )
    after = torch.softmax(
        torch.from_numpy(np.log(np.clip(probs, 1e-12, 1))) * t_old / t_new, -1
    ).numpy()
    clip_probs = np.stack([probs[clips.owner == i].mean(0) for i in range(len(clips))])
    out = Path(output_dir)
    report = {
        "teacher": spec,
        "fingerprint": teacher.fingerprint,
        "manifest": str(manifest),
        "fold": fold,
        "split": split if fold is not None else "all",
        "n_clips": len(clips),
        "n_windows": len(labels),
        "clip_uar": uar(clips.labels, clip_probs.argmax(1), len(teacher.classes)),
        "clip_war": float((clip_probs.argmax(1) == clips.labels).mean()),
        "temperature_before": t_old,
        "temperature": t_new,
        "nll_before": _nll(probs, labels),
        "nll_after": _nll(after, labels),
        "ece_before": expected_calibration_error(probs, labels),
        "ece_after": expected_calibration_error(after, labels),
        "before": confidence_correctness(probs, labels),
        "after": confidence_correctness(after, labels),
        "diagrams": [
            str(
                reliability_diagram(probs, labels, out / "reliability_before.png", f"T={t_old:.2f}")
            ),
            str(
                reliability_diagram(after, labels, out / "reliability_after.png", f"T={t_new:.2f}")
            ),
        ],
    }
    if store:
        specs = [s.strip() for s in spec.split(",") if s.strip()]
        folders = [resolve_spec(s)[0] for s in specs]
        folder = folders[0] if folders[0].is_dir() else folders[0].parent
        info = {
            "temperature": t_new,
            "fitted_on": f"{manifest} fold={fold} split={report['split']}",
        }
        info |= {"ece_before": report["ece_before"], "ece_after": report["ece_after"]}
        if len(specs) > 1:
            info["members"] = [str(f) for f in folders]
        report["stored"] = str(write_calibration(folder, info))
    write_json(out / "calibration.json", report, indent=2)
    return report


def _nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1)).mean())
