"""Scoring a checkpoint (student or audio teacher) on labeled manifests: one corpus, or several
at once in one table (``liser evaluate CHECKPOINT M1 M2 ...``), with the class rules of
``taxonomy`` (mapping, argmax restricted to the scored classes) stated in every report."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from liser.deploy import ScoringOptions
from liser.files import atomic_write, write_json

from .metrics import classification_metrics, write_report
from .scorers import load_scorer, mark_adapted, scorer_for, stored_adaptation
from .taxonomy import ClassRules, class_scoring, scored_label


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    manifest,
    out_dir: str | os.PathLike | None = None,
    options: ScoringOptions = ScoringOptions(),
    rules: ClassRules = ClassRules(),
    progress: bool = True,
    adapt: str | bool = "",
) -> dict:
    """``liser evaluate`` on one manifest (path or DataFrame); clip probabilities = mean over
    windows as in ``predict``. Classes: ``rules`` (see ``taxonomy``); by default every label must
    be one of the checkpoint's classes.

    Writes to ``out_dir`` (default: ``<checkpoint folder>/eval-<manifest name>``): metrics.json,
    confusion.csv, confusion.png and predictions.csv. Clips that cannot be read are listed in
    metrics["skipped"] and left out of the scores. ``adapt``: "corpus" (or True): statistics
    re-estimated on the manifest's own audio first, "speaker": on each speaker's (see
    ``adapted``). Returns the metrics.
    """
    name, df = _named(manifest)
    predictor, record = scorer_for(checkpoint, df, options, adapt, progress)
    out = Path(out_dir) if out_dir else _checkpoint_folder(checkpoint) / f"eval-{name}"
    metrics = score_manifest(predictor, df, name, rules, progress)
    mark_adapted(metrics, predictor, record)
    metrics["checkpoint"] = str(checkpoint)
    write_report(metrics, out, rows=metrics.pop("_rows"), probs=metrics.pop("_probs"))
    return metrics


def evaluate_corpora(
    checkpoint: str | os.PathLike,
    manifests: Sequence,
    out_dir: str | os.PathLike | None = None,
    options: ScoringOptions = ScoringOptions(),
    rules: ClassRules = ClassRules(),
    by_corpus: bool = True,
    progress: bool = True,
    adapt: str | bool = "",
) -> dict:
    """Score a checkpoint on several manifests, each split by its ``corpus`` column when it holds
    several (``by_corpus``). Writes ``OUT/<corpus>/`` (as ``evaluate_checkpoint``) and
    ``OUT/corpora.{json,md,csv,png}``: UAR, WAR, macro-F1, n and classes per corpus, and their
    mean. ``adapt``: "corpus" / "speaker": statistics re-estimated on each corpus's / speaker's
    own audio.
    Returns {"corpora": [...rows], "mean": {...}, "checkpoint", ...}."""
    predictor = None if adapt else load_scorer(checkpoint, options)
    stored = None if adapt else stored_adaptation(checkpoint)
    out = Path(out_dir) if out_dir else _checkpoint_folder(checkpoint) / "eval-corpora"
    parts = corpus_parts(manifests, by_corpus)
    rows = []
    for name, df in parts:
        record = stored
        if adapt:
            predictor, record = scorer_for(checkpoint, df, options, adapt, progress)
        metrics = score_manifest(predictor, df, name, rules, progress)
        mark_adapted(metrics, predictor, record)
        metrics["checkpoint"] = str(checkpoint)
        write_report(metrics, out / name, rows=metrics.pop("_rows"), probs=metrics.pop("_probs"))
        rows.append({"corpus": name, "uar": metrics["uar"], "war": metrics["war"],
                     "macro_f1": metrics["macro_f1"], "n": metrics["n"],
                     "classes": metrics["classes"], "rules": metrics["rules"],
                     "chance": 1 / len(metrics["scored_classes"]),
                     "skipped": len(metrics["skipped"])})  # fmt: skip
    result = {"checkpoint": str(checkpoint), "corpora": rows,
              "mean": {k: float(np.mean([r[k] for r in rows])) for k in ("uar", "war", "macro_f1")},
              "window_seconds": predictor.window_seconds, "hop_seconds": predictor.hop_seconds,
              "precision": predictor.precision}  # fmt: skip
    write_corpora(result, out, title=str(checkpoint))
    return result


def corpus_parts(manifests: Sequence, by_corpus: bool = True) -> list[tuple[str, pd.DataFrame]]:
    """(name, labeled rows) per manifest, or per corpus of a manifest with several; names are
    the corpus (or the manifest's stem), made unique."""
    parts, names = [], set()
    for manifest in manifests:
        stem, df = _named(manifest)
        groups = [(stem, df)]
        if by_corpus and "corpus" in df.columns and df["corpus"].nunique() > 1:
            groups = [(str(c), part) for c, part in df.groupby("corpus", sort=True)]
        for name, part in groups:
            unique, k = name, 2
            while unique in names:
                unique, k = f"{name}-{k}", k + 1
            names.add(unique)
            parts.append((unique, part))
    return parts


def score_manifest(predictor, df: pd.DataFrame, name: str, rules: ClassRules = ClassRules(),
                   progress: bool = True) -> dict:  # fmt: skip
    """Metrics of ``predictor`` on the labeled rows of ``df`` (plus "_rows", "_probs" for the
    report's predictions.csv)."""
    from rich.console import Console
    from rich.progress import Progress

    from liser.audio import AudioError
    from liser.windows import Clip

    df = df[df["label"].notna()]
    if df.empty:
        raise ValueError(f"{name}: no labeled clips to evaluate")
    model_classes = list(predictor.classes)
    unknown = sorted({str(x) for x in df["label"]} - set(model_classes))
    if unknown and not (rules.classes or rules.mapping):
        raise ValueError(
            f"{name}: labels {unknown} are not among the checkpoint's classes {model_classes}; "
            "score the shared classes with --classes (e.g. angry,happy,neutral,sad) or map "
            "them with --map (e.g. calm=neutral, boredom= to drop)"
        )
    scoring = class_scoring(model_classes, df["label"].astype(str), rules.mapping, rules.classes,
                            rules.restrict)  # fmt: skip
    df = df[[scored_label(scoring, str(x)) is not None for x in df["label"]]]
    per_speaker = hasattr(predictor, "select")  # adapted to each speaker: their clips together
    if per_speaker:
        df = df.sort_values("speaker", kind="stable")
    rows, probs, skipped = [], [], []
    rate = predictor.frontend.sample_rate
    with Progress(console=Console(stderr=True), disable=not progress, transient=True) as bar:
        for row in bar.track(df.itertuples(index=False), total=len(df), description=f"{name}"):
            try:
                wave = Clip.from_row(row).load_audio(rate)
            except AudioError as err:
                skipped.append({"id": str(row.id), "path": str(row.path), "error": err.reason})
                continue
            if per_speaker:
                predictor.select(row.speaker)
            probs.append(predictor.predict(wave)["probs"])
            rows.append(row)
    if not rows:
        raise ValueError(f"{name}: none of the {len(df)} clips could be read")
    p = scoring.probabilities(np.array([[d[c] for c in model_classes] for d in probs]))
    y_true = np.array([scoring.classes.index(scored_label(scoring, str(r.label))) for r in rows])
    metrics = classification_metrics(y_true, p.argmax(1), scoring.classes)
    metrics.update(
        manifest=name,
        scored_classes=list(scoring.labels),
        rules=scoring.describe(),
        dropped_labels=scoring.dropped_labels,
        window_seconds=predictor.window_seconds,
        hop_seconds=predictor.hop_seconds,
        precision=predictor.precision,
        skipped=skipped,
        _rows=rows,
        _probs=p,
    )
    return metrics


def write_corpora(result: dict, out: Path, title: str = "") -> None:
    """corpora.json, corpora.md, corpora.csv and corpora.png (UAR per corpus, chance line)."""
    from liser.plots import corpus_bars_png

    rows = result["corpora"]
    write_json(out / "corpora.json", result)
    header = "| corpus | UAR % | WAR % | macro-F1 % | n | chance % | classes scored |"
    lines = [f"# {title}", "", header, "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['corpus']} | {100 * r['uar']:.2f} | {100 * r['war']:.2f} | "
                     f"{100 * r['macro_f1']:.2f} | {r['n']} | {100 * r['chance']:.1f} | "
                     f"{', '.join(r['classes'])} |")  # fmt: skip
    mean = result["mean"]
    lines.append(f"| mean | {100 * mean['uar']:.2f} | {100 * mean['war']:.2f} | "
                 f"{100 * mean['macro_f1']:.2f} | | | |")  # fmt: skip
    lines += ["", *[f"- {r['corpus']}: {r['rules']}" for r in rows]]
    atomic_write(out / "corpora.md", "\n".join(lines) + "\n")
    table = pd.DataFrame([{k: v for k, v in r.items() if k != "rules"} for r in rows])
    table["classes"] = [" ".join(c) for c in table["classes"]]
    atomic_write(out / "corpora.csv", table.to_csv(index=False))
    label = "/".join(Path(title).parts[-2:]) or "model"
    uar = {label: {r["corpus"]: r["uar"] for r in rows}}
    atomic_write(
        out / "corpora.png", corpus_bars_png(uar, {r["corpus"]: r["chance"] for r in rows})
    )


def _named(manifest) -> tuple[str, pd.DataFrame]:
    from liser.manifest import read_manifest

    if isinstance(manifest, (str, os.PathLike)):
        return Path(manifest).stem, read_manifest(manifest)
    return "manifest", manifest


def _checkpoint_folder(checkpoint) -> Path:
    path = Path(str(checkpoint).split(",")[0])
    return path if path.is_dir() else path.parent
