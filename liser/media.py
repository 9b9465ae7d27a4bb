"""Listing and probing media files: recursive listing that survives symlink loops, and the
duration and streams of a file from its header (soundfile, PyAV), without decoding it."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from .constants import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS

MEDIA_EXTENSIONS = AUDIO_EXTENSIONS + VIDEO_EXTENSIONS


def list_media(
    root: str | Path,
    extensions=MEDIA_EXTENSIONS,
    errors: list | None = None,
    seen: set | None = None,
    confine: str | Path | None = None,
) -> list[Path]:
    """Media files under ``root`` (recursive, sorted, hidden entries skipped).

    Symlinked folders are followed, each real folder once: a symlink back into a folder already
    listed (a loop, or a second link to it) is not entered again. ``seen`` (a set of real
    folders, shared across calls) makes that hold over several roots of one run. Unreadable
    folders are added to ``errors`` as (path, reason). ``confine``: a tree that ``root`` lies in (a
    corpus whose sub-folders are classes); anything under ``root`` that resolves into that tree but
    outside ``root`` itself is skipped and reported, so no file is listed under another class.
    """
    root = Path(root)
    if root.is_file():
        return [root.absolute()] if root.suffix.lower() in extensions else []
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    seen = set() if seen is None else seen
    report = errors.append if errors is not None else (lambda item: None)
    home = os.path.realpath(root)
    tree = os.path.realpath(confine) if confine is not None else None

    def escapes(real: str) -> bool:
        return tree is not None and _inside(real, tree) and not _inside(real, home)

    def on_error(error: OSError) -> None:
        report((error.filename, f"unreadable folder ({error.strerror})"))

    files = []
    for folder, dirs, names in os.walk(root.absolute(), followlinks=True, onerror=on_error):
        real = os.path.realpath(folder)
        if escapes(real):
            report((folder, f"outside its folder {root}: it leads to {real}"))
            dirs[:] = []
            continue
        if real in seen:  # a symlink loop, or a second link to a folder: listed once
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = Path(folder, name)
            if name.startswith(".") or path.suffix.lower() not in extensions:
                continue
            if escapes(os.path.realpath(path)):
                report((path, f"outside its folder {root}: it leads to {os.path.realpath(path)}"))
                continue
            files.append(path)
    return sorted(files)


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def probe_media(path: str | Path) -> dict:
    """Duration and streams of a file from its header (PyAV demuxes packets only when the
    container has no duration; nothing is decoded). Keys: duration (s), has_audio, has_video,
    sample_rate, channels, fps, width, height (NaN / 0 when absent). Raises ValueError."""
    path = Path(path)
    if not path.is_file():
        raise ValueError("missing" if not os.path.lexists(path) else "broken link or not a file")
    if path.stat().st_size == 0:
        raise ValueError("empty file (0 bytes)")
    info = dict(duration=math.nan, has_audio=False, has_video=False, sample_rate=0, channels=0)
    info.update(fps=math.nan, width=0, height=0)
    if path.suffix.lower() in AUDIO_EXTENSIONS:
        import soundfile as sf

        try:
            header = sf.info(str(path))
        except Exception:  # noqa: BLE001 - not readable by libsndfile: try FFmpeg below
            header = None
        if header is not None and header.samplerate > 0:
            info.update(has_audio=True, sample_rate=header.samplerate, channels=header.channels)
            info["duration"] = header.frames / header.samplerate
            return _checked(info)
    return _checked(_probe_av(path, info))


def _probe_av(path: Path, info: dict) -> dict:
    import av

    try:
        container = av.open(str(path), metadata_errors="ignore")
    except Exception as error:  # noqa: BLE001 - any FFmpeg failure is a reason to skip the file
        raise ValueError(f"cannot be opened ({type(error).__name__}: {error})") from None
    with container:
        audio = container.streams.audio[0] if container.streams.audio else None
        video = container.streams.video[0] if container.streams.video else None
        for stream in (audio, video):
            if stream is not None and stream.codec_context is None:  # stream fields need one
                raise ValueError(f"unsupported {stream.type} codec (FFmpeg has no decoder for it)")
        if audio is not None:
            context = audio.codec_context
            info.update(has_audio=True, sample_rate=context.sample_rate or 0)
            info["channels"] = context.channels or 0
        if video is not None:
            rate = video.average_rate or video.guessed_rate
            info.update(has_video=True, fps=float(rate) if rate else math.nan)
            info.update(
                width=video.codec_context.width or 0, height=video.codec_context.height or 0
            )
        if audio is None and video is None:
            raise ValueError("no audio or video stream")
        if container.duration:
            info["duration"] = container.duration / 1_000_000  # AV_TIME_BASE
        else:
            durations = [
                float(s.duration * s.time_base)
                for s in (audio, video)
                if s and s.duration and s.time_base
            ]
            info["duration"] = max(durations) if durations else _demux_duration(container)
    return info


def _demux_duration(container) -> float:
    """Seconds up to the end of the last packet, reading packets without decoding them."""
    end = 0.0
    try:
        for packet in container.demux():
            if packet.pts is not None and packet.time_base:
                end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
    except Exception:  # noqa: BLE001 - a corrupt tail: keep what was read
        pass
    return end or math.nan


def _checked(info: dict) -> dict:
    if not info["duration"] > 0:
        raise ValueError("empty (zero duration)" if info["duration"] == 0 else "unknown duration")
    return info


def progress(items: list, description: str) -> Iterable:
    """``items`` with a rich progress bar on stderr when it is a terminal and the list is long."""
    if len(items) < 50 or not sys.stderr.isatty():
        return items
    from rich.progress import track

    return track(items, description=description, transient=True)
