import itertools
import logging
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from liser.config import ConfigError, DataConfig
from liser.constants import RAVDESS_FOLDS
from liser.manifest import (
    ManifestError,
    check_speakers_disjoint,
    cremad_manifest,
    make_manifest,
    parse_ravdess_name,
    ravdess_manifest,
    speaker_folds,
    split_fold,
)


def ravdess_like() -> pd.DataFrame:
    """The 1440 RAVDESS speech names as a manifest (no files needed)."""
    rows = []
    for actor, emotion, intensity, statement, repetition in itertools.product(
        range(1, 25), range(1, 9), (1, 2), (1, 2), (1, 2)
    ):
        if emotion == 1 and intensity == 2:
            continue
        name = f"03-01-{emotion:02d}-{intensity:02d}-{statement:02d}-{repetition:02d}-{actor:02d}"
        fields = parse_ravdess_name(name + ".wav")
        rows.append(dict(id=name, path=f"/data/{name}.wav", start=0.0, duration=3.5,
                         speaker=fields["speaker"], label=fields["label"], corpus="ravdess"))  # fmt: skip
    return make_manifest(rows)


def synthetic(
    n_speakers=20, clips=None, classes=("a", "b", "c"), seed=0, corpus="x"
) -> pd.DataFrame:
    """Speakers s00.. with a seeded number of clips each (or ``clips`` each), labels cycling."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_speakers):
        for i in range(clips or int(rng.integers(5, 40))):
            rows.append(dict(id=f"s{s:02d}-{i:03d}", path=f"/d/s{s}-{i}.wav", start=0.0, duration=1.0,
                             speaker=f"s{s:02d}", label=classes[(i + s) % len(classes)], corpus=corpus))  # fmt: skip
    return make_manifest(rows)


def speakers(df) -> set:
    return set(df["speaker"])


def assert_partition(df, splits):
    """train + val + test + unlabeled hold every clip once; no speaker crosses train/val/test."""
    ids = pd.concat([splits[k]["id"] for k in ("train", "val", "test", "unlabeled")])
    assert ids.is_unique and set(ids) == set(df["id"])
    train = speakers(splits["train"]) | speakers(splits["unlabeled"])
    assert not train & speakers(splits["val"])
    assert not train & speakers(splits["test"])
    assert not speakers(splits["val"]) & speakers(splits["test"])


@pytest.mark.parametrize("fold", range(1, 7))
def test_ravdess_folds_test_the_emobox_actors(fold):
    df = ravdess_like()
    splits = split_fold(df, DataConfig(fold=fold), seed=0)  # folds="auto" -> "ravdess"
    assert speakers(splits["test"]) == {f"Actor_{a:02d}" for a in RAVDESS_FOLDS[fold - 1]}
    assert len(splits["test"]) == 240
    assert splits["val"]["speaker"].nunique() == 3  # round(0.15 * 20)
    assert splits["train"]["speaker"].nunique() == 17
    assert len(splits["unlabeled"]) == 0
    assert_partition(df, splits)


def test_ravdess_folds_on_real_files(shared):
    df = ravdess_manifest(shared / "data" / "ravdess")
    tested = set()
    for fold in range(1, 7):
        splits = split_fold(df, DataConfig(fold=fold), seed=3)
        assert_partition(df, splits)
        assert splits["test"]["label"].value_counts().to_dict()["neutral"] == 16
        tested |= speakers(splits["test"])
    assert tested == set(df["speaker"])  # every actor is tested exactly once over the 6 folds


def test_speaker_folds_cover_every_speaker_once_and_are_balanced(shared):
    df = cremad_manifest(shared / "data" / "cremad-meta" / "AudioWAV_filelist.txt")
    data = DataConfig(folds="auto", n_folds=5)  # auto -> speaker folds for CREMA-D
    tested, sizes = [], []
    for fold in range(1, 6):
        splits = split_fold(df, DataConfig(folds=data.folds, n_folds=5, fold=fold), seed=0)
        assert_partition(df, splits)
        tested += list(speakers(splits["test"]))
        sizes.append(len(splits["test"]))
    assert sorted(tested) == sorted(set(df["speaker"]))  # 91 speakers, each in one test fold
    assert max(sizes) - min(sizes) <= df.groupby("speaker").size().max()
    fold_of = speaker_folds(df, 5, seed=0)
    per_fold = pd.Series(fold_of).value_counts()
    assert per_fold.max() - per_fold.min() <= 1  # 18 or 19 speakers a fold


def test_speaker_folds_are_seeded():
    df = synthetic(30)
    assert speaker_folds(df, 6, seed=1) == speaker_folds(
        df.sample(frac=1, random_state=5), 6, seed=1
    )
    assert speaker_folds(df, 6, seed=1) != speaker_folds(df, 6, seed=2)
    counts = df.groupby("speaker").size()
    clips = (
        pd.Series(speaker_folds(df, 6, seed=1)).rename("fold").to_frame().join(counts.rename("n"))
    )
    totals = clips.groupby("fold")["n"].sum()
    assert totals.max() - totals.min() <= counts.max()


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.9])
def test_label_fraction_is_stratified_and_seeded(fraction):
    df = ravdess_like()
    data = DataConfig(fold=2, label_fraction=fraction)
    splits = split_fold(df, data, seed=7)
    full = split_fold(df, DataConfig(fold=2), seed=7)["train"]  # same val speakers: same seed
    assert set(splits["train"]["id"]) | set(splits["unlabeled"]["id"]) == set(full["id"])
    assert splits["unlabeled"]["label"].isna().all()
    kept, total = splits["train"]["label"].value_counts(), full["label"].value_counts()
    for label, n in total.items():
        assert abs(kept[label] - fraction * n) <= 1, (label, kept[label], n)
    assert_partition(df, splits)

    again = split_fold(df.sample(frac=1, random_state=1), data, seed=7)  # row order does not matter
    for key in splits:
        pd.testing.assert_frame_equal(again[key], splits[key])
    other = split_fold(df, data, seed=8)
    assert set(other["train"]["id"]) != set(splits["train"]["id"])


def test_validation_speakers_come_from_training_speakers():
    df = synthetic(12, clips=10)
    data = DataConfig(folds="speaker", n_folds=4, fold=3, val_fraction=0.01)
    splits = split_fold(df, data, seed=0)
    assert splits["val"]["speaker"].nunique() == 1  # at least one
    assert_partition(df, splits)
    none = split_fold(df, DataConfig(folds="speaker", n_folds=4, fold=3, val_fraction=0.0), seed=0)
    assert len(none["val"]) == 0 and len(none["train"]) == 90
    seeds = {tuple(sorted(speakers(split_fold(df, data, seed=s)["val"]))) for s in range(8)}
    assert len(seeds) > 1  # the validation speaker is drawn, not fixed


def test_column_folds_and_leakage():
    df = synthetic(6, clips=4)
    df["fold"] = df["speaker"].map({f"s{i:02d}": i % 3 + 1 for i in range(6)})
    splits = split_fold(df, DataConfig(folds="column", fold=2, val_fraction=0.0), seed=0)
    assert speakers(splits["test"]) == {"s01", "s04"}
    assert_partition(df, splits)
    df.loc[df["id"] == "s01-000", "fold"] = 1  # speaker s01 now in folds 1 and 2
    with pytest.raises(
        ManifestError, match=r"speaker leakage: 1 speakers in both train and test \(s01\)"
    ):
        split_fold(df, DataConfig(folds="column", fold=2), seed=0)
    with pytest.raises(ManifestError, match="no clips in fold 4"):
        split_fold(df, DataConfig(folds="column", fold=4), seed=0)
    with pytest.raises(ManifestError, match="needs a 'fold' column"):
        split_fold(df.drop(columns="fold"), DataConfig(folds="column"), seed=0)


def test_check_speakers_disjoint_names_the_speakers():
    df = synthetic(4, clips=3)
    with pytest.raises(ManifestError, match=r"in both val and test \(s02\)"):
        check_speakers_disjoint({"train": df[df.speaker == "s00"], "val": df[df.speaker == "s02"], "test": df[df.speaker == "s02"]})  # fmt: skip


def test_bad_splits_raise_clear_errors():
    df = synthetic(5, clips=3)
    with pytest.raises(
        ManifestError, match="6 speaker folds need at least 6 speakers; the manifest has 5"
    ):
        split_fold(df, DataConfig(), seed=0)
    with pytest.raises(ManifestError, match="fold 7 is not 1..6"):
        split_fold(ravdess_like(), DataConfig(fold=7), seed=0)
    with pytest.raises(ManifestError, match="needs RAVDESS speakers .* got 's00'"):
        split_fold(df, DataConfig(folds="ravdess"), seed=0)
    # bad values are refused when the config is built, before any split is made
    with pytest.raises(ConfigError, match="'folds' must be one of 'auto', 'ravdess'"):
        DataConfig(folds="speakers")
    with pytest.raises(ConfigError, match=r"'label_fraction' must be in \(0, 1\], got 0.0"):
        DataConfig(n_folds=5, label_fraction=0.0)
    with pytest.raises(ManifestError, match="leaves no training speaker"):
        split_fold(synthetic(3, clips=3), DataConfig(n_folds=3, val_fraction=0.9), seed=0)
    dup = pd.concat([df, df.iloc[[0]]], ignore_index=True)
    with pytest.raises(ManifestError, match="duplicate ids: s00-000"):
        split_fold(dup, DataConfig(n_folds=5), seed=0)


def test_classes_subset_and_unlabeled_rows(caplog):
    df = ravdess_like()
    df.loc[df["id"].str.endswith("-02"), "label"] = None  # actor 2 (fold 5) has no labels
    data = DataConfig(fold=1, classes=("angry", "happy", "sad"), val_fraction=0.0)
    with caplog.at_level(logging.WARNING):
        splits = split_fold(df, data, seed=0)
    assert "dropped 828 clips with labels outside data.classes" in caplog.text
    assert set(splits["train"]["label"]) == {"angry", "happy", "sad"}
    assert set(splits["test"]["label"]) == {"angry", "happy", "sad"}
    assert set(splits["unlabeled"]["speaker"]) == {
        "Actor_02"
    }  # null labels: unlabeled training clips
    assert len(splits["unlabeled"]) == 60


@settings(max_examples=40, deadline=None)
@given(
    n_speakers=st.integers(4, 15),
    n_folds=st.integers(2, 4),
    label_fraction=st.floats(0.05, 1.0),
    val_fraction=st.sampled_from([0.0, 0.1, 0.3]),
    seed=st.integers(0, 1000),
)
def test_any_split_is_a_speaker_disjoint_partition(
    n_speakers, n_folds, label_fraction, val_fraction, seed
):
    df = synthetic(n_speakers, seed=seed)
    fold = seed % n_folds + 1
    data = DataConfig(folds="speaker", n_folds=n_folds, fold=fold, val_fraction=val_fraction,
                      label_fraction=label_fraction)  # fmt: skip
    try:
        splits = split_fold(df, data, seed=seed)
    except ManifestError as error:  # only when too few speakers are left for validation
        assert "leaves no training speaker" in str(error)
        return
    assert_partition(df, splits)
    pool = pd.concat([splits["train"], splits["unlabeled"]])
    for label, n in df[df["id"].isin(pool["id"])]["label"].value_counts().items():
        kept = int((splits["train"]["label"] == label).sum())
        assert kept == min(n, max(1, math.floor(label_fraction * n + 0.5)))


def test_speaker_folds_do_not_depend_on_the_class_subset():
    df = synthetic(12, classes=("a", "b", "c", "d"))
    full = split_fold(df, DataConfig(n_folds=4, fold=2), seed=5)
    subset = split_fold(df, DataConfig(n_folds=4, fold=2, classes=("a", "b")), seed=5)
    assert speakers(subset["test"]) == speakers(full["test"])
    assert set(subset["test"]["label"]) == {"a", "b"}
