"""Reading and writing video files with PyAV: probe, sampled RGB frames, images, writing.

Times are in seconds from the start of the video stream. Frames are RGB uint8 arrays of shape
(H, W, 3). Audio given to ``write_video`` is float32 mono in [-1, 1].
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .constants import SAMPLE_RATE

# container -> (PyAV format name, default video codec, default audio codec)
CONTAINERS = {
    ".mp4": ("mp4", "libx264", "aac"),
    ".m4v": ("mp4", "libx264", "aac"),
    ".mov": ("mov", "libx264", "aac"),
    ".mkv": ("matroska", "libx264", "aac"),
    ".webm": ("webm", "libvpx-vp9", "libopus"),
    ".avi": ("avi", "mpeg4", "pcm_s16le"),
    ".m4a": ("mp4", None, "aac"),
    ".ogg": ("ogg", None, "libopus"),
    ".wav": ("wav", None, "pcm_s16le"),
}
# encoder options: VP8/VP9 default to a very slow "good" deadline and a low bit rate
CODEC_OPTIONS = {
    "libvpx": {"deadline": "realtime", "cpu-used": "8"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "row-mt": "1"},
}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")


class VideoError(Exception):
    """A video or image file that cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class MediaInfo:
    """What ``probe`` finds in a media file, without decoding it."""

    path: str
    duration: float  # seconds (0.0 when the container does not say)
    has_video: bool
    has_audio: bool
    fps: float  # average frame rate of the video stream; 0.0 without video
    width: int  # 0 without video
    height: int

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels as stored (before any display rotation)."""
        return (self.width, self.height)


def _open(path: str | Path):
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: no such file")
    if path.is_dir():
        raise VideoError(f"{path}: is a folder, not a video file")
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: file is empty (0 bytes)")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as error:
        raise VideoError(f"{path}: cannot be opened as a media file ({error})") from error


def probe(path: str | Path) -> MediaInfo:
    """Duration, streams, frame rate and size of a media file (reads headers only)."""
    with _open(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        duration = 0.0
        if container.duration is not None:
            duration = container.duration / av.time_base
        elif video is not None and video.duration is not None:
            duration = float(video.duration * video.time_base)
        fps = float(video.average_rate or video.base_rate or 0) if video is not None else 0.0
        return MediaInfo(
            path=str(path),
            duration=max(duration, 0.0),
            has_video=video is not None,
            has_audio=bool(container.streams.audio),
            fps=fps,
            width=video.codec_context.width if video is not None else 0,
            height=video.codec_context.height if video is not None else 0,
        )


def iter_frames(
    path: str | Path,
    frame_rate: float,
    start: float = 0.0,
    end: float | None = None,
    fast: bool = False,
) -> Iterator[tuple[float, np.ndarray]]:
    """Sample a video at ``frame_rate`` frames per second between ``start`` and ``end`` seconds.

    Yields ``(time, frame)`` for the sample times ``start, start + 1/frame_rate, ...``: the frame
    shown at each time (the last one whose timestamp is <= time), so variable-frame-rate files are
    sampled on a regular grid. ``frame``: RGB uint8, shape = (H, W, 3), rotated upright when the
    file has rotation metadata. Raises ``VideoError`` for a file without a video stream.

    ``fast``: skip the deblocking filter and, in streams with B-frames, the frames no other frame
    refers to (FFmpeg ``skip_loop_filter``, ``skip_frame=NONREF``): about 1.4x faster H.264
    decoding; a sample is then the nearest earlier decoded frame (a few frames earlier at most),
    which is fine at a few samples per second and not for frame-exact work.
    """
    if frame_rate <= 0:
        raise ValueError(f"frame_rate must be > 0, got {frame_rate}")
    container = _open(path)
    try:
        if not container.streams.video:
            raise VideoError(f"{path}: has no video stream (audio-only file?)")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if fast:
            stream.codec_context.options = {"skip_loop_filter": "all"}
            if stream.codec_context.has_b_frames:
                stream.codec_context.skip_frame = "NONREF"
        time_base = stream.time_base
        origin = float(stream.start_time * time_base) if stream.start_time is not None else 0.0
        if start > 1.0:  # jump to the keyframe before start instead of decoding everything
            container.seek(int((start + origin) / time_base), stream=stream, backward=True)
        step = 1.0 / frame_rate
        index = 0
        target = start
        shown = None  # (time, frame) of the frame on screen before the current one
        for frame in _decode(container, stream, path):
            if frame.pts is None:
                continue
            time = float(frame.pts * time_base) - origin
            if end is not None and target >= end:
                return
            if shown is not None:
                if time < shown[0]:  # out of order after damaged data: keep time monotonic
                    continue
                while target < time and (end is None or target < end):
                    yield target, _to_rgb(shown[1])
                    index += 1
                    target = start + index * step
            shown = (time, frame)
        if shown is None:
            return
        # the last frame stays on screen for one frame duration
        duration = 1.0 / float(stream.average_rate) if stream.average_rate else step
        stop = shown[0] + duration if end is None else min(end, shown[0] + duration)
        while target < stop:
            yield target, _to_rgb(shown[1])
            index += 1
            target = start + index * step
    finally:
        container.close()


def _decode(container, stream, path) -> Iterator:
    """Decoded frames of ``stream``; damaged packets are skipped, damage that stops the demuxer
    ends the stream early. Raises ``VideoError`` when nothing at all can be decoded."""
    decoded = errors = 0
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except av.error.FFmpegError as error:  # the container itself is damaged here: stop
            if decoded == 0:
                raise VideoError(f"{path}: cannot read the video stream ({error})") from error
            break
        try:
            frames = packet.decode()
        except av.error.FFmpegError as error:  # a damaged packet: skip it, decoding resumes
            errors += 1
            last_error = error
            continue
        decoded += len(frames)
        yield from frames
    if decoded == 0 and errors:
        raise VideoError(f"{path}: no frame could be decoded ({last_error})")


def _to_rgb(frame) -> np.ndarray:
    """A decoded frame as RGB uint8, turned by its display matrix (counter-clockwise degrees)."""
    array = frame.to_ndarray(format="rgb24")
    quarter_turns = round(getattr(frame, "rotation", 0) / 90) % 4
    if quarter_turns:
        array = np.ascontiguousarray(np.rot90(array, k=quarter_turns))
    return array


def read_frames(
    path: str | Path,
    frame_rate: float,
    start: float = 0.0,
    end: float | None = None,
    fast: bool = False,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """All sampled frames of ``iter_frames`` at once: (times (T,) float64, list of T frames)."""
    times, frames = [], []
    for time, frame in iter_frames(path, frame_rate, start, end, fast):
        times.append(time)
        frames.append(frame)
    return np.asarray(times, dtype=np.float64), frames


def read_image(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8, shape = (H, W, 3), turned upright by its EXIF orientation."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise VideoError(f"{path}: cannot be read as an image ({error})") from error


def is_image(path: str | Path) -> bool:
    """True when the file name has an image extension (.jpg, .png, ...)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def write_video(
    path: str | Path,
    frames: np.ndarray | Iterable[np.ndarray] | None = None,
    fps: float = 25.0,
    audio: np.ndarray | None = None,
    sample_rate: int = SAMPLE_RATE,
    video_codec: str | None = None,
    audio_codec: str | None = None,
) -> Path:
    """Write frames and/or mono audio to a media file, atomically (temp name, then rename).

    frames: uint8 array of shape (T, H, W, 3) (or (T, H, W) gray), or an iterable of such frames
    (a generator keeps memory bounded); None writes an audio-only file. Odd sizes are padded by
    one edge pixel (yuv420p needs even sizes). audio: float32, shape = (N,) at ``sample_rate``.
    The container follows the extension (.mp4 .m4v .mov .mkv .webm .avi; .m4a .ogg .wav audio only);
    codecs default to H.264 + AAC (mp4/mov/mkv), VP9 + Opus (webm), MPEG-4 + PCM (avi).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CONTAINERS:
        raise VideoError(f"{path}: unsupported container '{suffix}' ({', '.join(CONTAINERS)})")
    format_name, default_video, default_audio = CONTAINERS[suffix]
    if frames is None and audio is None:
        raise ValueError("write_video needs frames, audio or both")
    if frames is not None and default_video is None:
        raise VideoError(f"{path}: '{suffix}' holds audio only; use .mp4, .mkv, .webm or .avi")
    video_codec = "libx264" if video_codec == "h264" else (video_codec or default_video)
    audio_codec = audio_codec or default_audio
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial{suffix}")
    try:
        with av.open(str(tmp), mode="w", format=format_name) as container:
            _mux(container, frames, fps, audio, sample_rate, video_codec, audio_codec)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _mux(container, frames, fps, audio, sample_rate, video_codec, audio_codec) -> None:
    """Encode frames and audio into an open output container, interleaved by time."""
    frames_iter = iter(frames) if frames is not None else iter(())
    first = next(frames_iter, None) if frames is not None else None
    if frames is not None and first is None:
        raise ValueError("write_video got an empty sequence of frames")
    vstream = astream = None
    if first is not None:
        height, width = first.shape[:2]
        rate = Fraction(fps).limit_denominator(1001)
        options = CODEC_OPTIONS.get(video_codec, {})
        vstream = container.add_stream(video_codec, rate=rate, options=options)
        if options:
            vstream.bit_rate = 2_000_000
        vstream.width, vstream.height = width + width % 2, height + height % 2
        vstream.pix_fmt = "yuv420p"
    audio_frames: Iterator = iter(())
    if audio is not None:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        astream = container.add_stream(audio_codec, rate=sample_rate)
        astream.layout = "mono"
        audio_frames = _audio_frames(audio, sample_rate, astream)
    pending_audio = next(audio_frames, None)

    def flush_audio_until(seconds: float) -> None:
        nonlocal pending_audio
        while pending_audio is not None and pending_audio.pts / sample_rate <= seconds:
            container.mux(astream.encode(pending_audio))
            pending_audio = next(audio_frames, None)

    if vstream is not None:
        chain = _chain(first, frames_iter)
        for index, array in enumerate(chain):
            flush_audio_until(index / fps)
            frame = av.VideoFrame.from_ndarray(_even_rgb(array, vstream), format="rgb24")
            frame.pts = index
            frame.time_base = 1 / rate
            container.mux(vstream.encode(frame))
        container.mux(vstream.encode(None))
    flush_audio_until(math.inf)
    if astream is not None:
        container.mux(astream.encode(None))


def _chain(first, rest):
    yield first
    yield from rest


def _even_rgb(array: np.ndarray, stream) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"a frame must be (H, W, 3) or (H, W), got {array.shape}")
    pad_h, pad_w = stream.height - array.shape[0], stream.width - array.shape[1]
    if pad_h < 0 or pad_w < 0 or pad_h > 1 or pad_w > 1:
        raise ValueError(f"all frames must have the size of the first, got {array.shape}")
    if pad_h or pad_w:
        array = np.pad(array, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return np.ascontiguousarray(array)


def _audio_frames(audio: np.ndarray, sample_rate: int, stream) -> Iterator:
    """Audio cut into encoder-sized frames in the encoder's sample format."""
    size = stream.codec_context.frame_size or 1024
    sample_format = stream.codec_context.format.name
    for offset in range(0, audio.size, size):
        chunk = np.clip(audio[offset : offset + size], -1.0, 1.0)
        if chunk.size < size and stream.codec_context.frame_size:
            chunk = np.pad(chunk, (0, size - chunk.size))
        if sample_format.startswith("s16"):
            data = (chunk * 32767).astype(np.int16)[None, :]
            frame = av.AudioFrame.from_ndarray(data, format="s16", layout="mono")
        else:
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
        frame.sample_rate = sample_rate
        frame.pts = offset
        frame.time_base = Fraction(1, sample_rate)
        yield frame
