"""One labeling run's state: config, header, teachers, the clips to do, and its bookkeeping."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from liser import store as st
from liser.config import LabelConfig
from liser.store import shards
from liser.windows import Clip

from .progress import NoBar, WindowsBar


@dataclass
class LabelJob:
    """Everything one labeling run needs, and its bookkeeping (skips, counts, header writes)."""

    store_dir: Path
    config: LabelConfig
    header: dict
    audio: object | None  # AudioTeacher
    video: object | None  # VideoTeacher
    todo: list[Clip]
    show_progress: bool = True
    console: Console = field(default_factory=lambda: Console(stderr=True))
    files: int = 0
    windows: int = 0
    needs_repair: bool = False
    started: float = field(default_factory=time.perf_counter)
    _logmel: object = field(default=None, repr=False)

    _vad: object = field(default=None, repr=False)

    @property
    def vad(self):
        """The speech detector of ``config.vad`` (``vad.SpeechDetector``), or None."""
        if self._vad is None and self.config.vad:
            from liser.vad import load_speech_detector

            self._vad = load_speech_detector(self.config.vad, self.config.vad_threshold)
        return self._vad

    @property
    def min_speech(self) -> float:
        return self.config.min_speech if self.config.vad else 0.0

    @property
    def logmel(self):
        """The student's front end (``features.LogMel``), built on first use."""
        if self._logmel is None:
            from liser.features import LogMel

            self._logmel = LogMel(self.config.frontend).eval()
        return self._logmel

    def skip(self, clip: Clip, reason: str, written: bool = False) -> None:
        """Record a clip that cannot be labeled (``written``: some of its rows reached a shard)."""
        self.needs_repair |= written
        reason = reason.removeprefix(f"{clip.path}: ")
        self.header["skipped"][clip.id] = {"path": clip.path, "reason": reason, **stamp(clip)}
        if self.show_progress:
            self.console.print(f"[yellow]skipped[/] {clip.id}: {reason}")

    def done_clip(self, clip: Clip, n_windows: int) -> None:
        self.header["skipped"].pop(clip.id, None)
        self.files += 1
        self.windows += n_windows

    def no_window_reason(self, clip: Clip) -> str:
        return f"no window: shorter than {self.config.min_seconds} s or digital silence throughout"

    def flush(self, writer: shards.ShardWriter, before=None, last: bool = False) -> None:
        """Write the buffered rows as a shard, then store.json (skips); repair at the end."""
        if before is not None:
            before()
        writer.flush()
        if last and self.needs_repair:
            shards.repair_store(self.store_dir)
        st.write_header(self.store_dir, self.header)

    def progress_bar(self):
        """A rich progress bar over the estimated windows of ``todo`` (``.advance(n)``)."""
        if not self.show_progress:
            return contextlib.nullcontext(NoBar())
        return WindowsBar(self.todo, self.config, self.console)

    def teacher(self, kind: str):
        return self.audio if kind == "audio" else self.video


def stamp(clip: Clip) -> dict:
    try:
        stat = os.stat(clip.path)
        return {"size": stat.st_size, "mtime": stat.st_mtime}
    except OSError:
        return {"size": None, "mtime": None}
