"""The demo corpus (voice, face, files) and the small `liser demo` end to end."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from liser.demo.corpus import CLASSES, CorpusSize, plan_corpus, render_clip, write_corpus
from liser.demo.face import FaceStyle, expression, render_face
from liser.demo.voice import CUES, random_voice, synthesize

RATE = 16000


def pitch_hz(wave: np.ndarray) -> float:
    """Median f0 of the voiced 40 ms frames, by autocorrelation (60-500 Hz)."""
    size, values = 640, []
    rms = np.sqrt(np.mean(wave**2))
    for start in range(0, len(wave) - size, size // 2):
        frame = wave[start : start + size] - wave[start : start + size].mean()
        if np.sqrt(np.mean(frame**2)) < 0.5 * rms:
            continue
        ac = np.correlate(frame, frame, mode="full")[size - 1 :]
        lo, hi = RATE // 500, RATE // 60
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.4 * ac[0]:
            values.append(RATE / lag)
    return float(np.median(values))


def average_voice(seed: int):
    """A random speaker who changes every cue by the average amount."""
    voice = random_voice(np.random.default_rng(seed))
    return dataclasses.replace(voice, expressiveness=(1.0,) * len(CUES))


def test_corpus_plan_and_audio_are_deterministic_by_seed():
    size = CorpusSize(1, 1, 2, 1, 1, 1)
    a, b, c = plan_corpus(size, 3), plan_corpus(size, 3), plan_corpus(size, 4)
    assert a == b
    assert [p.speaker for p in a] != [p.speaker for p in c]
    wave_a, frames_a = render_clip(a[0], size)
    wave_b, frames_b = render_clip(b[0], size)
    assert np.array_equal(wave_a, wave_b) and np.array_equal(frames_a, frames_b)
    assert not np.array_equal(wave_a[:1000], render_clip(c[0], size)[0][:1000])


def test_splits_have_disjoint_speakers_and_balanced_labels():
    size = CorpusSize(2, 2, 5, 3, 3, 2)
    plans = plan_corpus(size, 0)
    speakers = {
        s: {p.speaker.id for p in plans if p.split == s} for s in ("labeled", "unlabeled", "test")
    }
    assert [len(v) for v in speakers.values()] == [2, 5, 3]
    assert not (
        speakers["labeled"] & speakers["unlabeled"] or speakers["labeled"] & speakers["test"]
    )
    labeled = [p.emotion for p in plans if p.split == "labeled"]
    assert sorted(labeled) == sorted(list(CLASSES) * 4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_emotion_moves_pitch_and_energy_in_the_expected_direction(seed):
    voice = average_voice(seed)
    measured = {}
    for emotion in CLASSES:
        wave = synthesize(voice, emotion, 3.0, np.random.default_rng(seed), snr_db=40).wave
        measured[emotion] = (pitch_hz(wave), float(np.sqrt(np.mean(wave**2))))
    pitch = {e: v[0] for e, v in measured.items()}
    energy = {e: v[1] for e, v in measured.items()}
    assert pitch["happy"] > pitch["neutral"] * 1.1 > pitch["sad"] * 1.1
    assert pitch["angry"] > pitch["neutral"]
    assert energy["angry"] > energy["happy"] > energy["neutral"] > energy["sad"] * 1.5


def test_speakers_differ_more_in_pitch_than_emotions_do():
    """Speaker f0 ranges overlap the emotional pitch changes (few labels generalise poorly)."""
    f0 = [random_voice(np.random.default_rng(s)).f0 for s in range(40)]
    assert max(f0) / min(f0) > 2 * 2 ** (3.5 / 12)  # widest emotional shift: happy, +3.5 semitones


STYLE = FaceStyle(
    skin=(220, 180, 150),
    hair=(0, 0, 255),  # a colour nothing else has: the brows are easy to find
    background=(40, 120, 40),
    half_width=0.3,
    half_height=0.4,
    eye_gap=0.4,
    eye_size=0.2,
    mouth_width=0.4,
    hair_style=0,  # bald: blue pixels are brows only
)
LIP = np.array([170, 60, 70])
MOUTH = np.array([90, 20, 30])


def _mask(frame, color, tol=40):
    return np.abs(frame.astype(int) - color).sum(axis=2) < tol


def _still(emotion: str, openness: float = 0.0) -> np.ndarray:
    frames = render_face(STYLE, expression(emotion), np.full(1, openness), 15.0, 128)
    return frames[0]


def test_mouth_corners_go_up_for_happy_and_down_for_sad():
    def corner_lift(frame):  # rows: down is positive; > 0 means corners higher than the centre
        ys, xs = np.nonzero(_mask(frame, LIP) | _mask(frame, MOUTH))
        width = xs.max() - xs.min()
        centre = ys[np.abs(xs - xs.mean()) < 0.1 * width].mean()
        corners = ys[np.abs(xs - xs.mean()) > 0.4 * width].mean()
        return centre - corners

    lift = {e: corner_lift(_still(e)) for e in CLASSES}
    assert lift["happy"] > 2 > abs(lift["neutral"])
    assert lift["sad"] < -2


def test_brows_slant_down_inwards_for_angry_and_up_for_sad():
    def inner_minus_outer(frame):  # of the left brow, in rows; > 0: inner end lower
        ys, xs = np.nonzero(_mask(frame, np.array(STYLE.hair)))
        left = xs < frame.shape[1] / 2
        ys, xs = ys[left], xs[left]
        mid = (xs.min() + xs.max()) / 2
        return ys[xs > mid].mean() - ys[xs <= mid].mean()

    slant = {e: inner_minus_outer(_still(e)) for e in CLASSES}
    assert slant["angry"] > 2 > abs(slant["neutral"])
    assert slant["sad"] < -2


def test_mouth_opening_follows_the_voice():
    plan = next(p for p in plan_corpus(CorpusSize(1, 1, 1, 1, 1, 1), 0) if p.split == "labeled")
    size = CorpusSize(1, 1, 1, 1, 1, 1)
    wave, frames = render_clip(plan, size)
    hop = RATE / size.fps
    loudness = [
        np.sqrt(np.mean(wave[int(i * hop) : int((i + 1) * hop)] ** 2)) for i in range(len(frames))
    ]
    inside = [_mask(f, MOUTH, 60).sum() for f in frames]
    assert np.corrcoef(loudness, inside)[0, 1] > 0.5


def test_written_files_are_real_and_decodable(tmp_path):
    from liser.audio import load_audio
    from liser.manifest import read_manifest
    from liser.video_io import probe, read_frames

    size = CorpusSize(1, 1, 1, 1, 1, 1, unlabeled_seconds=(4.0, 4.0))
    manifests = write_corpus(tmp_path / "c", size, seed=5, workers=1, progress=False)
    assert {k: len(v) for k, v in manifests.items()} == {"labeled": 4, "unlabeled": 1, "test": 4}
    plans = {p.id: p for p in plan_corpus(size, 5)}
    video = manifests["unlabeled"].iloc[0]
    info = probe(video.path)
    assert info.has_video and info.has_audio and info.fps == pytest.approx(size.fps)
    assert info.duration == pytest.approx(4.0, abs=0.1)
    wave, frames = render_clip(plans[video.id], size)
    decoded = load_audio(video.path)
    assert abs(len(decoded) - len(wave)) < 0.05 * RATE
    assert np.sqrt(np.mean(decoded**2)) == pytest.approx(np.sqrt(np.mean(wave**2)), rel=0.2)
    times, got = read_frames(video.path, size.fps)
    assert len(got) == len(frames) and got[0].shape == frames[0].shape
    assert np.abs(np.stack(got).astype(int) - frames.astype(int)).mean() < 6  # H.264, lossy
    clip = manifests["test"].iloc[0]
    assert clip.path.endswith(".wav")
    assert np.abs(load_audio(clip.path) - render_clip(plans[clip.id], size)[0]).max() < 1e-3
    again = read_manifest(tmp_path / "c" / "unlabeled.csv")
    assert again.label.isna().all() and again.path.iloc[0] == video.path
    # resumable: a second call renders nothing and returns the same manifests
    mtime = (tmp_path / "c" / "unlabeled").iterdir().__next__().stat().st_mtime
    write_corpus(tmp_path / "c", size, seed=5, workers=1, progress=False)
    assert next((tmp_path / "c" / "unlabeled").iterdir()).stat().st_mtime == mtime
    with pytest.raises(FileExistsError, match="other settings"):
        write_corpus(tmp_path / "c", size, seed=6, workers=1, progress=False)


@pytest.mark.slow
def test_small_demo_distilled_student_beats_supervised(tmp_path):
    from liser.checkpoint import load_checkpoint
    from liser.demo import run_demo

    results = run_demo(tmp_path / "demo", "small", seed=0, progress=False)
    test = results["test"]
    # measured (UAR on 96 unseen-speaker clips, supervised -> distilled): seed 0 52.1 -> 71.9,
    # seed 1 61.5 -> 72.9, seed 2 45.8 -> 62.5
    assert test["distilled"]["uar"] > test["supervised"]["uar"] + 0.08, test
    assert results["teacher_agreement"]["video"] > 0.9
    for name in ("supervised", "distilled"):
        model, meta = load_checkpoint(tmp_path / "demo" / "students" / name)
        assert meta["classes"] == list(CLASSES)
    # small: the supervised student is its own audio teacher (a wider one costs ~18 s more)
    teacher = Path(results["audio_teacher"]["checkpoint"])
    assert teacher.parent == tmp_path / "demo" / "runs" / "supervised"
    # the report states the measured numbers, not just headings
    report = (tmp_path / "demo" / "report.md").read_text()
    for name in ("supervised", "distilled"):
        m = test[name]
        row = f"| {100 * m['uar']:.1f} | {100 * m['war']:.1f} | {100 * m['macro_f1']:.1f} |"
        assert row in report, (name, row)
    gain = 100 * (test["distilled"]["uar"] - test["supervised"]["uar"])
    assert f"Distillation gain: **{gain:+.1f} UAR points**." in report
    assert f"| test | {results['corpus']['test']} |" in report
    saved = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert saved["test"]["distilled"]["uar"] == pytest.approx(test["distilled"]["uar"])
    import matplotlib.image

    confusion = matplotlib.image.imread(tmp_path / "demo" / "confusion.png")
    assert confusion.shape[1] > 1.8 * confusion.shape[0]  # two matrices side by side
    assert confusion[..., :3].std() > 0.05  # drawn, not blank


def test_demo_with_a_wider_audio_teacher_labels_with_it(tmp_path, monkeypatch):
    """The `full` path (a wider student as the audio teacher) end to end, on a tiny corpus."""
    from liser.checkpoint import load_checkpoint
    from liser.demo import corpus, pipeline, run_demo
    from liser.student import count_parameters

    monkeypatch.setitem(corpus.SIZES, "tiny", CorpusSize(1, 1, 2, 1, 1, 1))
    tiny = pipeline.DemoSettings("tiny", epochs=2, distill_epochs=2, fer_epochs=1, fer_faces=4)
    assert tiny.teacher == pipeline.SETTINGS["full"].teacher
    monkeypatch.setitem(pipeline.SETTINGS, "tiny", tiny)
    results = run_demo(tmp_path / "demo", "tiny", seed=1, progress=False)
    teacher = Path(results["audio_teacher"]["checkpoint"])
    assert teacher.parent == tmp_path / "demo" / "runs" / "audio-teacher"
    student, _ = load_checkpoint(tmp_path / "demo" / "students" / "supervised")
    assert count_parameters(load_checkpoint(teacher)[0]) > 3 * count_parameters(student)
    store = json.loads((tmp_path / "demo" / "store" / "store.json").read_text())
    assert str(teacher) in json.dumps(store["teachers"]["audio"])
    assert set(results["seconds"]) >= {"audio_teacher", "supervised", "label", "distilled"}
