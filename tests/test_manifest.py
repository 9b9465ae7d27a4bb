import json
import os
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from liser.constants import CREMAD_CLASSES, CREMAD_CODES, RAVDESS_CLASSES
from liser.manifest import (
    CREMAD_LEVELS,
    CREMAD_SENTENCES,
    ManifestError,
    corpus_classes,
    cremad_manifest,
    emobox_export,
    emobox_import,
    folder_manifest,
    make_manifest,
    manifest_problems,
    manifest_report,
    parse_cremad_name,
    parse_ravdess_name,
    ravdess_manifest,
    read_manifest,
    validate_manifest,
    videos_manifest,
    write_manifest,
)
from liser.media import probe_media
from liser.testing import tone

# --------------------------------------------------------------------------------------------
# Builders


def write_wav(path: Path, seconds: float = 0.5, rate: int = 16000, channels: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    wave = tone(seconds, sample_rate=rate)
    sf.write(path, np.stack([wave] * channels, 1) if channels > 1 else wave, rate)
    return path


def write_mp4(path: Path, seconds: float = 1.0, fps: int = 10, audio: bool = True) -> Path:
    """A tiny H.264 video (32x24) with an optional AAC track."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = 32, 24, "yuv420p"
        sound = container.add_stream("aac", rate=16000, layout="mono") if audio else None
        for i in range(round(seconds * fps)):
            image = np.full((24, 32, 3), 8 * i % 256, np.uint8)
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode())
        if sound is not None:
            wave = tone(seconds)[None, :]
            frame = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
            frame.sample_rate = 16000
            container.mux(sound.encode(frame))
            container.mux(sound.encode())
    return path


def ravdess_name(modality=3, channel=1, emotion=1, intensity=1, statement=1, repetition=1, actor=1):
    codes = (modality, channel, emotion, intensity, statement, repetition, actor)
    return "-".join(f"{c:02d}" for c in codes)


def skipped_reasons(df) -> dict[str, str]:
    return {Path(p).name: reason for p, reason in df.attrs["skipped"]}


# --------------------------------------------------------------------------------------------
# File-name parsers


def test_parse_ravdess_name_fields():
    fields = parse_ravdess_name("03-01-05-02-01-02-12.wav")
    assert fields == dict(
        speaker="Actor_12",
        actor=12,
        label="angry",
        modality="audio-only",
        vocal_channel="speech",
        intensity="strong",
        statement=1,
        repetition=2,
        gender="female",
    )
    assert parse_ravdess_name("01-02-03-01-02-01-07.mp4")["modality"] == "audio-visual"


@pytest.mark.parametrize(
    "name, reason",
    [
        ("03-01-01-01-01-01.wav", "seven"),
        ("04-01-01-01-01-01-01.wav", "modality 04"),
        ("03-03-01-01-01-01-01.wav", "vocal channel 03"),
        ("03-01-09-01-01-01-01.wav", "emotion 09"),
        ("03-01-01-02-01-01-01.wav", "neutral"),
        ("03-02-07-01-01-01-01.wav", "song"),
        ("03-01-02-01-03-01-01.wav", "statement 03"),
        ("03-01-02-01-01-00-01.wav", "repetition 00"),
        ("03-01-02-01-01-01-25.wav", "actor 25"),
        ("03-01-02-01-01-01-01.mp4", "audio file"),
        ("01-01-02-01-01-01-01.wav", "video file"),
        ("03-01-02-01-01-01-01.txt", "extension"),
        ("03-01-0٣-01-01-01-01.wav", "seven"),  # a non-ASCII digit
    ],
)
def test_parse_ravdess_name_rejects(name, reason):
    with pytest.raises(ValueError, match=reason):
        parse_ravdess_name(name)


ravdess_codes = st.fixed_dictionaries(
    dict(
        modality=st.integers(1, 3),
        channel=st.integers(1, 2),
        emotion=st.integers(1, 8),
        intensity=st.integers(1, 2),
        statement=st.integers(1, 2),
        repetition=st.integers(1, 2),
        actor=st.integers(1, 24),
    )
).filter(
    lambda c: (
        not (c["emotion"] == 1 and c["intensity"] == 2)
        and not (c["channel"] == 2 and c["emotion"] >= 7)
    )
)


@settings(max_examples=300, deadline=None)
@given(codes=ravdess_codes, audio_ext=st.sampled_from([".wav", ".flac", ".WAV"]))
def test_ravdess_valid_names_parse_back(codes, audio_ext):
    ext = audio_ext if codes["modality"] == 3 else ".mp4"
    name = ravdess_name(**codes) + ext
    fields = parse_ravdess_name(name)
    assert fields["actor"] == codes["actor"]
    assert fields["speaker"] == f"Actor_{codes['actor']:02d}"
    assert fields["label"] == RAVDESS_CLASSES[codes["emotion"] - 1]
    assert (
        fields["modality"]
        == {1: "audio-visual", 2: "video-only", 3: "audio-only"}[codes["modality"]]
    )
    assert fields["vocal_channel"] == ("speech", "song")[codes["channel"] - 1]
    assert fields["intensity"] == ("normal", "strong")[codes["intensity"] - 1]
    assert (fields["statement"], fields["repetition"]) == (codes["statement"], codes["repetition"])
    assert fields["gender"] == ("male" if codes["actor"] % 2 else "female")


# Valid codes of each of the seven fields; a value outside them must be rejected.
RAVDESS_VALID = [{1, 2, 3}, {1, 2}, set(range(1, 9)), {1, 2}, {1, 2}, {1, 2}, set(range(1, 25))]


@settings(max_examples=300, deadline=None)
@given(codes=ravdess_codes, field=st.integers(0, 6), value=st.integers(0, 99))
def test_ravdess_names_with_a_bad_field_are_rejected(codes, field, value):
    values = list(codes.values())
    if value in RAVDESS_VALID[field]:
        return
    values[field] = value
    with pytest.raises(ValueError):
        parse_ravdess_name(ravdess_name(*values) + (".wav" if values[0] == 3 else ".mp4"))


@settings(max_examples=500, deadline=None)
@given(name=st.text(max_size=40))
def test_junk_names_are_rejected_not_crashing(name):
    for parse in (parse_ravdess_name, parse_cremad_name):
        try:
            fields = parse(name)
        except ValueError:
            continue
        assert fields["label"] in RAVDESS_CLASSES  # only a truly valid name gets here


def test_parse_cremad_name_fields_and_rejects():
    assert parse_cremad_name("1001_DFA_ANG_XX.wav") == dict(
        speaker="1001", actor=1001, label="angry", sentence="DFA", level="XX"
    )
    assert parse_cremad_name("1091_IEO_NEU_HI")["label"] == "neutral"
    for name, reason in [
        ("1000_DFA_ANG_XX.wav", "actor 1000"),
        ("1001_ABC_ANG_XX.wav", "sentence ABC"),
        ("1001_DFA_SUR_XX.wav", "emotion SUR"),
        ("1001_DFA_ANG_ZZ.wav", "level ZZ"),
        ("1001_DFA_ANG.wav", "not a CREMA-D name"),
        ("1001_dfa_ANG_XX.wav", "not a CREMA-D name"),
        ("1001_DFA_ANG_XX.doc", "extension"),
        ("dir/1001_DFA_ANG_XX.wav", "not a file name"),
    ]:
        with pytest.raises(ValueError, match=reason):
            parse_cremad_name(name)


@settings(max_examples=300, deadline=None)
@given(
    actor=st.integers(1001, 1091),
    sentence=st.sampled_from(CREMAD_SENTENCES),
    emotion=st.sampled_from(sorted(CREMAD_CODES)),
    level=st.sampled_from(sorted(CREMAD_LEVELS)),
    ext=st.sampled_from(["", ".wav", ".flv", ".mp4", ".mp3"]),
)
def test_cremad_valid_names_parse_back(actor, sentence, emotion, level, ext):
    fields = parse_cremad_name(f"{actor}_{sentence}_{emotion}_{level}{ext}")
    assert fields == dict(
        speaker=str(actor), actor=actor, label=CREMAD_CODES[emotion], sentence=sentence, level=level
    )


# --------------------------------------------------------------------------------------------
# Reading, writing, validating


def small_manifest(tmp_path) -> pd.DataFrame:
    rows = [
        dict(id="a", path=str(tmp_path / "a.wav"), start=0.0, duration=1.5, speaker="01", label="happy", corpus="x"),
        dict(id="b", path=str(tmp_path / "b.wav"), start=0.5, duration=np.nan, speaker="NA", label=None, corpus="x"),
        dict(id="c", path=str(tmp_path / "ü é.wav"), start=0.0, duration=2.0, speaker="7", label="sad", corpus="x"),
    ]  # fmt: skip
    df = make_manifest(rows)
    df["intensity"] = ["normal", "strong", "normal"]
    return df


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_write_read_round_trip(tmp_path, suffix):
    df = small_manifest(tmp_path)
    path = write_manifest(df, tmp_path / "sub" / f"m{suffix}")
    back = read_manifest(path)
    assert list(back.columns) == list(df.columns)
    assert back["speaker"].tolist() == ["01", "NA", "7"]  # strings stay strings, "NA" is not null
    assert back["label"].isna().tolist() == [False, True, False]
    assert back["duration"].isna().tolist() == [False, True, False]
    assert back["path"].tolist() == df["path"].tolist()
    assert back["start"].tolist() == [0.0, 0.5, 0.0]
    assert back["intensity"].tolist() == ["normal", "strong", "normal"]
    assert sorted(os.listdir(path.parent)) == [path.name]  # no temporary file left


def test_relative_paths_resolve_against_the_manifest_folder(tmp_path):
    (tmp_path / "m.csv").write_text(
        "id,path,start,duration,speaker,label,corpus\nx,clips/x.wav,0,1,s,happy,c\n"
    )
    assert read_manifest(tmp_path / "m.csv")["path"][0] == str(tmp_path / "clips" / "x.wav")


def test_failed_write_keeps_the_old_file(tmp_path):
    path = write_manifest(small_manifest(tmp_path), tmp_path / "m.parquet")
    before = path.read_bytes()
    bad = small_manifest(tmp_path)
    bad["mixed"] = [1, "two", object()]  # pyarrow cannot store this column
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's own error
        write_manifest(bad, path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["m.parquet"]


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(ManifestError, match="unknown manifest format '.txt'"):
        read_manifest(tmp_path / "m.txt")
    with pytest.raises(ManifestError, match="no such manifest"):
        read_manifest(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("id,path,label\nx,/a.wav,happy\n")
    with pytest.raises(
        ManifestError, match=r"m.csv: missing columns \['start', 'duration', 'speaker', 'corpus'\]"
    ):
        read_manifest(tmp_path / "m.csv")


def test_validate_reports_each_problem(tmp_path):
    df = small_manifest(tmp_path)
    validate_manifest(df, classes=("happy", "sad"))
    assert manifest_problems(df.drop(columns=["speaker", "corpus"])) == [
        "missing columns ['speaker', 'corpus'] (a manifest needs "
        "['id', 'path', 'start', 'duration', 'speaker', 'label', 'corpus'])"
    ]
    bad = pd.concat([df, df.iloc[[0]]], ignore_index=True)
    bad.loc[1, "label"] = "angy"
    bad.loc[2, "path"] = "relative.wav"
    bad.loc[2, "duration"] = 0.0
    problems = manifest_problems(bad, ("happy", "sad"))
    assert problems[0] == "1 duplicate ids: a"
    assert problems[1] == "1 paths are not absolute: relative.wav"
    assert problems[2] == "1 rows have duration <= 0: ids c"
    assert problems[3] == "unknown labels 'angy' (1 clips); expected one of ['happy', 'sad']"
    with pytest.raises(ManifestError, match="split: 1 duplicate ids: a; .*unknown labels 'angy'"):
        validate_manifest(bad, ("happy", "sad"), where="split")


def test_corpus_classes(tmp_path):
    df = small_manifest(tmp_path)
    assert corpus_classes(df) == ("happy", "sad")  # other corpora: sorted labels
    df["corpus"] = "ravdess"
    assert corpus_classes(df) == RAVDESS_CLASSES  # the corpus's own list, even for absent labels
    df["corpus"] = "cremad"
    assert corpus_classes(df) == CREMAD_CLASSES


# --------------------------------------------------------------------------------------------
# Corpora


def test_ravdess_manifest_skips_and_reports_bad_files(tmp_path):
    root = tmp_path / "RAVDESS"
    write_wav(root / "Actor_01" / "03-01-05-01-01-01-01.wav", 0.5)
    write_wav(root / "Actor_01" / "03-01-05-01-01-01-01.flac", 0.5)  # same clip again
    write_wav(root / "Actor_02" / "03-02-03-02-02-01-02.flac", 0.75, rate=48000, channels=2)
    write_mp4(root / "Video_Speech_Actor_01" / "01-01-04-01-02-01-01.mp4", 1.0)
    write_mp4(root / "Video_Speech_Actor_01" / "02-01-04-01-02-01-01.mp4", 1.0, audio=False)
    write_wav(root / "Actor_01" / "03-01-05-01-01-01-02.wav")  # actor 02 in Actor_01
    write_wav(root / "Actor_01" / "03-01-09-01-01-01-01.wav")  # emotion 09
    write_wav(root / "Actor_01" / "recording.wav")
    (root / "Actor_01" / "03-01-06-01-01-01-01.wav").write_bytes(b"")  # empty
    (root / "Actor_01" / "03-01-06-01-01-02-01.wav").write_bytes(b"RIFF junk")  # corrupt
    sf.write(root / "Actor_01" / "03-01-06-01-02-01-01.wav", np.zeros(0, np.float32), 16000)
    (root / "README.txt").write_text("not media")
    (root / ".DS_Store").write_text("hidden")

    df = ravdess_manifest(root)
    assert df["id"].tolist() == ["01-01-04-01-02-01-01", "02-01-04-01-02-01-01", "03-01-05-01-01-01-01", "03-02-03-02-02-01-02"]  # fmt: skip
    assert df["label"].tolist() == ["sad", "sad", "angry", "happy"]
    assert df["speaker"].tolist() == ["Actor_01", "Actor_01", "Actor_01", "Actor_02"]
    assert df["modality"].tolist() == ["audio-visual", "video-only", "audio-only", "audio-only"]
    assert df["vocal_channel"].tolist() == ["speech", "speech", "speech", "song"]
    assert df["gender"].tolist() == ["male", "male", "male", "female"]
    assert df["duration"].tolist()[2:] == pytest.approx([0.5, 0.75])
    assert df["duration"].tolist()[:2] == pytest.approx([1.0, 1.0], abs=0.15)
    assert df["path"][2] == str(root / "Actor_01" / "03-01-05-01-01-01-01.wav")  # wav before flac
    reasons = skipped_reasons(df)
    assert set(reasons) == {
        "03-01-05-01-01-01-01.flac",
        "03-01-05-01-01-01-02.wav",
        "03-01-09-01-01-01-01.wav",
        "recording.wav",
        "03-01-06-01-01-01-01.wav",
        "03-01-06-01-01-02-01.wav",
        "03-01-06-01-02-01-01.wav",
    }
    assert reasons["03-01-05-01-01-01-01.flac"].startswith("duplicate: same clip id as")
    assert (
        reasons["03-01-05-01-01-01-02.wav"]
        == "bad name: actor 02 in the name but in folder Actor_01"
    )
    assert reasons["03-01-09-01-01-01-01.wav"] == "bad name: emotion 09 is not 01..08"
    assert reasons["03-01-06-01-01-01-01.wav"] == "unreadable: empty file (0 bytes)"
    assert reasons["03-01-06-01-01-02-01.wav"].startswith(
        "unreadable: cannot be opened (InvalidDataError"
    )
    assert reasons["03-01-06-01-02-01-01.wav"] == "unreadable: empty (zero duration)"
    report = manifest_report(df, "out.parquet")
    assert report.splitlines()[0] == "4 clips, 2 speakers, 0.00 h -> out.parquet"
    assert "skipped 7 files: bad name (3), unreadable (3), duplicate (1)" in report

    audio = ravdess_manifest(root, modalities=("audio-only",), vocal_channels=("speech",))
    assert audio["id"].tolist() == ["03-01-05-01-01-01-01"]
    names = ravdess_manifest(root, measure=False)
    assert len(names) == 4 + 3 and names["duration"].isna().all()  # unread: empty/corrupt kept


def test_ravdess_manifest_on_real_ravdess(shared, tmp_path):
    df = ravdess_manifest(shared / "data" / "ravdess")
    assert df.attrs["skipped"] == []
    assert len(df) == 1440 and df["id"].is_unique
    assert df["speaker"].nunique() == 24
    assert df.groupby("speaker").size().eq(60).all()
    counts = df["label"].value_counts().to_dict()
    assert counts == {c: 96 if c == "neutral" else 192 for c in RAVDESS_CLASSES}
    assert df["duration"].between(2.9, 5.4).all()
    assert set(df["modality"]) == {"audio-only"} and set(df["vocal_channel"]) == {"speech"}
    assert df.groupby("gender")["speaker"].nunique().to_dict() == {"female": 12, "male": 12}
    assert df["path"].map(lambda p: Path(p).is_file()).all()
    validate_manifest(df, corpus_classes(df))
    back = read_manifest(write_manifest(df, tmp_path / "ravdess.parquet"))
    pd.testing.assert_frame_equal(back, df)


def test_cremad_filelist_real_names(shared):
    meta = shared / "data" / "cremad-meta"
    df = cremad_manifest(meta / "AudioWAV_filelist.txt")  # no audio here: names only
    assert len(df) == 7442 and df.attrs["skipped"] == []
    assert df["speaker"].nunique() == 91
    assert set(df["speaker"]) == {str(a) for a in range(1001, 1092)}
    assert df["label"].value_counts().to_dict() == {
        c: 1087 if c == "neutral" else 1271 for c in CREMAD_CLASSES
    }
    assert df["duration"].isna().all()
    assert df.groupby("gender")["speaker"].nunique().to_dict() == {"female": 43, "male": 48}
    assert df.set_index("id").loc["1001_IEO_HAP_HI", ["sentence", "level", "gender"]].tolist() == ["IEO", "HI", "male"]  # fmt: skip
    assert corpus_classes(df) == CREMAD_CLASSES


def test_cremad_folder_and_list(tmp_path):
    root = tmp_path / "crema"
    write_wav(root / "AudioWAV" / "1001_DFA_ANG_XX.wav", 0.5)
    write_wav(root / "AudioWAV" / "1002_IEO_HAP_HI.wav", 0.25)
    write_mp4(root / "VideoFlash" / "1001_DFA_ANG_XX.mp4", 1.0)  # same clip as the wav
    write_wav(root / "AudioWAV" / "1001_DFA_XXX_XX.wav")
    (root / "VideoDemographics.csv").write_text(
        '"ActorID","Age","Sex"\n1001,51,"Male"\n1002,21,"Female"\n'
    )
    df = cremad_manifest(root)
    assert df["id"].tolist() == ["1001_DFA_ANG_XX", "1002_IEO_HAP_HI"]
    assert df["path"][0].endswith("AudioWAV/1001_DFA_ANG_XX.wav")  # audio preferred to video
    assert df["gender"].tolist() == ["male", "female"]
    assert df["duration"].tolist() == pytest.approx([0.5, 0.25])
    reasons = skipped_reasons(df)
    assert (
        reasons["1001_DFA_XXX_XX.wav"]
        == "bad name: emotion XXX is not one of ANG DIS FEA HAP NEU SAD"
    )
    assert reasons["1001_DFA_ANG_XX.mp4"].startswith("duplicate")

    listing = tmp_path / "list.txt"
    listing.write_text("1001_DFA_ANG_XX.wav\n\n# comment\n1003_TIE_SAD_XX.wav\nbad_name.wav\n")
    listed = cremad_manifest(listing, root=root / "AudioWAV")
    assert listed["id"].tolist() == ["1001_DFA_ANG_XX", "1003_TIE_SAD_XX"]
    assert listed["duration"][0] == pytest.approx(0.5)  # measured: the file is there
    assert np.isnan(listed["duration"][1])  # not there: unknown
    assert list(skipped_reasons(listed)) == ["bad_name.wav"]


def test_folder_manifest(tmp_path):
    root = tmp_path / "mycorpus"
    write_wav(root / "happy" / "anna_01.wav", 0.5)
    write_wav(root / "happy" / "bob_01.wav", 0.5)
    write_wav(root / "sad" / "deep" / "anna_02.flac", 0.25)
    write_wav(root / "sad" / "anna_01.wav", 0.5)  # same stem as in happy/
    write_wav(root / "sad" / "noname.wav")
    write_wav(root / "loose.wav")
    (root / "sad" / "carl_09.wav").write_bytes(b"\x00" * 100)
    (root / ".hidden").mkdir()
    write_wav(root / ".hidden" / "x.wav")

    df = folder_manifest(root, speaker_pattern=r"([a-z]+)_\d+")
    assert df["id"].tolist() == ["anna_01", "anna_02", "bob_01", "sad/anna_01.wav"]
    assert df["label"].tolist() == ["happy", "sad", "happy", "sad"]
    assert df["speaker"].tolist() == ["anna", "anna", "bob", "anna"]
    assert set(df["corpus"]) == {"mycorpus"}
    assert corpus_classes(df) == ("happy", "sad")
    reasons = skipped_reasons(df)
    assert reasons["noname.wav"].startswith("bad name: speaker pattern")
    assert reasons["carl_09.wav"].startswith("unreadable")
    assert reasons["loose.wav"] == "bad name: not inside a class folder"
    assert set(folder_manifest(root)["speaker"]) == {"unknown"}


# --------------------------------------------------------------------------------------------
# EmoBox


def test_emobox_import_real_format(tmp_path):
    records = [  # two lines as in EmoBox's data/cremad and data/ravdess folds
        {"key": "cremad-1052-WSI-ANG-XX", "dataset": "cremad", "wav": "downloads/cremad/AudioWAV/1052_WSI_ANG_XX.wav",
         "type": "raw", "sample_rate": 16000, "num_frame": 36837.0, "task": "category", "length": 2.3023125,
         "emo": "ANG", "channel": 1},
        {"key": "ravdess-03-01-07-02-02-02-11", "dataset": "ravdess",
         "wav": "downloads/ravdess/audio/Audio_Speech_Actors_01-24/Actor_11/03-01-07-02-02-02-11.wav",
         "type": "raw", "sample_rate": 48000, "num_frame": 179379.0, "task": "category", "length": 3.7370625,
         "emo": "Disgust", "channel": 1},
        {"key": "other-1", "dataset": "emodb", "wav": "/abs/x.wav", "emo": "Anger", "length": 1.0},
    ]  # fmt: skip
    path = tmp_path / "meta.jsonl"
    path.write_text(
        "\n".join(json.dumps(r) for r in records) + "\n{not json\n" + '{"key": "no wav"}\n'
    )
    df = emobox_import(path, root=tmp_path / "EmoBox").set_index("id")
    assert df.loc["cremad-1052-WSI-ANG-XX", ["speaker", "label", "corpus", "sentence"]].tolist() == ["1052", "angry", "cremad", "WSI"]  # fmt: skip
    assert df.loc["cremad-1052-WSI-ANG-XX", "duration"] == 2.3023125
    assert df.loc["cremad-1052-WSI-ANG-XX", "path"] == str(tmp_path / "EmoBox/downloads/cremad/AudioWAV/1052_WSI_ANG_XX.wav")  # fmt: skip
    assert df.loc["ravdess-03-01-07-02-02-02-11", ["speaker", "label", "intensity"]].tolist() == ["Actor_11", "disgust", "strong"]  # fmt: skip
    assert df.loc["other-1", ["speaker", "label", "path"]].tolist() == [
        "unknown",
        "Anger",
        "/abs/x.wav",
    ]
    skipped = [reason for _, reason in df.attrs["skipped"]]
    assert len(skipped) == 2 and all(r.startswith("not an EmoBox record") for r in skipped)


def test_emobox_round_trip(tmp_path):
    root = tmp_path / "data"
    write_wav(root / "Actor_03" / "03-01-08-02-01-01-03.wav", 0.5, rate=48000)
    write_wav(root / "Actor_04" / "03-01-01-01-01-01-04.flac", 0.25, channels=2)
    write_mp4(root / "Actor_04" / "01-01-03-01-01-01-04.mp4", 1.0)
    df = ravdess_manifest(root)
    out = emobox_export(df, tmp_path / "emobox" / "ravdess.jsonl", root=root)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    first = lines[0]
    assert (
        first["key"] == "01-01-03-01-01-01-04"
        and first["wav"] == "Actor_04/01-01-03-01-01-01-04.mp4"
    )
    assert [line["emo"] for line in lines] == ["Happy", "Neutral", "Surprised"]
    assert [line["sample_rate"] for line in lines] == [16000, 16000, 48000]
    assert [line["channel"] for line in lines] == [1, 2, 1]
    assert (
        lines[2]["num_frame"] == 24000.0
        and lines[2]["type"] == "raw"
        and lines[2]["task"] == "category"
    )
    back = emobox_import(out, root=root)
    columns = [
        "id",
        "path",
        "start",
        "duration",
        "speaker",
        "label",
        "corpus",
        "modality",
        "intensity",
        "gender",
    ]
    pd.testing.assert_frame_equal(back[columns], df[columns])


# --------------------------------------------------------------------------------------------
# Videos


def test_videos_manifest_probes_and_survives_bad_files(tmp_path):
    root = tmp_path / "videos"
    write_mp4(root / "a" / "talk.mp4", seconds=2.0, fps=10)
    write_mp4(root / "a" / "silent.mp4", seconds=1.0, fps=10, audio=False)
    write_wav(root / "b" / "voice.wav", 1.5)
    write_mp4(root / "b" / "01-01-03-01-01-01-05.mp4", seconds=1.0)  # a RAVDESS name
    write_wav(root / "c d" / "ünï côde.wav", 0.5)
    (root / "b" / "corrupt.mp4").write_bytes(os.urandom(4096))
    (root / "b" / "empty.mkv").write_bytes(b"")
    (root / "b" / "notes.txt").write_text("skip me silently")
    os.symlink(root, root / "a" / "loop")  # a symlink loop
    os.symlink(root / "missing.mp4", root / "b" / "dangling.mp4")

    df = videos_manifest(root)
    assert df["id"].tolist() == [
        "a/silent.mp4",
        "a/talk.mp4",
        "b/01-01-03-01-01-01-05.mp4",
        "b/voice.wav",
        "c d/ünï côde.wav",
    ]
    assert df["label"].isna().all() and set(df["corpus"]) == {"videos"}
    rows = df.set_index("id")
    assert rows.loc["a/talk.mp4", "duration"] == pytest.approx(2.0, abs=0.15)
    assert rows.loc["a/talk.mp4", ["has_audio", "has_video", "width", "height"]].tolist() == [
        True,
        True,
        32,
        24,
    ]
    assert rows.loc["a/talk.mp4", "fps"] == pytest.approx(10.0)
    assert rows.loc["a/silent.mp4", ["has_audio", "has_video"]].tolist() == [False, True]
    assert rows.loc["b/voice.wav", ["has_audio", "has_video", "width"]].tolist() == [True, False, 0]
    assert rows.loc["b/voice.wav", "duration"] == pytest.approx(1.5)
    assert rows.loc["b/01-01-03-01-01-01-05.mp4", "speaker"] == "Actor_05"
    assert rows.loc["a/talk.mp4", "speaker"] == "unknown"
    reasons = skipped_reasons(df)
    assert set(reasons) == {"corrupt.mp4", "empty.mkv", "dangling.mp4"}
    assert reasons["empty.mkv"] == "unreadable: empty file (0 bytes)"
    assert reasons["dangling.mp4"] == "unreadable: broken link or not a file"
    back = read_manifest(write_manifest(df, tmp_path / "videos.jsonl"))
    assert back["has_audio"].tolist() == df["has_audio"].tolist()


def test_probe_media_without_container_duration(tmp_path):
    """A raw ADTS AAC stream has no duration in its header: packets are demuxed, not decoded."""
    path = tmp_path / "clip.aac"
    with av.open(str(path), "w", format="adts") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(tone(2.0)[None, :], format="fltp", layout="mono")
        frame.sample_rate = 16000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    info = probe_media(path)
    assert info["has_audio"] and not info["has_video"]
    assert info["duration"] == pytest.approx(2.0, abs=0.2)


# --------------------------------------------------------------------------------------------
# Command line


def test_cli_manifest_commands(tmp_path):
    from typer.testing import CliRunner

    from liser.cli import app

    root = tmp_path / "RAVDESS"
    write_wav(root / "Actor_01" / "03-01-05-01-01-01-01.wav", 0.5)
    write_wav(root / "Actor_02" / "03-01-03-01-01-01-02.wav", 0.5)
    write_wav(root / "Actor_02" / "03-01-03-01-01-01-99.wav", 0.5)
    runner = CliRunner()
    out = tmp_path / "out" / "ravdess.csv"
    result = runner.invoke(app, ["manifest", "ravdess", str(root), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"2 clips, 2 speakers, 0.00 h -> {out}"
    assert "skipped 1 files: bad name (1)" in result.output
    assert "03-01-03-01-01-01-99.wav: bad name: actor 99 is not 01..24" in result.output
    assert read_manifest(out)["id"].tolist() == ["03-01-03-01-01-01-02", "03-01-05-01-01-01-01"]

    jsonl = tmp_path / "emobox.jsonl"
    result = runner.invoke(app, ["manifest", "emobox-export", str(out), "-o", str(jsonl)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["manifest", "emobox", str(jsonl), "-o", str(tmp_path / "back.parquet")]
    )
    assert result.exit_code == 0 and result.output.startswith("2 clips, 2 speakers")
    result = runner.invoke(app, ["manifest", "videos", str(root), "-o", str(tmp_path / "v.jsonl")])
    assert result.exit_code == 0 and result.output.startswith("3 clips")

    result = runner.invoke(
        app, ["manifest", "folder", str(tmp_path / "nowhere"), "-o", str(tmp_path / "f.csv")]
    )
    assert result.exit_code == 2 and "nowhere: no such folder" in result.output
    result = runner.invoke(app, ["manifest", "cremad", str(root), "-o", str(tmp_path / "c.csv")])
    assert result.exit_code == 2 and "no clips found; nothing written" in result.output
    assert not (tmp_path / "c.csv").exists()
