"""The optimizer, its learning-rate schedule and the weight average of a training run."""

from __future__ import annotations

import math

import torch
from torch import nn

from liser.config import TrainConfig


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


def weight_average(model: torch.nn.Module, decay: float):
    """An exponential moving average of ``model``'s weights and buffers (``decay`` per step),
    or None when ``decay`` is 0."""
    if decay <= 0:
        return None
    if decay >= 1:
        raise ValueError(f"optim.ema_decay must be in [0, 1), got {decay}")
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
