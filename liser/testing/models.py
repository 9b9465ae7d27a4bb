"""Tiny teachers, encoders, checkpoints, stores and configs that tests build in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


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
    ``predict_window(frames, times) -> (probs (C,) or None, face coverage)``, and the labeling
    interface of ``VideoTeacher``: ``clip_faces(path, start, end)``, ``window_labels(...)``."""

    def __init__(self, n_classes: int = 7, min_face_coverage: float = 0.5, seed: int = 0):
        self.classes = tuple(f"face{i}" for i in range(n_classes))
        self.fingerprint = f"tiny-video-{n_classes}-{seed}-{min_face_coverage}"
        self.spec = None
        self.min_face_coverage = min_face_coverage
        self.weights = np.random.default_rng(seed).normal(size=(3, n_classes)).astype(np.float32)

    frame_rate = 5.0

    def _frame(self, frame) -> tuple[bool, np.ndarray]:
        rgb = frame[::4, ::4].astype(np.float32)  # a quarter of the resolution is enough
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        skin = (r > 95) & (g > 40) & (b > 20) & (r > g + 15) & (r > b)
        logits = rgb.reshape(-1, 3).mean(0) / 255.0 @ self.weights
        p = np.exp(logits - logits.max())
        return bool(skin.mean() > 0.03), p / p.sum()

    def _pool(self, flags, probs) -> tuple[np.ndarray | None, float]:
        if len(flags) == 0:
            return None, 0.0
        coverage = float(np.mean(flags))
        if coverage < self.min_face_coverage:
            return None, coverage
        chosen = [p for p, f in zip(probs, flags, strict=True) if f]
        return np.mean(chosen, axis=0).astype(np.float32), coverage

    def predict_window(self, frames, times) -> tuple[np.ndarray | None, float]:
        seen = [self._frame(f) for f in frames]
        return self._pool([s[0] for s in seen], [s[1] for s in seen])

    def clip_faces(self, path, start: float = 0.0, end: float | None = None):
        """(times (T,), face flags, probabilities) of the clip's frames sampled at 5 fps."""
        from liser.video_io import iter_frames

        seen = [(t, *self._frame(f)) for t, f in iter_frames(path, self.frame_rate, start, end)]
        return np.array([s[0] for s in seen]), [s[1] for s in seen], [s[2] for s in seen]

    def window_labels(self, faces, starts, ends) -> list[dict]:
        from liser.teachers.clip_faces import window_label

        out = []
        for start, end in zip(starts, ends, strict=True):
            if faces is None:
                out.append(window_label(absent="no video stream"))
                continue
            times, flags, probs = faces
            inside = np.flatnonzero((times >= start - 1e-9) & (times < end - 1e-9))
            p, coverage = self._pool([flags[i] for i in inside], [probs[i] for i in inside])
            seen = int(any(flags[i] for i in inside))
            out.append(window_label(p, coverage, None, seen, None if p is not None else "no face"))
        return out


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


def tiny_whisper_ct2(
    folder: str | Path,
    n_mels: int = 80,
    d_model: int = 32,
    n_layers: int = 2,
    n_heads: int = 2,
    seed: int = 0,
) -> Path:
    """A random-weight Whisper encoder written as a CTranslate2 folder (``model.bin`` in the real
    format, fp16 weights, plus ``config.json``); returns the folder."""

    import torch
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from liser.teachers.ct2 import whisper_encoder_to_ct2, write_ct2

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

    from liser.features import LogMel
    from liser.store import ShardWriter, new_header, write_header
    from liser.windows import fit_window

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
            compute = logmel.log_mel if frontend.normalize == "global" else logmel  # raw: store.py
            features = compute(torch.from_numpy(fitted)[None])[0].numpy().astype(np.float16)
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

    from liser.checkpoint import save_checkpoint
    from liser.config import FrontEndConfig, StudentConfig
    from liser.student import Student

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


def tiny_fer_model(folder: str | Path, seed: int = 0) -> Path:
    """A random TorchScript facial-expression model (7 FER classes, 16x16 gray crops) with its
    ``classes.json``, in ``folder``: a stand-in for the mini-Xception."""

    import torch

    from liser.constants import FER_CLASSES

    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, len(FER_CLASSES)))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.jit.script(net).save(str(folder / "fer.pt"))
    spec = {"classes": list(FER_CLASSES), "input": {"size": [16, 16], "color": "gray"}}
    (folder / "classes.json").write_text(json.dumps(spec))
    return folder


def haar_face_detector() -> Path:
    """OpenCV's frontal-face Haar cascade, shipped with opencv-python."""
    import cv2

    return Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"


def tiny_train_config(manifest: str | Path, output_dir: str | Path, **changes) -> dict:
    """A ``TrainConfig`` as a plain dict (for YAML files and ``config.from_dict``) that trains a
    ~2 k-parameter student on a toy corpus (``emotion_tones``) in seconds on one CPU thread:
    32 mels, conv (4, 8), LSTM 8, 2 speaker folds, 3 epochs of batch 8, fp32, no feature cache.
    ``changes``: dotted keys, e.g. ``**{"optim.epochs": 5}``."""
    config = {
        "name": "tiny", "output_dir": str(output_dir), "seed": 0, "device": "cpu",
        "precision": "fp32", "num_threads": 1, "frontend": {"n_mels": 32},
        "student": {"conv_channels": [4, 8], "lstm_hidden": 8},
        "data": {"manifest": str(manifest), "folds": "speaker", "n_folds": 2, "fold": 1,
                 "val_fraction": 0.3, "cache_dir": ""},
        "optim": {"epochs": 3, "batch_size": 8, "patience": 0},
    }  # fmt: skip
    for key, value in changes.items():
        node = config
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return config
