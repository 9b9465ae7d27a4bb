"""Training a student: ``train(config)`` one run (supervised, or jointly distilled), ``cv(config)``
over every fold. ``run.py`` the entry points, ``loop.py`` the epoch loop, ``data.py`` clips and
batches, ``augment.py`` channel augmentations, ``losses.py``, ``optim.py``, ``state.py``
(checkpoints, resume), ``distributed.py`` (torchrun), ``scores.py`` (other corpora)."""

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
from .optim import lr_factor
from .run import cv, train
from .state import TrainingDiverged, check_same_run

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
