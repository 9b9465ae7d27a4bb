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
import math
import os
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from liser.config import TrainConfig, replace, to_dict
from liser.devices import distributed_device
from liser.files import atomic_write, write_json

STATE_JSON, STATE_TENSORS = "train_state.json", "train_state.pt"


class TrainingDiverged(ValueError):
    """A run whose loss or weights became NaN or Inf; nothing of the failed epoch is saved."""


def diverged(config: TrainConfig, epoch: int, what: str) -> TrainingDiverged:
    """The error that stops a diverging run (``epoch`` 0-based); the checkpoints of the last
    complete epoch are left as they were."""
    last = Path(config.output_dir).expanduser() / "last"
    kept = f"the last good checkpoint is {last} (epoch {epoch})" if epoch else "nothing was saved"
    return TrainingDiverged(
        f"{config.name}: training diverged in epoch {epoch + 1}, {what}; {kept}. Lower "
        f"optim.lr (now {config.optim.lr:g}) and start again in a new output_dir"
    )


# may change on resume (eval_*: what is scored after training, not how the student is trained)
RUNTIME_KEYS = ("output_dir", "num_threads", "device", "data.num_workers", "data.eval_manifests",
                "data.eval_classes", "data.eval_map")  # fmt: skip


def resolve_device(name: str) -> torch.device:
    """The run's device ("cuda" under torchrun: this process's GPU); see ``devices``."""
    return distributed_device(name)


def lr_factor(step: int, total: int, schedule: str, warmup_fraction: float) -> float:
    """Learning-rate multiplier at optimizer step ``step`` of ``total``.

    "onecycle": cosine from lr/25 up to lr over the warm-up, then cosine down to lr/25e4 (the lr
    curve of torch's OneCycleLR); "cosine": linear warm-up from 0, cosine to 0; "constant": linear
    warm-up, then 1.
    """
    if schedule not in ("onecycle", "cosine", "constant"):
        raise ValueError(f"unknown schedule {schedule!r}; use onecycle, cosine or constant")
    warm = round(total * warmup_fraction)
    if schedule == "onecycle":
        if step < warm:
            return 1 / 25 + (1 - 1 / 25) * 0.5 * (1 - math.cos(math.pi * step / warm))
        final = 1 / 25e4
        return final + (1 - final) * 0.5 * (
            1 + math.cos(math.pi * (step - warm) / max(1, total - warm))
        )
    if step < warm:
        return (step + 1) / (warm + 1)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))
    return 1.0  # constant


def build_optimizer(model: nn.Module, config: TrainConfig, total_steps: int):
    """AdamW (no weight decay on biases and norm weights) and its LambdaLR schedule."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    other = [p for p in model.parameters() if p.ndim < 2]
    optim = config.optim
    groups = [
        {"params": decay, "weight_decay": optim.weight_decay},
        {"params": other, "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=optim.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(s, total_steps, optim.schedule, optim.warmup_fraction),
    )
    return optimizer, scheduler


# --------------------------------------------------------------------------------------------
# Checkpoints and resume


def weight_average(model: torch.nn.Module, decay: float):
    """An exponential moving average of ``model``'s weights and buffers (``decay`` per step),
    or None when ``decay`` is 0."""
    if decay <= 0:
        return None
    if decay >= 1:
        raise ValueError(f"optim.ema_decay must be in [0, 1), got {decay}")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished folder into place: the old one is renamed away first, then deleted."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def save_state(out: Path, name: str, model, meta: dict, state: dict | None, tensors=None) -> None:
    """Write ``out/name`` (checkpoint + optional training state) atomically as a whole folder."""
    from liser.checkpoint import save_checkpoint

    tmp = out / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(tmp, model, meta)
    if state is not None:
        torch.save(tensors, tmp / STATE_TENSORS)
        (tmp / STATE_JSON).write_text(json.dumps(state, indent=1))
    _replace_dir(tmp, out / name)


def restore_swapped(out: Path) -> None:
    """Undo a crash between the two renames of ``_replace_dir``: a ``name.old`` without its
    ``name`` (``last`` or ``best``) is the last complete copy, so it is put back."""
    for name in ("last", "best"):
        old = out / f"{name}.old"
        if old.is_dir() and not (out / name).exists():
            old.rename(out / name)


def find_state(out: Path) -> Path | None:
    """The folder of the last saved epoch (``last``, after a crash mid-swap its ``last.old``)."""
    restore_swapped(out)
    return out / "last" if (out / "last" / STATE_JSON).is_file() else None


def comparable(config: TrainConfig) -> dict:
    """The config without settings that may change between a run and its resumption."""
    data = to_dict(config)
    for key in RUNTIME_KEYS:
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node.pop(last, None)
    return data


def check_same_run(saved: dict, config: TrainConfig, where: Path) -> None:
    from liser.config import from_dict

    ours, theirs = comparable(config), comparable(from_dict(TrainConfig, saved))
    if ours != theirs:
        diff = [k for k in ours if ours[k] != theirs.get(k)]
        raise ValueError(
            f"{where} holds a run with another config (sections differ: {', '.join(diff)}); "
            "use another output_dir or delete that folder to start over"
        )


def score_other_corpora(config: TrainConfig, checkpoint: Path, out: Path) -> dict | None:
    """``data.eval_manifests`` scored with ``checkpoint`` (``corpus_eval.evaluate_corpora``, in
    ``out``): {"corpora": {name: {uar, war, macro_f1, n, rules}}, "mean": {...}}; None if unset."""
    data = config.data
    if not data.eval_manifests:
        return None
    from liser.evaluate import evaluate_corpora, parse_mapping

    result = evaluate_corpora(checkpoint, list(data.eval_manifests), out, device="cpu",
                              progress=False, classes=data.eval_classes or None,
                              mapping=parse_mapping(data.eval_map))  # fmt: skip
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


# --------------------------------------------------------------------------------------------
# Distributed


def init_distributed(device_name: str) -> tuple[int, int, bool]:
    """(rank, world size, whether we started the process group) from torchrun's environment."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        return (
            (dist.get_rank(), dist.get_world_size(), False)
            if dist.is_initialized()
            else (0, 1, False)
        )
    cuda = device_name != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), True


def share(n: int, rank: int, world: int) -> np.ndarray:
    """This process's rows of a global batch of n."""
    return np.array_split(np.arange(n), world)[rank]


def mean_over_processes(values: list[float], device, world: int) -> list[float]:
    """The mean of each value over all processes (for logging losses)."""
    if world == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return (tensor / world).tolist()


def broadcast_floats(values: list[float], device, world: int) -> list[float]:
    """Process 0's values, on every process."""
    if world == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(tensor, 0)
    return tensor.tolist()


# --------------------------------------------------------------------------------------------
# Entry points


def train(config: TrainConfig, progress: bool = True) -> dict:
    """Train one student on fold ``config.data.fold``; return the metrics (also in
    ``output_dir/metrics.json``) with ``checkpoint``: the best checkpoint's folder.

    Running the same config again on the same ``output_dir`` resumes an interrupted run, or returns
    the metrics of a finished one.
    """
    from .loop import Run

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
