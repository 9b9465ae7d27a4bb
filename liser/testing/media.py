"""Synthetic audio and video: tones, emotion-like tone corpora, drawn faces; ``shared_dir``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from liser.constants import SAMPLE_RATE


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

    from liser.video_io import read_image

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

    from liser.video_io import write_video

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


def two_faces_video(
    path: str | Path,
    seconds: float = 4.0,
    fps: float = 10.0,
    second_from: float = 2.0,
    first_until: float | None = None,
    size: tuple[int, int] = (240, 480),
    audio: np.ndarray | None = None,
) -> Path:
    """The face photo drifting right over the left half of the frame (until ``first_until``), and
    a second copy standing on the right half from ``second_from`` seconds on, with optional
    16 kHz audio. size = (H, W)."""
    import cv2

    from liser.video_io import write_video

    height, width = size
    big = cv2.resize(face_photo(), (int(height * 0.6), int(height * 0.7)))
    n = round(seconds * fps)

    def frames():
        for i in range(n):
            frame = np.full((height, width, 3), 96, np.uint8)
            if first_until is None or i / fps < first_until:
                x = int((width // 2 - big.shape[1]) * (0.1 + 0.8 * i / max(n - 1, 1)))
                y = (height - big.shape[0]) // 2
                frame[y : y + big.shape[0], x : x + big.shape[1]] = big
            if i / fps >= second_from:
                x, y = width - big.shape[1] - 10, (height - big.shape[0]) // 2
                frame[y : y + big.shape[0], x : x + big.shape[1]] = np.fliplr(big)
            yield frame

    return write_video(path, frames(), fps=fps, audio=audio)


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
