"""The audio-visual path as real footage needs it: faces tracked over a clip (one person per
window), reasons for missing video labels, speech gating with Silero VAD in label and predict."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from liser.config import LabelConfig, VideoTeacherConfig
from liser.teachers.tracking import iou, main_track, track_faces
from liser.testing import (
    haar_face_detector,
    shared_dir,
    student_checkpoint,
    tiny_fer_model,
    tone,
    two_faces_video,
)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    from liser.teachers import load_video_teacher

    fer = tiny_fer_model(tmp_path_factory.mktemp("fer"))
    return load_video_teacher(fer, haar_face_detector(), VideoTeacherConfig(frame_rate=5.0))


def test_tracks_follow_a_moving_face_and_a_second_one_that_appears():
    times = np.arange(10) / 5.0
    detections = []
    for i in range(10):
        boxes = [(10.0 + 12 * i, 20.0, 80.0, 80.0, 1.0)]  # moves 15 % of its size a frame
        if i == 3:
            boxes[0] = (10.0 + 12 * i + 45, 20.0, 80.0, 80.0, 1.0)  # a jump: IoU < 0.3, still near
        if i >= 5:
            boxes.append((300.0, 30.0, 60.0, 60.0, 1.0))
        detections.append(boxes)
    assert iou(detections[2][0], detections[3][0]) < 0.3
    tracks, ids = track_faces(times, detections)
    assert len(tracks) == 2
    assert [frame[0] for frame in ids] == [0] * 10  # the first face keeps its track throughout
    assert [frame[1] for frame in ids[5:]] == [1] * 5
    assert main_track(tracks).id == 0  # on screen longest
    # A face gone for longer than max_gap comes back as a new track.
    gap = [[(10.0, 20.0, 80.0, 80.0, 1.0)], [], [], [], [], [], [(10.0, 20.0, 80.0, 80.0, 1.0)]]
    tracks, ids = track_faces(np.arange(7) / 5.0, gap, max_gap=1.0)
    assert len(tracks) == 2 and ids[6] == [1]


def test_the_video_teacher_keeps_the_person_on_screen_longest(teacher, tmp_path):
    path = two_faces_video(tmp_path / "two.mp4", seconds=4.0, fps=10.0, second_from=2.0)
    faces = teacher.clip_faces(path)
    assert faces.tracks == 2
    assert faces.faces[:10].max() == 1 and faces.faces[12:].min() == 2  # 5 fps, second at 2 s
    tracked = faces.boxes[~np.isnan(faces.boxes[:, 0])]
    assert len(tracked) >= 18  # the first face, in (nearly) every frame
    assert (tracked[:, 0] + tracked[:, 2] < 240).all()  # always the left one (frame 480 px wide)
    assert tracked[-1, 0] > tracked[0, 0] + 40  # and it moved right
    [first, second] = teacher.window_labels(faces, [0.0, 2.0], [2.0, 4.0])
    assert first["faces_seen"] == 1 and second["faces_seen"] == 2
    assert second["probs"] is not None and second["box"][0] < 240
    np.testing.assert_allclose(sum(second["probs"]), 1.0, atol=1e-5)


def test_a_window_whose_face_is_lost_halfway(tmp_path):
    from liser.teachers import load_video_teacher

    fer = tiny_fer_model(tmp_path / "fer")
    path = two_faces_video(tmp_path / "lost.mp4", seconds=3.0, fps=10.0, second_from=99.0,
                           first_until=1.5)  # fmt: skip
    strict = load_video_teacher(
        fer, haar_face_detector(), VideoTeacherConfig(min_face_coverage=0.6)
    )
    loose = load_video_teacher(fer, haar_face_detector(), VideoTeacherConfig(min_face_coverage=0.4))
    [lost] = strict.window_labels(strict.clip_faces(path), [0.0], [3.0])
    assert lost["probs"] is None and lost["coverage"] == pytest.approx(0.5, abs=0.14)
    assert "face lost" in lost["absent"]
    [kept] = loose.window_labels(loose.clip_faces(path), [0.0], [3.0])
    faces = loose.clip_faces(path)  # the paper's pooling: mean of 0.5 s clip means, face frames
    seen = (faces.times < 1.5) & ~np.isnan(faces.probs[:, 0])
    clips = np.floor(faces.times[seen] / 0.5 + 1e-9)
    means = np.stack([faces.probs[seen][clips == c].mean(0) for c in np.unique(clips)]).mean(0)
    np.testing.assert_allclose(kept["probs"], means / means.sum(), atol=1e-5)
    [empty] = loose.window_labels(faces, [2.0], [3.0])
    assert empty["probs"] is None and empty["absent"] == "no face" and empty["faces_seen"] == 0


def test_label_records_tracking_and_reasons(teacher, tmp_path):
    from liser.label import label
    from liser.store import open_store

    two_faces_video(tmp_path / "media" / "two.mp4", seconds=6.0, fps=10.0, second_from=3.0,
                    first_until=4.5, audio=tone(6.0, 220.0))  # fmt: skip
    config = LabelConfig(hop_seconds=3.0, device="cpu", video=teacher.config)
    label(tmp_path / "media", tmp_path / "store", config, video_teacher=teacher, progress=False)
    table = open_store(tmp_path / "store").dataset().to_table().to_pandas().sort_values("start")
    assert table["faces_seen"].tolist() == [1, 2]
    first, second = table.iloc[0], table.iloc[1]
    assert pd.isna(first["video_absent"]) and first["face_coverage"] >= 0.9
    assert len(first["face_box"]) == 4
    # 3-6 s: the tracked face leaves at 4.5 s, the other one stays: half the frames are its own
    assert second["face_coverage"] == pytest.approx(0.5, abs=0.14)


@pytest.fixture(scope="module")
def speech_then_silence(tmp_path_factory):
    """3 s of near silence (room noise at -60 dB), then 3 s of a real RAVDESS sentence."""
    shared = shared_dir()
    files = sorted((shared / "data" / "ravdess").rglob("*.flac")) if shared else []
    if not files:
        pytest.skip("needs ../shared/data/ravdess (real speech)")
    from liser.audio import load_audio

    speech = load_audio(files[0], 16000)[:48000]
    speech = np.pad(speech, (0, 48000 - len(speech)))
    quiet = 1e-3 * np.random.default_rng(0).standard_normal(48000).astype(np.float32)
    path = tmp_path_factory.mktemp("vad") / "quiet-then-speech.wav"
    sf.write(path, np.concatenate([quiet, speech]), 16000)
    return path


def test_label_gates_the_audio_teacher_on_speech(speech_then_silence, tmp_path):
    from liser.label import label
    from liser.store import open_store
    from liser.testing import TinyAudioTeacher

    class Counting(TinyAudioTeacher):
        seen = 0

        def predict(self, waves):
            Counting.seen += len(waves)
            return super().predict(waves)

    config = LabelConfig(hop_seconds=3.0, device="cpu", vad="silero", min_speech=0.2)
    label(speech_then_silence, tmp_path / "s", config, audio_teacher=Counting(), progress=False)
    table = open_store(tmp_path / "s").dataset().to_table().to_pandas().sort_values("start")
    quiet, speech = table.iloc[0], table.iloc[1]
    assert quiet["speech_fraction"] < 0.05 and speech["speech_fraction"] > 0.3
    assert quiet["audio_probs"] is None and quiet["audio_absent"].startswith("no speech")
    assert speech["audio_probs"] is not None and pd.isna(speech["audio_absent"])
    assert Counting.seen == 1  # the teacher never saw the silent window
    # min_speech 0: the fraction is recorded, nothing is gated
    config = LabelConfig(hop_seconds=3.0, device="cpu", vad="silero", min_speech=0.0)
    label(speech_then_silence, tmp_path / "all", config, audio_teacher=Counting(), progress=False)
    table = open_store(tmp_path / "all").dataset().to_table().to_pandas()
    assert table["audio_probs"].notna().all() and table["speech_fraction"].notna().all()


def test_predict_marks_windows_without_speech(speech_then_silence, tmp_path):
    from liser.deploy import format_predictions, load

    folder = student_checkpoint(tmp_path / "ckpt")
    plain = load(folder, device="cpu", hop_seconds=3.0).predict_file(speech_then_silence)
    gated = load(folder, device="cpu", hop_seconds=3.0, vad="silero").predict_file(
        speech_then_silence
    )
    assert [w["label"] for w in plain["windows"]][0] != "no speech"
    quiet, speech = gated["windows"]
    assert quiet["label"] == "no speech" and quiet["probs"] is None and quiet["speech"] < 0.05
    assert speech["probs"] == plain["windows"][1]["probs"]  # speech windows are scored as before
    assert gated["probs"] == speech["probs"]  # the file is the mean of its speech windows
    assert (gated["speech_windows"], gated["no_speech_windows"]) == (1, 1)
    csv_text = format_predictions([gated], "csv", ("angry", "happy", "neutral", "sad"))
    assert "window,0.000,3.000,no speech,,,,," in csv_text
    silent = tmp_path / "quiet.wav"
    sf.write(silent, tone(3.0, 50.0, amplitude=1e-3), 16000)
    nothing = load(folder, device="cpu", vad="silero").predict_file(silent)
    assert nothing["label"] == "no speech" and nothing["probs"] is None
    assert json.dumps(nothing)  # plain data, still


def test_check_video_scores_labeled_clips_per_pooling(tmp_path):
    from typer.testing import CliRunner

    from liser.cli import app
    from liser.teachers.video_check import POOLINGS
    from liser.testing import face_video

    fer = tiny_fer_model(tmp_path / "fer")
    for name in ("a", "b", "c"):
        face_video(tmp_path / "clips" / f"{name}.mp4", seconds=2.0, fps=10.0)
    pd.DataFrame({"path": ["a.mp4", "b.mp4", "c.mp4"], "label": ["happy", "disgusted", "contempt"]}
                 ).to_csv(tmp_path / "clips" / "index.csv", index=False)  # fmt: skip
    result = CliRunner().invoke(app, [
        "teacher", "check-video", "--labels", str(tmp_path / "clips" / "index.csv"),
        "--video-teacher", str(fer), "--face-detector", str(haar_face_detector()),
        "--out", str(tmp_path / "report")])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "check-video.json").read_text())
    [(name, scores)] = report.items()
    assert scores["n_scored"] == 2  # contempt is no FER class: in the confusion matrix only
    clips = {Path(c["path"]).name: c for c in scores["clips"]}
    assert clips["b.mp4"]["target"] == "disgust" and clips["c.mp4"]["target"] is None
    for pooling in POOLINGS:
        hits = [clips[n][pooling] == clips[n]["target"] for n in ("a.mp4", "b.mp4")]
        assert scores["pooling"][pooling]["accuracy"] == pytest.approx(np.mean(hits))
        assert sum(scores["confusion"][pooling][clips["c.mp4"][pooling]].values()) >= 1
    assert (tmp_path / "report" / f"{name.replace(' + ', '__')}.png").read_bytes()[:4] == b"\x89PNG"
    md = (tmp_path / "report" / "check-video.md").read_text()
    assert "| contempt |" in md and "chance 14.3 %" in md


def test_a_vad_that_cannot_be_used_is_a_clear_error(tmp_path):
    from liser.label import label
    from liser.vad import VADError, load_speech_detector

    assert load_speech_detector("") is None
    with pytest.raises(VADError, match="give 'silero'"):
        load_speech_detector("no-such-model.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(VADError, match="cannot be loaded"):
        load_speech_detector(str(tmp_path / "bad.onnx"))
    wav = tmp_path / "a.wav"
    sf.write(wav, tone(1.5, 220.0), 16000)
    with pytest.raises(VADError):  # before any clip is labeled
        label(wav, tmp_path / "store", LabelConfig(vad=str(tmp_path / "bad.onnx")), progress=False)
    assert not list((tmp_path / "store").glob("shards/*.parquet"))
