"""Small synthetic builders and paths for tests, benchmarks and examples (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

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
            rgb = frame[::4, ::4].astype(np.float32)  # a quarter of the resolution is enough
            r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
            skin = (r > 95) & (g > 40) & (b > 20) & (r > g + 15) & (r > b)
            faces.append(skin.mean() > 0.03)
            logits = rgb.reshape(-1, 3).mean(0) / 255.0 @ self.weights
            p = np.exp(logits - logits.max())
            probs.append(p / p.sum())
        coverage = float(np.mean(faces))
        if coverage < self.min_face_coverage:
            return None, coverage
        return np.mean([p for p, f in zip(probs, faces, strict=True) if f], axis=0).astype(
            np.float32
        ), coverage


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
    noise: float = 0.02,
    variants: int = 1,
) -> np.ndarray:
    """One clip of a toy emotion task: events repeated every 0.25 s at a random pitch (moved by
    ``shift`` octaves, e.g. a speaker's voice), under ``distractors`` louder steady tones at
    random pitches switching on and off slowly, and white noise of standard deviation ``noise``.

    Event shapes: 0 rising one-octave sweeps, 1 falling sweeps, 2 tone pulses, 3 noise bursts.
    ``variants=1``: class ``label`` has shape ``label % 4``, each further 4 classes 1.5 times
    faster. ``variants=2`` (two classes): each clip draws one of two shapes of its class, class 0
    rising sweeps or tone pulses, class 1 falling sweeps or noise bursts, so one labeled clip per
    class shows only half of the class. The classes live in local time-frequency patterns, which
    survive per-utterance normalisation of each mel band.
    float32 mono, shape = (round(seconds * sample_rate),)."""
    if variants not in (1, 2) or (variants == 2 and label not in (0, 1)):
        raise ValueError(f"variants=2 needs label 0 or 1, got variants={variants}, label={label}")
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    kind = label % 4 if variants == 1 else label + 2 * int(rng.integers(2))
    period = 0.25 / 1.5 ** (label // 4)  # seconds from one event to the next
    phase = (t / period + rng.uniform()) % 1.0  # position in the current event, 0..1
    on = phase < 0.6
    base = 2 ** (rng.uniform(np.log2(250), np.log2(1500)) + shift)
    if kind in (0, 1):  # sweeps: instantaneous frequency base * 2**(phase / 0.6) (or falling)
        octave = np.clip(phase / 0.6, 0, 1) if kind == 0 else 1 - np.clip(phase / 0.6, 0, 1)
        event = np.sin(2 * np.pi * np.cumsum(base * 2**octave) / sample_rate)
    elif kind == 2:
        event = np.sin(2 * np.pi * base * t)
    else:
        event = 0.7 * rng.standard_normal(t.size)
    wave = 0.15 * on * event
    for _ in range(distractors):
        freq = 2 ** rng.uniform(np.log2(150), np.log2(5000))
        gate = (np.sin(2 * np.pi * rng.uniform(0.5, 2) * t + rng.uniform(0, 6.3)) > 0).astype(float)
        wave += 0.25 * gate * np.sin(2 * np.pi * freq * t)
    wave += noise * rng.standard_normal(t.size)
    return wave.astype(np.float32)


def emotion_tones(
    folder: str | Path,
    n_speakers: int = 6,
    clips_per_class: int = 4,
    n_classes: int = 4,
    seconds: tuple[float, float] = (0.6, 0.9),
    distractors: int = 2,
    seed: int = 0,
    noise: float = 0.02,
    variants: int = 1,
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
                duration, clip_seed = rng.uniform(*seconds), int(rng.integers(2**31))
                wave = emotion_tone(
                    label, duration, shift, distractors, clip_seed, noise=noise, variants=variants
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

    from liser.store import ShardWriter, new_header, write_header

    from .audio import fit_window
    from .features import LogMel

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


# --------------------------------------------------------------------------------------------
# Bad-input corpora (tests/test_bad_inputs.py): the files real users throw at liser


class BadInput(NamedTuple):
    """One file of a bad-input corpus.

    reason : a regular expression found in the reason (``AudioError.reason``, ``VideoError``)
        the file must be rejected with, or None when it must be used.
    seconds : for a usable file, (min, max) seconds its decoded audio must last.
    """

    path: Path
    reason: str | None
    seconds: tuple[float, float] | None = None


def _encoded(wave: np.ndarray, rate: int, format: str, subtype: str | None = None) -> bytes:
    """``wave`` (N,) or (N, C) encoded by soundfile, as bytes."""
    import io

    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format=format, subtype=subtype)
    return buffer.getvalue()


def _wav_with_format_tag(tag: int = 0x1234, seconds: float = 0.5) -> bytes:
    """A WAV whose 'fmt ' chunk names a codec (format tag) that nothing decodes."""
    import struct

    data = bytes(2 * round(seconds * SAMPLE_RATE))
    fmt = struct.pack("<HHIIHH", tag, 1, SAMPLE_RATE, 2 * SAMPLE_RATE, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def bad_audio_corpus(folder: str | Path) -> list[BadInput]:
    """Write ~25 awkward audio files into ``folder`` (each under 100 kB) and return them with the
    expected outcome of ``audio.load_audio``: broken files (0 bytes, header only, NaN/Inf samples,
    digital silence, 0.05 s, text, random bytes, an unknown codec, a dangling link) with the reason,
    and odd but usable ones (truncated mid-frame, clipped, 8 / 96 kHz, 6 channels, 0.1 s, wrong
    extensions, unicode and spaces in the path) with the length they must decode to."""
    import os

    import soundfile as sf

    from .video_io import write_video

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[BadInput] = []

    def add(name: str, reason: str | None, seconds=None) -> Path:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        cases.append(BadInput(path, reason, seconds))
        return path

    def exactly(seconds: float) -> tuple[float, float]:
        return (seconds - 1e-3, seconds + 1e-3)

    one = tone(1.0, 440.0)
    # broken: rejected, named, with the reason
    add("empty.wav", "0 bytes").write_bytes(b"")
    sf.write(add("header_only.wav", "no audio samples"), np.zeros(0, np.float32), SAMPLE_RATE)
    add("text.wav", "cannot decode").write_text("this is not audio\n" * 40)
    add("random_bytes.mp3", "cannot decode").write_bytes(np.random.default_rng(1).bytes(6000))
    add("unknown_codec.wav", "cannot decode").write_bytes(_wav_with_format_tag())
    for name, value, at in (("nan.wav", np.nan, 100), ("inf.wav", -np.inf, 12000)):
        wave = one.copy()
        wave[at] = value
        add(name, "NaN or Inf").write_bytes(_encoded(wave, SAMPLE_RATE, "WAV", "FLOAT"))
    sf.write(add("all_zeros.wav", "silent"), np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    # a float stereo file whose channels cancel: the down-mix (their mean) is digital silence
    cancel = np.stack([one, -one], axis=1)
    add("opposite_phase.wav", "silent").write_bytes(_encoded(cancel, SAMPLE_RATE, "WAV", "FLOAT"))
    sf.write(add("too_short.wav", "too short"), tone(0.05, 440.0), SAMPLE_RATE)
    os.symlink(folder / "no_such_target.wav", add("dangling_link.wav", "not found"))

    # odd but usable: the right length, finite, in [-1, 1]
    two = tone(2.0, 440.0)
    flac = _encoded(two, SAMPLE_RATE, "FLAC")
    add("truncated_mid_frame.flac", None, (0.5, 1.5)).write_bytes(flac[: len(flac) // 2 + 7])
    wav = _encoded(two, SAMPLE_RATE, "WAV", "PCM_16")  # 44-byte header, then 2-byte samples
    add("truncated_mid_sample.wav", None, (0.999, 1.001)).write_bytes(
        wav[: 44 + 2 * SAMPLE_RATE + 1]
    )
    ogg = add("truncated.ogg", None, (0.5, 2.0))
    sf.write(ogg, tone(4.0, 440.0), SAMPLE_RATE, format="OGG", subtype="VORBIS")
    ogg.write_bytes(ogg.read_bytes()[: ogg.stat().st_size // 2])
    clipped = np.clip(tone(1.0, 440.0, amplitude=3.0), -1.0, 1.0)
    sf.write(add("clipped_full_scale.wav", None, exactly(1.0)), clipped, SAMPLE_RATE, "PCM_16")
    sf.write(add("rate_8000.wav", None, exactly(1.0)), tone(1.0, 440.0, 8000), 8000)
    sf.write(add("rate_96000.flac", None, exactly(1.0)), tone(1.0, 440.0, 96000), 96000)
    gains = np.array([1.0, 0.5, 0.25, -0.25, 0.8, 0.1], np.float32)  # mean 0.4
    sf.write(add("six_channels.wav", None, exactly(1.0)), one[:, None] * gains, SAMPLE_RATE)
    sf.write(add("tenth_second.wav", None, exactly(0.1)), tone(0.1, 440.0), SAMPLE_RATE)
    add("flac_named.wav", None, exactly(1.0)).write_bytes(_encoded(one, SAMPLE_RATE, "FLAC"))
    add("wav_named.mp4", None, exactly(1.0)).write_bytes(_encoded(one, SAMPLE_RATE, "WAV"))
    aac = write_video(folder / "aac.m4a", audio=one)
    os.replace(aac, add("aac_named.wav", None, (0.99, 1.1)))  # AAC adds encoder padding
    unicode = add("ünïcødé ördner/clip with spaces — 日本語 ☺.wav", None, exactly(1.0))
    sf.write(unicode, one, SAMPLE_RATE)
    return cases


def symlink_loop(folder: str | Path) -> Path:
    """A folder tree with symlinks pointing back up (``loop/inner/up -> ..``, ``loop/self -> .``)
    and one 1 s clip inside; listing it must end and find the clip once. Returns ``loop``."""
    import os

    import soundfile as sf

    loop = Path(folder) / "loop"
    (loop / "inner").mkdir(parents=True, exist_ok=True)
    sf.write(loop / "inner" / "inside_loop.wav", tone(1.0, 330.0), SAMPLE_RATE)
    os.symlink("..", loop / "inner" / "up")
    os.symlink(".", loop / "self")
    return loop


def long_audio(path: str | Path, seconds: float = 7200.0, rate: int = 8000) -> Path:
    """A long quiet FLAC (a -54 dBFS tone, ~2 kB/s) written block by block in bounded memory:
    2 hours take ~16 MB on disk and a few seconds to write."""
    import soundfile as sf

    block = 60 * rate
    wave = (0.002 * np.sin(2 * np.pi * 220.0 * np.arange(block) / rate)).astype(np.float32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(path, "w", rate, 1, "PCM_16") as out:
        left = round(seconds * rate)
        while left > 0:
            out.write(wave[: min(block, left)])
            left -= block
    return path


def _mux_frames(
    path: Path,
    frames,
    times,
    audio: np.ndarray | None,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    audio_codec: str = "aac",
    rotation: int = 0,
) -> Path:
    """Frames (RGB uint8, all one size) shown at ``times`` seconds (any spacing: variable frame
    rate), optional 16 kHz mono audio, written with PyAV."""  # fmt: skip
    from fractions import Fraction

    import av

    with av.open(str(path), "w") as container:
        height, width = frames[0].shape[:2]
        video = container.add_stream(codec, rate=25)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            video.set_display_rotation(rotation)
        sound = None
        if audio is not None:
            sound = container.add_stream(audio_codec, rate=SAMPLE_RATE)
            sound.layout = "mono"
        for frame, seconds in zip(frames, times, strict=True):
            image = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            image.pts, image.time_base = round(seconds * 1000), Fraction(1, 1000)
            container.mux(video.encode(image))
        container.mux(video.encode(None))
        if sound is not None:
            size = sound.codec_context.frame_size  # 0: any frame size (PCM)
            pcm = np.pad(audio, (0, -len(audio) % size if size else 0)).astype(np.float32)
            size = size or 1024
            for offset in range(0, len(pcm), size):
                chunk = pcm[offset : offset + size][None]
                if sound.codec_context.format.name.startswith("s16"):
                    block = av.AudioFrame.from_ndarray(
                        (chunk * 32767).astype(np.int16), "s16", "mono"
                    )
                else:
                    block = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                block.sample_rate, block.pts = SAMPLE_RATE, offset
                block.time_base = Fraction(1, SAMPLE_RATE)
                container.mux(sound.encode(block))
            container.mux(sound.encode(None))
    return path


def bad_video_corpus(folder: str | Path) -> list[BadInput]:
    """Write awkward videos (3.5 s, tiny) into ``folder`` and return them with the expected outcome
    of labeling them (``reason``: why the file is skipped; None: it is labeled, its audio lasting
    ``seconds``). No audio stream, no video stream, variable frame rate, rotated 90 degrees (the
    face upright only once the display matrix is applied), 1x1 pixels, no face, four faces,
    corrupt packets in the middle, truncated (index lost), 0 bytes."""
    import cv2

    from .video_io import write_video

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    seconds, fps = 3.5, 5.0
    speech = tone(seconds, 220.0, seed=7)
    n = round(seconds * fps)
    times = np.arange(n) / fps
    cases: list[BadInput] = []
    about = (seconds - 0.05, seconds + 0.1)  # AAC adds encoder padding

    def add(name: str, reason: str | None, span=about) -> Path:
        cases.append(BadInput(folder / name, reason, span if reason is None else None))
        return folder / name

    face_video(add("no_audio_stream.mp4", "no audio stream"), seconds, fps, size=(120, 160))
    write_video(add("no_video_stream.m4a", None), audio=speech)
    vfr = np.cumsum(np.r_[0.0, np.random.default_rng(3).uniform(0.05, 0.6, 40)])
    vfr = vfr[vfr < seconds - 0.1]
    face = cv2.resize(face_photo(), (96, 112))
    framed = np.full((160, 200, 3), 96, np.uint8)
    framed[24:136, 52:148] = face
    _mux_frames(add("variable_frame_rate.mkv", None), [framed] * len(vfr), vfr, speech)
    sideways = np.ascontiguousarray(np.rot90(framed, k=-1))  # stored turned clockwise
    _mux_frames(add("rotated.mp4", None), [sideways] * n, times, speech, rotation=90)
    pixel = np.full((1, 1, 3), 200, np.uint8)
    _mux_frames(add("one_pixel.mkv", None, (seconds - 1e-3, seconds + 1e-3)), [pixel] * n, times,
                speech, codec="ffv1", pix_fmt="yuv444p", audio_codec="pcm_s16le")  # fmt: skip
    face_video(
        add("no_face.mp4", None), seconds, fps, face_until=0.0, size=(120, 160), audio=speech
    )
    crowd = np.full((240, 320, 3), 96, np.uint8)
    for (y, x), size in zip(
        ((10, 10), (10, 170), (130, 20), (120, 180)), (100, 90, 80, 110), strict=True
    ):
        crowd[y : y + size, x : x + int(size * 0.85)] = cv2.resize(
            face_photo(), (int(size * 0.85), size)
        )
    write_video(add("four_faces.mp4", None), [crowd] * n, fps=fps, audio=speech)
    # random bytes over the middle fifth: in mp4 (index at the end) only packet payloads are hit
    # and decoding resumes after them; Matroska's demuxer stops at the damage
    for name, span in (
        ("corrupt_middle.mp4", about),
        ("corrupt_middle.mkv", (1.0, seconds + 0.1)),
    ):
        corrupt = add(name, None, span)
        face_video(corrupt, seconds, fps, size=(120, 160), audio=speech)
        data = bytearray(corrupt.read_bytes())
        middle = slice(len(data) * 2 // 5, len(data) * 3 // 5)
        data[middle] = np.random.default_rng(5).bytes(middle.stop - middle.start)
        corrupt.write_bytes(bytes(data))
    truncated = add("truncated.mp4", "cannot (decode|be opened)")  # the index was at the end
    face_video(truncated, seconds, fps, size=(120, 160), audio=speech)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    add("zero_bytes.mp4", "0 bytes|empty").write_bytes(b"")
    return cases


def tiny_fer_model(folder: str | Path, seed: int = 0) -> Path:
    """A random TorchScript facial-expression model (7 FER classes, 16x16 gray crops) with its
    ``classes.json``, in ``folder``: a stand-in for the mini-Xception."""
    import json

    import torch

    from .constants import FER_CLASSES

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
