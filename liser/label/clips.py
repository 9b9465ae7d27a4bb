"""The per-clip work of labeling, shared by the local and the Ray engines.

A clip (a file or a segment of one) is decoded in chunks (bounded memory for hours-long files)
and cut into windows with the rule of prediction (``audio.window_starts``: a hop grid, plus one
end-aligned window for an uncovered tail of at least ``min_seconds``; a clip shorter than a window
is padded). Each window gets the student's log-Mel features, its speech fraction (with a VAD)
and, from the video teacher's view of the whole clip (faces tracked, one person kept), its video
probabilities, face coverage and box, or why there are none; the audio teacher runs on batches of
windows gathered across clips, skipping windows without speech. Windows of digital silence are
dropped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from liser.audio import SILENT_PEAK, AudioError, load_audio, stream_audio
from liser.config import LabelConfig
from liser.constants import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS
from liser.media import list_media
from liser.store import TEACHER_COLUMNS
from liser.video_io import iter_frames, probe
from liser.windows import Clip, WindowCutter, WindowSpec

MANIFEST_EXTENSIONS = (".parquet", ".csv", ".jsonl")


def list_clips(src: str | Path, errors: list | None = None) -> list[Clip]:
    """The clips (``windows.Clip``, ``id`` = the store's ``clip`` column: the path, or
    ``path#start+duration`` for a stretch) of a folder (media files found recursively, symlinks followed, each real folder
    once), a manifest, or one media file. Unreadable folders are added to ``errors`` as
    (path, reason); a folder without any media file is a FileNotFoundError.

    A manifest row is a whole file when it starts at 0 and its path appears once; otherwise it is
    the segment [start, start + duration).
    """
    src = Path(src)
    if src.is_dir():
        found: list = []
        files = list_media(src, AUDIO_EXTENSIONS + VIDEO_EXTENSIONS, errors=found)
        if errors is not None:
            errors.extend(found)
        if not files:
            why = f" ({len(found)} unreadable folder(s), first {found[0][0]})" if found else ""
            raise FileNotFoundError(f"{src}: no audio or video file in this folder{why}")
        return [Clip(str(p.absolute()), str(p.absolute())) for p in files]
    if src.suffix.lower() in MANIFEST_EXTENSIONS:
        from liser.manifest import read_manifest

        df = read_manifest(src)
        counts = df["path"].value_counts()
        clips = []
        for path, start, duration in zip(df["path"], df["start"], df["duration"], strict=True):
            start = 0.0 if np.isnan(start) else float(start)
            if start == 0.0 and counts[path] == 1:
                clips.append(Clip(path, path))
            else:
                duration = None if np.isnan(duration) else float(duration)
                key = f"{path}#{start:.3f}+{'' if duration is None else f'{duration:.3f}'}"
                clips.append(Clip(key, path, start, duration))
        return clips
    if src.is_file():
        return [Clip(str(src.absolute()), str(src.absolute()))]
    raise FileNotFoundError(f"{src}: no such folder, manifest or media file")


def clip_from_key(key: str, source: str) -> Clip:
    """The clip a store row belongs to, from its ``clip`` and ``source`` columns."""
    if key == source or "#" not in key:
        return Clip(key, source)
    start, _, duration = key.rsplit("#", 1)[1].partition("+")
    return Clip(key, source, float(start), float(duration) if duration else None)


def window_id(clip_key: str, index: int) -> str:
    return f"{hashlib.sha1(clip_key.encode()).hexdigest()[:12]}-{index:06d}"


# --------------------------------------------------------------------------------------------
# Audio: chunks and windows


def audio_chunks(clip: Clip, sample_rate: int, chunk_seconds: float) -> Iterator[np.ndarray]:
    """The clip's audio as consecutive float32 mono chunks (``AudioError`` for a bad file)."""
    if clip.start == 0.0 and clip.end is None:
        yield from stream_audio(clip.path, sample_rate, chunk_seconds)
        return
    at = clip.start
    while clip.end is None or at < clip.end - 1e-9:
        duration = chunk_seconds if clip.end is None else min(chunk_seconds, clip.end - at)
        try:
            wave = load_audio(
                clip.path, sample_rate, at, duration, min_seconds=0, allow_silent=True
            )
        except AudioError as error:
            if at > clip.start and ("beyond the end" in error.reason or "no audio" in error.reason):
                return  # the file ended exactly at a chunk boundary
            raise
        yield wave
        if len(wave) < round(duration * sample_rate):
            return
        at += duration


class FrameWindows:
    """Frames sampled at ``frame_rate`` grouped by window, for windows given in time order."""

    def __init__(self, path: str, frame_rate: float, start: float, end: float | None):
        self.frames = iter_frames(path, frame_rate, start, end)
        self.held: list[tuple[float, np.ndarray]] = []
        self.done = False

    def take(self, start: float, end: float) -> tuple[list[np.ndarray], np.ndarray]:
        """Frames with start <= time < end: (list of (H, W, 3) uint8, times (F,) seconds)."""
        self.held = [(t, f) for t, f in self.held if t >= start - 1e-9]
        while not self.done and (not self.held or self.held[-1][0] < end - 1e-9):
            item = next(self.frames, None)
            if item is None:
                self.done = True
            elif item[0] >= start - 1e-9:
                self.held.append(item)
        inside = [(t, f) for t, f in self.held if t < end - 1e-9]
        return [f for _, f in inside], np.asarray([t for t, _ in inside], dtype=np.float64)


def video_columns(teacher, faces, starts, ends) -> dict:
    """The video teacher's columns for windows [start, end) of a clip, from
    ``teacher.clip_faces(...)`` (None: the clip has no video stream)."""
    labels = teacher.window_labels(faces, starts, ends)
    return {
        "video_probs": [None if w["probs"] is None else np.asarray(w["probs"], np.float32).tolist()
                        for w in labels],
        "video_confidence": [None if w["probs"] is None else float(np.max(w["probs"]))
                             for w in labels],
        "video_teacher": [teacher.fingerprint] * len(starts),
        "face_coverage": [None if w["coverage"] is None else float(w["coverage"]) for w in labels],
        "video_absent": [w["absent"] for w in labels],
        "face_box": [w["box"] for w in labels],
        "faces_seen": [w["faces_seen"] for w in labels],
    }  # fmt: skip


def empty_video_columns(n: int) -> dict:
    return {name: [None] * n for name in TEACHER_COLUMNS["video"]}


def clip_faces(teacher, clip: Clip):
    """The video teacher's view of a whole clip (None without a video stream)."""
    if teacher is None or not clip.has_video or not probe(clip.path).has_video:
        return None
    return teacher.clip_faces(clip.path, clip.start, clip.end)


def clip_windows(
    clip: Clip, config: LabelConfig, logmel, video_teacher=None, vad=None
) -> Iterator[dict]:
    """Rows of a clip's windows, one dict of columns per decoded chunk, without audio teacher
    columns, plus ``wave`` (n, window_samples) float32 for the audio teacher. With ``vad``
    (``vad.SpeechDetector``): ``speech_fraction`` of each window's own samples.

    Raises ``AudioError`` / ``VideoError`` for a file that cannot be used.
    """
    fe = config.frontend
    sr = fe.sample_rate
    spec = WindowSpec(fe.window_seconds, config.hop_seconds, config.min_seconds,
                      config.min_seconds, fe.pad)  # fmt: skip
    cutter = WindowCutter(spec, sr)
    if not Path(clip.path).exists():
        raise AudioError(clip.path, "file not found")
    faces = clip_faces(video_teacher, clip)
    chunks = audio_chunks(clip, sr, config.chunk_seconds)
    for windows in _cut_all(chunks, cutter):
        windows = [w for w in windows if np.abs(w[3][: w[2]]).max() >= SILENT_PEAK]
        if not windows:
            continue
        waves = np.stack([w[3] for w in windows])
        starts = [clip.start + w[1] / sr for w in windows]
        ends = [clip.start + (w[1] + w[2]) / sr for w in windows]
        rows = {
            "window_id": [window_id(clip.id, w[0]) for w in windows],
            "clip": [clip.id] * len(windows),
            "source": [clip.path] * len(windows),
            "start": starts,
            "end": ends,
            "features": features_bytes(logmel, waves),
        }
        if video_teacher is None:
            rows.update(empty_video_columns(len(windows)))
        else:
            rows.update(video_columns(video_teacher, faces, starts, ends))
        if vad is not None:
            rows["speech_fraction"] = [vad.fraction(w[3][: w[2]]) for w in windows]
        rows["wave"] = waves
        yield rows


def _cut_all(chunks, cutter: WindowCutter) -> Iterator[list]:
    for chunk in chunks:
        yield cutter.feed(chunk)
    yield cutter.finish()


def features_bytes(logmel, waves: np.ndarray) -> list[bytes]:
    """Student log-Mel features of waves (n, N) as float16 bytes of shape (n_mels, n_frames).

    Normalised as the front end says, except "global": statistics belong to the student's
    training set, so the store keeps un-normalised log-Mel (store.json ``features_normalized``).
    """
    compute = logmel.log_mel if logmel.frontend.normalize == "global" else logmel
    with torch.inference_mode():
        mel = compute(torch.from_numpy(waves)).numpy().astype(np.float16)
    return [np.ascontiguousarray(m).tobytes() for m in mel]


def audio_columns(teacher, waves: np.ndarray, batch_size: int, speech=None, min_speech=0.0) -> dict:
    """The audio teacher's columns for waves (n, N); null columns without a teacher. Windows
    whose ``speech`` fraction (n,) is under ``min_speech`` get none ("no speech"), and the
    teacher does not run on them."""
    n = len(waves)
    out = {name: [None] * n for name in TEACHER_COLUMNS["audio"]}
    if teacher is None:
        return out
    keep = np.ones(n, bool)
    if speech is not None and min_speech > 0:
        speech = np.array([np.nan if s is None else s for s in speech], np.float64)
        keep = ~(speech < min_speech)  # NaN (not measured) keeps the window
        for i in np.flatnonzero(~keep):
            out["audio_absent"][i] = f"no speech ({speech[i]:.0%} of the window)"
    index = np.flatnonzero(keep)
    probs = [
        teacher.predict(waves[index[i : i + batch_size]]) for i in range(0, len(index), batch_size)
    ]
    for i, p in zip(index, np.concatenate(probs).astype(np.float32) if probs else [], strict=True):
        out["audio_probs"][i] = p
        out["audio_confidence"][i] = float(p.max())
        out["audio_teacher"][i] = teacher.fingerprint
    return out
