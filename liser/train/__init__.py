"""liser.train: the public face of this stage (what other modules use)."""

from .augment import CODECS, NoiseBank, band_limit, change_speed, codec_round_trip, mix_at_snr
from .data import clip_mode, draw_augment
from .loop import Run
from .losses import (
    DistillationLoss,
    SupervisedLoss,
    class_weights,
    divergence,
    instance_weights,
    normalize_weights,
)
from .run import TrainingDiverged, check_same_run, cv, lr_factor, train

__all__ = [
    "CODECS",
    "DistillationLoss",
    "NoiseBank",
    "Run",
    "SupervisedLoss",
    "TrainingDiverged",
    "band_limit",
    "change_speed",
    "check_same_run",
    "class_weights",
    "clip_mode",
    "codec_round_trip",
    "cv",
    "divergence",
    "draw_augment",
    "instance_weights",
    "lr_factor",
    "mix_at_snr",
    "normalize_weights",
    "train",
]
