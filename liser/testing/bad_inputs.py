"""Bad-input corpora (tests/test_bad_inputs.py): the files real users throw at liser."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from liser.constants import SAMPLE_RATE

from .media import face_photo, face_video, tone

# --------------------------------------------------------------------------------------------
# Bad-input corpora (tests/test_bad_inputs.py): the files real users throw at liser


class BadInput(NamedTuple):
    """One file of a bad-input corpus.

    reason : a regular expression found in the reason (``AudioError.reason``, ``VideoError``)
        the file must be rejected with, or None when it must be used.
    seconds : for a usable file, (min, max) seconds its decoded audio must last.
    """

    path: Path
    reason: str | None
    seconds: tuple[float, float] | None = None


def _encoded(wave: np.ndarray, rate: int, format: str, subtype: str | None = None) -> bytes:
    """``wave`` (N,) or (N, C) encoded by soundfile, as bytes."""

    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format=format, subtype=subtype)
    return buffer.getvalue()


def _wav_with_format_tag(tag: int = 0x1234, seconds: float = 0.5) -> bytes:
    """A WAV whose 'fmt ' chunk names a codec (format tag) that nothing decodes."""
    import struct

    data = bytes(2 * round(seconds * SAMPLE_RATE))
    fmt = struct.pack("<HHIIHH", tag, 1, SAMPLE_RATE, 2 * SAMPLE_RATE, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def bad_audio_corpus(folder: str | Path) -> list[BadInput]:
    """Write ~25 awkward audio files into ``folder`` (each under 100 kB) and return them with the
    expected outcome of ``audio.load_audio``: broken files (0 bytes, header only, NaN/Inf samples,
    digital silence, 0.05 s, text, random bytes, an unknown codec, a dangling link) with the reason,
    and odd but usable ones (truncated mid-frame, clipped, 8 / 96 kHz, 6 channels, 0.1 s, wrong
    extensions, unicode and spaces in the path) with the length they must decode to."""

    import soundfile as sf

    from liser.video_io import write_video

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[BadInput] = []

    def add(name: str, reason: str | None, seconds=None) -> Path:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        cases.append(BadInput(path, reason, seconds))
        return path

    def exactly(seconds: float) -> tuple[float, float]:
        return (seconds - 1e-3, seconds + 1e-3)

    one = tone(1.0, 440.0)
    # broken: rejected, named, with the reason
    add("empty.wav", "0 bytes").write_bytes(b"")
    sf.write(add("header_only.wav", "no audio samples"), np.zeros(0, np.float32), SAMPLE_RATE)
    add("text.wav", "cannot decode").write_text("this is not audio\n" * 40)
    add("random_bytes.mp3", "cannot decode").write_bytes(np.random.default_rng(1).bytes(6000))
    add("unknown_codec.wav", "cannot decode").write_bytes(_wav_with_format_tag())
    for name, value, at in (("nan.wav", np.nan, 100), ("inf.wav", -np.inf, 12000)):
        wave = one.copy()
        wave[at] = value
        add(name, "NaN or Inf").write_bytes(_encoded(wave, SAMPLE_RATE, "WAV", "FLOAT"))
    sf.write(add("all_zeros.wav", "silent"), np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    # a float stereo file whose channels cancel: the down-mix (their mean) is digital silence
    cancel = np.stack([one, -one], axis=1)
    add("opposite_phase.wav", "silent").write_bytes(_encoded(cancel, SAMPLE_RATE, "WAV", "FLOAT"))
    sf.write(add("too_short.wav", "too short"), tone(0.05, 440.0), SAMPLE_RATE)
    os.symlink(folder / "no_such_target.wav", add("dangling_link.wav", "not found"))

    # odd but usable: the right length, finite, in [-1, 1]
    two = tone(2.0, 440.0)
    flac = _encoded(two, SAMPLE_RATE, "FLAC")
    add("truncated_mid_frame.flac", None, (0.5, 1.5)).write_bytes(flac[: len(flac) // 2 + 7])
    wav = _encoded(two, SAMPLE_RATE, "WAV", "PCM_16")  # 44-byte header, then 2-byte samples
    add("truncated_mid_sample.wav", None, (0.999, 1.001)).write_bytes(
        wav[: 44 + 2 * SAMPLE_RATE + 1]
    )
    ogg = add("truncated.ogg", None, (0.5, 2.0))
    sf.write(ogg, tone(4.0, 440.0), SAMPLE_RATE, format="OGG", subtype="VORBIS")
    ogg.write_bytes(ogg.read_bytes()[: ogg.stat().st_size // 2])
    clipped = np.clip(tone(1.0, 440.0, amplitude=3.0), -1.0, 1.0)
    sf.write(add("clipped_full_scale.wav", None, exactly(1.0)), clipped, SAMPLE_RATE, "PCM_16")
    sf.write(add("rate_8000.wav", None, exactly(1.0)), tone(1.0, 440.0, 8000), 8000)
    sf.write(add("rate_96000.flac", None, exactly(1.0)), tone(1.0, 440.0, 96000), 96000)
    gains = np.array([1.0, 0.5, 0.25, -0.25, 0.8, 0.1], np.float32)  # mean 0.4
    sf.write(add("six_channels.wav", None, exactly(1.0)), one[:, None] * gains, SAMPLE_RATE)
    sf.write(add("tenth_second.wav", None, exactly(0.1)), tone(0.1, 440.0), SAMPLE_RATE)
    add("flac_named.wav", None, exactly(1.0)).write_bytes(_encoded(one, SAMPLE_RATE, "FLAC"))
    add("wav_named.mp4", None, exactly(1.0)).write_bytes(_encoded(one, SAMPLE_RATE, "WAV"))
    aac = write_video(folder / "aac.m4a", audio=one)
    os.replace(aac, add("aac_named.wav", None, (0.99, 1.1)))  # AAC adds encoder padding
    unicode = add("ünïcødé ördner/clip with spaces — 日本語 ☺.wav", None, exactly(1.0))
    sf.write(unicode, one, SAMPLE_RATE)
    return cases


def symlink_loop(folder: str | Path) -> Path:
    """A folder tree with symlinks pointing back up (``loop/inner/up -> ..``, ``loop/self -> .``)
    and one 1 s clip inside; listing it must end and find the clip once. Returns ``loop``."""

    import soundfile as sf

    loop = Path(folder) / "loop"
    (loop / "inner").mkdir(parents=True, exist_ok=True)
    sf.write(loop / "inner" / "inside_loop.wav", tone(1.0, 330.0), SAMPLE_RATE)
    os.symlink("..", loop / "inner" / "up")
    os.symlink(".", loop / "self")
    return loop


def long_audio(path: str | Path, seconds: float = 7200.0, rate: int = 8000) -> Path:
    """A long quiet FLAC (a -54 dBFS tone, ~2 kB/s) written block by block in bounded memory:
    2 hours take ~16 MB on disk and a few seconds to write."""
    import soundfile as sf

    block = 60 * rate
    wave = (0.002 * np.sin(2 * np.pi * 220.0 * np.arange(block) / rate)).astype(np.float32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(path, "w", rate, 1, "PCM_16") as out:
        left = round(seconds * rate)
        while left > 0:
            out.write(wave[: min(block, left)])
            left -= block
    return path


def _mux_frames(
    path: Path,
    frames,
    times,
    audio: np.ndarray | None,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    audio_codec: str = "aac",
    rotation: int = 0,
) -> Path:
    """Frames (RGB uint8, all one size) shown at ``times`` seconds (any spacing: variable frame
    rate), optional 16 kHz mono audio, written with PyAV."""  # fmt: skip
    from fractions import Fraction

    import av

    with av.open(str(path), "w") as container:
        height, width = frames[0].shape[:2]
        video = container.add_stream(codec, rate=25)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            video.set_display_rotation(rotation)
        sound = None
        if audio is not None:
            sound = container.add_stream(audio_codec, rate=SAMPLE_RATE)
            sound.layout = "mono"
        for frame, seconds in zip(frames, times, strict=True):
            image = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            image.pts, image.time_base = round(seconds * 1000), Fraction(1, 1000)
            container.mux(video.encode(image))
        container.mux(video.encode(None))
        if sound is not None:
            size = sound.codec_context.frame_size  # 0: any frame size (PCM)
            pcm = np.pad(audio, (0, -len(audio) % size if size else 0)).astype(np.float32)
            size = size or 1024
            for offset in range(0, len(pcm), size):
                chunk = pcm[offset : offset + size][None]
                if sound.codec_context.format.name.startswith("s16"):
                    block = av.AudioFrame.from_ndarray(
                        (chunk * 32767).astype(np.int16), "s16", "mono"
                    )
                else:
                    block = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                block.sample_rate, block.pts = SAMPLE_RATE, offset
                block.time_base = Fraction(1, SAMPLE_RATE)
                container.mux(sound.encode(block))
            container.mux(sound.encode(None))
    return path


def bad_video_corpus(folder: str | Path) -> list[BadInput]:
    """Write awkward videos (3.5 s, tiny) into ``folder`` and return them with the expected outcome
    of labeling them (``reason``: why the file is skipped; None: it is labeled, its audio lasting
    ``seconds``). No audio stream, no video stream, variable frame rate, rotated 90 degrees (the
    face upright only once the display matrix is applied), 1x1 pixels, no face, four faces,
    corrupt packets in the middle, truncated (index lost), 0 bytes."""
    import cv2

    from liser.video_io import write_video

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    seconds, fps = 3.5, 5.0
    speech = tone(seconds, 220.0, seed=7)
    n = round(seconds * fps)
    times = np.arange(n) / fps
    cases: list[BadInput] = []
    about = (seconds - 0.05, seconds + 0.1)  # AAC adds encoder padding

    def add(name: str, reason: str | None, span=about) -> Path:
        cases.append(BadInput(folder / name, reason, span if reason is None else None))
        return folder / name

    face_video(add("no_audio_stream.mp4", "no audio stream"), seconds, fps, size=(120, 160))
    write_video(add("no_video_stream.m4a", None), audio=speech)
    vfr = np.cumsum(np.r_[0.0, np.random.default_rng(3).uniform(0.05, 0.6, 40)])
    vfr = vfr[vfr < seconds - 0.1]
    face = cv2.resize(face_photo(), (96, 112))
    framed = np.full((160, 200, 3), 96, np.uint8)
    framed[24:136, 52:148] = face
    _mux_frames(add("variable_frame_rate.mkv", None), [framed] * len(vfr), vfr, speech)
    sideways = np.ascontiguousarray(np.rot90(framed, k=-1))  # stored turned clockwise
    _mux_frames(add("rotated.mp4", None), [sideways] * n, times, speech, rotation=90)
    pixel = np.full((1, 1, 3), 200, np.uint8)
    _mux_frames(add("one_pixel.mkv", None, (seconds - 1e-3, seconds + 1e-3)), [pixel] * n, times,
                speech, codec="ffv1", pix_fmt="yuv444p", audio_codec="pcm_s16le")  # fmt: skip
    face_video(
        add("no_face.mp4", None), seconds, fps, face_until=0.0, size=(120, 160), audio=speech
    )
    crowd = np.full((240, 320, 3), 96, np.uint8)
    for (y, x), size in zip(
        ((10, 10), (10, 170), (130, 20), (120, 180)), (100, 90, 80, 110), strict=True
    ):
        crowd[y : y + size, x : x + int(size * 0.85)] = cv2.resize(
            face_photo(), (int(size * 0.85), size)
        )
    write_video(add("four_faces.mp4", None), [crowd] * n, fps=fps, audio=speech)
    # random bytes over the middle fifth: in mp4 (index at the end) only packet payloads are hit
    # and decoding resumes after them; Matroska's demuxer stops at the damage
    for name, span in (
        ("corrupt_middle.mp4", about),
        ("corrupt_middle.mkv", (1.0, seconds + 0.1)),
    ):
        corrupt = add(name, None, span)
        face_video(corrupt, seconds, fps, size=(120, 160), audio=speech)
        data = bytearray(corrupt.read_bytes())
        middle = slice(len(data) * 2 // 5, len(data) * 3 // 5)
        data[middle] = np.random.default_rng(5).bytes(middle.stop - middle.start)
        corrupt.write_bytes(bytes(data))
    truncated = add("truncated.mp4", "cannot (decode|be opened)")  # the index was at the end
    face_video(truncated, seconds, fps, size=(120, 160), audio=speech)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    add("zero_bytes.mp4", "0 bytes|empty").write_bytes(b"")
    return cases
