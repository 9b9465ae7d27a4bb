"""Faces over time: detections of sampled frames joined into tracks, one person per track.

A window's video soft label must come from one person. Detections of consecutive sampled frames
are joined greedily, largest face first, to the live track whose last box overlaps most (IoU
>= ``min_iou``), or, for a face that moved fast, whose last box has its centre within one face
width and a size within a factor of 1.5; otherwise the face starts a new track. A track dies when it
has not been seen for ``max_gap`` seconds.

The rule for several people (``main_track``): the track on screen longest, i.e. with the most
sampled frames; ties go to the larger mean face. Its frames, and only those, give the clip's
video soft labels; every window also records how many faces were seen at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .faces import Box  # x, y, w, h, score (pixels)


def iou(a, b) -> float:
    """Intersection over union of two boxes (x, y, w, h, ...)."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def _size(box) -> float:
    return float(np.sqrt(max(box[2], 0.0) * max(box[3], 0.0)))


def _near(a, b) -> bool:
    """Same face after a fast move: centres within one face size, sizes within 1.5x."""
    sa, sb = _size(a), _size(b)
    if sa <= 0 or sb <= 0 or max(sa, sb) / min(sa, sb) > 1.5:
        return False
    dx = (a[0] + a[2] / 2) - (b[0] + b[2] / 2)
    dy = (a[1] + a[3] / 2) - (b[1] + b[3] / 2)
    return float(np.hypot(dx, dy)) <= max(sa, sb)


@dataclass
class Track:
    id: int
    frames: list[int] = field(default_factory=list)  # indexes of the sampled frames
    boxes: list[Box] = field(default_factory=list)
    last_time: float = 0.0

    @property
    def mean_size(self) -> float:
        return float(np.mean([_size(b) for b in self.boxes])) if self.boxes else 0.0


def track_faces(
    times: np.ndarray, detections: list[list[Box]], min_iou: float = 0.3, max_gap: float = 1.0
) -> tuple[list[Track], list[list[int]]]:
    """Join per-frame detections into tracks. Returns (tracks, per frame the track id of each
    detection, in the order given)."""
    tracks: list[Track] = []
    assigned: list[list[int]] = []
    for index, (time, boxes) in enumerate(zip(times, detections, strict=True)):
        live = [t for t in tracks if time - t.last_time <= max_gap + 1e-9 and t.frames]
        ids = [-1] * len(boxes)
        taken: set[int] = set()
        for k in sorted(range(len(boxes)), key=lambda k: -_size(boxes[k])):
            box = boxes[k]
            scored = [(iou(t.boxes[-1], box), t) for t in live if t.id not in taken]
            best = max(scored, key=lambda s: s[0], default=(0.0, None))
            track = best[1] if best[0] >= min_iou else None
            if track is None:
                track = next((t for _, t in scored if _near(t.boxes[-1], box)), None)
            if track is None:
                track = Track(len(tracks))
                tracks.append(track)
            track.frames.append(index)
            track.boxes.append(box)
            track.last_time = float(time)
            taken.add(track.id)
            ids[k] = track.id
        assigned.append(ids)
    return tracks, assigned


def main_track(tracks: list[Track]) -> Track | None:
    """The track on screen longest (most sampled frames; ties: the larger mean face)."""
    if not tracks:
        return None
    return max(tracks, key=lambda t: (len(t.frames), t.mean_size, -t.id))
