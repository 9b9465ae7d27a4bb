"""liser.audio: decoding, resampling, down-mixing, streaming, bad input and windows."""

from __future__ import annotations

import shutil
import struct
import tempfile
import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from liser.audio import AudioError, audio_duration, load_audio, stream_audio
from liser.windows import fit_window, window_starts

SR = 16000


def sine(seconds: float, freq: float, rate: int, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(wave: np.ndarray, rate: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.argmax(spectrum) * rate / len(wave))


def write_av(path, seconds=1.0, rate=44100, freq=440.0, audio=True, video=True, codec="aac"):
    """A tiny container: `codec` stereo audio (a sine) and/or a few 32x32 h264 frames."""
    with av.open(str(path), "w") as out:  # add every stream before muxing any packet
        if video:
            vstream = out.add_stream("libx264", rate=10)
            vstream.width, vstream.height, vstream.pix_fmt = 32, 32, "yuv420p"
        if audio:
            astream = out.add_stream(codec, rate=rate)
            astream.layout = "stereo"
        if video:
            for i in range(max(1, int(seconds * 10))):
                image = np.full((32, 32, 3), (i * 20) % 255, np.uint8)
                out.mux(vstream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            out.mux(vstream.encode())
        if audio:
            data = np.stack([sine(seconds, freq, rate), sine(seconds, freq, rate, 0.1)])
            for i in range(0, data.shape[1], 1024):
                block = np.ascontiguousarray(data[:, i : i + 1024])
                frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = rate, i
                out.mux(astream.encode(frame))
            out.mux(astream.encode())
    return Path(path)


# --------------------------------------------------------------------------------------------
# Decoding and resampling


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000, 96000])
def test_resampling_keeps_the_tone_frequency_and_length(tmp_path, rate):
    path = tmp_path / f"tone_{rate}.wav"
    sf.write(path, sine(1.0, 1000.0, rate), rate, subtype="PCM_16")
    wave = load_audio(path)
    assert wave.dtype == np.float32
    assert len(wave) == round(rate * SR / rate)
    assert abs(peak_hz(wave) - 1000.0) <= 1.0
    assert 0.25 < np.abs(wave).max() < 0.35  # amplitude kept


def test_channels_are_averaged(tmp_path):
    left, right = sine(1.0, 300.0, SR, 0.4), sine(1.0, 300.0, SR, 0.2)
    sf.write(tmp_path / "stereo.wav", np.stack([left, right], 1), SR, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "stereo.wav"), (left + right) / 2, atol=1e-6)
    six = np.stack([sine(1.0, 300.0, SR, 0.05 * (c + 1)) for c in range(6)], 1)
    sf.write(tmp_path / "six.wav", six, SR, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "six.wav"), six.mean(1), atol=1e-6)


@pytest.mark.parametrize("suffix", [".flac", ".ogg", ".mp3"])
def test_compressed_formats(tmp_path, suffix):
    path = tmp_path / f"tone{suffix}"
    sf.write(path, sine(1.0, 440.0, 44100), 44100)
    wave = load_audio(path)
    assert abs(len(wave) - SR) <= 0.02 * SR  # mp3 adds encoder delay/padding
    assert abs(peak_hz(wave) - 440.0) <= 2.0
    assert abs(audio_duration(path) - 1.0) < 0.05


def test_segment_is_read_by_seeking(tmp_path):
    path = tmp_path / "long.flac"
    sf.write(path, np.random.default_rng(0).uniform(-0.5, 0.5, 48000 * 4).astype(np.float32), 48000)
    whole = load_audio(path)
    part = load_audio(path, start=1.5, duration=2.0)
    assert len(part) == 2 * SR
    inner = slice(100, -100)  # resampler edges differ slightly
    np.testing.assert_allclose(part[inner], whole[24000 : 24000 + 32000][inner], atol=2e-3)
    assert len(load_audio(path, start=3.5)) == SR // 2  # to the end
    with pytest.raises(AudioError, match="beyond the end"):
        load_audio(path, start=5.0)


def test_real_ravdess_flac_and_wav(shared, tmp_path):
    folder = shared / "data" / "ravdess"
    stereo = folder / "Actor_01" / "03-01-02-01-01-02-01.flac"  # one of the 5 stereo files
    mono = folder / "Actor_01" / "03-01-01-01-01-01-01.flac"
    for path in (stereo, mono):
        info = sf.info(path)
        assert info.samplerate == 48000
        wave = load_audio(path)
        assert wave.dtype == np.float32 and wave.ndim == 1
        assert len(wave) == round(info.frames / 3)
        assert audio_duration(path) == pytest.approx(info.frames / 48000)
        # users have .wav: the same samples as 16-bit WAV load identically
        wav = tmp_path / (path.stem + ".wav")
        sf.write(wav, sf.read(path, dtype="int16")[0], 48000, subtype="PCM_16")
        np.testing.assert_array_equal(load_audio(wav), wave)
    # the stereo RAVDESS files are dual-mono: the down-mix must keep the level (no sum, no -3 dB)
    data = sf.read(stereo, dtype="float32")[0]
    assert data.shape[1] == 2 and np.array_equal(data[:, 0], data[:, 1])
    left_only = tmp_path / "left.wav"
    sf.write(left_only, data[:, 0], 48000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(stereo), load_audio(left_only), atol=1e-7)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_audio_track_of_video(tmp_path, suffix):
    path = write_av(tmp_path / f"clip{suffix}", seconds=1.0)
    wave = load_audio(path)
    assert abs(len(wave) - SR) < 0.05 * SR  # AAC priming adds ~1024 samples at 44.1 kHz
    assert abs(peak_hz(wave) - 440.0) <= 2.0
    assert 0.15 < np.abs(wave[4000:-4000]).max() < 0.25  # (0.3 + 0.1) / 2 after down-mix
    assert audio_duration(path) == pytest.approx(1.0, abs=0.05)
    part = load_audio(path, start=0.5, duration=0.3)
    assert len(part) == round(0.3 * SR)
    # mp4 timestamps are in samples; mkv's in ms, so a seek there is exact to ~1 ms (16 samples)
    error, lag = min(
        (np.abs(part[200:] - wave[8000 + lag + 200 : 8000 + lag + 4800]).max(), lag)
        for lag in range(-16, 17)
    )
    assert (lag, error) == (0, pytest.approx(0, abs=5e-3)) if suffix == ".mp4" else error < 0.02


def test_wrong_extensions_fall_back_to_the_other_reader(tmp_path):
    video = write_av(tmp_path / "clip.mp4")
    disguised = tmp_path / "clip.wav"
    shutil.copy(video, disguised)
    np.testing.assert_array_equal(load_audio(disguised), load_audio(video))
    flac = tmp_path / "tone.flac"
    sf.write(flac, sine(0.5, 440.0, 48000), 48000)
    shutil.copy(flac, tmp_path / "tone.mp4")
    np.testing.assert_array_equal(load_audio(tmp_path / "tone.mp4"), load_audio(flac))


def test_unicode_and_spaces_in_paths(tmp_path):
    path = tmp_path / "dossier é" / "clip 音 1.wav"
    path.parent.mkdir()
    sf.write(path, sine(0.5, 440.0, SR), SR)
    assert len(load_audio(path)) == SR // 2


# --------------------------------------------------------------------------------------------
# Streaming


@pytest.mark.parametrize("maker", ["flac", "mp4"])
def test_stream_equals_whole_file(tmp_path, maker):
    if maker == "flac":
        path = tmp_path / "clip.flac"
        sf.write(path, np.random.default_rng(1).uniform(-0.5, 0.5, 48000 * 5 + 123), 48000)
    else:
        path = write_av(tmp_path / "clip.mp4", seconds=2.0)
    whole = load_audio(path)
    chunks = list(stream_audio(path, chunk_seconds=0.7))
    chunk = round(0.7 * SR)
    assert all(len(c) == chunk for c in chunks[:-1]) and 0 < len(chunks[-1]) <= chunk
    assert all(c.dtype == np.float32 for c in chunks)
    joined = np.concatenate(chunks)
    assert len(joined) == len(whole)
    np.testing.assert_allclose(joined, whole, atol=1e-5)


def test_stream_of_a_long_file_uses_bounded_memory(tmp_path):
    path, rate, minutes = tmp_path / "long.wav", 8000, 20
    with sf.SoundFile(path, "w", rate, 1, "PCM_16") as out:
        for _ in range(minutes):
            out.write(sine(60.0, 220.0, rate))
    assert audio_duration(path) == pytest.approx(minutes * 60)
    tracemalloc.start()
    try:
        total, n_chunks = 0, 0
        for chunk in stream_audio(path, SR, chunk_seconds=30.0):
            total += len(chunk)
            n_chunks += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == minutes * 60 * SR and n_chunks == minutes * 2
    assert peak < 16e6, f"peak {peak / 1e6:.1f} MB; the whole file at 16 kHz is 77 MB"


# --------------------------------------------------------------------------------------------
# Bad input: each raises AudioError naming the file and the reason


def _wav_with_format_tag(path, tag=0x1234):
    data = bytes(3200)
    fmt = struct.pack("<HHIIHH", tag, 1, SR, 2 * SR, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def _float_wav(values):
    def make(path):
        wave = sine(1.0, 440.0, SR)
        wave[values[0]] = values[1]
        sf.write(path, wave, SR, subtype="FLOAT")

    return make


BAD_INPUTS = {
    "missing.wav": (lambda p: None, "not found"),
    "empty.wav": (lambda p: p.write_bytes(b""), "0 bytes"),
    "header_only.wav": (lambda p: sf.write(p, np.zeros(0, np.float32), SR), "no audio samples"),
    "text.wav": (lambda p: p.write_text("not audio at all\n" * 50), "cannot decode"),
    "noise.mp3": (lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)), "cannot decode"),
    "codec.wav": (_wav_with_format_tag, "unsupported"),
    "nan.wav": (_float_wav((100, np.nan)), "NaN or Inf"),
    "inf.wav": (_float_wav((5000, np.inf)), "NaN or Inf"),
    "zeros.wav": (lambda p: sf.write(p, np.zeros(SR, np.float32), SR), "silent"),
    "short.wav": (lambda p: sf.write(p, sine(0.05, 440.0, SR), SR), "too short"),
    "video_only.mp4": (lambda p: write_av(p, audio=False), "no audio stream"),
    "folder.wav": (lambda p: p.mkdir(), "directory"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_raises_audio_error_naming_the_file(tmp_path, name):
    make, reason = BAD_INPUTS[name]
    path = tmp_path / name
    make(path)
    with pytest.raises(AudioError, match=reason) as err:
        load_audio(path)
    assert str(path) in str(err.value) and err.value.path == str(path)
    if reason in ("silent", "too short"):
        return  # a stream leaves these to the caller
    with pytest.raises(AudioError, match=reason):
        list(stream_audio(path))


def test_minimum_length_is_a_tenth_of_a_second(tmp_path):
    sf.write(tmp_path / "tenth.wav", sine(0.1, 440.0, 48000), 48000)
    assert len(load_audio(tmp_path / "tenth.wav")) == 1600
    sf.write(tmp_path / "less.wav", sine(0.099, 440.0, 48000), 48000)
    with pytest.raises(AudioError, match="too short: 0.099 s < 0.100 s"):
        load_audio(tmp_path / "less.wav")


def test_silent_and_short_clips_can_be_allowed(tmp_path):
    sf.write(tmp_path / "zeros.wav", np.zeros(800, np.float32), SR)
    wave = load_audio(tmp_path / "zeros.wav", min_seconds=0, allow_silent=True)
    assert len(wave) == 800 and not wave.any()


def test_truncated_files_keep_what_can_be_decoded(tmp_path):
    wave = sine(2.0, 440.0, SR)
    for suffix, subtype in ((".wav", "PCM_16"), (".flac", "PCM_16")):
        full = tmp_path / f"full{suffix}"
        sf.write(full, wave, SR, subtype=subtype)
        cut = tmp_path / f"cut{suffix}"
        cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
        part = load_audio(cut)
        assert 0.2 * SR < len(part) < 1.5 * SR
        np.testing.assert_allclose(part[:1000], wave[:1000], atol=1e-3)


def test_clipped_full_scale_is_kept(tmp_path):
    wave = np.clip(sine(1.0, 440.0, SR, 3.0), -1.0, 1.0)
    sf.write(tmp_path / "clipped.wav", wave, SR, subtype="PCM_16")
    assert np.abs(load_audio(tmp_path / "clipped.wav")).max() == pytest.approx(1.0, abs=1e-3)


# --------------------------------------------------------------------------------------------
# Property tests


@settings(max_examples=20, deadline=None)
@given(
    rate=st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000]),
    channels=st.integers(1, 6),
    n_frames=st.integers(2000, 40000),
    kind=st.sampled_from([(".wav", "PCM_16"), (".wav", "FLOAT"), (".flac", "PCM_24")]),
    seed=st.integers(0, 2**16),
)
def test_load_audio_property(rate, channels, n_frames, kind, seed):
    n_frames = max(n_frames, round(0.1 * rate) + 1)
    data = np.random.default_rng(seed).uniform(-0.9, 0.9, (n_frames, channels)).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"clip{kind[0]}"
        sf.write(path, data, rate, subtype=kind[1])
        wave = load_audio(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert len(wave) == round(n_frames * SR / rate)
    assert np.isfinite(wave).all() and np.abs(wave).max() < 3.0
    mono = data.mean(1)
    rms, rms_in = np.sqrt(np.mean(wave**2)), np.sqrt(np.mean(mono**2))
    assert rms <= 1.05 * rms_in  # resampling removes energy above the new Nyquist, never adds
    if rate <= SR:  # up-sampling keeps all of it
        assert rms == pytest.approx(rms_in, rel=0.05)
    if rate == SR:
        np.testing.assert_allclose(wave, mono, atol=1e-4)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 3000),
    target=st.integers(1, 3000),
    pad=st.sampled_from(["repeat", "zero"]),
    seed=st.one_of(st.none(), st.integers(0, 1000)),
)
def test_fit_window_property(n, target, pad, seed):
    wave = np.arange(1, n + 1, dtype=np.float32)  # distinct values reveal the offset
    rng = None if seed is None else np.random.default_rng(seed)
    out = fit_window(wave, target, pad, rng)
    assert out.dtype == np.float32 and out.shape == (target,) and np.isfinite(out).all()
    if n >= target:
        offset = int(out[0]) - 1
        np.testing.assert_array_equal(out, wave[offset : offset + target])
        if rng is None:
            assert offset == (n - target) // 2
    elif pad == "repeat":
        np.testing.assert_array_equal(out, wave[np.arange(target) % n])
    else:
        np.testing.assert_array_equal(out[:n], wave)
        assert not out[n:].any()


def test_fit_window_random_crops_vary_and_are_seeded():
    wave = np.arange(10000, dtype=np.float32)
    firsts = {fit_window(wave, 100, rng=np.random.default_rng(s))[0] for s in range(20)}
    assert len(firsts) > 10
    a = fit_window(wave, 100, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, fit_window(wave, 100, rng=np.random.default_rng(7)))


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(0, 5000),
    window=st.integers(1, 1000),
    hop=st.integers(1, 1000),
    min_samples=st.integers(0, 500),
)
def test_window_starts_property(n, window, hop, min_samples):
    starts = window_starts(n, window, hop, min_samples)
    if n == 0 or n < min_samples:
        assert starts == []
        return
    if n <= window:
        assert starts == [0]
        return
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert all(0 <= s <= n - window for s in starts)
    assert all(b - a <= hop for a, b in zip(starts, starts[1:], strict=False))
    uncovered = n - (starts[-1] + window)
    assert uncovered < max(1, min_samples)  # a tail that long gets an end-aligned window


def test_window_starts_examples():
    assert window_starts(50, 30, 10) == [0, 10, 20]
    assert window_starts(45, 30, 20) == [0, 15]  # last window aligned to the end
    assert window_starts(45, 30, 20, min_samples=20) == [0]  # a 15-sample tail is dropped
    assert window_starts(20, 30, 10) == [0]
    assert window_starts(5, 30, 10, min_samples=10) == []
