"""Log-Mel features: a Slaney mel filterbank, a batched (ONNX-exportable) log-Mel module with
per-utterance or global normalisation, and an on-disk feature cache.

The cache stores *un-normalised* log-Mel of whole clips (padded to one window when shorter), so a
training run crops and normalises per window on top of it (`LogMel.normalise`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .config import FrontEndConfig
from .dft import ConvPowerSpectrum

FEATURES_VERSION = 1  # bump when the log-Mel computation changes: invalidates caches
NORMALIZE_EPS = 1e-5  # added to the standard deviation in normalisation


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, log above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz, min_log_mel, logstep = 200.0 / 3, 1000.0, 15.0, math.log(6.4) / 27.0
    linear = hz / f_sp
    log = min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep
    return np.where(hz >= min_log_hz, log, linear)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of `hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz, min_log_mel, logstep = 200.0 / 3, 1000.0, 15.0, math.log(6.4) / 27.0
    linear = f_sp * mel
    log = min_log_hz * np.exp(logstep * (mel - min_log_mel))
    return np.where(mel >= min_log_mel, log, linear)


def mel_band_edges(n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """The n_mels + 2 edge frequencies (Hz) of the Slaney mel bands; band m peaks at edge m + 1."""
    return mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))


def mel_filterbank(
    sample_rate: int = 16000,
    n_fft: int = 512,
    n_mels: int = 64,
    f_min: float = 0.0,
    f_max: float | None = None,
) -> torch.Tensor:
    """Triangular mel filters on the Slaney scale with Slaney area normalisation (each filter is
    scaled by 2 / its bandwidth in Hz), as librosa.filters.mel(htk=False, norm="slaney").

    Returns torch.Tensor float32, shape = (n_mels, n_fft // 2 + 1).
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= {sample_rate / 2}, got {f_min}, {f_max}")
    fft_hz = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges_hz = mel_band_edges(n_mels, f_min, f_max)
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


def _exporting() -> bool:
    """True while torch traces or exports the module (ONNX, torch.export)."""
    return bool(
        torch.jit.is_tracing()
        or torch.onnx.is_in_onnx_export()
        or (hasattr(torch.compiler, "is_exporting") and torch.compiler.is_exporting())
    )


class LogMel(nn.Module):
    """Waveform -> normalised log-Mel spectrogram.

    stft: "torch" (torch.stft, fastest in training), "conv" (`dft.ConvPowerSpectrum`: a factored
    DFT from convolutions and matrix products, only real ops, exports to ONNX), or "auto" ("torch" eagerly, "conv" while tracing/exporting).
    Both give power spectra equal to ~1e-5 relative; both centre frames with reflect padding.
    Global normalisation statistics live in buffers `mean`, `std` (n_mels,), set by
    `fit_global_stats` or `set_global_stats`, saved in the state dict.
    """

    def __init__(self, frontend: FrontEndConfig | None = None, stft: str = "auto"):
        super().__init__()
        frontend = frontend or FrontEndConfig()
        if frontend.normalize not in ("utterance", "global", "none"):
            raise ValueError(f"normalize must be utterance|global|none, got {frontend.normalize!r}")
        if stft not in ("auto", "torch", "conv"):
            raise ValueError(f"stft must be auto|torch|conv, got {stft!r}")
        if frontend.win_samples > frontend.n_fft:
            raise ValueError(
                f"window ({frontend.win_samples}) longer than n_fft ({frontend.n_fft})"
            )
        self.frontend, self.stft = frontend, stft
        self.n_fft, self.hop = frontend.n_fft, frontend.hop_samples
        window = torch.hann_window(frontend.win_samples, periodic=True, dtype=torch.float64)
        self.register_buffer("window", window.float(), persistent=False)
        self.conv_power = ConvPowerSpectrum(self.n_fft, self.hop, window)
        fb = mel_filterbank(
            frontend.sample_rate, self.n_fft, frontend.n_mels, frontend.f_min, frontend.f_max
        )
        self.register_buffer("mel_fb", fb, persistent=False)
        self.register_buffer("mean", torch.zeros(frontend.n_mels))
        self.register_buffer("std", torch.ones(frontend.n_mels))
        self.register_buffer("stats_count", torch.zeros((), dtype=torch.long))

    def power_spectrum(self, wave: torch.Tensor) -> torch.Tensor:
        """wave (B, N) -> |STFT|^2 (B, n_fft // 2 + 1, N // hop + 1)."""
        if self.stft == "conv" or (self.stft == "auto" and _exporting()):
            return self.conv_power(wave)
        spec = torch.stft(
            wave,
            self.n_fft,
            self.hop,
            self.frontend.win_samples,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        return spec.real.square() + spec.imag.square()

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """Un-normalised log-Mel: wave (B, N) float -> (B, n_mels, N // hop + 1)."""
        if wave.dim() != 2:
            raise ValueError(f"expected a wave batch of shape (B, N), got {tuple(wave.shape)}")
        if not _exporting() and wave.shape[-1] <= self.n_fft // 2:
            raise ValueError(f"wave of {wave.shape[-1]} samples: need > {self.n_fft // 2}")
        if _exporting():  # export graphs carry no autocast regions
            return self._log_mel(wave.float())
        with torch.autocast(wave.device.type, enabled=False):  # always fp32, even under bf16
            return self._log_mel(wave.float())

    def _log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        mel = torch.matmul(self.mel_fb, self.power_spectrum(wave))
        return torch.log(torch.clamp(mel, min=self.frontend.log_floor))

    def normalise(self, features: torch.Tensor) -> torch.Tensor:
        """Apply the config's normalisation to log-Mel (B, n_mels, T) (e.g. after cropping)."""
        mode = self.frontend.normalize
        if mode == "utterance":
            mean = features.mean(dim=-1, keepdim=True)
            centred = features - mean
            std = torch.sqrt(centred.square().mean(dim=-1, keepdim=True))
            return centred / (std + NORMALIZE_EPS)
        if mode == "global":
            if not _exporting() and int(self.stats_count) == 0:
                raise RuntimeError("normalize='global' needs statistics: call fit_global_stats")
            return (features - self.mean[:, None]) / (self.std[:, None] + NORMALIZE_EPS)
        return features

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """wave : (B, N) float, sample_rate Hz  ->  (B, n_mels, N // hop + 1) float32."""
        return self.normalise(self.log_mel(wave))

    @torch.no_grad()
    def fit_global_stats(self, features: torch.Tensor | Iterable[torch.Tensor]) -> None:
        """Set `mean`/`std` per mel bin from un-normalised log-Mel (`log_mel` outputs) of the
        training set: a tensor (B, n_mels, T) or an iterable of (B, n_mels, T) / (n_mels, T)."""
        batches = [features] if isinstance(features, torch.Tensor) else features
        total = torch.zeros(self.frontend.n_mels, dtype=torch.float64)
        squares = torch.zeros_like(total)
        count = 0
        for batch in batches:
            batch = torch.as_tensor(batch).to(torch.float64)
            batch = batch.reshape(-1, *batch.shape[-2:]).transpose(0, 1).flatten(1)
            total += batch.sum(dim=1)
            squares += batch.square().sum(dim=1)
            count += batch.shape[1]
        if count == 0:
            raise ValueError("fit_global_stats got no features")
        mean = total / count
        std = torch.sqrt(torch.clamp(squares / count - mean.square(), min=0.0))
        self.set_global_stats(mean, std, count)

    def set_global_stats(self, mean, std, count: int = 1) -> None:
        """Set global statistics (n_mels,) directly, e.g. from a checkpoint's meta."""
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32))
        self.stats_count.fill_(max(1, int(count)))

    def global_stats(self) -> dict:
        """{"mean": [...], "std": [...], "count": int} for JSON meta."""
        return {
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "count": int(self.stats_count),
        }


# --------------------------------------------------------------------------------------------
# Feature cache


def frontend_fingerprint(frontend: FrontEndConfig) -> str:
    """16 hex digits identifying every front-end setting (and the feature code version)."""
    fields = dataclasses.asdict(frontend) | {"features_version": FEATURES_VERSION}
    return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def _format_seconds(value: float | None) -> str:
    return "none" if value is None else f"{float(value):.6f}"


class FeatureCache:
    """On-disk cache of feature arrays, one `.npy` per (file content, start, duration, front end).

    Files live in `cache_dir/<frontend fingerprint>/<key[:2]>/<key>.npy` and are written
    atomically (temporary name, then os.replace), so concurrent writers and crashes are safe.
    A file's content hash is computed once per (path, mtime, size) and memoised in the object.
    """

    def __init__(self, cache_dir: str | os.PathLike, frontend: FrontEndConfig | None = None):
        self.frontend = frontend or FrontEndConfig()
        self.fingerprint = frontend_fingerprint(self.frontend)
        self.dir = Path(cache_dir).expanduser() / self.fingerprint
        self._hashes: dict[tuple[str, int, int], str] = {}

    def file_hash(self, path: str | os.PathLike) -> str:
        """sha1 of the file's bytes, memoised on (resolved path, mtime, size)."""
        resolved = Path(path).resolve()
        stat = resolved.stat()
        memo = (str(resolved), stat.st_mtime_ns, stat.st_size)
        if memo not in self._hashes:
            digest = hashlib.sha1()
            with open(resolved, "rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
            self._hashes[memo] = digest.hexdigest()
        return self._hashes[memo]

    def key(
        self, path: str | os.PathLike, start: float = 0.0, duration: float | None = None
    ) -> str:
        parts = (self.file_hash(path), _format_seconds(start), _format_seconds(duration))
        return hashlib.sha1("|".join((*parts, self.fingerprint)).encode()).hexdigest()

    def file_for(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.npy"

    def get(
        self, path: str | os.PathLike, start: float = 0.0, duration: float | None = None
    ) -> np.ndarray | None:
        """The cached array, or None when absent (or unreadable: it is then recomputed)."""
        file = self.file_for(self.key(path, start, duration))
        try:
            return np.load(file, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None

    def put(
        self,
        path: str | os.PathLike,
        start: float,
        duration: float | None,
        features: np.ndarray,
    ) -> Path:
        """Store `features` for the segment atomically; returns the cache file."""
        file = self.file_for(self.key(path, start, duration))
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.stem}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.save(handle, np.ascontiguousarray(features), allow_pickle=False)
            os.replace(tmp, file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return file

    def get_or_compute(
        self,
        path: str | os.PathLike,
        start: float,
        duration: float | None,
        compute: Callable[[], np.ndarray],
    ) -> np.ndarray:
        cached = self.get(path, start, duration)
        if cached is not None:
            return cached
        features = np.asarray(compute())
        self.put(path, start, duration, features)
        return features


def clip_features(
    path: str | os.PathLike,
    start: float = 0.0,
    duration: float | None = None,
    logmel: LogMel | None = None,
) -> np.ndarray:
    """Un-normalised log-Mel of a clip segment, padded (config's `pad`) to at least one window.

    Returns np.ndarray float32, shape = (n_mels, T) with T >= frontend.n_frames.
    Raises audio.AudioError for files that cannot be used.
    """
    from .audio import load_audio
    from .windows import fit_window

    logmel = logmel or LogMel()
    frontend = logmel.frontend
    wave = load_audio(path, frontend.sample_rate, start, duration)
    if len(wave) < frontend.window_samples:
        wave = fit_window(wave, frontend.window_samples, frontend.pad)
    with torch.no_grad():
        return logmel.log_mel(torch.from_numpy(wave)[None])[0].numpy()


def cached_features(
    path: str | os.PathLike,
    start: float = 0.0,
    duration: float | None = None,
    cache: FeatureCache | None = None,
    logmel: LogMel | None = None,
) -> np.ndarray:
    """`clip_features`, read from / written to `cache` when one is given."""
    if logmel is None:
        logmel = LogMel(cache.frontend if cache is not None else None)
    if cache is None:
        return clip_features(path, start, duration, logmel)
    if frontend_fingerprint(cache.frontend) != frontend_fingerprint(logmel.frontend):
        raise ValueError("the cache and the LogMel module have different front-end settings")
    try:
        cache.file_hash(path)
    except OSError:  # missing or unreadable: load_audio raises AudioError naming the reason
        return clip_features(path, start, duration, logmel)
    return cache.get_or_compute(
        path, start, duration, lambda: clip_features(path, start, duration, logmel)
    )


def features_for_clips(
    clips: Iterable[tuple[str | os.PathLike, float, float | None]],
    cache: FeatureCache | None = None,
    logmel: LogMel | None = None,
    progress: bool = True,
) -> tuple[list[np.ndarray | None], list[tuple[str, str]]]:
    """`cached_features` of many (path, start, duration) clips, with a progress bar.

    Returns (features, skipped): one (n_mels, T) array per clip, None where the clip could not
    be used, and (path, reason) for each of those; a bad file never stops the run.
    """
    from rich.progress import track

    from .audio import AudioError

    clips = list(clips)
    if logmel is None:
        logmel = LogMel(cache.frontend if cache is not None else None)
    features: list[np.ndarray | None] = []
    skipped: list[tuple[str, str]] = []
    for path, start, duration in track(clips, "log-Mel features", disable=not progress):
        try:
            features.append(cached_features(path, start, duration, cache, logmel))
        except AudioError as err:
            features.append(None)
            skipped.append((err.path, err.reason))
    return features, skipped
