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


# --------------------------------------------------------------------------------------------
# Toy emotion corpus and soft-label stores (training tests and benchmarks)


def emotion_tone(
    label: int,
    seconds: float = 1.0,
    shift: float = 0.0,
    distractors: int = 2,
    seed: int = 0,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """One clip of a toy emotion task: class ``label`` is a tone pulsed at ``4 * 1.5**label`` Hz
    (scaled by ``2**shift``, e.g. a speaker's tempo), at a random pitch, under ``distractors``
    louder tones at random pitches switching on and off at random slower rates, and noise. The
    class is in the temporal pattern, which survives per-utterance normalisation of each mel band
    and a frequency-invariant CNN. float32 mono, shape = (round(seconds * sample_rate),)."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    rate = 4.0 * 1.5**label * 2**shift
    pulses = (np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)) > 0).astype(float)
    pitch = 2 ** rng.uniform(np.log2(200), np.log2(2000))
    wave = 0.15 * pulses * np.sin(2 * np.pi * pitch * t)
    for _ in range(distractors):
        freq = 2 ** rng.uniform(np.log2(150), np.log2(5000))
        gate = (np.sin(2 * np.pi * rng.uniform(0.5, 2) * t + rng.uniform(0, 6.3)) > 0).astype(float)
        wave += 0.25 * gate * np.sin(2 * np.pi * freq * t)
    wave += 0.02 * rng.standard_normal(t.size)
    return wave.astype(np.float32)


def emotion_tones(
    folder: str | Path,
    n_speakers: int = 6,
    clips_per_class: int = 4,
    n_classes: int = 4,
    seconds: tuple[float, float] = (0.6, 0.9),
    distractors: int = 2,
    seed: int = 0,
):
    """Write a labeled toy corpus of ``emotion_tone`` clips as 16 kHz wav files in ``folder``
    (speakers ``spk0..``, each with its own pitch shift, ``clips_per_class`` clips per class) and
    return its manifest (``id, path, start, duration, speaker, label, corpus``; classes
    ``class0..``)."""
    import pandas as pd
    import soundfile as sf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for speaker in range(n_speakers):
        shift = rng.uniform(-0.125, 0.125)
        for label in range(n_classes):
            for k in range(clips_per_class):
                clip_id = f"spk{speaker}-c{label}-{k}"
                wave = emotion_tone(
                    label, rng.uniform(*seconds), shift, distractors, int(rng.integers(2**31))
                )
                path = folder / f"{clip_id}.wav"
                sf.write(path, wave, SAMPLE_RATE)
                rows.append(dict(id=clip_id, path=str(path.absolute()), start=0.0,
                                 duration=len(wave) / SAMPLE_RATE, speaker=f"spk{speaker}",
                                 label=f"class{label}", corpus="tones"))  # fmt: skip
    return pd.DataFrame(rows)


def soft_label_store(
    folder: str | Path,
    frontend,
    waves: list[np.ndarray],
    audio_probs: list | None = None,
    video_probs: list | None = None,
    audio_classes: tuple[str, ...] = (),
    video_classes: tuple[str, ...] = (),
    temperature: float | None = None,
    shard_windows: int = 64,
) -> Path:
    """A soft-label store of one window per wave (``fit_window`` to ``frontend.window_samples``),
    features from ``LogMel(frontend)``, and the given teacher probabilities per window (a row of
    None: no output from that teacher). Teachers are named "test-audio" / "test-video"."""
    import torch

    from .audio import fit_window
    from .features import LogMel
    from .store import ShardWriter, new_header, write_header

    folder = Path(folder)
    header = new_header(frontend, frontend.window_seconds, frontend.window_seconds, 0.0)
    for kind, classes in (("audio", audio_classes), ("video", video_classes)):
        if classes:
            header["teachers"][kind] = {"spec": None, "classes": list(classes),
                                        "fingerprint": f"test-{kind}", "temperature": temperature}  # fmt: skip
    write_header(folder, header)
    logmel = LogMel(frontend)
    writer = ShardWriter(folder, shard_windows)
    n = len(waves)
    audio_probs = audio_probs if audio_probs is not None else [None] * n
    video_probs = video_probs if video_probs is not None else [None] * n
    for i, wave in enumerate(waves):
        fitted = fit_window(wave, frontend.window_samples, frontend.pad)
        with torch.no_grad():
            features = logmel(torch.from_numpy(fitted)[None])[0].numpy().astype(np.float16)
        a, v = audio_probs[i], video_probs[i]
        clip = f"window{i}"
        writer.add({
            "window_id": [f"{clip}-0"], "clip": [clip], "source": [clip], "start": [0.0],
            "end": [frontend.window_seconds], "features": [features.tobytes()],
            "audio_probs": [None if a is None else list(map(float, a))],
            "audio_confidence": [None if a is None else float(max(a))],
            "audio_teacher": [None if a is None else "test-audio"],
            "video_probs": [None if v is None else list(map(float, v))],
            "video_confidence": [None if v is None else float(max(v))],
            "video_teacher": [None if v is None else "test-video"],
            "face_coverage": [None if v is None else 1.0],
        })  # fmt: skip
        writer.complete(clip)
        if writer.full():
            writer.flush()
    writer.close()
    return folder


def student_checkpoint(
    folder: str | Path,
    classes: tuple[str, ...] = ("angry", "happy", "neutral", "sad"),
    frontend=None,
    student=None,
    seed: int = 0,
) -> Path:
    """A checkpoint of a freshly initialised student (random BatchNorm statistics, so that
    train and eval modes differ), saved with ``save_checkpoint``. Returns the folder."""
    import dataclasses

    import torch

    from .checkpoint import save_checkpoint
    from .config import FrontEndConfig, StudentConfig
    from .student import Student

    frontend = frontend or FrontEndConfig()
    student = student or StudentConfig()
    student = dataclasses.replace(student, n_classes=len(classes))
    torch.manual_seed(seed)
    model = Student(student, frontend)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    meta = {"classes": list(classes), "seed": seed, "metrics": {}}
    return save_checkpoint(folder, model, meta)
