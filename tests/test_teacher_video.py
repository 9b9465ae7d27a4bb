import json
from pathlib import Path

import numpy as np
import pytest
import torch

from liser.config import VideoTeacherConfig
from liser.constants import FER_CLASSES
from liser.teachers.fer import FERModel, InputSpec
from liser.teachers.video import VideoTeacher, check_files, load_video_teacher, pool_window
from liser.testing import face_photo, face_video
from liser.video_io import VideoError, write_video

# ------------------------------------------------------------------------------------------
# Temporal pooling arithmetic


def test_pool_window_averages_frames_in_clips_then_clips():
    times = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    a, b, c = [1.0, 0.0], [0.0, 1.0], [0.5, 0.5]
    probs = np.array([a, a, b, b, c, np.full(2, np.nan)])  # last frame: no face
    pooled, coverage = pool_window(times, probs, clip_seconds=0.5, min_face_coverage=0.5)
    # clips [0, .5): mean(a, a, b) = (2/3, 1/3); [.5, 1): mean(b, c) = (1/4, 3/4); [1, 1.5): none
    np.testing.assert_allclose(pooled, [(2 / 3 + 1 / 4) / 2, (1 / 3 + 3 / 4) / 2], rtol=1e-6)
    assert coverage == pytest.approx(5 / 6)


def test_pool_window_masks_windows_with_too_few_faces():
    times = np.arange(10) * 0.2
    probs = np.full((10, 3), np.nan)
    probs[:4] = [0.2, 0.3, 0.5]
    assert pool_window(times, probs, 0.5, 0.5) == (None, 0.4)
    probs[4] = [0.2, 0.3, 0.5]  # exactly half: kept
    pooled, coverage = pool_window(times, probs, 0.5, 0.5)
    np.testing.assert_allclose(pooled, [0.2, 0.3, 0.5], rtol=1e-6)
    assert coverage == 0.5
    assert pool_window(times, np.full((10, 3), np.nan), 0.5, 0.0) == (None, 0.0)
    assert pool_window(np.zeros(0), np.zeros((0, 3)), 0.5, 0.5) == (None, 0.0)


class BrightnessDetector:
    """Fake detector: one box covering the frame when its mean brightness is above 50."""

    fingerprint = "fake"

    def detect(self, frame):
        frame = np.asarray(frame)
        if frame.mean() <= 50:
            return []
        return [(0.0, 0.0, float(frame.shape[1]), float(frame.shape[0]), 1.0)]


def brightness_fer(classes=("dark", "bright")) -> FERModel:
    """Fake FER: logits (0, 4 * (mean - 0.5)) of the crop's gray level in [0, 1]."""

    def runner(x):  # (N, 4, 4, 1) in [0, 1]
        level = x.mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(level), 4 * (level - 0.5)], dim=1)

    spec = InputSpec(size=(4, 4), mean=(0.0,), std=(1.0,))
    return FERModel(Path("fake"), classes, spec, "fake", "torchscript", runner)


def test_predict_window_on_a_fake_fer_and_detector():
    config = VideoTeacherConfig(
        frame_rate=4.0, clip_seconds=0.5, min_face_coverage=0.5, batch_size=3
    )
    teacher = VideoTeacher(brightness_fer(), BrightnessDetector(), config)
    levels = [255, 255, 0, 191, 127, 0]  # frames 2 and 5 have no face
    frames = [np.full((9, 11, 3), v, np.uint8) for v in levels]
    times = np.arange(6) / 4.0  # clips: frames {0, 1}, {2, 3}, {4, 5}
    pooled, coverage = teacher.predict_window(frames, times)

    def p(level):
        z = 4 * (level / 255 - 0.5)
        return np.array([1, np.exp(z)]) / (1 + np.exp(z))

    expected = (p(255) + p(191) + p(127)) / 3  # one clip mean per clip, then their mean
    np.testing.assert_allclose(pooled, expected, rtol=1e-4)
    assert coverage == pytest.approx(4 / 6)
    hot = VideoTeacher(brightness_fer(), BrightnessDetector(), VideoTeacherConfig(temperature=4.0))
    flat, _ = hot.predict_window(frames, times)
    assert abs(flat[1] - 0.5) < abs(pooled[1] - 0.5)  # temperature > 1 softens
    assert hot.fingerprint != teacher.fingerprint
    dark = [np.zeros((9, 11, 3), np.uint8)] * 6
    assert teacher.predict_window(dark, times) == (None, 0.0)  # masked, never zeros
    # malformed frames count as frames without a face and do not stop the batch
    broken = [*frames[:5], np.zeros((0, 4, 3), np.uint8)]
    assert teacher.predict_window(broken, times)[1] == pytest.approx(4 / 6)


# ------------------------------------------------------------------------------------------
# Real files, real models


@pytest.fixture
def teacher(shared):
    return load_video_teacher(
        shared / "models/fer/fer2013_mini_xception.hdf5",
        shared / "models/face/haarcascade_frontalface_default.xml",
        VideoTeacherConfig(frame_rate=5.0, fast_decode=False, detect_every=1),  # frame-exact
    )


@pytest.mark.shared
def test_predict_file_labels_face_windows_and_masks_empty_ones(teacher, tmp_path):
    path = face_video(tmp_path / "talk.mp4", seconds=4.0, fps=10, face_until=2.0)
    windows = [(0.0, 2.0), (2.0, 4.0), (1.0, 3.0), (1.2, 3.2)]
    results = teacher.predict_file(path, windows)
    probs, coverage = results[0]
    assert probs.shape == (7,) and probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert coverage == 1.0
    assert results[1] == (None, 0.0)
    assert results[2][0] is not None and results[2][1] == 0.5  # 5 of 10 frames: kept
    assert results[3] == (None, 0.4)  # 4 of 10 frames have the face: masked
    # the same window from frames read by hand gives the same answer
    from liser.video_io import read_frames

    times, frames = read_frames(path, 5.0, 0.0, 2.0)
    direct, _ = teacher.predict_window(frames, times)
    np.testing.assert_allclose(direct, probs, atol=1e-5)


@pytest.mark.shared
def test_blazeface_teacher_and_big_xception(shared, tmp_path):
    pytest.importorskip("ai_edge_litert")
    teacher = load_video_teacher(
        shared / "models/fer/fer2013_big_xception.hdf5",
        shared / "models/face/face_detection_short_range.tflite",
    )
    assert teacher.classes == FER_CLASSES
    path = face_video(tmp_path / "clip.mkv", seconds=3.0, fps=10, face_until=1.0)
    [(probs, coverage)] = teacher.predict_file(path, [(0.0, 3.0)])
    assert probs is None and coverage == pytest.approx(1 / 3, abs=0.07)


@pytest.mark.shared
def test_file_without_video_stream(teacher, tmp_path):
    path = write_video(tmp_path / "speech.m4a", audio=np.zeros(16000, np.float32))
    with pytest.raises(VideoError, match="speech.m4a.*no video stream"):
        teacher.predict_file(path, [(0.0, 1.0)])


@pytest.mark.shared
def test_check_files_and_cli_json(shared, teacher, tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from liser.cli import app

    Image.fromarray(face_photo()).save(tmp_path / "hopper.jpg")
    Image.fromarray(np.zeros((50, 60, 3), np.uint8)).save(tmp_path / "blank.png")
    video = face_video(tmp_path / "talk.webm", 6.0, fps=5, face_until=3.0, size=(120, 160))
    (tmp_path / "audio.m4a").write_bytes(b"")
    files = [tmp_path / n for n in ("hopper.jpg", "blank.png", "talk.webm", "audio.m4a")]
    records = check_files(teacher, files)
    by_file = {}
    for r in records:
        by_file.setdefault(Path(r["file"]).name, []).append(r)
    [face] = by_file["hopper.jpg"]
    assert set(face["probs"]) == set(FER_CLASSES) and len(face["box"]) == 4
    assert by_file["blank.png"][0]["probs"] is None
    windows = by_file["talk.webm"]
    assert [(w["start"], w["end"]) for w in windows] == [(0.0, 3.0), (3.0, 6.0)]
    assert windows[0]["probs"] is not None and windows[1]["probs"] is None
    assert "empty" in by_file["audio.m4a"][0]["error"]

    models = ["--video-teacher", str(shared / "models/fer/fer2013_mini_xception.hdf5")]
    models += ["--face-detector", str(shared / "models/face/haarcascade_frontalface_default.xml")]
    command = [
        "teacher",
        "check-video",
        *models,
        "--set",
        "detect_every=1",
        "--set",
        "fast_decode=false",
    ]
    result = CliRunner().invoke(app, [*command, "--json", str(files[1]), str(video)])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert [r.get("kind") for r in printed] == ["image", "video", "video"]
    assert printed[1]["probs"] == windows[0]["probs"]
    table = CliRunner().invoke(app, [*command, str(files[1])], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "masked" in table.stdout and "blank.png" in table.stdout
    failed = CliRunner().invoke(app, [*command, str(files[3])], env={"COLUMNS": "200"})
    assert failed.exit_code == 1 and "error" in failed.stdout  # a file it could not use
    bad = CliRunner().invoke(
        app, [*command[:2], "--video-teacher", str(video), *models[2:], str(video)]
    )
    assert bad.exit_code == 2 and "not a supported FER model" in bad.output


def test_load_video_teacher_needs_a_detector(tmp_path):
    with pytest.raises(ValueError, match="face detector"):
        load_video_teacher(tmp_path / "fer.hdf5", None)
    with pytest.raises(ValueError, match="FER model"):
        load_video_teacher(None, tmp_path / "x.xml")
