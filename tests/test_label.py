import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.dataset as ds
import pytest
import soundfile as sf
import torch

from liser import store as st
from liser.audio import load_audio
from liser.config import FrontEndConfig, LabelConfig
from liser.features import LogMel
from liser.label import StoreLock, label, list_clips
from liser.store import shards
from liser.testing import TinyAudioTeacher, TinyVideoTeacher, face_video, tone
from liser.video_io import write_video
from liser.windows import WindowCutter, WindowSpec, window_starts

SR = 16000


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Real media files: H.264/AAC mp4 and MPEG-4/PCM avi with a face, a Matroska file, audio
    files, and bad ones (no audio, truncated, 0 bytes, a dangling link)."""
    root = tmp_path_factory.mktemp("media")
    face_video(root / "talk.mp4", seconds=7.5, fps=10, face_until=4.0, audio=tone(7.5, 220))
    face_video(root / "sub" / "face.mkv", seconds=4.0, fps=10, audio=tone(4.0, 440, seed=1))
    blank = np.full((5, 120, 160, 3), 40, np.uint8)
    write_video(root / "blank.avi", blank, fps=2, audio=tone(2.5, 300, seed=2))
    sf.write(root / "speech.wav", tone(5.0, 330, seed=3), SR)
    sf.write(root / "sub" / "short.flac", tone(0.6, 500, seed=4), SR)  # < min_seconds: no window
    face_video(root / "silent_film.mp4", seconds=3.0, fps=10)  # video without audio
    data = (root / "talk.mp4").read_bytes()
    (root / "cut.mp4").write_bytes(data[: len(data) // 2])  # truncated
    (root / "empty.mp4").write_bytes(b"")
    os.symlink(root / "gone.mp4", root / "dangling.mp4")  # a link to nothing
    (root / "notes.txt").write_text("not media")
    return root


def table(store) -> "pa.Table":  # noqa: F821
    return ds.dataset(store / "shards").to_table().sort_by("window_id")


def per_clip(t, column):
    out = {}
    for clip, value in zip(t["clip"].to_pylist(), t[column].to_pylist(), strict=True):
        out.setdefault(os.path.basename(clip), []).append(value)
    return out


def test_label_folder(media, tmp_path):
    summary = label(
        media,
        tmp_path / "s",
        LabelConfig(shard_windows=4),
        TinyAudioTeacher(),
        TinyVideoTeacher(),
        progress=False,
    )
    t = table(tmp_path / "s")
    starts = per_clip(t, "start")
    # window rule of audio.window_starts: 3 s grid plus an end-aligned window for a >= 1 s tail
    expected = {
        "talk.mp4": [0.0, 3.0, 4.5],
        "face.mkv": [0.0, 1.0],
        "blank.avi": [0.0],  # shorter than a window: one padded window
        "speech.wav": [0.0, 2.0],
    }
    assert sorted(starts) == sorted(expected)
    for name, values in expected.items():  # AAC adds up to ~60 ms of encoder padding
        assert sorted(starts[name]) == pytest.approx(values, abs=0.07)
    ends = per_clip(t, "end")
    assert max(ends["blank.avi"]) == pytest.approx(2.5, abs=0.01) and max(
        ends["talk.mp4"]
    ) == pytest.approx(7.5, abs=0.07)
    # face coverage: the face leaves talk.mp4 at 4.0 s; frames at 5 fps
    coverage = per_clip(t.sort_by("start"), "face_coverage")
    assert coverage["talk.mp4"] == pytest.approx([1.0, 5 / 15, 0.0])
    assert coverage["blank.avi"] == [0.0]
    video = per_clip(t.sort_by("start"), "video_probs")
    assert video["talk.mp4"][0] is not None and video["talk.mp4"][1] is None  # masked: no face
    assert all(len(p) == 7 for p in video["face.mkv"])
    assert per_clip(t, "face_coverage")["speech.wav"] == [None, None]  # audio only
    assert video["speech.wav"] == [None, None]
    probs = np.array(t["audio_probs"].to_pylist())
    assert probs.shape == (8, 4) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert np.allclose(t["audio_confidence"].to_numpy(), probs.max(1))
    assert set(t["audio_teacher"].to_pylist()) == {"tiny-audio-4-0"}
    # features are the front end's log-Mel of the window, stored as float16
    wave = load_audio(media / "speech.wav")
    row = t["start"].to_pylist().index(2.0)
    expected = LogMel(FrontEndConfig())(torch.from_numpy(wave[2 * SR : 5 * SR])[None])[0].numpy()
    got = np.frombuffer(t["features"][row].as_py(), np.float16).reshape(64, 301)
    assert np.allclose(got, expected, atol=2e-2)
    # summary and skipped files, also in store.json
    header = json.loads((tmp_path / "s" / "store.json").read_text())
    assert header["summary"] == summary
    assert summary["files"] == 4 and summary["windows"] == 8
    assert summary["windows_with_video"] == 6 and summary["windows_with_face"] == 3
    assert summary["hours"] == pytest.approx((7.5 + 4 + 2.5 + 5) / 3600, abs=1e-4)
    skipped = {os.path.basename(k): v["reason"] for k, v in header["skipped"].items()}
    assert set(skipped) == {"short.flac", "silent_film.mp4", "cut.mp4", "empty.mp4", "dangling.mp4"}
    assert "no audio stream" in skipped["silent_film.mp4"] and "empty" in skipped["empty.mp4"]
    assert "not found" in skipped["dangling.mp4"]
    assert "shorter than 1.0 s" in skipped["short.flac"]
    assert header["teachers"]["video"]["classes"] == [f"face{i}" for i in range(7)]
    assert header["n_frames"] == 301 and header["hop_seconds"] == 3.0
    # a second run finds everything done: no new rows, nothing recomputed
    counting = CountingAudio()
    again = label(
        media,
        tmp_path / "s",
        LabelConfig(shard_windows=4),
        counting,
        TinyVideoTeacher(),
        progress=False,
    )
    assert counting.windows == 0 and again["this_run"]["files"] == 0
    assert table(tmp_path / "s").equals(t)


class CountingAudio(TinyAudioTeacher):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.windows = 0

    def predict(self, waves):
        self.windows += len(waves)
        return super().predict(waves)


def test_add_then_replace_a_teacher_recomputes_only_its_columns(media, tmp_path):
    config = LabelConfig(shard_windows=3)
    label(media, tmp_path / "s", config, TinyAudioTeacher(), progress=False)
    first = table(tmp_path / "s")
    assert first["video_probs"].null_count == first.num_rows
    counting = CountingAudio()
    label(media, tmp_path / "s", config, counting, TinyVideoTeacher(), progress=False)  # add video
    added = table(tmp_path / "s")
    assert counting.windows == 0  # same audio teacher: its columns are kept
    for column in ("window_id", "features", "audio_probs", "start", "end"):
        assert added[column].equals(first[column])
    fresh = tmp_path / "fresh"
    label(media, fresh, config, TinyAudioTeacher(), TinyVideoTeacher(), progress=False)
    assert added.equals(table(fresh))
    # replace the audio teacher: audio columns change (as a fresh run), video columns are kept
    new_audio = CountingAudio(n_classes=3, seed=1)
    label(media, tmp_path / "s", config, new_audio, progress=False)
    replaced = table(tmp_path / "s")
    assert new_audio.windows == first.num_rows
    for column in ("features", "video_probs", "video_teacher", "face_coverage"):
        assert replaced[column].equals(added[column])
    assert set(replaced["audio_teacher"].to_pylist()) == {"tiny-audio-3-1"}
    label(media, tmp_path / "fresh3", config, TinyAudioTeacher(n_classes=3, seed=1), progress=False)
    expected = np.array(table(tmp_path / "fresh3")["audio_probs"].to_pylist())
    assert np.allclose(np.array(replaced["audio_probs"].to_pylist()), expected, atol=1e-3)
    store = st.open_store(tmp_path / "s")
    assert store.audio_classes == ("class0", "class1", "class2")
    batch = next(store.iter_batches(64))
    assert batch["audio_mask"].all() and batch["audio_probs"].shape == (8, 3)


def test_settings_mismatch_is_refused(media, tmp_path):
    config = LabelConfig()
    label(media / "speech.wav", tmp_path / "s", config, progress=False)
    other = LabelConfig(frontend=FrontEndConfig(n_mels=40))
    with pytest.raises(st.StoreError, match="n_mels: 64 != 40"):
        label(media, tmp_path / "s", other, progress=False)
    with pytest.raises(st.StoreError, match="hop_seconds"):
        label(media, tmp_path / "s", LabelConfig(hop_seconds=1.5), progress=False)
    with pytest.raises(ValueError, match="window_seconds"):
        label(media, tmp_path / "t", LabelConfig(window_seconds=2.0), progress=False)


def test_global_normalisation_stores_raw_log_mel(media, tmp_path):
    frontend = FrontEndConfig(normalize="global")
    label(media / "speech.wav", tmp_path / "s", LabelConfig(frontend=frontend), progress=False)
    store = st.open_store(tmp_path / "s")
    assert not store.features_normalized and store.frontend == frontend
    wave = load_audio(media / "speech.wav")[: 3 * SR]
    raw = LogMel(frontend).log_mel(torch.from_numpy(wave)[None])[0]
    features = next(store.iter_batches(2, shuffle=False))["features"][0]
    assert torch.allclose(features, raw, atol=1e-2)


def test_manifest_segments_and_overlapping_hop(media, tmp_path):
    from liser.manifest import make_manifest, write_manifest

    wav = str(media / "speech.wav")
    rows = [
        {"id": "a", "path": wav, "start": 0.0, "duration": 2.0, "speaker": "s", "corpus": "x"},
        {"id": "b", "path": wav, "start": 1.0, "duration": 4.0, "speaker": "s", "corpus": "x"},
    ]
    manifest = write_manifest(make_manifest(rows), tmp_path / "m.csv")
    clips = list_clips(manifest)
    assert [(c.start, c.end) for c in clips] == [(0.0, 2.0), (1.0, 5.0)]
    label(
        manifest, tmp_path / "s", LabelConfig(hop_seconds=0.5), TinyAudioTeacher(), progress=False
    )
    t = table(tmp_path / "s")
    spans = sorted(zip(t["start"].to_pylist(), t["end"].to_pylist(), strict=True))
    assert np.allclose(spans, [(0.0, 2.0), (1.0, 4.0), (1.5, 4.5), (2.0, 5.0)])


@pytest.mark.parametrize("n", [1, 15_000, 47_999, 48_000, 63_999, 64_000, 100_000])
def test_window_cutter_matches_window_starts_in_any_chunking(n):
    rng = np.random.default_rng(n)
    wave = rng.standard_normal(n).astype(np.float32)
    for window, hop in ((48_000, 48_000), (48_000, 16_000), (48_000, 60_000)):
        cutter = WindowCutter(WindowSpec(window, hop, 16_000, 16_000), rate=1)
        out, at = [], 0
        while at < n:
            size = int(rng.integers(1, 40_000))
            out += cutter.feed(wave[at : at + size])
            assert len(cutter.buffer) <= window + size  # bounded: one window plus one chunk
            at += size
        out += cutter.finish()
        assert [w[1] for w in out] == window_starts(n, window, hop, 16_000)
        for _index, start, n_real, w in out:
            assert len(w) == window and np.array_equal(w[:n_real], wave[start : start + n_real])


def test_kill_during_labeling_then_resume(media, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    sf.write(src / "a_long.wav", tone(30.0, 200), SR)  # 10 windows, spans several shards
    for i in range(4):
        sf.write(src / f"b{i}.wav", tone(7.0, 250 + 50 * i, seed=i), SR)
    os.symlink(media / "talk.mp4", src / "c.mp4")
    script = (
        "import sys; from liser.label import label; from liser.config import LabelConfig; "
        "from liser.testing import TinyAudioTeacher, TinyVideoTeacher; "
        "label(sys.argv[1], sys.argv[2], LabelConfig(shard_windows=2, batch_size=2), "
        "TinyAudioTeacher(delay=0.4), TinyVideoTeacher(), progress=False)"
    )
    store = tmp_path / "s"
    process = subprocess.Popen([sys.executable, "-c", script, str(src), str(store)])
    deadline = time.time() + 120
    while not st.shard_paths(store) and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert st.shard_paths(store), "no shard was written before the kill"
    done = shards.done_clips(store)
    assert str(src / "a_long.wav") not in done  # killed in the middle of the long file
    counting = CountingAudio()
    label(
        src,
        store,
        LabelConfig(shard_windows=2, batch_size=2),
        counting,
        TinyVideoTeacher(),
        progress=False,
    )
    label(
        src,
        tmp_path / "ref",
        LabelConfig(shard_windows=2, batch_size=2),
        TinyAudioTeacher(),
        TinyVideoTeacher(),
        progress=False,
    )
    resumed, reference = table(store), table(tmp_path / "ref")
    assert resumed.equals(reference)  # no duplicate, missing or corrupt rows
    already = sum(1 for c in resumed["clip"].to_pylist() if c in done)
    assert counting.windows == reference.num_rows - already  # done clips were not recomputed
    assert not list((store / "shards").glob(".*")) and not (store / ".lock").exists()


def test_cli_label(media, tmp_path):
    from typer.testing import CliRunner

    from liser.cli import app

    out = tmp_path / "s"
    result = CliRunner().invoke(
        app, ["label", str(media / "sub"), "-o", str(out), "--hop", "1.5", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["files"] == 1 and summary["windows"] == 2 and summary["skipped_files"] == 1
    assert st.open_store(out).audio_classes == ()  # no teacher: features only
    result = CliRunner().invoke(app, ["label", str(media), "-o", str(out), "--quiet"])
    assert result.exit_code == 2 and "hop_seconds: 1.5 != 3.0" in result.output


@pytest.mark.shared
def test_real_video_teacher(media, tmp_path, shared):
    """Haar face detector + mini-Xception FER from ../shared on the face video."""
    config = LabelConfig(
        video_teacher=str(shared / "models/fer/fer2013_mini_xception.hdf5"),
        face_detector=str(shared / "models/face/haarcascade_frontalface_default.xml"),
    )
    label(media / "talk.mp4", tmp_path / "s", config, progress=False)
    t = table(tmp_path / "s").sort_by("start")
    assert t["face_coverage"].to_pylist()[0] > 0.8 and t["face_coverage"].to_pylist()[2] == 0.0
    probs = t["video_probs"].to_pylist()
    assert len(probs[0]) == 7 and abs(sum(probs[0]) - 1) < 1e-4 and probs[2] is None
    header = st.read_header(tmp_path / "s")
    assert header["teachers"]["video"]["classes"][0] == "angry"
    assert header["teachers"]["video"]["face_detector"].endswith(".xml")


def test_store_lock(tmp_path):
    with StoreLock(tmp_path):
        assert (tmp_path / ".lock").read_text() == str(os.getpid())
        (tmp_path / ".lock").write_text(str(os.getppid()))  # as if another live process held it
        with pytest.raises(st.StoreError, match="in use by another labeling process"):
            with StoreLock(tmp_path):
                pass
    assert not (tmp_path / ".lock").exists()
    (tmp_path / ".lock").write_text("999999999")  # left by a killed process
    with StoreLock(tmp_path):
        assert (tmp_path / ".lock").read_text() == str(os.getpid())
