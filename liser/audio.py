"""Reading any audio or video file to 16 kHz mono float32, streaming long files, and windows.

Audio files (wav, flac, ogg, mp3, ...) are read with soundfile, the audio track of video containers
(mp4, mkv, webm, avi, mov, mpg, flv, ...) with PyAV; each backend is tried when the other cannot
open a file, so a wrongly named file still loads. Channels are averaged to mono and the result is
resampled with soxr (high quality).

Bad input raises :class:`AudioError` naming the file and the reason: missing, 0 bytes, not
decodable, no audio stream, no samples, NaN/Inf samples, shorter than ``MIN_SECONDS`` (0.1 s),
or digital silence (peak below ``SILENT_PEAK``, i.e. -120 dBFS).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .constants import SAMPLE_RATE, VIDEO_EXTENSIONS

log = logging.getLogger(__name__)

MIN_SECONDS = 0.1  # shortest usable clip; shorter ones carry no emotion worth a 3 s window
SILENT_PEAK = 1e-6  # peak |sample| below this (-120 dBFS) counts as digital silence
BLOCK_SECONDS = 10.0  # native-rate block size when reading incrementally
SEEK_PREROLL_SECONDS = 0.2  # PyAV seeks this much before `start` and drops the extra samples
GAP_SECONDS = 0.05  # a jump in audio timestamps larger than this (dropped packets) is filled


class AudioError(Exception):
    """A file that cannot be used as audio. The message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


# --------------------------------------------------------------------------------------------
# Backends: an open file as (native sample rate, mono float32 blocks from `start`)


class _Reader:
    """An open file: `rate` (native Hz), iterate for mono float32 blocks, `close()` when done."""

    def __init__(self, backend: str, rate: int, blocks: Iterator[np.ndarray], handle):
        self.backend, self.rate, self.handle, self._blocks = backend, rate, handle, blocks

    def __iter__(self) -> Iterator[np.ndarray]:
        return self._blocks

    def close(self) -> None:
        self._blocks.close()
        self.handle.close()


def _soundfile_reader(path: Path, start: float) -> _Reader:
    handle = sf.SoundFile(str(path))  # raises sf.LibsndfileError when it cannot open
    rate = handle.samplerate
    first = round(start * rate)
    if first > 0:
        if handle.frames > 0 and first >= handle.frames:
            handle.close()
            raise AudioError(
                path, f"start {start:.3f} s is beyond the end ({handle.frames / rate:.3f} s)"
            )
        handle.seek(first)

    def blocks() -> Iterator[np.ndarray]:
        block = max(1, round(BLOCK_SECONDS * rate))
        while len(data := handle.read(block, dtype="float32", always_2d=True)):
            yield data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]

    return _Reader("soundfile", rate, blocks(), handle)


_INT_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}


def _frame_to_mono(frame) -> np.ndarray:
    """A decoded PyAV audio frame -> mono float32 samples (channels averaged)."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:
        data = data.reshape(-1, channels).T
    name = frame.format.name.rstrip("p")
    if name in _INT_SCALE:
        data = data.astype(np.float32)
        if name == "u8":
            data -= 128.0
        data /= _INT_SCALE[name]
    return data.mean(axis=0, dtype=np.float32) if channels > 1 else data[0].astype(np.float32)


def _pyav_reader(path: Path, start: float) -> _Reader:
    import av

    container = av.open(str(path))  # raises av.error.FFmpegError when it cannot open
    if not container.streams.audio:
        n_video = len(container.streams.video)
        container.close()
        raise AudioError(path, f"no audio stream (the container has {n_video} video stream(s))")
    stream = container.streams.audio[0]
    if stream.codec_context is None:
        container.close()
        raise ValueError("unsupported audio codec (FFmpeg has no decoder for it)")
    rate = stream.codec_context.sample_rate
    if not rate:
        container.close()
        raise AudioError(path, "audio stream without a sample rate")
    origin = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    to_skip = round(start * rate)  # samples before `start` still to drop; None: ask the 1st frame
    if start > 0:
        # land a little early: a decoder's first frame after a seek lacks its overlap (AAC, MP3)
        at = max(0.0, start - SEEK_PREROLL_SECONDS)
        try:
            container.seek(round((origin + at) / stream.time_base), stream=stream, backward=True)
            to_skip = None
        except av.error.FFmpegError:  # not seekable: decode from the beginning instead
            pass

    def blocks() -> Iterator[np.ndarray]:
        nonlocal to_skip
        bad, decoded, filled = 0, 0, 0  # corrupt packets; samples yielded; of them, silence
        lag = None  # (frame time - samples yielded) at the first frame yielded, in samples
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                bad += 1  # a corrupt packet: skipped; the gap it leaves is filled below
                continue
            for frame in frames:
                mono = _frame_to_mono(frame)
                if to_skip is None:  # first frame after seeking: where does it start?
                    at = frame.time - origin if frame.time is not None else 0.0
                    to_skip = max(0, round((start - at) * rate))
                if to_skip >= len(mono):
                    to_skip -= len(mono)
                    continue
                if frame.time is not None:  # samples missing before this frame: keep the timing
                    ahead = round((frame.time - origin - start) * rate) + to_skip - decoded
                    lag = ahead if lag is None else lag
                    if ahead - lag > GAP_SECONDS * rate:
                        gap = np.zeros(ahead - lag, np.float32)
                        filled += len(gap)
                        decoded += len(gap)
                        yield gap
                decoded += len(mono) - to_skip
                yield mono[to_skip:]
                to_skip = 0
        if bad or filled:
            log.warning("%s: %d corrupt audio packet(s) skipped, %.3f s of audio missing "
                        "(filled with silence)", path, bad, filled / rate)  # fmt: skip
        _warn_if_cut_short(path, container, stream, decoded / rate, start)

    return _Reader("PyAV", rate, blocks(), container)


def _warn_if_cut_short(path, container, stream, seconds: float, start: float) -> None:
    """Log when decoding ended well before the duration the container declares (a demuxer that
    gave up at corrupt data, a truncated file); what was read is still used."""
    if stream.duration is not None and stream.time_base is not None:
        declared = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        declared = container.duration / 1_000_000  # AV_TIME_BASE units
    else:
        return
    if declared - start - seconds > max(0.5, 0.05 * (declared - start)):
        log.warning("%s: decoding stopped at %.2f s of the %.2f s the file declares (corrupt or "
                    "truncated); the rest is lost", path, start + seconds, declared)  # fmt: skip


def _open_reader(path: str | os.PathLike, start: float = 0.0) -> _Reader:
    """Check the file and open it with the backend that can read it."""
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "file not found")
    if path.is_dir():
        raise AudioError(path, "is a directory, not a file")
    try:
        size = path.stat().st_size
    except OSError as err:
        raise AudioError(path, f"cannot read ({err.strerror})") from err
    if size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    backends = [("soundfile", _soundfile_reader), ("PyAV", _pyav_reader)]
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        backends.reverse()
    reasons = []
    for name, backend in backends:
        try:
            return backend(path, start)
        except AudioError:
            raise
        except Exception as err:  # noqa: BLE001 - every backend failure becomes one message
            reasons.append(f"{name}: {str(err).strip() or type(err).__name__}")
    raise AudioError(path, "cannot decode audio (unsupported or corrupt): " + "; ".join(reasons))


def _check_finite(path, wave: np.ndarray, offset_seconds: float = 0.0, rate: int = 1) -> None:
    finite = np.isfinite(wave)
    if not finite.all():
        at = offset_seconds + int(np.argmin(finite)) / rate
        raise AudioError(path, f"contains NaN or Inf samples (first at {at:.3f} s)")


# --------------------------------------------------------------------------------------------
# Public API


def load_audio(
    path: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    start: float = 0.0,
    duration: float | None = None,
    *,
    min_seconds: float = MIN_SECONDS,
    allow_silent: bool = False,
) -> np.ndarray:
    """Read `duration` seconds (all when None) from `start` of an audio or video file.

    Returns
    -------
    wave : np.ndarray, float32, shape = (n_samples,), mono at `sample_rate`, where
        n_samples = round(native_frames * sample_rate / native_rate) of the segment read
        (shorter than `duration` when the file ends first).

    Raises AudioError for missing, empty, undecodable, audio-less files, NaN/Inf samples, a segment
    shorter than `min_seconds`, or digital silence (unless `allow_silent`).
    """
    if sample_rate <= 0 or start < 0 or (duration is not None and duration <= 0):
        raise ValueError(
            f"bad arguments: sample_rate={sample_rate}, start={start}, duration={duration}"
        )
    reader = _open_reader(path, start)
    rate = reader.rate
    try:
        parts = _read_segment(path, reader, start, duration)
    except Exception as err:  # noqa: BLE001 - a decoder failing mid-file
        raise AudioError(
            path, f"decoding failed ({str(err).strip() or type(err).__name__})"
        ) from err
    have = sum(len(part) for part in parts)
    if have == 0:
        where = f" after {start:.3f} s" if start > 0 else ""
        raise AudioError(path, f"no audio samples{where} (header only or empty stream)")
    wanted = None if duration is None else round(duration * rate)
    native = np.concatenate(parts)[:wanted]
    _check_finite(path, native, start, rate)
    if not allow_silent and float(np.abs(native).max()) < SILENT_PEAK:
        raise AudioError(path, "all silent (digital silence: every sample is ~0)")
    wave = native if rate == sample_rate else soxr.resample(native, rate, sample_rate, quality="HQ")
    if len(wave) < round(min_seconds * sample_rate):
        raise AudioError(
            path, f"too short: {len(wave) / sample_rate:.3f} s < {min_seconds:.3f} s minimum"
        )
    return np.ascontiguousarray(wave, dtype=np.float32)


def _read_segment(path, reader: _Reader, start: float, duration: float | None) -> list:
    """Blocks from the reader's start until `duration` seconds (all when None); closes it."""
    wanted = None if duration is None else round(duration * reader.rate)
    parts, have = [], 0
    try:
        for block in _resilient_blocks(path, reader, start):
            parts.append(block)
            have += len(block)
            if wanted is not None and have >= wanted:
                break
    finally:
        reader.close()
    return parts


def stream_audio(
    path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, chunk_seconds: float = 60.0
) -> Iterator[np.ndarray]:
    """Yield a file as consecutive mono float32 chunks at `sample_rate`, in bounded memory.

    Every chunk has round(chunk_seconds * sample_rate) samples except the last (shorter, never
    empty); their concatenation equals `load_audio(path, sample_rate)`. The file is checked when
    the generator starts (missing, empty, undecodable: AudioError); NaN/Inf raise AudioError at the
    chunk that holds them. Silence and length are the caller's to judge.
    """
    if chunk_seconds <= 0:
        raise ValueError(f"chunk_seconds must be > 0, got {chunk_seconds}")
    reader = _open_reader(path)
    rate = reader.rate
    chunk = max(1, round(chunk_seconds * sample_rate))
    resampler = (
        None if rate == sample_rate else soxr.ResampleStream(rate, sample_rate, 1, "float32")
    )
    pending: list[np.ndarray] = []
    n_pending, n_native = 0, 0
    try:
        for block in _with_last(_resilient_blocks(path, reader)):
            if block is not None:
                _check_finite(path, block, n_native / rate, rate)
                n_native += len(block)
            if resampler is None:
                out = block if block is not None else np.zeros(0, np.float32)
            elif block is None:
                out = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            else:
                out = resampler.resample_chunk(block, last=False)
            pending.append(out)
            n_pending += len(out)
            while n_pending >= chunk or (block is None and n_pending > 0):
                joined = np.concatenate(pending)
                piece, rest = joined[:chunk], joined[chunk:]
                pending, n_pending = [rest], len(rest)
                yield np.ascontiguousarray(piece, dtype=np.float32)
    except AudioError:
        raise
    except Exception as err:  # noqa: BLE001 - a decoder failing mid-file
        raise AudioError(
            path, f"decoding failed ({str(err).strip() or type(err).__name__})"
        ) from err
    finally:
        reader.close()
    if n_native == 0:
        raise AudioError(path, "no audio samples (header only or empty stream)")


def _resilient_blocks(path, reader: _Reader, start: float = 0.0) -> Iterator[np.ndarray]:
    """The reader's blocks (it started at `start` s); when soundfile fails part way through (a
    truncated or damaged file), the rest from PyAV, which keeps what it can."""
    done = 0
    try:
        for block in reader:
            done += len(block)
            yield block
        return
    except Exception as err:  # noqa: BLE001 - a decoder failing mid-file
        if reader.backend != "soundfile":
            raise
        failure = err
    try:
        retry = _pyav_reader(Path(path), start + done / reader.rate)
    except Exception:  # noqa: BLE001 - PyAV cannot read it either: report soundfile's error
        raise failure from None
    if retry.rate != reader.rate:
        retry.close()
        raise failure
    at, why = start + done / reader.rate, str(failure).strip() or type(failure).__name__
    log.warning("%s: soundfile failed at %.3f s (%s); reading on with PyAV", path, at, why)
    try:
        yield from retry
    finally:
        retry.close()


def _with_last(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray | None]:
    """The blocks, then None to mark the end (so the resampler can be flushed)."""
    yield from blocks
    yield None


def audio_duration(path: str | os.PathLike) -> float:
    """Duration in seconds from the file's header; decodes (in bounded memory) only when the
    header does not say. Raises AudioError for files load_audio would reject as unreadable."""
    reader = _open_reader(path)
    try:
        if reader.backend == "soundfile" and reader.handle.frames > 0:
            return reader.handle.frames / reader.rate
        if reader.backend == "PyAV":
            stream = reader.handle.streams.audio[0]
            if stream.duration is not None:
                return float(stream.duration * stream.time_base)
            if reader.handle.duration is not None:
                return reader.handle.duration / 1_000_000  # AV_TIME_BASE units
        return sum(len(block) for block in reader) / reader.rate
    except AudioError:
        raise
    except Exception as err:  # noqa: BLE001 - a decoder failing mid-file
        raise AudioError(
            path, f"decoding failed ({str(err).strip() or type(err).__name__})"
        ) from err
    finally:
        reader.close()


# --------------------------------------------------------------------------------------------
# Windows
