"""Small synthetic builders and paths for tests, benchmarks and examples (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .constants import SAMPLE_RATE


def shared_dir() -> Path | None:
    """The real-data folder ``../shared`` (or ``$LISER_SHARED``), or None when absent."""
    env = os.environ.get("LISER_SHARED")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[1].parent / "shared")
    candidates.append(Path.cwd().parent / "shared")
    for path in candidates:
        if (path / "README.md").exists():
            return path
    return None


def tone(
    seconds: float = 1.0,
    freq: float = 220.0,
    sample_rate: int = SAMPLE_RATE,
    amplitude: float = 0.3,
    seed: int = 0,
) -> np.ndarray:
    """A sine tone with a little seeded noise, float32 mono, shape = (round(seconds * rate),)."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    wave = amplitude * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    return wave.astype(np.float32)


def face_photo() -> np.ndarray:
    """A real face photo that ships with matplotlib (Grace Hopper): RGB uint8 (600, 512, 3)."""
    import matplotlib.cbook

    from .video_io import read_image

    return read_image(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def face_video(
    path: str | Path,
    seconds: float = 4.0,
    fps: float = 10.0,
    face_until: float | None = None,
    size: tuple[int, int] = (240, 320),
    audio: np.ndarray | None = None,
) -> Path:
    """Write a video of the face photo drifting over a gray background (then a blank background
    from ``face_until`` seconds on), with optional 16 kHz audio. size = (height, width)."""
    import cv2

    from .video_io import write_video

    height, width = size
    face = cv2.resize(face_photo(), (int(height * 0.7), int(height * 0.8)))
    n = round(seconds * fps)

    def frames():
        for i in range(n):
            frame = np.full((height, width, 3), 96, np.uint8)
            if face_until is None or i / fps < face_until:
                x = int((width - face.shape[1]) * (0.3 + 0.4 * i / max(n - 1, 1)))
                y = (height - face.shape[0]) // 2
                frame[y : y + face.shape[0], x : x + face.shape[1]] = face
            yield frame

    return write_video(path, frames(), fps=fps, audio=audio)


class TinyAudioTeacher:
    """A deterministic stand-in audio teacher (no weights to download): a seeded linear map of
    band energies of each window, softmaxed. ``predict(waves (B, N)) -> (B, C)`` float32;
    ``delay`` seconds of sleep per call simulate a slow model."""

    def __init__(self, n_classes: int = 4, seed: int = 0, delay: float = 0.0):
        self.classes = tuple(f"class{i}" for i in range(n_classes))
        self.fingerprint = f"tiny-audio-{n_classes}-{seed}"
        self.spec = None
        self.delay = delay
        self.weights = np.random.default_rng(seed).normal(size=(8, n_classes)).astype(np.float32)

    def predict(self, waves: np.ndarray) -> np.ndarray:
        import time

        time.sleep(self.delay)
        waves = np.asarray(waves, dtype=np.float32)
        spectrum = np.abs(np.fft.rfft(waves[:, : 1 << 14], axis=1)) ** 2
        bands = np.log1p(np.stack([b.sum(1) for b in np.array_split(spectrum, 8, axis=1)], 1))
        logits = (bands - bands.mean(1, keepdims=True)) @ self.weights
        logits -= logits.max(1, keepdims=True)
        probs = np.exp(logits)
        return (probs / probs.sum(1, keepdims=True)).astype(np.float32)


class TinyVideoTeacher:
    """A deterministic stand-in video teacher: a frame "has a face" when 3 % of its pixels are
    skin-coloured; per-frame probabilities from mean colours, averaged over the window.
    ``predict_window(frames, times) -> (probs (C,) or None, face coverage)``."""

    def __init__(self, n_classes: int = 7, min_face_coverage: float = 0.5, seed: int = 0):
        self.classes = tuple(f"face{i}" for i in range(n_classes))
        self.fingerprint = f"tiny-video-{n_classes}-{seed}-{min_face_coverage}"
        self.spec = None
        self.min_face_coverage = min_face_coverage
        self.weights = np.random.default_rng(seed).normal(size=(3, n_classes)).astype(np.float32)

    def predict_window(self, frames, times) -> tuple[np.ndarray | None, float]:
        if len(frames) == 0:
            return None, 0.0
        faces, probs = [], []
        for frame in frames:
            rgb = frame.astype(np.float32)
            r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
            skin = (r > 95) & (g > 40) & (b > 20) & (r > g + 15) & (r > b)
            faces.append(skin.mean() > 0.03)
            logits = rgb.reshape(-1, 3).mean(0) / 255.0 @ self.weights
            p = np.exp(logits - logits.max())
            probs.append(p / p.sum())
        coverage = float(np.mean(faces))
        if coverage < self.min_face_coverage:
            return None, coverage
        return np.mean([p for p, f in zip(probs, faces) if f], axis=0).astype(np.float32), coverage


def tiny_hubert(folder: str | Path, seed: int = 0) -> Path:
    """A randomly initialised 2-layer HuBERT (hidden 32) saved with ``save_pretrained``, plus a
    feature-extractor config, in ``folder``: a stand-in for ``facebook/hubert-base-ls960``."""
    import torch
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    torch.manual_seed(seed)
    config = HubertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16),
        conv_stride=(5, 4, 4),
        conv_kernel=(10, 8, 4),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        mask_time_prob=0.0,
        layerdrop=0.0,
    )
    folder = Path(folder)
    HubertModel(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False).save_pretrained(folder)
    return folder


def tiny_whisper_ct2(folder: str | Path, n_mels: int = 80, d_model: int = 32, n_layers: int = 2, n_heads: int = 2, seed: int = 0) -> Path:
    """A random-weight Whisper encoder written as a CTranslate2 folder (``model.bin`` in the real
    format, fp16 weights, plus ``config.json``); returns the folder."""
    import json

    import torch
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from .teachers.ct2 import whisper_encoder_to_ct2, write_ct2

    torch.manual_seed(seed)
    config = WhisperConfig(
        num_mel_bins=n_mels,
        d_model=d_model,
        encoder_layers=n_layers,
        encoder_attention_heads=n_heads,
        encoder_ffn_dim=4 * d_model,
        decoder_layers=1,
    )
    encoder = WhisperEncoder(config)
    with torch.no_grad():  # random biases and norms too, so a mapping mistake shows
        for name, param in encoder.named_parameters():
            if name != "embed_positions.weight":
                param.normal_(0.0, 0.2 if param.dim() > 1 else 0.5)
    state = {k: v.half() for k, v in encoder.state_dict().items()}
    variables = whisper_encoder_to_ct2(state, n_heads)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_ct2(folder / "model.bin", variables)
    (folder / "config.json").write_text(json.dumps({"suppress_ids": [], "lang_ids": []}))
    return folder
