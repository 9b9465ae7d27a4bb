"""What each config value may be: ranges, choices, finite numbers. Checked whenever a config
dataclass is built (from YAML, ``--set``, ``replace`` or Python), so nothing reaches a training loop
or a labeling job unchecked. Errors name the key: ``'optim.batch_size' must be >= 1, got 0``."""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Callable
from typing import Any

Check = Callable[[object], str | None]  # None when the value is fine, else what it must be


class ConfigError(ValueError):
    """A config file or override that does not fit the dataclass it is meant for. ``key`` and
    ``problem``: the field and what it must be, for a value that breaks its rule."""

    def __init__(self, message: str, key: str = "", problem: str = "", value: Any = None):
        super().__init__(message)
        self.key, self.problem, self.value = key, problem, value


class Checked:
    """Base of every config dataclass: its values are checked when it is built
    (``config_rules``), from YAML, ``--set``, ``replace`` or plain Python alike."""

    def __post_init__(self) -> None:
        for name, problem in problems(self)[:1]:
            value = getattr(self, name)
            raise ConfigError(f"'{name}' {problem}, got {value!r}", name, problem, value)


def coerce_value(hint, value, where: str, build: Callable):
    """``value`` as type ``hint`` (``build(cls, dict, where)`` makes nested dataclasses), or a
    ConfigError naming ``where``."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if dataclasses.is_dataclass(value):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"'{where}' must be a mapping, got {value!r}")
        return build(hint, value, where + ".")
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{where}' must be a list, got {value!r}")
        args = typing.get_args(hint)
        types = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if args and len(types) != len(value):
            raise ConfigError(f"'{where}' must have {len(types)} items, got {value!r}")
        if not args:
            return tuple(value)
        return tuple(
            coerce_value(t, v, f"{where}[{i}]", build)
            for i, (t, v) in enumerate(zip(types, value, strict=True))
        )
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{where}' must be a mapping, got {value!r}")
        return value
    if hint in (int, float):
        return _number(hint, value, where)
    if hint in (bool, str) and not isinstance(value, hint):
        if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"'{where}' must be {hint.__name__}, got {value!r}")
    return value


def _number(hint: type, value, where: str):
    """An int or float from YAML: numbers in every standard notation (YAML 1.1 reads ``1e-3``
    as a string), never a bool (``epochs: true`` is an error, not 1)."""
    if isinstance(value, str):
        try:
            value = float(value.strip().replace("_", "")) if value.strip() else value
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"'{where}' must be a number ({hint.__name__}), got {value!r}")
    if hint is float:
        return float(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise ConfigError(f"'{where}' must be a whole number, got {value!r}")
        return int(value)
    return value


def gt(bound: float) -> Check:
    return lambda v: None if v > bound else f"must be > {bound}"


def ge(bound: float) -> Check:
    return lambda v: None if v >= bound else f"must be >= {bound}"


def within(lo: float, hi: float, hi_open: bool = False, lo_open: bool = False) -> Check:
    def check(v):
        ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        return (
            None
            if ok
            else f"must be in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        )

    return check


def one_of(*names: str) -> Check:
    return lambda v: None if v in names else f"must be one of {', '.join(map(repr, names))}"


def each(check: Check) -> Check:
    def run(values):
        for value in values:
            problem = check(value)
            if problem:
                return f"items {problem}"
        return None

    return run


def device(v) -> str | None:
    ok = re.fullmatch(r"auto|cpu|cuda|cuda:\d+|mps", str(v))
    return None if ok else "must be auto, cpu, cuda or cuda:N"


def layer(v) -> str | None:
    ok = v in ("weighted", "last") or re.fullmatch(r"-?\d+", str(v))
    return None if ok else "must be 'weighted', 'last' or a layer number"


UNIT_OPEN = within(0, 1, hi_open=True)  # dropout, smoothing, decays: [0, 1)
DEVICE = device
RULES: dict[str, dict[str, Check]] = {
    "FrontEndConfig": dict(
        sample_rate=ge(1000), window_seconds=gt(0), n_mels=ge(1), win_seconds=gt(0),
        hop_seconds=gt(0), n_fft=ge(2), f_min=ge(0), f_max=gt(0), log_floor=gt(0),
        normalize=one_of("utterance", "global", "none"), pad=one_of("repeat", "zero"),
    ),
    "StudentConfig": dict(
        conv_channels=each(ge(1)), pool=each(ge(1)), lstm_hidden=ge(1), lstm_layers=ge(1),
        temporal_pooling=one_of("mean", "attention"), dropout=UNIT_OPEN, n_classes=ge(0),
        n_audio_classes=ge(0), n_video_classes=ge(0),
    ),
    "DataConfig": dict(
        folds=one_of("auto", "ravdess", "speaker", "column"), n_folds=ge(2), fold=ge(1),
        val_fraction=UNIT_OPEN, label_fraction=within(0, 1, lo_open=True), num_workers=ge(0),
        eval_hop_seconds=ge(0), eval_adapt=one_of("", "corpus", "speaker"),
    ),
    "OptimConfig": dict(
        lr=gt(0), weight_decay=ge(0), batch_size=ge(1), epochs=ge(1),
        schedule=one_of("onecycle", "cosine", "constant"), warmup_fraction=within(0, 1),
        patience=ge(0), label_smoothing=UNIT_OPEN, grad_clip=ge(0), ema_decay=UNIT_OPEN,
    ),
    "AugmentConfig": dict(
        time_masks=ge(0), time_mask_frames=ge(0), freq_masks=ge(0), freq_mask_bins=ge(0),
        gain_db=ge(0), mixup=ge(0), mel_warp=UNIT_OPEN, noise_prob=within(0, 1),
        codec_prob=within(0, 1), codecs=each(one_of("opus", "aac", "mp3")),
        codec_bitrate=ge(6000), band_limit_prob=within(0, 1), speed=within(0, 0.5, hi_open=True),
        short_prob=within(0, 1), short_seconds=each(gt(0)),
    ),
    "DistillConfig": dict(
        audio_weight=ge(0), video_weight=ge(0), loss=one_of("mae", "ce", "kl", "mse"),
        temperature=gt(0), weighting=one_of("none", "confidence", "entropy", "calibrated"),
        schedule=one_of("joint", "two-stage"), stage1_epochs=ge(0), unlabeled_ratio=gt(0),
        teachers=one_of("both", "audio", "video"),
    ),
    "TrainConfig": dict(
        seed=ge(0), device=DEVICE, precision=one_of("auto", "fp32", "bf16"), num_threads=ge(0),
    ),
    "ExperimentConfig": dict(folds=each(ge(1)), seeds=each(ge(0))),
    "AudioTeacherConfig": dict(
        layer=layer, lora_rank=ge(1), lora_alpha=gt(0), lora_dropout=UNIT_OPEN,
        lora_top_layers=ge(0), window_seconds=gt(0), hop_seconds=gt(0), head_dropout=UNIT_OPEN,
        lr=gt(0), head_lr=gt(0), weight_decay=ge(0), batch_size=ge(1), head_batch_size=ge(1),
        epochs=ge(0), head_epochs=ge(1), patience=ge(0),
        precision=one_of("auto", "fp32", "bf16", "fp16"), device=DEVICE, num_threads=ge(0),
        seed=ge(0),
    ),
    "VideoTeacherConfig": dict(
        frame_rate=gt(0), clip_seconds=gt(0), min_face_coverage=within(0, 1), face_margin=ge(-0.5),
        batch_size=ge(1), temperature=gt(0), min_face_pixels=ge(1), detect_every=ge(1),
        pooling=one_of("mean", "max_confidence", "confidence_weighted"),
    ),
    "LabelConfig": dict(
        window_seconds=gt(0), hop_seconds=gt(0), min_seconds=ge(0), batch_size=ge(1),
        shard_windows=ge(1), chunk_seconds=gt(0), device=DEVICE, engine=one_of("local", "ray"),
        ray_workers=ge(1), ray_cpus_per_worker=gt(0), ray_actors=ge(1), ray_cpus_per_actor=gt(0),
        ray_gpus_per_actor=ge(0), vad_threshold=within(0, 1, hi_open=True, lo_open=True),
        min_speech=within(0, 1),
    ),
    "ExperimentTeacherConfig": dict(
        kind=one_of("", "student", "fit-audio", "spec"), members=ge(1),
    ),
}  # fmt: skip


def problems(config) -> list[tuple[str, str]]:
    """(field, what it must be) for every value of ``config`` that breaks its rule or is a
    non-finite number."""
    found = []
    for name, value in vars(config).items():
        numbers = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
            found.append((name, "must be a finite number"))
            continue
        check = RULES.get(type(config).__name__, {}).get(name)
        problem = check(value) if check else None
        if problem:
            found.append((name, problem))
    return found
