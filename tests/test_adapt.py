"""Adapting normalisation statistics to a domain's unlabeled audio (liser.adapt, liser adapt,
liser evaluate --adapt)."""

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from liser.adapt import DomainAudio, adapt_folder, adapt_student, adapt_teacher
from liser.checkpoint import load_checkpoint, logmel_for, save_checkpoint
from liser.cli import app
from liser.config import AudioTeacherConfig, DataConfig, FrontEndConfig, StudentConfig
from liser.evaluate import evaluate_corpora
from liser.evaluate.scorers import adapted_scorer
from liser.features import LogMel
from liser.manifest import write_manifest
from liser.student import Student
from liser.testing import emotion_tones, tiny_whisper_ct2

CLASSES = ("class0", "class1", "class2", "class3")


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """A toy corpus and the same clips 10 dB quieter (a pure gain: every log-Mel value moves by
    the same constant), each as a manifest."""
    root = tmp_path_factory.mktemp("adapt")
    df = emotion_tones(root / "clean", n_speakers=3, clips_per_class=2, seconds=(1.5, 2.5))
    quiet = df.copy()
    (root / "quiet").mkdir()
    for i, row in df.iterrows():
        wave, rate = sf.read(row.path, dtype="float32")
        path = root / "quiet" / f"{row.id}.wav"
        sf.write(path, wave * 10 ** (-10 / 20), rate, subtype="FLOAT")
        quiet.loc[i, "path"], quiet.loc[i, "corpus"] = str(path), "quiet"
    return write_manifest(df, root / "clean.parquet"), write_manifest(quiet, root / "quiet.parquet")


@pytest.fixture(scope="module")
def student(corpora, tmp_path_factory):
    """A random student with global normalisation (statistics of random noise, not of the
    corpus) and random BatchNorm statistics."""
    frontend = FrontEndConfig(n_mels=32, normalize="global")
    torch.manual_seed(0)
    model = Student(StudentConfig(conv_channels=(4, 8), lstm_hidden=8, n_classes=4), frontend)
    logmel = LogMel(frontend)
    logmel.fit_global_stats(logmel.log_mel(0.05 * torch.randn(4, 48000)))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5), m.running_var.uniform_(0.5, 2.0)
    meta = {"classes": list(CLASSES), "frontend_stats": logmel.global_stats()}
    return save_checkpoint(tmp_path_factory.mktemp("student") / "ckpt", model, meta)


def _probs(scorer, manifest) -> np.ndarray:
    df = pd.read_parquet(manifest)
    return np.array([list(scorer.predict(sf.read(p, dtype="float32")[0])["probs"].values())
                     for p in df.path])  # fmt: skip


def test_student_adapted_to_a_gain_change_predicts_as_on_the_original(student, corpora):
    clean, quiet = corpora
    from liser.evaluate.scorers import load_scorer

    plain = load_scorer(student)
    assert not np.allclose(_probs(plain, clean), _probs(plain, quiet), atol=1e-3)
    on_clean, record = adapted_scorer(student, pd.read_parquet(clean), progress=False)
    on_quiet, _ = adapted_scorer(student, pd.read_parquet(quiet), progress=False)
    # re-estimated statistics remove the gain: the same outputs on either version of the corpus
    np.testing.assert_allclose(_probs(on_clean, clean), _probs(on_quiet, quiet), atol=2e-3)
    assert record["clips"] == 24 and record["windows"] >= 24 and record["skipped"] == 0


def test_adapt_student_sets_the_domain_statistics(student, corpora):
    clean, _ = corpora
    model, meta = load_checkpoint(student)
    logmel = logmel_for(meta)
    df = pd.read_parquet(clean).drop(columns=["label"])  # labels are never needed
    audio = DomainAudio(df, 3.0, 1.0, "zero", batch_size=7, progress=False)
    adapt_student(model, logmel, audio)
    waves = np.concatenate([w for w, _ in audio])
    features = logmel.log_mel(torch.from_numpy(waves))  # (B, mels, T)
    np.testing.assert_allclose(logmel.mean.numpy(), features.mean((0, 2)).numpy(), atol=1e-3)
    # the first BatchNorm now holds the mean of its input (the first convolution's output)
    first = (
        model.conv[0]
        if hasattr(model, "conv")
        else next(m for m in model.modules() if hasattr(m, "conv") and hasattr(m, "norm"))
    )
    with torch.no_grad():
        conv_out = first.conv(logmel(torch.from_numpy(waves)).unsqueeze(1))
    np.testing.assert_allclose(first.norm.running_mean.numpy(), conv_out.mean((0, 2, 3)).numpy(),
                               atol=1e-3)  # fmt: skip
    assert not model.training and audio.windows == len(waves)


def test_unreadable_clips_are_skipped_and_counted(student, corpora, tmp_path):
    clean, _ = corpora
    df = pd.read_parquet(clean)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio")
    df.loc[0, "path"] = str(broken)
    model, meta = load_checkpoint(student)
    audio = DomainAudio(df, 3.0, 1.0, progress=False)
    adapt_student(model, logmel_for(meta), audio)
    assert len(audio.skipped) == 1 and audio.skipped[0]["path"] == str(broken)
    with pytest.raises(ValueError, match="no audio to adapt to"):
        list(DomainAudio(df.iloc[:1], progress=False))


def test_adapt_cli_writes_a_copy_and_evaluate_adapt_reports_it(student, corpora, tmp_path):
    clean, quiet = corpora
    out = tmp_path / "adapted"
    result = CliRunner().invoke(app, ["adapt", str(student), str(quiet), "-o", str(out)])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["adapted"]["clips"] == 24 and meta["adapted"]["on"] == [str(quiet)]
    assert meta["frontend_stats"] != json.loads((student / "checkpoint.json").read_text())[
        "frontend_stats"]  # fmt: skip
    load_checkpoint(out)  # a valid checkpoint
    same = CliRunner().invoke(app, ["adapt", str(student), str(quiet), "-o", str(student)])
    assert same.exit_code == 2 and "copy" in same.output
    scored = CliRunner().invoke(app, ["evaluate", str(student), str(clean), str(quiet), "--adapt",
                                      "--per-speaker", "-o", str(tmp_path / "by-speaker")])  # fmt: skip
    assert scored.exit_code == 0 and scored.output.count("each speaker's own audio") == 2
    alone = CliRunner().invoke(app, ["evaluate", str(student), str(clean), "--per-speaker"])
    assert alone.exit_code == 2 and "--adapt" in alone.output
    report = evaluate_corpora(student, [clean, quiet], tmp_path / "eval", adapt=True,
                              progress=False)  # fmt: skip
    assert all("re-estimated on this corpus" in row["rules"] for row in report["corpora"])
    metrics = json.loads((tmp_path / "eval" / "quiet" / "metrics.json").read_text())
    assert metrics["adapted"]["clips"] == 24
    # the adapted copy scores the quiet corpus as the corpus-adapted evaluation does
    copied = evaluate_corpora(out, [quiet], tmp_path / "eval-copy", progress=False)
    assert copied["corpora"][0]["uar"] == pytest.approx(report["corpora"][1]["uar"])


def test_teacher_head_standardisation_follows_the_domain(corpora, tmp_path):
    from liser.teachers import load_audio_teacher
    from liser.teachers.fit_audio import fit_audio_teacher

    clean, quiet = corpora
    spec = tiny_whisper_ct2(tmp_path / "whisper", n_layers=2)
    data = DataConfig(manifest=str(clean), folds="speaker", n_folds=3, fold=1, val_fraction=0.3)
    config = AudioTeacherConfig(spec=str(spec), freeze_encoder=True, head_epochs=3, precision="fp32",
                                device="cpu", output_dir=str(tmp_path / "teacher"),
                                cache_dir=str(tmp_path / "cache"), data=data)  # fmt: skip
    folder = fit_audio_teacher(config, progress=False)
    head_before = (folder / "head.safetensors").read_bytes()
    record = adapt_folder(folder, [quiet], tmp_path / "adapted", progress=False)
    assert (folder / "head.safetensors").read_bytes() == head_before  # the source is untouched
    adapted = load_audio_teacher(str(tmp_path / "adapted"))
    assert adapted.fingerprint != load_audio_teacher(str(folder)).fingerprint
    assert json.loads((tmp_path / "adapted" / "teacher.json").read_text())["adapted"] == record
    # the head's statistics are the pooled features' mean and variance over the domain's windows
    audio = DomainAudio(pd.read_parquet(quiet), adapted.window_seconds, adapted.hop_seconds,
                        progress=False)  # fmt: skip
    with torch.no_grad():
        pooled = torch.cat([adapted._pooled(torch.from_numpy(w), torch.from_numpy(n))
                            for w, n in audio]).flatten(1)  # fmt: skip
    norm, before = adapted.head.norm, load_audio_teacher(str(folder)).head.norm
    mean, var = pooled.mean(0).numpy(), pooled.var(0).numpy()  # adapt ran in bf16 where native
    np.testing.assert_allclose(norm.running_mean.numpy(), mean, rtol=0.01, atol=0.01)
    np.testing.assert_allclose(norm.running_var.numpy(), var, rtol=0.02, atol=1e-4)
    assert np.abs(before.running_mean.numpy() - mean).max() > 0.1  # the fit's were other
    fresh = load_audio_teacher(str(folder))
    adapt_teacher(fresh, audio)
    np.testing.assert_allclose(fresh.head.norm.running_mean.numpy(), norm.running_mean.numpy(),
                               atol=1e-5)  # fmt: skip


def test_experiment_teacher_adapted_to_each_source_before_labeling(corpora, student, tmp_path):
    """``teacher.adapt``: the fold's teacher labels an unlabeled source with its statistics
    re-estimated there; its soft labels (and fingerprint) differ from the plain teacher's."""
    import pyarrow.parquet as pq

    from liser.config import ExperimentTeacherConfig, TrainConfig, from_dict
    from liser.experiment.teacher import prepare_teacher
    from liser.store import shard_paths
    from liser.testing import tiny_train_config

    clean, quiet = corpora
    config = from_dict(TrainConfig, tiny_train_config(clean, tmp_path / "run", **{
        "frontend.normalize": "global", "data.n_folds": 3}))  # fmt: skip
    label = {"min_seconds": 0.5, "hop_seconds": 3.0}
    made = {}
    for adapt in (False, True):
        teacher = from_dict(ExperimentTeacherConfig, {"kind": "spec", "spec": str(student),
                            "unlabeled": [str(quiet)], "adapt": adapt, "label": label})  # fmt: skip
        folder = tmp_path / f"teacher-{adapt}"
        info = prepare_teacher(teacher, config, pd.read_parquet(clean), folder, progress=False)
        shards = [pq.read_table(p).to_pandas() for p in shard_paths(folder / "store")]
        table = pd.concat(shards).sort_values("window_id")
        made[adapt] = info, np.stack(table["audio_probs"].to_numpy()), set(table["audio_teacher"])
    (plain, p0, f0), (adapted, p1, f1) = made[False], made[True]
    assert "adapted" not in plain and adapted["adapted"]["clips"] == 24
    assert adapted["adapted"]["on"] == [str(quiet)]
    assert p0.shape == p1.shape and np.abs(p0 - p1).max() > 0.01 and f0 != f1


def test_per_speaker_adaptation_removes_each_speakers_gain(student, corpora, tmp_path):
    from liser.evaluate import evaluate_checkpoint

    clean, quiet = corpora
    a, b = pd.read_parquet(clean), pd.read_parquet(quiet)
    mixed = pd.concat([a[a.speaker != "spk1"], b[b.speaker == "spk1"]]).sort_values("id")
    mixed["corpus"] = "mixed"
    probs = {}
    for name, df, mode in (("clean", a, "speaker"), ("mixed", mixed, "speaker"),
                           ("mixed-corpus", mixed, "corpus")):  # fmt: skip
        m = evaluate_checkpoint(student, df, tmp_path / name, adapt=mode, progress=False)
        table = pd.read_csv(tmp_path / name / "predictions.csv").sort_values("id")
        probs[name] = table[list(CLASSES)].to_numpy()
        if mode == "speaker":
            assert m["adapted"]["speakers"] == 3 and m["adapted"]["clips"] == 24
            assert "each speaker's own audio" in m["rules"]
    # spk1's 10 dB is gone once each speaker has their own statistics; one corpus's are not enough
    np.testing.assert_allclose(probs["mixed"], probs["clean"], atol=2e-3)
    assert np.abs(probs["mixed-corpus"] - probs["clean"]).max() > 1e-2


def test_adapt_student_parts(student, corpora):
    clean, _ = corpora
    audio = DomainAudio(pd.read_parquet(clean), 3.0, 1.0, progress=False)
    stats = {}
    for parts in (("frontend",), ("batchnorm",)):
        model, meta = load_checkpoint(student)
        logmel = logmel_for(meta)
        before = logmel.mean.clone(), model.convs[0].norm.running_mean.clone()
        adapt_student(model, logmel, audio, parts)
        stats[parts] = (not torch.equal(logmel.mean, before[0]),
                        not torch.equal(model.convs[0].norm.running_mean, before[1]))  # fmt: skip
    assert stats[("frontend",)] == (True, False) and stats[("batchnorm",)] == (False, True)
