"""The video teacher: face detector + FER model, pooled over time as in the LiSER paper.

Frames sampled at ``frame_rate`` -> faces detected and tracked over the clip, the person on screen
longest kept (``tracking.py``, ``clip_faces.py``) -> square crop -> FER probabilities per frame ->
averaged over ``clip_seconds`` clips -> clip outputs pooled over the window (mean, as the paper).
A window whose share of sampled frames with that face is below ``min_face_coverage`` has no label
(None, with the reason), never a vector of zeros.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from liser.config import VideoTeacherConfig, to_dict

from .clip_faces import analyze_clip, pool_window, window_labels
from .faces import Box, as_rgb, crop_face, largest_face, load_face_detector
from .fer import FERModel, load_fer_model


class VideoTeacher:
    """Face detector + FER model. ``classes``: the FER model's classes (FER2013's 7 by default)."""

    def __init__(self, fer: FERModel, detector, config: VideoTeacherConfig):
        self.fer, self.detector, self.config = fer, detector, config
        self.classes: tuple[str, ...] = fer.classes
        self.prior = class_prior(config.prior, self.classes)
        settings = {
            "fer": fer.fingerprint,
            "detector": [type(detector).__name__, getattr(detector, "fingerprint", "")],
            **{
                k: v
                for k, v in to_dict(config).items()
                if k not in ("spec", "face_detector", "batch_size")
            },
        }
        text = json.dumps(settings, sort_keys=True)
        self.fingerprint = hashlib.sha256(text.encode()).hexdigest()[:16]

    def faces(self, frames: Sequence[np.ndarray]) -> list[Box | None]:
        """The largest face of each frame (None: no face, or a frame that cannot be read)."""
        boxes = []
        for frame in frames:
            try:
                boxes.append(largest_face(self.detector.detect(as_rgb(frame))))
            except ValueError:  # an empty or malformed frame: no face, the batch goes on
                boxes.append(None)
        return boxes

    def crops(self, frames: Sequence[np.ndarray], boxes: Sequence[Box]) -> np.ndarray:
        """Face crops at the FER input size: uint8 (N, H, W) gray or (N, H, W, 3) RGB."""
        gray = self.fer.spec.color == "gray"
        size = self.fer.spec.size
        return np.stack(
            [
                crop_face(f, b, size, self.config.face_margin, gray)
                for f, b in zip(frames, boxes, strict=True)
            ]
        )

    def classify(self, crops: np.ndarray) -> np.ndarray:
        """Face crops -> probabilities (N, C) with the configured temperature, in batches; with
        ``config.mirror`` the mean of each crop's and its left-right mirror's probabilities."""
        n_views = 2 if self.config.mirror else 1
        size = max(1, self.config.batch_size // n_views)
        parts = []
        for i in range(0, len(crops), size):
            batch = crops[i : i + size]
            views = np.concatenate([batch, batch[:, :, ::-1]]) if n_views == 2 else batch
            probs = self.fer.predict(views, self.config.temperature)
            parts.append(probs.reshape(n_views, len(batch), -1).mean(0))
        if not parts:
            return np.zeros((0, len(self.classes)), np.float32)
        probs = np.concatenate(parts)
        if self.prior is not None:  # label shift to a uniform prior: p(c|x) / p_train(c)
            probs = probs / self.prior
            probs = (probs / probs.sum(1, keepdims=True)).astype(np.float32)
        return probs

    def frame_probabilities(
        self, frames: Sequence[np.ndarray]
    ) -> tuple[np.ndarray, list[Box | None]]:
        """Per-frame probabilities (T, C), NaN rows for frames without a face; largest boxes."""
        boxes = self.faces(frames)
        probs = np.full((len(frames), len(self.classes)), np.nan, np.float32)
        found = [i for i, b in enumerate(boxes) if b is not None]
        if found:
            crops = self.crops([frames[i] for i in found], [boxes[i] for i in found])
            probs[found] = self.classify(crops)
        return probs, boxes

    def predict_window(
        self, frames: Sequence[np.ndarray], times: np.ndarray
    ) -> tuple[np.ndarray | None, float]:
        """One window's frames (RGB uint8 (H, W, 3)) and their times (T,) seconds ->
        (probs (C,) or None when too few frames have a face, face coverage in [0, 1])."""
        if len(frames) != len(times):
            raise ValueError(f"{len(frames)} frames but {len(times)} times")
        probs, _ = self.frame_probabilities(frames)
        c = self.config
        return pool_window(times, probs, c.clip_seconds, c.min_face_coverage, c.pooling)

    def clip_faces(self, path: str | Path, start: float = 0.0, end: float | None = None):
        """What the teacher sees in a clip: faces of every sampled frame, tracked, the person on
        screen longest classified (``clip_faces.ClipFaces``). Raises ``video_io.VideoError``
        for a file without a readable video stream."""
        return analyze_clip(self, str(path), start, end)

    def window_labels(self, faces, starts, ends) -> list[dict]:
        """Per window: ``probs`` or None, ``coverage``, ``box``, ``faces_seen``, ``absent``."""
        return window_labels(self, faces, starts, ends)

    def predict_file(
        self, path: str | Path, windows: Sequence[tuple[float, float]]
    ) -> list[tuple[np.ndarray | None, float]]:
        """Label windows ``(start, end)`` seconds of one video file -> [(probs or None, coverage)]
        of the tracked face. Raises ``video_io.VideoError`` for a file without a video stream."""
        if not windows:
            return []
        faces = self.clip_faces(path, min(w[0] for w in windows), max(w[1] for w in windows))
        labels = self.window_labels(faces, [w[0] for w in windows], [w[1] for w in windows])
        return [(w["probs"], w["coverage"]) for w in labels]


def load_video_teacher(
    spec: str | Path | None = None,
    face_detector: str | Path | None = None,
    config: VideoTeacherConfig | None = None,
) -> VideoTeacher:
    """A video teacher from a FER SPEC (.hdf5, .onnx, TorchScript .pt, or folder with
    classes.json) and a face-detector file (Haar .xml or BlazeFace .tflite). Arguments given
    here override ``config.spec`` and ``config.face_detector``."""
    config = config or VideoTeacherConfig()
    config = dataclasses.replace(
        config,
        spec=str(spec or config.spec),
        face_detector=str(face_detector or config.face_detector),
    )
    if not config.spec:
        raise ValueError("a video teacher needs a FER model: --video-teacher SPEC")
    if not config.face_detector:
        raise ValueError(
            "a video teacher needs a face detector: --face-detector (Haar .xml or BlazeFace .tflite)"
        )
    if config.frame_rate <= 0 or config.clip_seconds <= 0 or config.temperature <= 0:
        raise ValueError("video teacher frame_rate, clip_seconds and temperature must be > 0")
    return VideoTeacher(
        load_fer_model(config.spec), load_face_detector(config.face_detector), config
    )


def check_files(
    teacher: VideoTeacher,
    paths: Sequence[str | Path],
    window_seconds: float = 3.0,
    hop_seconds: float = 3.0,
) -> list[dict]:
    """What the video teacher sees in images and videos, for ``liser teacher check-video``.

    Images: one record per detected face (``face``, ``box``, ``probs``). Videos: one record per
    window (``start``, ``end``, ``face_coverage``, median face ``box``, ``probs`` or None when
    masked). A file that cannot be used gives a record with ``error`` and the others go on.
    """
    from liser.video_io import VideoError, is_image, probe, read_image

    records: list[dict] = []
    for path in paths:
        path = str(path)
        try:
            if is_image(path):
                records.extend(_check_image(teacher, path, read_image(path)))
            else:
                duration = probe(path).duration
                records.extend(_check_video(teacher, path, duration, window_seconds, hop_seconds))
        except (VideoError, ValueError) as error:
            records.append({"file": path, "error": str(error)})
    return records


def _named(classes: Sequence[str], probs: np.ndarray | None) -> dict | None:
    return (
        None
        if probs is None
        else {c: round(float(p), 4) for c, p in zip(classes, probs, strict=True)}
    )


def _check_image(teacher: VideoTeacher, path: str, image: np.ndarray) -> list[dict]:
    boxes = teacher.detector.detect(image)
    if not boxes:
        return [{"file": path, "kind": "image", "face": None, "box": None, "probs": None}]
    probs = teacher.classify(teacher.crops([image] * len(boxes), boxes))
    return [
        {
            "file": path,
            "kind": "image",
            "face": i,
            "box": [round(v, 1) for v in box[:4]],
            "score": round(box[4], 3),
            "probs": _named(teacher.classes, p),
        }
        for i, (box, p) in enumerate(zip(boxes, probs, strict=True))
    ]


def _check_video(teacher, path, duration, window_seconds, hop_seconds) -> list[dict]:
    faces = teacher.clip_faces(path)
    step = 1.0 / teacher.config.frame_rate
    duration = max(duration, float(faces.times.max(initial=0.0)) + step)
    starts = np.arange(0.0, max(duration - 0.5 * window_seconds, 0.0) + 1e-9, hop_seconds)
    ends = np.minimum(starts + window_seconds, duration)
    records = []
    for start, end, w in zip(starts, ends, teacher.window_labels(faces, starts, ends), strict=True):
        records.append({
            "file": path, "kind": "video", "start": round(float(start), 3),
            "end": round(float(end), 3), "face_coverage": round(w["coverage"] or 0.0, 3),
            "box": None if w["box"] is None else [round(float(v), 1) for v in w["box"]],
            "faces_seen": w["faces_seen"], "people": faces.tracks, "absent": w["absent"],
            "probs": _named(teacher.classes, w["probs"]),
        })  # fmt: skip
    return records


def check_table(records: list[dict], classes: Sequence[str]):
    """A rich Table of ``check_files`` records: one row per face or window, top class marked."""
    from rich.table import Table

    table = Table(title="video teacher")
    for name in ("file", "face / window", "box x,y,w,h", "faces", "top", *classes):
        table.add_column(name, justify="left" if name in ("file", "top") else "right")
    for r in records:
        if "error" in r:
            table.add_row(
                Path(r["file"]).name, "[red]error[/red]", r["error"], *[""] * (len(classes) + 2)
            )
            continue
        where = (
            f"face {r['face']}" if r["kind"] == "image" else f"{r['start']:.1f}-{r['end']:.1f} s"
        )
        if r["kind"] == "image" and r["face"] is None:
            where = "no face"
        box = "" if r["box"] is None else ",".join(f"{v:.0f}" for v in r["box"])
        faces = f"{r['face_coverage']:.0%}" if r["kind"] == "video" else ""
        probs = r["probs"]
        top = max(probs, key=probs.get) if probs else "[dim]masked[/dim]"
        cells = [f"{probs[c]:.2f}" if probs else "" for c in classes]
        table.add_row(Path(r["file"]).name, where, box, faces, top, *cells)
    return table


# FER2013's training set (Goodfellow et al. 2013, 28,709 faces): how often each class occurs.
FER2013_TRAIN_COUNTS = {"angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215, "sad": 4830,
                        "surprise": 3171, "neutral": 4965}  # fmt: skip


def class_prior(spec: str, classes: Sequence[str]) -> np.ndarray | None:
    """The FER model's training class frequencies in ``classes`` order, from
    ``VideoTeacherConfig.prior``: "" (none), "fer2013", or one number per class ("0.1,0.2,...")."""
    if not spec:
        return None
    if spec.lower() == "fer2013":
        missing = [c for c in classes if c not in FER2013_TRAIN_COUNTS]
        if missing:
            raise ValueError(f"prior 'fer2013' has no class {missing} (model classes {classes})")
        counts = np.array([FER2013_TRAIN_COUNTS[c] for c in classes], np.float64)
    else:
        try:
            counts = np.array([float(v) for v in spec.split(",")], np.float64)
        except ValueError as error:
            raise ValueError(f"prior must be '', 'fer2013' or numbers, not {spec!r}") from error
        if len(counts) != len(classes) or (counts <= 0).any():
            raise ValueError(
                f"prior needs {len(classes)} positive numbers (classes {classes}), got {spec!r}"
            )
    return (counts / counts.sum()).astype(np.float32)
