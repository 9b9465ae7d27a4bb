"""The bad-input corpus (issue 8) through every stage that reads files.

``liser.testing.bad_audio_corpus`` / ``bad_video_corpus`` write ~35 awkward files (0 bytes, header
only, truncated, NaN/Inf, silence, clipped, 8/96 kHz, 6 channels, 0.1 s, wrong extensions,
unknown codecs, unicode paths, dangling links, symlink loops; videos without audio or video,
variable frame rate, rotated, 1x1, no face, four faces, corrupt packets, truncated). Each stage
must reject the broken ones with a message naming the file and the reason, go on with the others,
report what it skipped, and never return a silently wrong result.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from liser.audio import AudioError, load_audio, stream_audio
from liser.cli import app
from liser.config import (
    ConfigError,
    DataConfig,
    FrontEndConfig,
    LabelConfig,
    TrainConfig,
    from_dict,
    load_config,
    replace,
)
from liser.features import FeatureCache, LogMel, features_for_clips
from liser.manifest import ManifestError, read_manifest, split_fold, write_manifest
from liser.testing import (
    bad_audio_corpus,
    bad_video_corpus,
    haar_face_detector,
    student_checkpoint,
    symlink_loop,
    tiny_fer_model,
    tone,
)

SR = 16000
CLASSES = ("angry", "happy", "neutral", "sad")
SHORT_OR_SILENT = re.compile("silent|too short")  # judged per window by streaming stages


@pytest.fixture(scope="module")
def audio_corpus(tmp_path_factory):
    """The audio corpus, plus a symlink loop holding one good clip, in one folder."""
    root = tmp_path_factory.mktemp("bad audio")
    cases = bad_audio_corpus(root)
    loop = symlink_loop(root)
    return root, cases, loop / "inner" / "inside_loop.wav"


@pytest.fixture(scope="module")
def video_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad video")
    return root, bad_video_corpus(root)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return student_checkpoint(tmp_path_factory.mktemp("ckpt"), CLASSES)


def by_name(cases):
    return {case.path.name: case for case in cases}


def check_all(cases, check) -> None:
    """Run ``check(case)`` on every case; fail once, listing every case that went wrong."""
    problems = []
    for case in cases:
        try:
            check(case)
        except Exception as error:  # noqa: BLE001 - collected and reported below
            problems.append(f"{case.path.name}: {type(error).__name__}: {error}")
    assert not problems, "\n".join(problems)


def usable_wave_ok(case, wave: np.ndarray, rate: int = SR) -> None:
    assert wave.dtype == np.float32 and wave.ndim == 1, (wave.dtype, wave.shape)
    assert np.isfinite(wave).all(), "NaN or Inf in the decoded wave"
    if "corrupt" not in case.path.name:  # a decoder fed garbage may overshoot
        assert np.abs(wave).max() <= 1.0 + 1e-3, f"peak {np.abs(wave).max()}"
    low, high = case.seconds
    assert low <= len(wave) / rate <= high, f"{len(wave) / rate:.4f} s not in {case.seconds}"


def peak_hz(wave: np.ndarray, rate: int = SR) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.argmax(spectrum) * rate / len(wave))


# --------------------------------------------------------------------------------------------
# Reading audio


def test_corpus_is_large_enough(audio_corpus, video_corpus):
    cases = audio_corpus[1] + video_corpus[1]
    assert len(cases) >= 30
    assert (
        sum(c.reason is None for c in cases) >= 10
        and sum(c.reason is not None for c in cases) >= 10
    )


def test_load_audio_rejects_or_decodes_each_case(audio_corpus, video_corpus):
    def check(case):
        if case.reason is not None:
            with pytest.raises(AudioError) as error:
                load_audio(case.path)
            assert error.value.path == str(case.path) and str(case.path) in str(error.value)
            assert re.search(case.reason, error.value.reason), error.value.reason
            return
        usable_wave_ok(case, load_audio(case.path))

    check_all(audio_corpus[1] + video_corpus[1], check)


def test_odd_audio_decodes_to_the_right_signal(audio_corpus):
    cases = by_name(audio_corpus[1])
    one = tone(1.0, 440.0)
    # 6 channels are averaged: gains (1, .5, .25, -.25, .8, .1) -> 0.4 x the tone
    six = load_audio(cases["six_channels.wav"].path)
    np.testing.assert_allclose(six, 0.4 * one, atol=2e-4)
    clipped = load_audio(cases["clipped_full_scale.wav"].path)
    assert np.abs(clipped).max() == pytest.approx(1.0, abs=1e-3)
    assert np.mean(np.abs(clipped) > 0.99) > 0.3  # flat tops kept, not rescaled
    for name in ("rate_8000.wav", "rate_96000.flac", "flac_named.wav", "wav_named.mp4"):
        wave = load_audio(cases[name].path)
        assert peak_hz(wave) == pytest.approx(440.0, abs=2.0), name
        assert np.sqrt(np.mean(wave**2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.05), name
    unicode = next(c for c in audio_corpus[1] if "日本語" in c.path.name)
    np.testing.assert_allclose(load_audio(unicode.path), one, atol=1e-4)
    # truncated files keep what was there, sample for sample
    two = tone(2.0, 440.0)
    for name in ("truncated_mid_sample.wav", "truncated_mid_frame.flac"):
        part = load_audio(cases[name].path)
        np.testing.assert_allclose(part, two[: len(part)], atol=1e-4, err_msg=name)


def test_stream_audio_agrees_with_load_audio(audio_corpus, video_corpus):
    def check(case):
        if case.reason is not None and not SHORT_OR_SILENT.search(case.reason):
            with pytest.raises(AudioError, match=case.reason):
                list(stream_audio(case.path, chunk_seconds=0.3))
            return
        chunks = list(stream_audio(case.path, chunk_seconds=0.3))
        whole = load_audio(case.path, min_seconds=0, allow_silent=True)
        assert all(len(c) == round(0.3 * SR) for c in chunks[:-1]) and len(chunks[-1]) > 0
        np.testing.assert_allclose(np.concatenate(chunks), whole, atol=1e-5)

    check_all(audio_corpus[1] + video_corpus[1], check)


def test_corrupt_packets_are_filled_with_silence_to_keep_the_timing(video_corpus, caplog):
    """An mp4 with random bytes over its middle: the audio after the damage stays where it was
    (a shifted track would pair windows with the wrong video frames), and a warning says so."""
    cases = by_name(video_corpus[1])
    speech = tone(3.5, 220.0, seed=7)
    with caplog.at_level(logging.WARNING, logger="liser.audio"):
        wave = load_audio(cases["corrupt_middle.mp4"].path)
    assert "corrupt audio packet" in caplog.text and "corrupt_middle.mp4" in caplog.text
    tail = slice(len(speech) - SR, len(speech))  # the last second, after the damage
    assert np.corrcoef(wave[tail], speech[tail])[0, 1] > 0.99
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="liser.audio"):
        cut = load_audio(cases["corrupt_middle.mkv"].path)  # Matroska's demuxer gives up
    assert len(cut) < 3 * SR
    assert re.search(r"corrupt_middle.mkv: decoding stopped at .* of the 3\.\d+ s", caplog.text)


@pytest.mark.slow
def test_two_hour_file_streams_in_bounded_memory(tmp_path):
    import tracemalloc

    from liser.audio import audio_duration
    from liser.media import probe_media
    from liser.testing import long_audio

    path = long_audio(tmp_path / "two hours.flac", seconds=7200.0)
    assert audio_duration(path) == 7200.0 and probe_media(path)["duration"] == 7200.0
    tracemalloc.start()
    try:
        n, n_chunks, peak_level = 0, 0, 0.0
        for chunk in stream_audio(path, SR, chunk_seconds=60.0):
            n += len(chunk)
            n_chunks += 1
            peak_level = max(peak_level, float(np.abs(chunk).max()))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 7200 * SR and n_chunks == 120
    assert peak_level == pytest.approx(0.002, abs=2e-4)
    assert peak < 40e6, f"peak {peak / 1e6:.0f} MB; the whole file at 16 kHz is 460 MB"


# --------------------------------------------------------------------------------------------
# Stages that read many files: features, manifests, prediction, labeling


def test_feature_extraction_skips_and_reports(audio_corpus, tmp_path):
    root, cases, in_loop = audio_corpus
    cache = FeatureCache(tmp_path / "cache", FrontEndConfig())
    clips = [(c.path, 0.0, None) for c in cases] + [(in_loop, 0.0, None)]
    for attempt in range(2):  # the second run reads the cache; same result
        features, skipped = features_for_clips(clips, cache, LogMel(cache.frontend), progress=False)
        reasons = dict(skipped)
        for case, x in zip(cases, features, strict=False):
            if case.reason is None:
                assert x is not None and np.isfinite(x).all(), case.path.name
                assert x.shape[0] == 64 and x.shape[1] >= 301, (case.path.name, x.shape)
            else:
                assert x is None and re.search(case.reason, reasons[str(case.path)]), case.path.name
        assert len(skipped) == sum(c.reason is not None for c in cases), attempt


def test_manifest_builders_survive_the_folder(audio_corpus, video_corpus, tmp_path):
    """Manifests read headers only: files whose header cannot be read are skipped and listed;
    a symlink loop ends, its clip listed once."""
    from liser.manifest import folder_manifest, videos_manifest

    root, cases, in_loop = audio_corpus
    df = videos_manifest(root)
    skipped = dict((str(p), r) for p, r in df.attrs["skipped"])
    listed = set(df["path"])
    assert sum(p.endswith("inside_loop.wav") for p in listed) == 1
    for case in cases:
        name = str(case.path)
        assert (name in listed) != (name in skipped), f"{case.path.name} neither listed nor skipped"
        if case.reason is None:
            assert name in listed, case.path.name
            assert df.loc[df.path == name, "duration"].iloc[0] > 0
    for name in ("empty.wav", "text.wav", "random_bytes.mp3", "dangling_link.wav"):
        assert str(root / name) in skipped, name
    assert re.search("0 bytes", skipped[str(root / "empty.wav")])
    # a class folder holding the whole corpus
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "happy").symlink_to(root, target_is_directory=True)
    labeled = folder_manifest(tmp_path / "data")
    assert set(labeled["label"]) == {"happy"} and len(labeled) == len(df)
    videos = videos_manifest(video_corpus[0])
    assert {Path(p).name for p, _ in videos.attrs["skipped"]} == {"zero_bytes.mp4", "truncated.mp4"}
    row = videos.set_index("id").loc["no_audio_stream.mp4"]
    assert not row["has_audio"] and row["has_video"]
    assert videos.set_index("id").loc["one_pixel.mkv", "width"] == 1


def predict_cli(checkpoint, folder, out) -> tuple[list[dict], str]:
    result = CliRunner().invoke(
        app, ["predict", str(checkpoint), str(folder), "-o", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text()), result.output


def test_cli_predict_on_a_folder_of_bad_audio(audio_corpus, checkpoint, tmp_path):
    root, cases, in_loop = audio_corpus
    results, output = predict_cli(checkpoint, root, tmp_path / "out.json")
    by_path = {r["path"]: r for r in results}
    assert len(by_path) == len(results), "a file predicted twice (symlink loop?)"
    assert str(in_loop) in by_path and "error" not in by_path[str(in_loop)]

    def check(case):
        result = by_path[str(case.path)]
        if case.reason is not None:
            assert re.search(case.reason, result["error"]), result
            assert f"skipped {case.path}" in " ".join(output.split())
            return
        assert "error" not in result, result
        low, high = case.seconds
        assert low <= result["duration"] <= high
        assert sum(result["probs"].values()) == pytest.approx(1.0, abs=1e-4)
        assert all(np.isfinite(list(w["probs"].values())).all() for w in result["windows"])

    check_all(cases, check)
    n_bad = sum(c.reason is not None for c in cases)
    assert f"{len(results) - n_bad} file(s) predicted, {n_bad} skipped" in output


def test_cli_predict_on_a_folder_of_bad_videos(video_corpus, checkpoint, tmp_path):
    root, cases = video_corpus
    results, _ = predict_cli(checkpoint, root, tmp_path / "out.json")
    by_path = {r["path"]: r for r in results}

    def check(case):
        result = by_path[str(case.path)]
        if case.reason is None:
            assert "error" not in result and case.seconds[0] <= result["duration"], result
        else:
            assert re.search(case.reason, result["error"]), result

    check_all(cases, check)


def store_rows(store: Path) -> pd.DataFrame:
    import pyarrow.dataset as ds

    return ds.dataset(store / "shards").to_table().to_pandas()


def test_cli_label_on_a_folder_of_bad_audio(audio_corpus, checkpoint, tmp_path):
    """Labeling goes on past every bad file, lists it with its reason in store.json, and skips
    it again (unchanged) on the next run. Streaming judges silence per window: silent and too
    short files get no window."""
    root, cases, in_loop = audio_corpus
    store = tmp_path / "store"
    command = ["label", str(root), "-o", str(store), "--audio-teacher", str(checkpoint),
               "--set", "min_seconds=0.1", "--quiet"]  # fmt: skip
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    header = json.loads((store / "store.json").read_text())
    rows = store_rows(store)
    labeled = set(rows["source"])

    def check(case):
        if case.reason is None:
            assert str(case.path) in labeled, "not labeled"
            return
        record = header["skipped"].get(str(case.path)) or header["skipped"].get(
            str(case.path.absolute())
        )
        assert record is not None, "not in store.json's skipped files"
        wanted = "no window" if SHORT_OR_SILENT.search(case.reason) else case.reason
        assert re.search(wanted, record["reason"]), record

    check_all(cases, check)
    assert str(in_loop) in labeled
    n_bad = sum(c.reason is not None for c in cases)
    assert summary["skipped_files"] == n_bad and summary["files"] == len(labeled)
    features = np.stack([np.frombuffer(f, np.float16) for f in rows["features"]])
    assert np.isfinite(features).all()
    probs = np.stack(rows["audio_probs"].to_list())
    assert np.isfinite(probs).all() and np.allclose(probs.sum(1), 1.0, atol=1e-4)
    again = CliRunner().invoke(app, command)
    assert again.exit_code == 0, again.output
    rerun = json.loads(again.output.strip().splitlines()[-1])
    assert rerun["this_run"]["files"] == 0 and rerun["skipped_files"] == n_bad


def test_cli_label_on_a_folder_of_bad_videos(video_corpus, checkpoint, tmp_path):
    """With a real video teacher (OpenCV's Haar cascade + a tiny TorchScript FER model)."""
    root, cases = video_corpus
    store = tmp_path / "store"
    fer = tiny_fer_model(tmp_path / "fer")
    command = ["label", str(root), "-o", str(store), "--audio-teacher", str(checkpoint),
               "--video-teacher", str(fer), "--face-detector", str(haar_face_detector()),
               "--set", "min_seconds=0.5", "--quiet"]  # fmt: skip
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 0, result.output
    header = json.loads((store / "store.json").read_text())
    rows = store_rows(store)
    rows["name"] = [Path(s).name for s in rows["source"]]
    coverage = rows.groupby("name")["face_coverage"].apply(list).to_dict()
    with_probs = rows.groupby("name")["video_probs"].apply(lambda p: [x is not None for x in p])

    def check(case):
        name = case.path.name
        if case.reason is not None:
            record = header["skipped"][str(case.path)]
            assert re.search(case.reason, record["reason"]), record
            return
        assert name in coverage, f"not labeled (skipped: {header['skipped'].get(str(case.path))})"
        faces = coverage[name]
        if name == "no_video_stream.m4a":
            assert all(c is None or np.isnan(c) for c in faces) and not any(with_probs[name])
        elif name in ("no_face.mp4", "one_pixel.mkv"):
            assert all(c == 0.0 for c in faces) and not any(with_probs[name])
        elif name in ("four_faces.mp4", "rotated.mp4", "variable_frame_rate.mkv"):
            assert min(faces) >= 0.8 and all(with_probs[name]), faces

    check_all(cases, check)


def test_label_reports_dangling_links(tmp_path):
    import os

    folder = tmp_path / "in"
    folder.mkdir()
    sf.write(folder / "good.wav", tone(1.5), SR)
    os.symlink(folder / "gone.wav", folder / "link.wav")
    result = CliRunner().invoke(app, ["label", str(folder), "-o", str(tmp_path / "s"), "--quiet"])
    assert result.exit_code == 0, result.output
    skipped = json.loads((tmp_path / "s" / "store.json").read_text())["skipped"]
    assert "not found" in skipped[str(folder / "link.wav")]["reason"]


def test_corrupt_video_packets_do_not_lose_the_file(video_corpus):
    from liser.video_io import read_frames

    case = by_name(video_corpus[1])["corrupt_middle.mp4"]
    times, frames = read_frames(case.path, 5.0)
    np.testing.assert_allclose(times, np.arange(len(times)) * 0.2)
    assert times[-1] >= 3.0 and all(f.shape == (120, 160, 3) for f in frames)


def test_frames_of_odd_videos(video_corpus):
    from liser.video_io import VideoError, iter_frames, read_frames

    cases = by_name(video_corpus[1])
    times, frames = read_frames(cases["rotated.mp4"].path, 5.0)
    assert frames[0].shape == (160, 200, 3)  # stored 200 high x 160 wide, shown upright
    face_rows = np.flatnonzero(np.abs(frames[0].astype(int) - 96).mean(axis=(1, 2)) > 10)
    assert 20 <= face_rows[0] <= 28 and 132 <= face_rows[-1] <= 140
    times, frames = read_frames(cases["one_pixel.mkv"].path, 5.0)
    assert len(frames) >= 17 and all(f.shape == (1, 1, 3) for f in frames)
    times, _ = read_frames(cases["variable_frame_rate.mkv"].path, 4.0)
    np.testing.assert_allclose(times, np.arange(len(times)) * 0.25)
    assert times[-1] >= 3.0
    with pytest.raises(VideoError, match="no_video_stream.m4a.*no video stream"):
        next(iter_frames(cases["no_video_stream.m4a"].path, 5.0))


# --------------------------------------------------------------------------------------------
# Manifests and configs


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    """A tiny labeled corpus: 4 speakers x 2 classes x 2 clips."""
    from liser.testing import emotion_tones

    root = tmp_path_factory.mktemp("tones")
    return emotion_tones(root, n_speakers=4, clips_per_class=2, n_classes=2, seconds=(0.5, 0.6))


def test_manifest_with_missing_columns_is_refused_naming_them(tones, tmp_path, checkpoint):
    path = tmp_path / "no speaker.csv"
    tones.drop(columns=["speaker", "duration"]).to_csv(path, index=False)
    with pytest.raises(
        ManifestError, match=r"no speaker.csv: missing columns \['duration', 'speaker'\]"
    ):
        read_manifest(path)
    result = CliRunner().invoke(app, ["evaluate", str(checkpoint), str(path)])
    assert result.exit_code == 2 and "missing columns" in result.output


def test_unknown_labels_are_named(tones, tmp_path, checkpoint, caplog):
    df = tones.copy()
    df.loc[0, "label"] = "bored"
    path = write_manifest(df, tmp_path / "m.csv")
    result = CliRunner().invoke(app, ["evaluate", str(checkpoint), str(path)])
    assert result.exit_code == 2 and "'bored'" in result.output  # not a silent 0 % class
    data = DataConfig(folds="speaker", n_folds=2, classes=("class0", "class1"), val_fraction=0.0)
    with caplog.at_level(logging.WARNING):
        splits = split_fold(df, data)
    assert "bored" not in set(pd.concat(splits.values())["label"].dropna())
    assert "dropped 1 clips with labels outside data.classes: {'bored': 1}" in caplog.text


def test_duplicate_ids_and_shared_speakers_are_refused(tones):
    df = tones.copy()
    df.loc[1, "id"] = df.loc[0, "id"]
    data = DataConfig(folds="speaker", n_folds=2, val_fraction=0.0)
    with pytest.raises(ManifestError, match=f"1 duplicate ids: {df.loc[0, 'id']}"):
        split_fold(df, data)
    df = tones.copy()
    df["fold"] = np.where(df["speaker"].isin(["spk0", "spk1"]), 1, 2)
    df.loc[df.index[-1], "fold"] = 1  # one clip of spk3 in the test fold, the rest in training
    column = DataConfig(folds="column", fold=1, val_fraction=0.0)
    with pytest.raises(
        ManifestError, match=r"speaker leakage: 1 speakers in both train and test \(spk3\)"
    ):
        split_fold(df, column)


def test_unknown_config_keys_are_refused_with_the_closest_name(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("optim:\n  lr: 0.001\n  epocs: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'optim.epocs'; did you mean 'epochs'\?"):
        load_config(TrainConfig, path)
    with pytest.raises(ConfigError, match=r"'studnet'; did you mean 'student'\?"):
        from_dict(TrainConfig, {"studnet": {}})
    with pytest.raises(ConfigError, match=r"'frontend.n_mel'; did you mean 'n_mels'\?"):
        load_config(LabelConfig, None, ["frontend.n_mel=40"])
    with pytest.raises(ConfigError, match=r"'optm.lr': no section 'optm'; did you mean 'optim'\?"):
        replace(TrainConfig(), **{"optm.lr": 0.1})  # experiment grids and rows use dotted keys
    result = CliRunner().invoke(app, ["label", str(tmp_path), "-o", str(tmp_path / "s"),
                                      "--set", "hop_secnds=1"])  # fmt: skip
    assert result.exit_code == 2 and "did you mean 'hop_seconds'" in result.output
    assert not (tmp_path / "s").exists()


def test_a_store_from_another_front_end_is_refused(tones, tmp_path):
    from liser.testing import soft_label_store
    from liser.train import train

    other = FrontEndConfig(n_mels=40)
    store = soft_label_store(tmp_path / "store", other, [tone(3.0)], audio_probs=[[0.2, 0.8]],
                             audio_classes=("a", "b"))  # fmt: skip
    manifest = write_manifest(tones, tmp_path / "m.csv")
    config = from_dict(TrainConfig, {
        "output_dir": str(tmp_path / "run"), "device": "cpu",
        "student": {"conv_channels": [4], "lstm_hidden": 4},
        "data": {"manifest": str(manifest), "folds": "speaker", "n_folds": 2, "val_fraction": 0.0,
                 "cache_dir": ""},
        "optim": {"epochs": 1}, "distill": {"stores": [str(store)]},
    })  # fmt: skip
    with pytest.raises(ValueError, match=r"n_mels: 40 != 64|n_mels.*40.*64") as error:
        train(config, progress=False)
    assert str(store) in str(error.value)
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_training_goes_on_past_bad_clips_and_reports_them(tones, tmp_path, audio_corpus):
    """Bad files in a labeled manifest: skipped, named in metrics.json, the run finishes."""
    from liser.train import train

    cases = by_name(audio_corpus[1])
    bad = tones.iloc[:4].copy()
    names = ["empty.wav", "nan.wav", "all_zeros.wav", "text.wav"]
    bad["id"] = [f"bad-{n}" for n in names]
    bad["path"] = [str(cases[n].path) for n in names]
    manifest = write_manifest(pd.concat([tones, bad]), tmp_path / "m.parquet")
    config = from_dict(TrainConfig, {
        "output_dir": str(tmp_path / "run"), "device": "cpu", "precision": "fp32",
        "frontend": {"n_mels": 32}, "student": {"conv_channels": [4, 8], "lstm_hidden": 8},
        "data": {"manifest": str(manifest), "folds": "speaker", "n_folds": 2, "val_fraction": 0.0,
                 "cache_dir": str(tmp_path / "cache")},
        "optim": {"epochs": 1, "batch_size": 8},
    })  # fmt: skip
    metrics = train(config, progress=False)
    skipped = {Path(s["path"]).name: s["reason"] for s in metrics["skipped"]}
    in_fold = {Path(p).name for p in bad["path"]}  # every bad clip is in train or test
    assert set(skipped) == in_fold
    for name, reason in skipped.items():
        assert re.search(cases[name].reason, reason), (name, reason)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["skipped"] == metrics["skipped"] and np.isfinite(saved["test"]["uar"])


# --------------------------------------------------------------------------------------------
# Property tests: the audio reader never crashes on arbitrary bytes


def _fuzz(data: bytes, suffix: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(data)
        try:
            wave = load_audio(path)
        except AudioError as error:
            assert error.path == str(path) and error.reason
            return
        assert wave.dtype == np.float32 and np.isfinite(wave).all() and len(wave) >= 1600


_VALID = {}


def _valid(kind: str) -> bytes:
    """Small valid files to damage: a 0.3 s tone as WAV (PCM_16), FLAC, and OGG Vorbis."""
    if kind not in _VALID:
        import io

        buffer = io.BytesIO()
        fmt = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", None), "ogg": ("OGG", "VORBIS")}[kind]
        sf.write(buffer, tone(0.3, 440.0), SR, format=fmt[0], subtype=fmt[1])
        _VALID[kind] = buffer.getvalue()
    return _VALID[kind]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.binary(max_size=3000), suffix=st.sampled_from([".wav", ".flac", ".mp3", ".mp4", ".ogg"])
)
def test_arbitrary_bytes_give_a_wave_or_an_audio_error(data, suffix):
    _fuzz(data, suffix)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["wav", "flac", "ogg"]),
    edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.floats(0.05, 1.0),
)
def test_damaged_valid_files_give_a_wave_or_an_audio_error(kind, edits, cut):
    """Bytes overwritten anywhere (headers included) and the file cut short."""
    data = bytearray(_valid(kind))
    for where, value in edits:
        data[min(int(where * len(data)), len(data) - 1)] = value
    _fuzz(bytes(data[: max(1, int(cut * len(data)))]), "." + kind)


@settings(max_examples=25, deadline=None)
@given(
    rate=st.sampled_from([8000, 16000, 44100, 48000]),
    channels=st.integers(1, 6),
    seconds=st.floats(0.15, 1.5),
    chunk=st.floats(0.05, 2.0),
    subtype=st.sampled_from(["PCM_16", "FLOAT", "PCM_24"]),
)
def test_stream_chunks_concatenate_to_load_audio(
    tmp_path_factory, rate, channels, seconds, chunk, subtype
):
    folder = tmp_path_factory.mktemp("prop")
    wave = np.stack([tone(seconds, 300.0 + 50 * c, rate, seed=c) for c in range(channels)], axis=1)
    path = folder / "x.wav"
    sf.write(path, wave, rate, subtype=subtype)
    whole = load_audio(path)
    assert len(whole) == round(round(seconds * rate) * SR / rate)
    chunks = list(stream_audio(path, SR, chunk_seconds=chunk))
    assert all(len(c) == round(chunk * SR) for c in chunks[:-1])
    np.testing.assert_allclose(np.concatenate(chunks), whole, atol=1e-5)
    start = round(seconds / 3, 2)  # whole 10 ms: a whole number of samples at every rate
    part = load_audio(path, start=start, duration=seconds / 3, min_seconds=0)
    first = round(start * rate) * SR / rate
    assert abs(len(part) - round(seconds / 3 * SR)) <= 2
    inner = slice(200, len(part) - 200)  # resampler edges differ
    np.testing.assert_allclose(part[inner], whole[round(first) :][: len(part)][inner], atol=2e-3)


CREMAD_FIELDS = {  # field -> (valid values, a strategy of any value of that shape)
    "actor": ([str(a) for a in range(1001, 1092)], st.integers(0, 9999).map(lambda a: f"{a:04d}")),
    "sentence": (None, st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=3)),
    "emotion": (None, st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=3)),
    "level": (None, st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2)),
}


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(sorted(CREMAD_FIELDS)), data=st.data())
def test_cremad_names_with_a_bad_field_are_rejected_naming_it(field, data):
    from liser.constants import CREMAD_CODES
    from liser.manifest import CREMAD_LEVELS, CREMAD_SENTENCES, parse_cremad_name

    valid = {"actor": CREMAD_FIELDS["actor"][0], "sentence": list(CREMAD_SENTENCES),
             "emotion": sorted(CREMAD_CODES), "level": sorted(CREMAD_LEVELS)}  # fmt: skip
    parts = {k: data.draw(st.sampled_from(v)) for k, v in valid.items()}
    value = data.draw(CREMAD_FIELDS[field][1].filter(lambda v: v not in valid[field]))
    parts[field] = value
    with pytest.raises(ValueError, match=f"{field} {value}"):
        parse_cremad_name("_".join(parts.values()) + ".wav")


@settings(max_examples=30, deadline=None)
@given(
    names=st.lists(
        st.one_of(
            st.from_regex(
                r"0[1-3]-0[12]-0[1-8]-0[12]-0[12]-0[12]-(0[1-9]|1[0-9]|2[0-4])", fullmatch=True
            ),
            st.from_regex(r"[0-9]{2}(-[0-9]{2}){6}", fullmatch=True),
            st.text("0123456789-_ .é", min_size=1, max_size=24),
        ),
        min_size=1,
        max_size=12,
        unique=True,
    ),
    suffix=st.sampled_from([".wav", ".mp4", ".flac"]),
)
def test_ravdess_manifest_lists_every_file_once(names, suffix):
    """Whatever the names in a folder: each file becomes a row (a valid name) or a skipped entry
    naming it and saying why; nothing crashes, ids are unique."""
    import tempfile

    from liser.manifest import parse_ravdess_name, ravdess_manifest

    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for name in names:
            path = Path(folder) / (name.strip(". ") + suffix)
            if path.name == suffix or path.exists() or "/" in name:
                continue
            path.touch()
            paths.append(path)
        df = ravdess_manifest(folder, measure=False)
        skipped = {str(p): r for p, r in df.attrs["skipped"]}
        assert df["id"].is_unique
        for path in paths:
            listed = str(path) in set(df["path"])
            assert listed != (str(path) in skipped), path.name
            try:
                parse_ravdess_name(path.name)
                assert listed, (path.name, skipped.get(str(path)))
            except ValueError as error:
                assert skipped[str(path)] == f"bad name: {error}"
