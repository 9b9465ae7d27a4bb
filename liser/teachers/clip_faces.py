"""The video teacher over one clip: sampled frames -> faces -> one tracked person -> windows.

``analyze_clip`` decodes the clip's frames at the teacher's frame rate, detects every face (on
every ``detect_every``-th frame; faces barely move in 0.2 s, so boxes are held between), joins
faces into tracks (``tracking.py``), keeps the track on screen longest and classifies only its
crops, in batches. Memory: one small crop per detected face, never the frames themselves.

``window_labels`` pools a window's frames (``pool_window``) and says why a window has no video
label: no video frames, too dark, face too small, no face, only another person on screen, or a
face in too few of the window's frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .faces import as_rgb, crop_face
from .tracking import main_track, track_faces

DARK = 30.0  # mean luma (0-255) under which a frame is too dark to see a face


def pool_window(
    times: np.ndarray,
    frame_probs: np.ndarray,
    clip_seconds: float,
    min_face_coverage: float,
    pooling: str = "mean",
) -> tuple[np.ndarray | None, float]:
    """Temporal pooling of one window.

    times: (T,) seconds of the sampled frames; frame_probs: (T, C), rows of NaN where the frame
    has no face. Frames are grouped into clips of ``clip_seconds`` from the first time; each clip
    with a face gives the mean of its face frames; the window gives, by ``pooling``, the mean of
    those clips ("mean", the paper's), the most confident clip ("max_confidence") or their mean
    weighted by each clip's top probability ("confidence_weighted").
    Returns (probs (C,) or None when the face coverage is below ``min_face_coverage``, coverage).
    """
    times = np.asarray(times, dtype=np.float64)
    if times.size == 0:
        return None, 0.0
    has_face = ~np.isnan(frame_probs).any(axis=1)
    coverage = float(has_face.mean())
    if not has_face.any() or coverage < min_face_coverage:
        return None, coverage
    clip_index = np.floor((times - times.min()) / clip_seconds + 1e-9).astype(np.int64)
    clips = [
        frame_probs[(clip_index == c) & has_face].mean(axis=0)
        for c in np.unique(clip_index[has_face])
    ]
    clips = np.stack(clips)
    if pooling == "max_confidence":
        probs = clips[int(clips.max(axis=1).argmax())]
    elif pooling == "confidence_weighted":
        probs = (clips * clips.max(axis=1, keepdims=True)).sum(0)
    elif pooling == "mean":
        probs = clips.mean(axis=0)
    else:
        raise ValueError(
            f"pooling must be mean, max_confidence or confidence_weighted, not {pooling!r}"
        )
    return (probs / probs.sum()).astype(np.float32), coverage


@dataclass
class ClipFaces:
    """Per sampled frame: ``times`` (T,), ``probs`` (T, C) of the tracked face (NaN rows where it
    is absent), ``boxes`` (T, 4) its box (x, y, w, h in the decoded frame; NaN), ``faces`` (T,)
    faces detected, ``small`` (T,) faces dropped as too small, ``luma`` (T,) mean brightness;
    ``tracks``: how many people (tracks) were seen in the clip."""

    times: np.ndarray
    probs: np.ndarray
    boxes: np.ndarray
    faces: np.ndarray
    small: np.ndarray
    luma: np.ndarray
    tracks: int


def analyze_clip(teacher, path: str, start: float = 0.0, end: float | None = None) -> ClipFaces:
    """Sample, detect, track and classify one clip (``teacher``: a ``VideoTeacher``)."""
    from liser.video_io import iter_frames

    config = teacher.config
    times, detections, crops, small, luma = [], [], [], [], []
    gray, size = teacher.fer.spec.color == "gray", teacher.fer.spec.size
    found: list = []
    frames = iter_frames(path, config.frame_rate, start, end, config.fast_decode)
    for index, (time, frame) in enumerate(frames):
        rgb = as_rgb(frame)
        luma.append(float(rgb[::4, ::4].mean()))
        if index % config.detect_every == 0:  # else the last frame's boxes, held
            try:
                found = teacher.detector.detect(rgb)
            except ValueError:  # a malformed frame: no face, the clip goes on
                found = []
        kept, cut = [], []
        for box in found:
            if min(box[2], box[3]) < config.min_face_pixels:
                continue
            try:
                cut.append(crop_face(rgb, box, size, config.face_margin, gray))
                kept.append(box)
            except ValueError:  # a held box that no longer fits this frame
                continue
        small.append(sum(min(b[2], b[3]) < config.min_face_pixels for b in found))
        crops.append(cut)
        detections.append(kept)
        times.append(time)
    times = np.asarray(times, np.float64)
    tracks, ids = track_faces(times, detections)
    main = main_track(tracks)
    probs = np.full((len(times), len(teacher.classes)), np.nan, np.float32)
    boxes = np.full((len(times), 4), np.nan, np.float32)
    if main is not None:
        where = [(i, ids[i].index(main.id)) for i in main.frames]
        batch = np.stack([crops[i][k] for i, k in where])
        probs[[i for i, _ in where]] = teacher.classify(batch)
        boxes[[i for i, _ in where]] = [detections[i][k][:4] for i, k in where]
    return ClipFaces(times, probs, boxes, np.array([len(d) for d in detections], np.int16),
                     np.array(small, np.int16), np.array(luma, np.float32), len(tracks))  # fmt: skip


def window_label(probs=None, coverage=None, box=None, faces_seen=None, absent=None) -> dict:
    """One window's video label: what ``window_labels`` returns per window."""
    return {"probs": probs, "coverage": coverage, "box": box, "faces_seen": faces_seen,
            "absent": absent}  # fmt: skip


def window_labels(teacher, faces: ClipFaces | None, starts, ends) -> list[dict]:
    """Per window [start, end): ``probs`` (C,) or None, ``coverage`` (share of the window's
    frames with the tracked face), ``box`` (median, pixels), ``faces_seen`` (most faces
    in one frame) and ``absent`` (why there is no label, None when there is one)."""
    config = teacher.config
    out = []
    for start, end in zip(starts, ends, strict=True):
        if faces is None:
            out.append(window_label(absent="no video stream"))
            continue
        inside = (faces.times >= start - 1e-9) & (faces.times < end - 1e-9)
        if not inside.any():
            out.append(
                window_label(coverage=0.0, faces_seen=0, absent="no video frames in this window")
            )
            continue
        probs, coverage = pool_window(faces.times[inside], faces.probs[inside],
                                      config.clip_seconds, config.min_face_coverage,
                                      config.pooling)  # fmt: skip
        seen = int(faces.faces[inside].max())
        tracked = ~np.isnan(faces.boxes[inside, 0])
        box = np.median(faces.boxes[inside][tracked], axis=0).tolist() if tracked.any() else None
        absent = None
        if probs is None:
            absent = _why_absent(faces, inside, seen, coverage, config.min_face_coverage)
        out.append(window_label(probs, coverage, box, seen, absent))
    return out


def _why_absent(faces: ClipFaces, inside, seen: int, coverage: float, needed: float) -> str:
    if coverage > 0:
        return f"tracked face in {coverage:.0%} of the frames (< {needed:.0%}): face lost"
    if seen > 0:
        return "only another person on screen (the tracked one is not here)"
    if faces.small[inside].any():
        return "face too small"
    if float(faces.luma[inside].mean()) < DARK:
        return "too dark"
    return "no face"
