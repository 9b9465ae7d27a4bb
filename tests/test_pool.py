"""Distillation from a pool of other speakers' unlabeled speech and from a new domain's own audio:
stores from a table of Opus files, the agreement report, the window cache of frozen teachers,
speaker halves of a corpus, and an experiment cell that distils from two stores at once."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from liser.config import AudioTeacherConfig, DataConfig, LabelConfig
from liser.manifest import read_manifest, speaker_halves, table_manifest, write_manifest
from liser.testing import emotion_tones, tiny_hubert, tone


@pytest.fixture(scope="module")
def frozen_teacher(tmp_path_factory):
    """A tiny HuBERT with a head fitted on frozen features to tell low tones from high ones."""
    from liser.manifest import make_manifest
    from liser.teachers.fit_audio import fit_audio_teacher

    root = tmp_path_factory.mktemp("pool-teacher")
    rows = []
    for i in range(24):
        label = ("low", "high")[i % 2]
        freq = 200.0 + 10 * i if label == "low" else 1800.0 + 20 * i
        path = root / f"t{i}.wav"
        sf.write(path, tone(1.0, freq, seed=i), 16000)
        rows.append(dict(id=path.stem, path=str(path), start=0.0, duration=1.0,
                         speaker=f"s{i % 6}", label=label, corpus="tones"))  # fmt: skip
    manifest = write_manifest(make_manifest(rows), root / "tones.parquet")
    data = DataConfig(manifest=str(manifest), classes=("low", "high"), folds="speaker", n_folds=3)
    config = AudioTeacherConfig(
        spec=str(tiny_hubert(root / "hubert")), freeze_encoder=True, window_seconds=1.0,
        hop_seconds=1.0, head_epochs=20, precision="fp32", device="cpu", data=data,
        output_dir=str(root / "teacher"), cache_dir=str(root / "cache"),
    )  # fmt: skip
    return fit_audio_teacher(config, progress=False)


def opus_pool(folder) -> pd.DataFrame:
    """An index.csv of Opus clips, paths relative to it, labels of another taxonomy (and none)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(6):
        label = ["low", "high", ""][i % 3]
        freq = 220.0 if label == "low" else 2000.0
        name = f"clip{i}.opus"
        seconds = 0.7 if i == 5 else 2.2  # one clip shorter than a window: padded, still labeled
        sf.write(folder / name, tone(seconds, freq, seed=i), 16000, format="OGG", subtype="OPUS")
        rows.append({"path": name, "speaker": f"p{i}", "label": label, "corpus": "pool"})
    pd.DataFrame(rows).to_csv(folder / "index.csv", index=False)
    return pd.DataFrame(rows)


def test_store_from_a_table_of_opus_files_with_agreement(frozen_teacher, tmp_path):
    from liser.label import label
    from liser.store import open_store
    from liser.teachers import load_audio_teacher

    opus_pool(tmp_path / "pool")
    manifest = table_manifest(tmp_path / "pool" / "index.csv")
    assert manifest["path"].map(lambda p: p.endswith(".opus")).all()
    assert manifest["duration"].iloc[0] == pytest.approx(2.2, abs=0.05)
    path = write_manifest(manifest, tmp_path / "pool.parquet")
    config = LabelConfig(window_seconds=1.0, hop_seconds=1.0, min_seconds=0.5, device="cpu")
    config = dataclasses.replace(
        config, frontend=dataclasses.replace(config.frontend, window_seconds=1.0)
    )
    teacher = load_audio_teacher(str(frozen_teacher), device="cpu")
    summary = label(path, tmp_path / "store", config, audio_teacher=teacher, progress=False)

    store = open_store(tmp_path / "store")
    assert summary["files"] == 6 and summary["skipped_files"] == 0
    assert len(store) == 5 * 2 + 1  # two 1 s windows per 2.2 s clip, one for the short clip
    agreement = summary["label_agreement"]
    assert agreement["clips"] == 4  # the two clips without a label are not scored
    assert agreement["shared_classes"] == ["high", "low"]
    table = pd.read_csv(tmp_path / "store" / "agreement.csv")
    assert set(zip(table["corpus"], table["label"], strict=True)) == {
        ("pool", "low"),
        ("pool", "high"),
    }
    assert (table["clips"] == 2).all()
    assert agreement["uar_shared"] == pytest.approx(100 * table["same_class"].mean(), abs=0.01)
    assert agreement["uar_restricted"] >= agreement["uar_shared"]  # fewer classes to confuse
    assert (
        json.loads((tmp_path / "store" / "store.json").read_text())["summary"]["label_agreement"]
        == agreement
    )


def test_frozen_teachers_share_the_encoder_through_the_window_cache(frozen_teacher, tmp_path):
    from liser.teachers import load_audio_teacher

    first = load_audio_teacher(str(frozen_teacher), device="cpu")
    assert first.window_cache is not None
    cache = tmp_path / "windows"
    first.use_window_cache(cache, "encoder-a")
    waves = np.stack([tone(1.0, f, seed=i) for i, f in enumerate((220.0, 900.0, 2000.0))])
    lengths = np.array([16000, 16000, 8000])
    expected = first.predict(waves, lengths)
    assert (first.window_cache.hits, first.window_cache.misses) == (0, 3)

    # Another teacher of the same encoder: no encoder call, the same probabilities.
    second = load_audio_teacher(str(frozen_teacher), device="cpu")
    second.use_window_cache(cache, "encoder-a")
    second.encoder.forward = lambda *a, **k: pytest.fail("the encoder ran for a cached window")
    np.testing.assert_allclose(second.predict(waves, lengths), expected, atol=1e-6)
    assert second.window_cache.hits == 3

    # Other audio, another length or another encoder fingerprint are misses.
    third = load_audio_teacher(str(frozen_teacher), device="cpu")
    third.use_window_cache(cache, "encoder-b")
    changed = waves.copy()
    changed[0, 100] += 1e-3
    third.predict(changed, np.array([16000, 16000, 12000]))
    assert (third.window_cache.hits, third.window_cache.misses) == (0, 3)
    third.use_window_cache(cache, "encoder-a")
    third.predict(changed, np.array([16000, 16000, 12000]))
    assert (third.window_cache.hits, third.window_cache.misses) == (1, 2)  # only row 1 is the same


def test_speaker_halves_are_disjoint_balanced_and_reproducible():
    rng = np.random.default_rng(0)
    rows = [{"id": f"{c}{s}-{i}", "path": f"/x/{c}{s}-{i}.wav", "speaker": f"{c}{s}",
             "label": "a", "corpus": c} for c in ("urdu", "turev") for s in range(7)
            for i in range(int(rng.integers(3, 9)))]  # fmt: skip
    df = pd.DataFrame(rows)
    first, second = speaker_halves(df, seed=1)
    assert not set(first["speaker"]) & set(second["speaker"])
    assert len(first) + len(second) == len(df)
    for corpus in ("urdu", "turev"):  # each corpus halved on its own
        a, b = (h[h["corpus"] == corpus] for h in (first, second))
        assert {a["speaker"].nunique(), b["speaker"].nunique()} == {3, 4}
        sizes = df[df["corpus"] == corpus].groupby("speaker").size()
        assert abs(len(a) - len(b)) <= sizes.max()
    shuffled = df.sample(frac=1.0, random_state=5)
    again = speaker_halves(shuffled, seed=1)
    assert set(again[0]["speaker"]) == set(first["speaker"])
    assert set(speaker_halves(df, seed=2)[0]["speaker"]) != set(first["speaker"]) or set(
        speaker_halves(df, seed=3)[0]["speaker"]
    ) != set(first["speaker"])
    with pytest.raises(Exception, match="one speaker"):
        speaker_halves(df[df["speaker"] == "urdu0"])


def test_halves_command_writes_two_manifests(tmp_path):
    from typer.testing import CliRunner

    from liser.cli import app

    df = emotion_tones(tmp_path / "wav", n_speakers=4, clips_per_class=2, n_classes=2, seed=0)
    path = write_manifest(df, tmp_path / "m.parquet")
    result = CliRunner().invoke(
        app, ["manifest", "halves", str(path), str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]
    )
    assert result.exit_code == 0, result.output
    a, b = read_manifest(tmp_path / "a.csv"), read_manifest(tmp_path / "b.csv")
    assert a["speaker"].nunique() == b["speaker"].nunique() == 2
    assert set(a["id"]) | set(b["id"]) == set(df["id"])
    bad = CliRunner().invoke(
        app, ["manifest", "halves", str(path), "a.csv", "b.csv", "--corpus", "nope"]
    )
    assert bad.exit_code == 2 and "no clip of corpus 'nope'" in bad.output


def test_an_experiment_cell_distils_from_a_pool_and_a_domain_store(tmp_path):
    from liser.config import ExperimentConfig, from_dict
    from liser.experiment import run_experiment

    labeled = emotion_tones(tmp_path / "lab", n_speakers=4, clips_per_class=3, n_classes=2, seed=1)
    pool = emotion_tones(tmp_path / "pool", n_speakers=3, clips_per_class=2, n_classes=2, seed=2)
    domain = emotion_tones(tmp_path / "dom", n_speakers=2, clips_per_class=2, n_classes=2, seed=4)
    manifest = write_manifest(labeled, tmp_path / "labeled.parquet")
    pool_path = write_manifest(pool.assign(label=None), tmp_path / "pool.parquet")
    domain_path = write_manifest(domain, tmp_path / "domain.parquet")
    base = {"num_threads": 1, "frontend": {"window_seconds": 1.0, "n_mels": 32},
            "student": {"conv_channels": [4, 8], "lstm_hidden": 8},
            "data": {"manifest": str(manifest), "folds": "speaker", "n_folds": 2,
                     "cache_dir": str(tmp_path / "cache")},
            "optim": {"epochs": 1, "batch_size": 8, "patience": 0}}  # fmt: skip
    rows = [{"name": "pool + domain", "teacher.kind": "student",
             "teacher.unlabeled": [str(pool_path), str(domain_path)]}]  # fmt: skip
    config = from_dict(ExperimentConfig, {
        "name": "two", "output_dir": str(tmp_path / "exp"), "base": base, "folds": [1], "rows": rows,
        "teacher": {"label": {"min_seconds": 0.5, "hop_seconds": 1.0}}})  # fmt: skip
    results = run_experiment(config, progress=False)
    assert results["ran"] == 1 and not results["failed"]

    [prep] = list((tmp_path / "exp" / "teachers").glob("student-*/fold-1-seed-0"))
    info = json.loads((prep / "prepared.json").read_text())
    assert info["windows"] == len(pool)  # one window per sub-second clip
    [more] = info["more_stores"]
    assert more["source"] == str(domain_path) and more["windows"] == len(domain)
    assert more["pseudo_clips"] == 0  # the domain's labels are the manifest's, not the fold's
    assert more["label_agreement"]["clips"] == len(domain)  # ...and score its soft labels
    assert "label_agreement" not in info  # the pool has no labels of its own
    [run] = list((tmp_path / "exp" / "runs").glob("*/fold-1-seed-0"))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["config"]["distill"]["stores"] == [
        str((prep / "store").absolute()), str((prep / "store-2").absolute())]  # fmt: skip
    assert metrics["unlabeled_windows"] == len(pool) + len(domain)


def test_a_student_with_global_statistics_labels_as_it_predicts(tmp_path):
    """The "self" teacher: a student checkpoint whose front end uses the training clips' global
    statistics labels windows with those statistics (it raised before), as ``predict`` scores."""
    import torch

    from liser.checkpoint import save_checkpoint
    from liser.config import FrontEndConfig, StudentConfig
    from liser.deploy import load
    from liser.features import LogMel
    from liser.student import Student
    from liser.teachers import load_audio_teacher

    frontend = FrontEndConfig(window_seconds=1.0, n_mels=32, normalize="global")
    classes = ("low", "high")
    torch.manual_seed(0)
    model = Student(StudentConfig(conv_channels=(4, 8), lstm_hidden=8, n_classes=2), frontend)
    logmel = LogMel(frontend)
    waves = torch.from_numpy(
        np.stack([tone(1.0, f, seed=i) for i, f in enumerate((200.0, 2500.0))])
    )
    logmel.fit_global_stats(logmel.log_mel(waves))
    stats = logmel.global_stats()
    assert abs(float(stats["mean"][0])) > 1.0  # far from what "no statistics" would mean
    folder = save_checkpoint(
        tmp_path / "ckpt", model, {"classes": list(classes), "frontend_stats": stats}
    )

    teacher = load_audio_teacher(str(folder), device="cpu", precision="fp32")
    probs = teacher.predict(waves.numpy())
    predictor = load(folder, device="cpu")
    expected = np.stack(
        [[predictor.predict(w.numpy())["probs"][c] for c in classes] for w in waves]
    )
    np.testing.assert_allclose(probs, expected, atol=1e-4)
