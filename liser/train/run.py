"""One training run of the student (supervised, or jointly distilled from teacher soft labels), and
``cv`` over all folds.

Per step (LiSER, arXiv 2507.00055, eq. of section 2.3)::

    L = CE(logits, y) + lambda_a * D(audio head, audio teacher) + lambda_v * D(video head, video teacher)

on a labeled batch of ``optim.batch_size`` clips and an unlabeled batch of
``round(batch_size * distill.unlabeled_ratio)`` store windows, passed through the student together.
``distill.schedule="two-stage"`` trains ``stage1_epochs`` epochs on the distillation terms alone,
then fine-tunes on CE alone (fresh optimizer and schedule). An epoch is one pass over the labeled
training clips (the same number of steps in stage 1).

Everything random in an epoch is drawn from generators seeded by (seed, epoch), so a run stopped
at any point and started again with the same command continues exactly where it would have been,
and the same seed and config give the same metrics (on one CPU thread count).

Under ``torchrun`` each process takes its share of every global batch (DDP, gloo on CPU, NCCL on
GPU); process 0 evaluates, writes checkpoints and decides early stopping for all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch.distributed as dist

from liser.config import TrainConfig, replace, to_dict
from liser.files import atomic_write, write_json

from .distributed import init_distributed
from .loop import Run
from .scores import score_other_corpora, summarize_corpora
from .state import check_same_run


def train(config: TrainConfig, progress: bool = True) -> dict:
    """Train one student on fold ``config.data.fold``; return the metrics (also in
    ``output_dir/metrics.json``) with ``checkpoint``: the best checkpoint's folder.

    Running the same config again on the same ``output_dir`` resumes an interrupted run, or returns
    the metrics of a finished one.
    """

    out = Path(config.output_dir).expanduser()
    finished = out / "metrics.json"
    if finished.is_file():
        metrics = json.loads(finished.read_text())
        check_same_run(metrics["config"], config, out)
        wanted = {k: v for k, v in to_dict(config.data).items() if k.startswith("eval_")}
        scored = {k: metrics["config"]["data"].get(k, []) for k in wanted}
        if wanted != scored:  # other corpora asked for since: score them, keep the rest
            metrics["corpora"] = score_other_corpora(
                config, Path(metrics["checkpoint"]), out / "corpora"
            )
            metrics["config"]["data"].update(wanted)
            write_json(finished, metrics)
        return metrics
    rank, world, started = init_distributed(config.device)
    try:
        return Run(config, rank, world, progress).fit()
    finally:
        if started:
            dist.destroy_process_group()


def cv(config: TrainConfig, progress: bool = True) -> dict:
    """Train and test on every fold (``output_dir/fold-K``); a finished fold is not run again.
    Writes ``output_dir/cv.json`` (``evaluate.summarize_folds``: mean and sample std over folds,
    in [0, 1]), ``cv.md`` (a table in percent) and the folds' pooled ``confusion.csv`` and
    ``confusion.png``. Returns the summary."""
    from liser.checkpoint import library_versions
    from liser.evaluate import summarize_folds, write_confusion
    from liser.manifest import read_manifest, resolve_folds

    df = read_manifest(config.data.manifest)
    mode = resolve_folds(df, config.data.folds)
    if mode == "ravdess":
        from liser.constants import RAVDESS_FOLDS

        folds = list(range(1, len(RAVDESS_FOLDS) + 1))
    elif mode == "speaker":
        folds = list(range(1, config.data.n_folds + 1))
    else:
        if "fold" not in df.columns:
            raise ValueError(f"{config.data.manifest}: folds 'column' needs a 'fold' column")
        import pandas as pd

        folds = sorted({int(f) for f in pd.to_numeric(df["fold"], errors="coerce").dropna()})
    out = Path(config.output_dir).expanduser()
    tests, rows, others = [], [], []
    for fold in folds:
        changes = {"data.fold": fold, "output_dir": str(out / f"fold-{fold}"),
                   "name": f"{config.name}-fold-{fold}"}  # fmt: skip
        metrics = train(replace(config, **changes), progress=progress)
        tests.append(metrics["test"])
        others.append(metrics.get("corpora"))
        rows.append({"fold": fold, "uar": metrics["test"]["uar"], "war": metrics["test"]["war"],
                     "macro_f1": metrics["test"]["macro_f1"], "best_epoch": metrics["best_epoch"],
                     "train_seconds": metrics["train_seconds"]})  # fmt: skip
        if progress:
            print(f"fold {fold}: UAR {100 * rows[-1]['uar']:.2f} %  WAR {100 * rows[-1]['war']:.2f} %  "
                  f"({rows[-1]['train_seconds']:.0f} s of training)", flush=True)  # fmt: skip
    summary = {
        "name": config.name,
        "folds": rows,
        **summarize_folds(tests),
        "config": to_dict(config),
        "seed": config.seed,
        "versions": library_versions(),
    }
    if others and all(others):
        summary["corpora"] = summarize_corpora(others)
    if int(os.environ.get("RANK", "0")) == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "cv.json", summary)
        lines = [f"# {config.name}: {len(rows)} folds", "",
                 "| fold | UAR % | WAR % | macro-F1 % | best epoch | training s |",
                 "|---|---|---|---|---|---|"]  # fmt: skip
        lines += [f"| {r['fold']} | {100 * r['uar']:.2f} | {100 * r['war']:.2f} | {100 * r['macro_f1']:.2f} "
                  f"| {r['best_epoch']} | {r['train_seconds']:.0f} |" for r in rows]  # fmt: skip
        cell = lambda s: f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}"  # noqa: E731
        lines.append(f"| mean ± std | {cell(summary['uar'])} | {cell(summary['war'])} | "
                     f"{cell(summary['macro_f1'])} | | |")  # fmt: skip
        atomic_write(out / "cv.md", "\n".join(lines) + "\n")
        if "confusion" in summary:
            title = f"{config.name}: {len(rows)} folds pooled"
            write_confusion(summary["confusion"], summary["classes"], out, title)
    return summary
