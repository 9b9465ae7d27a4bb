from fractions import Fraction

import av
import numpy as np
import pytest

from liser.video_io import (
    VideoError,
    iter_frames,
    probe,
    read_frames,
    read_image,
    write_video,
)


def ramp_frames(n: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frames whose gray level encodes the frame index: level = 4 * index."""
    frames = np.zeros((n, height, width, 3), np.uint8)
    frames[:] = (4 * np.arange(n, dtype=np.uint8))[:, None, None, None]
    return frames


def decode_audio(path) -> np.ndarray:
    with av.open(str(path)) as container:
        chunks = [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
    return np.concatenate(chunks)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm", ".avi"])
def test_write_read_round_trip(tmp_path, suffix):
    frames = ramp_frames(50)  # 2 s at 25 fps
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)).astype(np.float32)
    path = write_video(tmp_path / f"clip{suffix}", frames, fps=25, audio=tone)
    info = probe(path)
    assert info.has_video and info.has_audio
    assert info.fps == pytest.approx(25.0)
    assert info.size == (64, 48)
    assert info.duration == pytest.approx(2.0, abs=0.15)
    times, sampled = read_frames(path, frame_rate=5.0)
    np.testing.assert_allclose(times, np.arange(10) * 0.2)
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in sampled)
    levels = np.array([f[20:28, 28:36].mean() for f in sampled])
    np.testing.assert_allclose(levels, 4 * np.arange(0, 50, 5), atol=4)  # frame 5k at 0.2k s
    audio = decode_audio(path).astype(np.float32)
    audio = audio / 32768 if suffix == ".avi" else audio
    assert np.sqrt(np.mean(audio[4000:28000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)
    assert not list(tmp_path.glob(".*partial*"))  # the temporary file was renamed


def test_generator_of_odd_sized_gray_frames(tmp_path):
    path = write_video(tmp_path / "gray.mp4", (np.full((31, 45), 200, np.uint8) for _ in range(10)))
    assert probe(path).size == (46, 32)  # padded by one edge pixel to even sizes
    _, frames = read_frames(path, 25.0)
    assert len(frames) == 10
    assert abs(int(frames[3][15, 22, 0]) - 200) <= 3


def test_start_end_and_seeking(tmp_path):
    path = write_video(tmp_path / "long.mp4", ramp_frames(60), fps=10)  # 6 s, frame k at 0.1k s
    times, frames = read_frames(path, frame_rate=2.0, start=2.5, end=4.0)
    np.testing.assert_allclose(times, [2.5, 3.0, 3.5])
    levels = [f[20, 30, 0] for f in frames]
    np.testing.assert_allclose(levels, [100, 120, 140], atol=4)
    assert list(iter_frames(path, 2.0, start=7.0)) == []


def test_variable_frame_rate_is_sampled_on_a_regular_grid(tmp_path):
    path = tmp_path / "vfr.mkv"
    shown_at = [0.0, 0.1, 0.15, 0.9, 1.0, 1.6]  # irregular timestamps
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for index, seconds in enumerate(shown_at):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 40 * index, np.uint8), "rgb24")
            frame.pts, frame.time_base = round(seconds * 1000), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    times, frames = read_frames(path, frame_rate=4.0)
    # the frame on screen at 0, .25, .5, .75, 1.0, 1.25, 1.5 (last frame shown ~1 frame long)
    expected = [0, 2, 2, 2, 4, 4, 4]
    assert len(frames) >= len(expected)
    levels = [int(f[16, 16, 0]) for f in frames[: len(expected)]]
    np.testing.assert_allclose(levels, [40 * i for i in expected], atol=4)
    np.testing.assert_allclose(times[: len(expected)], np.arange(len(expected)) * 0.25)


def test_audio_only_file(tmp_path):
    tone = np.zeros(16000, np.float32)
    path = write_video(tmp_path / "speech.m4a", audio=tone)
    info = probe(path)
    assert info.has_audio and not info.has_video and info.fps == 0.0
    with pytest.raises(VideoError, match="speech.m4a.*no video stream"):
        next(iter_frames(path, 5.0))


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(VideoError, match="no such file"):
        probe(tmp_path / "missing.mp4")
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(VideoError, match="empty"):
        probe(empty)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(VideoError, match="junk.mp4"):
        read_frames(junk, 5.0)
    with pytest.raises(VideoError, match="not_an_image.png"):
        (tmp_path / "not_an_image.png").write_text("hello")
        read_image(tmp_path / "not_an_image.png")
    with pytest.raises(VideoError, match="unsupported container"):
        write_video(tmp_path / "x.xyz", ramp_frames(2))


def test_read_image_png(tmp_path):
    from PIL import Image

    image = np.zeros((20, 30, 3), np.uint8)
    image[:, :15, 1] = 255
    Image.fromarray(image).save(tmp_path / "half.png")
    np.testing.assert_array_equal(read_image(tmp_path / "half.png"), image)


def test_rotation_metadata_turns_frames_upright(tmp_path):
    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(90)  # counter-clockwise, as phones store portrait video
        for _ in range(3):
            frame = np.zeros((32, 64, 3), np.uint8)
            frame[:, :8] = 255  # a white strip on the left of the stored frame
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, "rgb24")))
        container.mux(stream.encode(None))
    _, frames = read_frames(path, 10.0)
    assert frames[0].shape == (64, 32, 3)  # portrait
    assert frames[0][-8:, :].mean() > 200 and frames[0][:-8, :].mean() < 30  # left -> bottom


def test_damaged_packets_are_skipped_and_decoding_resumes(tmp_path):
    from liser.testing import face_video

    path = face_video(tmp_path / "damaged.mp4", 5.0, fps=10, size=(120, 160))  # index at end
    _, intact = read_frames(path, 2.0)
    data = bytearray(path.read_bytes())
    middle = slice(len(data) * 2 // 5, len(data) * 3 // 5)
    data[middle] = np.random.default_rng(5).bytes(middle.stop - middle.start)
    path.write_bytes(bytes(data))
    times, frames = read_frames(path, 2.0)
    assert len(frames) == 10 and times[-1] == 4.5  # frames after the damage still come
    assert frames[0].shape == intact[0].shape  # (later frames may show artifacts: no keyframe)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(bytes(data[: len(data) // 2]))  # the mp4 index is lost
    with pytest.raises(VideoError, match="truncated.mp4"):
        read_frames(truncated, 2.0)


def test_fast_decoding_samples_the_same_times_from_a_frame_at_most_a_few_earlier(tmp_path):
    path = write_video(tmp_path / "ramp.mp4", ramp_frames(60), fps=25)  # libx264: has B-frames
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.has_b_frames  # so frames are skipped
    exact_times, exact = read_frames(path, frame_rate=5.0)
    fast_times, fast = read_frames(path, frame_rate=5.0, fast=True)
    np.testing.assert_allclose(fast_times, exact_times)
    exact_index = np.array([f[20:28, 28:36].mean() for f in exact]) / 4
    fast_index = np.array([f[20:28, 28:36].mean() for f in fast]) / 4
    np.testing.assert_allclose(exact_index, np.arange(0, 60, 5), atol=1)
    behind = exact_index - fast_index
    assert behind.min() >= -1 and behind.max() <= 4  # the last decoded frame shown at that time
    assert (np.abs(behind) > 1).any()  # some unreferenced frames were indeed skipped
