"""A clip (a file, or a stretch of one) and the fixed-length windows cut from it.

``WindowSpec`` is the one rule every stage cuts windows by: training's validation and test,
``liser evaluate``, ``liser predict``, labeling and the teachers. Windows start every hop; an
uncovered tail of at least ``min_tail_seconds`` gets one more window aligned to the clip's end; a
clip no longer than a window gets one window, padded; a clip shorter than ``min_clip_seconds``
gets none. The front end owns the default (``FrontEndConfig.windows()``: its window, its
``window_hop_seconds``, half a hop of tail, its padding), so evaluation and prediction score the
same windows unless told otherwise; labeling states its own hop and minimum in the store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .constants import AUDIO_EXTENSIONS, SAMPLE_RATE


@dataclass(frozen=True)
class WindowSpec:
    """How a clip is covered by windows (seconds; see the module docstring)."""

    window_seconds: float = 3.0
    hop_seconds: float = 1.0
    min_tail_seconds: float | None = None  # None: half a hop
    min_clip_seconds: float = 0.0  # shorter clips get no window
    pad: str = "repeat"  # short clips: "repeat" (tiled) | "zero" (zeros after the end)

    def __post_init__(self):
        for name in ("window_seconds", "hop_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value}")

    def with_hop(self, hop_seconds: float | None) -> WindowSpec:
        """This spec with another hop (None: unchanged); the tail stays half of the new hop."""
        return self if hop_seconds is None else replace(self, hop_seconds=hop_seconds)

    def samples(self, rate: int) -> tuple[int, int, int, int]:
        """(window, hop, min tail, min clip) in samples at ``rate``."""
        window = round(self.window_seconds * rate)
        hop = max(1, round(self.hop_seconds * rate))
        tail = hop // 2 if self.min_tail_seconds is None else round(self.min_tail_seconds * rate)
        return window, hop, tail, round(self.min_clip_seconds * rate)

    def starts(self, n_samples: int, rate: int = SAMPLE_RATE) -> list[int]:
        """Start samples of the windows covering a clip of ``n_samples``."""
        window, hop, tail, least = self.samples(rate)
        if n_samples <= 0 or n_samples < least:
            return []
        return window_starts(n_samples, window, hop, tail) or [0]

    def cut(self, wave: np.ndarray, rate: int = SAMPLE_RATE) -> tuple[np.ndarray, list[int]]:
        """The windows of ``wave``: (K, window) float32, padded as ``pad`` says, and their starts."""
        window = self.samples(rate)[0]
        starts = self.starts(len(wave), rate)
        if not starts:
            return np.zeros((0, window), np.float32), []
        cut = [fit_window(wave[s : s + window], window, self.pad) for s in starts]
        return np.stack(cut), starts


@dataclass(frozen=True)
class Clip:
    """A file, or the stretch [start, start + duration) of one: the unit every stage reads.

    ``id`` names it (a manifest's id; in a store, the ``clip`` column), ``label`` and ``speaker``
    come from its manifest row when it has one."""

    id: str
    path: str
    start: float = 0.0  # seconds
    duration: float | None = None  # seconds; None = to the end of the file
    label: str | None = None
    speaker: str = "unknown"

    @property
    def end(self) -> float | None:
        return None if self.duration is None else self.start + self.duration

    @property
    def whole_file(self) -> bool:
        return self.start == 0.0 and self.duration is None

    @property
    def has_video(self) -> bool:
        return Path(self.path).suffix.lower() not in AUDIO_EXTENSIONS

    @classmethod
    def from_row(cls, row) -> Clip:
        """The clip of a manifest row (a dict or a named tuple): NaN start = 0, NaN or
        non-positive duration = to the end of the file."""
        get = (
            row.get
            if isinstance(row, dict)
            else lambda key, default=None: getattr(row, key, default)
        )
        start, duration = _number(get("start")), _number(get("duration"))
        label = get("label")
        return cls(str(get("id", get("path"))), str(get("path")), start or 0.0,
                   duration if duration and duration > 0 else None,
                   None if _missing(label) else str(label),
                   "unknown" if _missing(get("speaker")) else str(get("speaker")))  # fmt: skip

    def load_audio(self, sample_rate: int = SAMPLE_RATE, **options) -> np.ndarray:
        """The clip's samples: float32 mono at ``sample_rate`` (``audio.load_audio`` options,
        e.g. ``min_seconds``, ``allow_silent``; ``AudioError`` for a file that cannot be used)."""
        from .audio import load_audio

        return load_audio(self.path, sample_rate, self.start, self.duration, **options)

    def windows(self, spec: WindowSpec, sample_rate: int = SAMPLE_RATE, wave=None):
        """``spec.cut`` of the clip's audio (read here unless ``wave`` is given)."""
        wave = self.load_audio(sample_rate) if wave is None else wave
        return spec.cut(wave, sample_rate)


class WindowCutter:
    """Cut a stream of chunks into the windows ``spec.starts`` gives the whole clip.

    ``feed(chunk)`` and ``finish()`` return lists of ``(index, start_sample, n_real, wave)`` with
    ``wave`` (window,) float32 (padded as ``spec.pad`` says when n_real < window). Keeps at most
    one window plus one chunk in memory: hours-long files are cut as they are decoded.
    """

    def __init__(self, spec: WindowSpec, rate: int = SAMPLE_RATE):
        self.window, self.hop, self.min_tail, self.min_clip = spec.samples(rate)
        self.pad = spec.pad
        self.buffer = np.zeros(0, np.float32)
        self.offset = 0  # sample index of buffer[0]
        self.total = 0
        self.next_start = 0
        self.count = 0

    def _take(self, start: int, n_real: int) -> tuple:
        piece = self.buffer[start - self.offset : start - self.offset + n_real]
        wave = piece if n_real == self.window else fit_window(piece, self.window, self.pad)
        self.count += 1
        return (self.count - 1, start, n_real, np.ascontiguousarray(wave, dtype=np.float32))

    def feed(self, chunk: np.ndarray) -> list[tuple]:
        self.buffer = np.concatenate([self.buffer, chunk])
        self.total += len(chunk)
        out = []
        while self.next_start + self.window <= self.total:
            out.append(self._take(self.next_start, self.window))
            self.next_start += self.hop
        keep = max(0, min(self.next_start, self.total - self.window))
        if keep > self.offset:
            self.buffer = self.buffer[keep - self.offset :]
            self.offset = keep
        return out

    def finish(self) -> list[tuple]:
        n = self.total
        if n == 0 or n < self.min_clip:
            return []
        if self.count == 0:
            return [self._take(0, min(n, self.window))]  # a clip no longer than a window
        last_end = self.next_start - self.hop + self.window
        if n - last_end >= max(1, self.min_tail):
            return [self._take(n - self.window, self.window)]  # end-aligned tail window
        return []


def clips_of(df) -> list[Clip]:
    """The clips of a manifest's rows, in order."""
    return [Clip.from_row(row) for row in df.to_dict("records")]


def _number(value) -> float | None:
    if value is None or isinstance(value, str):
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fit_window(
    wave: np.ndarray,
    n_samples: int,
    pad: str = "repeat",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Make a clip exactly `n_samples` long.

    Longer clips are cropped: at a random offset when `rng` is given (training), else the centre.
    Shorter clips are padded: "repeat" tiles the clip end to end (speech keeps its statistics),
    "zero" appends zeros after the end.

    wave : np.ndarray, shape = (N,), N >= 1  ->  np.ndarray float32, shape = (n_samples,)
    """
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1 or len(wave) == 0:
        raise ValueError(f"expected a non-empty 1-D wave, got shape {wave.shape}")
    if n_samples <= 0:
        raise ValueError(f"n_samples must be > 0, got {n_samples}")
    n = len(wave)
    if n > n_samples:
        offset = (
            int(rng.integers(0, n - n_samples + 1)) if rng is not None else (n - n_samples) // 2
        )
        return wave[offset : offset + n_samples].copy()
    if n == n_samples:
        return wave.copy()
    if pad == "repeat":
        return np.tile(wave, math.ceil(n_samples / n))[:n_samples]
    if pad == "zero":
        return np.concatenate([wave, np.zeros(n_samples - n, np.float32)])
    raise ValueError(f"pad must be 'repeat' or 'zero', got {pad!r}")


def window_starts(n_samples: int, window: int, hop: int, min_samples: int = 0) -> list[int]:
    """Start positions of the windows that cover a clip of `n_samples` (``WindowSpec.starts``
    in samples).

    Windows start every `hop` samples; when they leave a tail of at least `min_samples` uncovered,
    one more window aligned to the end of the clip covers it. A clip no longer than `window` gets
    one window at 0 (to be padded by `fit_window`); a clip shorter than `min_samples` gets none.

    Example: window_starts(50, 30, 10) == [0, 10, 20]; window_starts(45, 30, 20) == [0, 15].
    """
    if window <= 0 or hop <= 0:
        raise ValueError(f"window and hop must be > 0, got window={window}, hop={hop}")
    if n_samples <= 0 or n_samples < min_samples:
        return []
    if n_samples <= window:
        return [0]
    starts = list(range(0, n_samples - window + 1, hop))
    if n_samples - (starts[-1] + window) >= max(1, min_samples):
        starts.append(n_samples - window)
    return starts
