"""Waveform augmentations that make a student hold up on other microphones and channels:
real background noise at a random SNR, codec round trips (Opus, AAC, MP3 through PyAV, as online
video and phones compress speech), telephone band-limiting and speed perturbation.

All take and return float32 mono at ``rate`` Hz with the input's length, so that they can be
chained before the log-Mel front end (``data.train_batch``). Settings: ``AugmentConfig``.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import soxr

# name -> (encoder, container, sample rate, sample format)
CODECS = {"opus": ("libopus", "ogg", 16000, "flt"), "aac": ("aac", "adts", 16000, "fltp"),
          "mp3": ("libmp3lame", "mp3", 16000, "fltp")}  # fmt: skip


def mix_at_snr(wave: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``wave`` + ``noise`` scaled so that power(wave) / power(noise) = ``snr_db`` dB; ``noise``
    (any length) is tiled or cut to the wave's length. A silent noise leaves the wave as it is."""
    noise = fit_length(np.asarray(noise, np.float32), len(wave))
    signal, background = float(np.mean(wave**2)), float(np.mean(noise**2))
    if signal <= 0 or background <= 0:
        return wave.astype(np.float32, copy=True)
    scale = math.sqrt(signal / (background * 10 ** (snr_db / 10)))
    return (wave + scale * noise).astype(np.float32)


def fit_length(wave: np.ndarray, n: int, offset: int = 0) -> np.ndarray:
    """``n`` samples of ``wave`` from ``offset`` on, tiled when it is shorter."""
    if len(wave) == 0:
        return np.zeros(n, np.float32)
    reps = -(-(offset + n) // len(wave))
    return np.tile(wave, reps)[offset : offset + n] if reps > 1 else wave[offset : offset + n]


def codec_round_trip(
    wave: np.ndarray, rate: int, codec: str = "opus", bitrate: int = 16000
) -> np.ndarray:
    """``wave`` encoded with ``codec`` ("opus" | "aac" | "mp3") at ``bitrate`` bit/s and decoded
    again, in memory, aligned and cut or padded to the input's length."""
    import av

    if codec not in CODECS:
        raise ValueError(f"codec must be one of {', '.join(CODECS)}, got {codec!r}")
    encoder, container_format, codec_rate, fmt = CODECS[codec]
    x = wave.astype(np.float32)
    if rate != codec_rate:
        x = soxr.resample(x, rate, codec_rate).astype(np.float32)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as container:
        stream = container.add_stream(encoder, rate=codec_rate)
        stream.bit_rate = bitrate
        stream.layout, stream.format = "mono", fmt
        size = stream.codec_context.frame_size or 1024
        for begin in range(0, len(x), size):
            block = x[begin : begin + size]
            frame = av.AudioFrame.from_ndarray(block[None, :], format=fmt, layout="mono")
            frame.sample_rate, frame.pts = codec_rate, begin
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    buffer.seek(0)
    parts = []
    with av.open(buffer, "r", format=container_format) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=codec_rate)
        for frame in container.decode(audio=0):
            parts += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
    y = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
    if rate != codec_rate:
        y = soxr.resample(y, codec_rate, rate).astype(np.float32)
    return _align(y, wave.astype(np.float32))


def _align(decoded: np.ndarray, original: np.ndarray, max_lag: int = 4096) -> np.ndarray:
    """``decoded`` shifted by the codec's delay (found by cross-correlation, 0..max_lag samples)
    and cut or padded to ``original``'s length."""
    n = len(original)
    if len(decoded) > n and np.any(original):
        lags = min(max_lag, len(decoded) - n)
        probe = original[: min(n, 8000)]
        scores = [float(np.dot(decoded[lag : lag + len(probe)], probe)) for lag in range(lags + 1)]
        decoded = decoded[int(np.argmax(scores)) :]
    out = np.zeros(n, np.float32)
    out[: min(n, len(decoded))] = decoded[:n]
    return out


def band_limit(wave: np.ndarray, rate: int, band_rate: int = 8000) -> np.ndarray:
    """Telephone band: resampled down to ``band_rate`` Hz (nothing above band_rate / 2 is kept)
    and back up, same length."""
    if band_rate >= rate:
        return wave.astype(np.float32, copy=True)
    low = soxr.resample(wave.astype(np.float32), rate, band_rate)
    return fit_length(soxr.resample(low, band_rate, rate).astype(np.float32), len(wave))


def change_speed(wave: np.ndarray, factor: float) -> np.ndarray:
    """Speed perturbation (tempo and pitch together, as Kaldi's): ``factor`` > 1 is faster and
    higher; the result is ``len(wave) / factor`` samples long."""
    if abs(factor - 1.0) < 1e-6:
        return wave.astype(np.float32, copy=True)
    return soxr.resample(wave.astype(np.float32), round(16000 * factor), 16000).astype(np.float32)


class NoiseBank:
    """Background recordings for ``mix_at_snr``: every audio file of a folder (recursive), or the
    rows of a manifest / clip table, read once at ``rate`` Hz mono. ``segment(rng, n)`` returns a
    random ``n``-sample stretch of a random recording."""

    def __init__(self, source: str | Path, rate: int = 16000):
        from liser.audio import AudioError, load_audio

        source = Path(source).expanduser()
        paths = self._paths(source)
        self.noises = []
        for path in paths:
            try:
                self.noises.append(load_audio(path, rate, min_seconds=0.1))
            except AudioError:  # silent or unreadable: a noise that adds nothing
                continue
        if not self.noises:
            raise ValueError(f"{source}: no usable noise recording (augment.noise_dir)")

    @staticmethod
    def _paths(source: Path) -> list[Path]:
        if source.is_dir():
            from liser.constants import AUDIO_EXTENSIONS
            from liser.media import list_media

            return list_media(source, AUDIO_EXTENSIONS)
        if source.suffix.lower() in (".csv", ".tsv", ".parquet", ".jsonl"):
            from liser.manifest import read_manifest, table_manifest

            df = (
                read_manifest(source)
                if source.suffix == ".jsonl"
                else table_manifest(source, measure=False)
            )
            return [Path(p) for p in df["path"]]
        raise FileNotFoundError(f"{source}: no noise folder or table (augment.noise_dir)")

    def __len__(self) -> int:
        return len(self.noises)

    def segment(self, rng: np.random.Generator, n: int) -> np.ndarray:
        noise = self.noises[int(rng.integers(len(self.noises)))]
        offset = int(rng.integers(max(1, len(noise))))
        return fit_length(noise, n, offset % max(1, len(noise)))


# --------------------------------------------------------------------------------------------
# Training examples (data.train_batch)


def channel_on(augment) -> bool:
    """True when an ``AugmentConfig`` asks for any augmentation of this module."""
    return bool(augment.noise_dir or augment.codec_prob > 0 or augment.band_limit_prob > 0
                or augment.speed > 0)  # fmt: skip


def draw_channel(rng: np.random.Generator, n: int, augment, draws: dict) -> None:
    """Add this module's random draws for ``n`` examples to ``draws`` (only those that are on,
    so that the other draws of a run keep their values)."""
    if augment.noise_dir:
        draws["bg"] = rng.random(n) < augment.noise_prob
        draws["bg_snr"] = rng.uniform(*augment.noise_snr_range, n)
        draws["bg_seed"] = rng.integers(0, 2**31, n)
    if augment.codec_prob > 0:
        draws["codec"] = np.where(rng.random(n) < augment.codec_prob,
                                  rng.integers(0, len(augment.codecs), n), -1)  # fmt: skip
    if augment.band_limit_prob > 0:
        draws["band"] = rng.random(n) < augment.band_limit_prob
    if augment.speed > 0:
        draws["speed"] = rng.uniform(1 - augment.speed, 1 + augment.speed, n)
    if augment.short_prob > 0:
        draws["short"] = rng.random(n) < augment.short_prob
        draws["short_seconds"] = rng.uniform(*sorted(augment.short_seconds), n)
        draws["short_at"] = rng.random(n)


def short_utterance(x: np.ndarray, j: int, draws: dict, per_second: float, pad: str, floor=0.0):
    """Example ``j``'s window (last axis: time, ``per_second`` steps a second) cut to a random
    stretch of ``draws["short_seconds"][j]`` and padded back to its length as a short clip is
    (``pad``: "repeat" tiles it, "zero" fills with ``floor``); unchanged unless drawn."""
    if "short" not in draws or not draws["short"][j]:
        return x
    n = x.shape[-1]
    length = max(1, min(n, round(float(draws["short_seconds"][j]) * per_second)))
    at = min(int(float(draws["short_at"][j]) * (n - length + 1)), n - length)
    piece = x[..., at : at + length]
    if pad == "repeat":
        reps = -(-n // length)
        return np.tile(piece, (1,) * (x.ndim - 1) + (reps,))[..., :n]
    out = np.full_like(x, floor)
    out[..., :length] = piece
    return out


def codec_variants(waves: list[np.ndarray], augment, rate: int, progress=None) -> list[list]:
    """For each codec of ``augment.codecs``, every clip after a round trip (made once, before
    training): ``variants[codec][clip]``."""
    from concurrent.futures import ThreadPoolExecutor

    variants = []
    for codec in augment.codecs:
        task = progress.add_task(f"{codec} round trips", total=len(waves)) if progress else None

        def one(wave, codec=codec, task=task):
            out = codec_round_trip(wave, rate, codec, augment.codec_bitrate)
            if task is not None:
                progress.advance(task)
            return out

        with ThreadPoolExecutor(2) as pool:
            variants.append(list(pool.map(one, waves)))
        if task is not None:
            progress.remove_task(task)
    return variants


def channel_example(wave: np.ndarray, j: int, draws: dict, rate: int, noise: NoiseBank | None):
    """Example ``j``'s window after band-limiting and background noise (the whole-clip steps,
    codec and speed, come before cropping: ``clip_source``)."""
    if draws.get("band") is not None and draws["band"][j]:
        wave = band_limit(wave, rate)
    if noise is not None and draws["bg"][j]:
        rng = np.random.default_rng(int(draws["bg_seed"][j]))
        wave = mix_at_snr(wave, noise.segment(rng, len(wave)), float(draws["bg_snr"][j]))
    return wave


def clip_source(clip: np.ndarray, j: int, draws: dict, variants, i: int) -> np.ndarray:
    """The whole clip ``i`` that example ``j`` is cut from: a codec variant and / or at another
    speed when drawn."""
    if variants is not None and draws["codec"][j] >= 0:
        clip = variants[int(draws["codec"][j])][i]
    if "speed" in draws:
        clip = change_speed(clip, float(draws["speed"][j]))
    return clip
