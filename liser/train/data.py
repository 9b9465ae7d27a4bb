"""Training data: labeled clips held in memory, augmented training crops, evaluation windows, and
the unlabeled stream of teacher soft labels read from soft-label stores.

Two ways to hold labeled clips (chosen by ``clip_mode``):

- ``"features"`` (``data.cache_dir`` set, no waveform noise): the un-normalised log-Mel of every
  whole clip (``features.cached_features``, read from / written to the on-disk ``FeatureCache``) is
  kept as float16; a training example is a random crop of ``n_frames`` frames, normalised per
  window afterwards (``LogMel.normalise``). Frame ``t`` of a crop starting at sample ``s`` is frame
  ``s / hop + t`` of the clip, so crops equal per-window log-Mel except in the two frames at each
  edge, where a per-window STFT would reflect-pad.
- ``"waves"`` (no cache, or ``augment.noise_snr_db > 0``): waveforms are kept and each batch is
  cropped, gain-scaled, noised and turned into log-Mel on the fly.

Every random draw of a batch is made for the whole *global* batch from a generator seeded by
(seed, epoch), so a run split over DDP processes sees exactly the inputs of a single-process run.
"""

from __future__ import annotations

import contextlib
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from liser.audio import AudioError
from liser.config import AugmentConfig, DataConfig, FrontEndConfig
from liser.features import FeatureCache, LogMel, cached_features, mel_band_edges
from liser.windows import Clip, WindowSpec, fit_window

log = logging.getLogger(__name__)


def clip_mode(data: DataConfig, augment: AugmentConfig) -> str:
    """ "features" (cached whole-clip log-Mel, cropped in frames) or "waves" (log-Mel per batch)."""
    from .augment import channel_on

    waves = augment.noise_snr_db > 0 or channel_on(augment)
    return "features" if data.cache_dir and not waves else "waves"


@dataclass
class ClipSet:
    """The usable clips of one split, in memory. ``items[i]`` is clip i's un-normalised log-Mel
    (n_mels, T_i >= n_frames) float16 in "features" mode, or its wave (N_i,) float32 in "waves"."""

    df: pd.DataFrame
    labels: np.ndarray  # (N,) int64 class indices
    items: list[np.ndarray]
    mode: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    variants: list | None = None  # codec round trips of the waves: variants[codec][clip]

    def __len__(self) -> int:
        return len(self.items)


def load_clips(
    df: pd.DataFrame,
    classes: tuple[str, ...],
    frontend: FrontEndConfig,
    data: DataConfig,
    mode: str,
    progress=None,
) -> ClipSet:
    """Read every clip of ``df`` once (threads: ``data.num_workers``, 0 = 1). Files that cannot be
    used are skipped with a warning naming them and the reason, and listed in ``.skipped``."""
    logmel = LogMel(frontend)
    cache = FeatureCache(data.cache_dir, frontend) if mode == "features" else None
    rows = df.to_dict(orient="records")

    def read(row):
        clip = Clip.from_row(row)
        try:
            if mode == "features":
                x = cached_features(clip.path, clip.start, clip.duration, cache, logmel)
                return x.astype(np.float16)
            return clip.load_audio(frontend.sample_rate)
        except AudioError as error:
            return error
        except Exception as error:  # noqa: BLE001 - any failure skips the clip, named
            return AudioError(clip.path, f"{type(error).__name__}: {error}")

    task = progress.add_task("loading clips", total=len(rows)) if progress is not None else None
    items, keep, skipped = [], [], []
    with ThreadPoolExecutor(max(1, data.num_workers)) as pool:
        for i, result in enumerate(pool.map(read, rows)):
            if isinstance(result, AudioError):
                log.warning("skipped %s", result)
                skipped.append((result.path, result.reason))
            else:
                items.append(result)
                keep.append(i)
            if task is not None:
                progress.advance(task)
    if task is not None:
        progress.remove_task(task)
    kept = df.iloc[keep].reset_index(drop=True)
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[label] for label in kept["label"]], dtype=np.int64)
    return ClipSet(kept, labels, items, mode, skipped)


def channel_setup(train: ClipSet, config, progress=None):
    """Before training: the codec round trips of the training waves (``train.variants``) and the
    noise bank of ``augment.noise_dir`` (returned; None when off)."""
    from .augment import NoiseBank, codec_variants

    augment, rate = config.augment, config.frontend.sample_rate
    if augment.codec_prob > 0 and train.mode == "waves":
        with progress or contextlib.nullcontext():
            train.variants = codec_variants(train.items, augment, rate, progress)
    return NoiseBank(augment.noise_dir, rate) if augment.noise_dir else None


# --------------------------------------------------------------------------------------------
# Training batches


def draw_augment(rng: np.random.Generator, n: int, augment: AugmentConfig) -> dict:
    """Random draws for ``n`` training examples (crop position, gain, noise, SpecAugment masks,
    mel warp factor when on)."""
    draws = {
        "crop": rng.random(n),
        "gain_db": rng.uniform(-augment.gain_db, augment.gain_db, n)
        if augment.gain_db > 0
        else np.zeros(n),
        "noise": rng.random(n) < 0.5,
        "noise_seed": rng.integers(0, 2**31, n),
        "time_width": rng.integers(0, augment.time_mask_frames + 1, (n, augment.time_masks)),
        "time_start": rng.random((n, augment.time_masks)),
        "freq_width": rng.integers(0, augment.freq_mask_bins + 1, (n, augment.freq_masks)),
        "freq_start": rng.random((n, augment.freq_masks)),
    }
    if augment.mel_warp > 0:  # drawn last and only when on: other draws keep their values
        draws["warp"] = rng.uniform(1 - augment.mel_warp, 1 + augment.mel_warp, n)
    from .augment import draw_channel

    draw_channel(rng, n, augment, draws)
    return draws


def take(draws: dict, rows: slice | np.ndarray) -> dict:
    """The draws of some examples (e.g. this process's share of a global batch)."""
    return {k: v[rows] for k, v in draws.items()}


def _offset(u: float, n: int, size: int) -> int:
    return min(int(u * (n - size + 1)), n - size) if n > size else 0


def train_batch(
    clips: ClipSet,
    index: np.ndarray,
    draws: dict,
    logmel: LogMel,
    augment: AugmentConfig,
    noise=None,
) -> torch.Tensor:
    """Augmented, normalised training inputs of clips ``index``: (B, n_mels, n_frames) float32.
    ``noise``: the ``augment.NoiseBank`` of ``augment.noise_dir``; codec variants come from
    ``clips.variants``."""
    from .augment import channel_example, clip_source, short_utterance

    frontend = logmel.frontend
    n_frames, size = frontend.n_frames, frontend.window_samples
    crop = draws["crop"] if augment.random_crop else np.full(len(index), 0.5)
    if clips.mode == "features":
        parts = []
        steps = frontend.sample_rate / frontend.hop_samples  # frames a second
        floor = math.log(frontend.log_floor)
        for j, (i, u) in enumerate(zip(index, crop, strict=True)):
            x = clips.items[i]
            start = _offset(u, x.shape[1], n_frames)
            x = x[:, start : start + n_frames].astype(np.float32)
            x = short_utterance(x, j, draws, steps, frontend.pad, floor)
            parts.append(torch.from_numpy(np.ascontiguousarray(x)))
        x = torch.stack(parts)
        if augment.gain_db > 0:  # a gain of g dB adds g ln(10) / 10 to the log of the power
            shift = torch.from_numpy(draws["gain_db"] * math.log(10) / 10).float()
            x = torch.clamp(x + shift[:, None, None], min=math.log(frontend.log_floor))
    else:
        waves = []
        for j, (i, u) in enumerate(zip(index, crop, strict=True)):
            wave = clip_source(clips.items[i], j, draws, clips.variants, i)
            if len(wave) > size:
                start = _offset(u, len(wave), size)
                wave = wave[start : start + size]
            else:
                wave = fit_window(wave, size, frontend.pad)
            wave = short_utterance(wave, j, draws, frontend.sample_rate, frontend.pad)
            wave = wave * np.float32(10 ** (draws["gain_db"][j] / 20))
            wave = channel_example(wave, j, draws, frontend.sample_rate, noise)
            if augment.noise_snr_db > 0 and draws["noise"][j]:
                white = np.random.default_rng(draws["noise_seed"][j]).standard_normal(size)
                power = float(np.mean(wave**2)) / 10 ** (augment.noise_snr_db / 10)
                wave = wave + (math.sqrt(power) * white).astype(np.float32)
            waves.append(wave)
        with torch.no_grad():
            x = logmel.log_mel(torch.from_numpy(np.stack(waves)))
    if "warp" in draws:
        x = warp_mels(x, draws["warp"], frontend)
    with torch.no_grad():
        x = logmel.normalise(x)
    return spec_augment(x, draws)


def warp_mels(x: torch.Tensor, factors: np.ndarray, frontend: FrontEndConfig) -> torch.Tensor:
    """Vocal-tract-length perturbation on log-Mel: mel band ``m`` of example ``b`` takes the
    value, linearly interpolated between bands, at frequency ``f_m / factors[b]`` (``f_m`` the
    band's centre; beyond the outer bands, the outer band). x (B, M, T) -> (B, M, T)."""
    n_mels = frontend.n_mels
    centres = mel_band_edges(n_mels, frontend.f_min, frontend.f_max)[1:-1]
    source = np.interp(centres[None, :] / np.asarray(factors)[:, None], centres, np.arange(n_mels))
    low = np.floor(source).astype(np.int64)
    high = np.minimum(low + 1, n_mels - 1)
    w = torch.from_numpy(source - low).float()[:, :, None]
    low, high = (torch.from_numpy(i)[:, :, None].expand_as(x) for i in (low, high))
    return torch.gather(x, 1, low) * (1 - w) + torch.gather(x, 1, high) * w


def spec_augment(x: torch.Tensor, draws: dict) -> torch.Tensor:
    """SpecAugment: time and frequency bands (widths and positions from ``draws``) set to each
    example's mean (0 for per-utterance normalised features). x (B, M, T) -> (B, M, T)."""
    batch, n_mels, n_frames = x.shape
    masked = torch.zeros(batch, n_mels, n_frames, dtype=torch.bool)
    for key, size, dim in (("time", n_frames, 2), ("freq", n_mels, 1)):
        width = torch.from_numpy(draws[f"{key}_width"]).long()  # (B, k)
        if width.numel() == 0:
            continue
        start = (torch.from_numpy(draws[f"{key}_start"]) * (size - width + 1).clamp(min=1)).long()
        pos = torch.arange(size)
        band = ((pos >= start[..., None]) & (pos < (start + width)[..., None])).any(1)  # (B, size)
        masked |= band[:, None, :] if dim == 2 else band[:, :, None]
    if not masked.any():
        return x
    fill = x.mean(dim=(1, 2), keepdim=True).expand_as(x)
    return torch.where(masked, fill, x)


def mixup(x: torch.Tensor, alpha: float, rng: np.random.Generator):
    """Mixup (Zhang et al. 2018) in place: ``x <- lam x + (1 - lam) x[perm]``, lam ~ Beta(alpha,
    alpha). Returns (lam, perm) for the loss ``lam CE(y) + (1 - lam) CE(y[perm])``, or None when
    off (alpha 0) or the batch has one example."""
    if alpha <= 0 or len(x) < 2:
        return None
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(len(x)))
    x.copy_(lam * x + (1 - lam) * x[perm])
    return lam, perm


# --------------------------------------------------------------------------------------------
# Evaluation windows


def eval_windows(
    clips: ClipSet, logmel: LogMel, spec: WindowSpec
) -> tuple[torch.Tensor, torch.Tensor]:
    """The windows ``spec`` cuts from every clip (as ``liser evaluate`` and ``liser predict`` cut
    them), normalised.

    Returns features (W, n_mels, n_frames) float16 and clip_of (W,) int64: the clip of each window,
    whose outputs are averaged per clip at evaluation.
    """
    frontend = logmel.frontend
    rate, n_frames, frame_hop = frontend.sample_rate, frontend.n_frames, frontend.hop_samples
    windows, clip_of = [], []
    for i, item in enumerate(clips.items):
        if clips.mode == "features":
            for start in spec.starts((item.shape[1] - 1) * frame_hop, rate):
                first = min(round(start / frame_hop), item.shape[1] - n_frames)
                x = torch.from_numpy(item[:, first : first + n_frames].astype(np.float32))
                windows.append(logmel.normalise(x[None])[0].half())
                clip_of.append(i)
        else:
            waves, _ = spec.cut(item, rate)
            with torch.no_grad():
                windows.extend(logmel(torch.from_numpy(waves)).half())
            clip_of.extend([i] * len(waves))
    return torch.stack(windows), torch.tensor(clip_of, dtype=torch.long)
