"""Other corpora scored after training (``data.eval_manifests``), per run and over folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from liser.config import TrainConfig


def score_other_corpora(config: TrainConfig, checkpoint: Path, out: Path) -> dict | None:
    """``data.eval_manifests`` scored with ``checkpoint`` (``corpus_eval.evaluate_corpora``, in
    ``out``): {"corpora": {name: {uar, war, macro_f1, n, rules}}, "mean": {...}}; None if unset."""
    data = config.data
    if not data.eval_manifests:
        return None
    from liser.deploy import ScoringOptions
    from liser.evaluate import ClassRules, evaluate_corpora, parse_mapping

    rules = ClassRules(data.eval_classes or None, parse_mapping(data.eval_map))
    if data.eval_adapt_on:  # a copy adapted to the domain's other audio scores the corpora
        from liser.adapt import adapt_folder

        adapt_folder(checkpoint, list(data.eval_adapt_on), out / "adapted", progress=False)
        checkpoint = out / "adapted"
    result = evaluate_corpora(checkpoint, list(data.eval_manifests), out,
                              ScoringOptions(device="cpu"), rules, progress=False,
                              adapt="" if data.eval_adapt_on else data.eval_adapt)  # fmt: skip
    keys = ("uar", "war", "macro_f1", "n", "rules")
    return {"corpora": {r["corpus"]: {k: r[k] for k in keys} for r in result["corpora"]},
            "mean": result["mean"]}  # fmt: skip


def summarize_corpora(folds: list[dict]) -> dict:
    """Mean and sample std over folds of each other corpus's UAR, WAR and macro-F1."""
    names = [n for n in folds[0]["corpora"] if all(n in f["corpora"] for f in folds)]

    def stats(values):
        return {
            "mean": float(np.mean(values)),
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
        }

    keys = ("uar", "war", "macro_f1")
    summary = {n: {k: stats([f["corpora"][n][k] for f in folds]) for k in keys} for n in names}
    summary["mean"] = {k: stats([f["mean"][k] for f in folds]) for k in keys}
    return summary
