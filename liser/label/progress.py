"""The progress bar of a labeling run: windows done of the windows expected, windows/s."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

from liser.config import LabelConfig
from liser.video_io import VideoError, probe
from liser.windows import Clip, window_starts


class _Rate(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(
            f"{speed:.1f} windows/s" if speed else "- windows/s", style="progress.data.speed"
        )


class WindowsBar:
    """Progress over the estimated number of windows (from headers: no decoding). Where the
    console is not a terminal (output sent to a log file), a plain line every ``every`` seconds."""

    every = 30.0

    def __init__(self, clips: list[Clip], config: LabelConfig, console: Console):
        self.progress = Progress(
            TextColumn("[bold]label[/]"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} windows"),
            TextColumn("{task.fields[files]}/{task.fields[n_files]} files"),
            _Rate(),
            TimeRemainingColumn(),
            console=console,
        )
        self.total = sum(_expected_windows(c, config) for c in clips)
        self.task = self.progress.add_task("label", total=self.total, files=0, n_files=len(clips))
        self.done = 0
        self.console = console
        self.started = self.last_line = time.monotonic()

    def __enter__(self) -> WindowsBar:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.update(self.task, total=self.done)
        self.progress.stop()

    def advance(self, n: int) -> None:
        self.done += n
        if self.done > self.total:
            self.total = self.done
            self.progress.update(self.task, total=self.total)
        self.progress.advance(self.task, n)
        now = time.monotonic()
        if not self.console.is_terminal and now - self.last_line >= self.every:
            self.last_line = now
            self.console.print(self.line(now - self.started), soft_wrap=True)

    def line(self, elapsed: float) -> str:
        """``label: 1200/6260 windows, 980/5309 files, 8.1 windows/s, about 10.4 min left``."""
        files = self.progress.tasks[0].fields["files"]
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate / 60 if rate > 0 else float("nan")
        return (
            f"label: {self.done}/{self.total} windows, {files}/{self.progress.tasks[0].fields['n_files']}"
            f" files, {rate:.1f} windows/s, about {left:.1f} min left"
        )

    def file_done(self) -> None:
        files = self.progress.tasks[0].fields["files"] + 1
        self.progress.update(self.task, files=files)


class NoBar:
    def advance(self, n: int) -> None:
        pass

    def file_done(self) -> None:
        pass


def _expected_windows(clip: Clip, config: LabelConfig) -> int:
    try:
        duration = (clip.end or probe(clip.path).duration) - clip.start
    except VideoError:
        return 0
    sr = config.frontend.sample_rate
    return len(
        window_starts(
            round(duration * sr),
            config.frontend.window_samples,
            round(config.hop_seconds * sr),
            round(config.min_seconds * sr),
        )
    )
