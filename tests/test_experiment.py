import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from liser.config import ConfigError, ExperimentConfig, from_dict
from liser.experiment import expand_rows, run_experiment
from liser.manifest import read_manifest, split_fold, write_manifest
from liser.testing import emotion_tones


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A toy corpus of 6 speakers x 3 classes x 4 clips (0.6-0.9 s), its manifest."""
    folder = tmp_path_factory.mktemp("tones")
    df = emotion_tones(folder / "wav", n_speakers=6, clips_per_class=4, n_classes=3, seed=3)
    return write_manifest(df, folder / "manifest.parquet")


def experiment(manifest, out, **extra) -> ExperimentConfig:
    """A tiny, fast experiment: 1 s windows, a 2-block student, 1 epoch, 2 speaker folds."""
    base = {
        "num_threads": 1,
        "frontend": {"window_seconds": 1.0, "n_mels": 32},
        "student": {"conv_channels": [4, 8], "lstm_hidden": 8},
        "data": {
            "manifest": str(manifest),
            "folds": "speaker",
            "n_folds": 2,
            "cache_dir": str(out / "cache"),
        },  # fmt: skip
        "optim": {"epochs": 1, "batch_size": 8, "patience": 0},
    }
    return from_dict(ExperimentConfig, {"name": "tiny", "output_dir": str(out / "exp"), "base": base,
                                        "folds": [1, 2], **extra})  # fmt: skip


def never(*args, **kwargs):
    raise AssertionError("a finished run or teacher was made again")


def test_grid_tables_and_resume(corpus, tmp_path, monkeypatch):
    config = experiment(corpus, tmp_path, grid={"optim": {"lr": [0.001, 0.004]}}, corpus="ravdess")
    results = run_experiment(config, progress=False)
    out = tmp_path / "exp"
    assert results["ran"] == 4 and results["reused"] == 0 and not results["failed"]

    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["slug"] for r in table] == ["lr-0.001", "lr-0.004"]
    for row in table:
        runs = [json.loads((out / "runs" / row["slug"] / f"fold-{k}-seed-0" / "metrics.json").read_text())
                for k in (1, 2)]  # fmt: skip
        uar = 100 * np.array([m["test"]["uar"] for m in runs])
        war = 100 * np.array([m["test"]["war"] for m in runs])
        assert int(row["runs"]) == 2
        assert float(row["uar_mean_pct"]) == pytest.approx(uar.mean(), abs=1e-3)
        assert float(row["uar_std_pct"]) == pytest.approx(uar.std(ddof=1), abs=1e-3)
        assert float(row["war_mean_pct"]) == pytest.approx(war.mean(), abs=1e-3)
        assert (
            float(row["paper_uar_pct"]) == 57.81
        )  # all labels, no distillation: the paper's supervised
        assert json.loads(row["settings"]) == {"optim.lr": float(row["slug"].split("-")[1])}
        md = (out / "results.md").read_text()
        assert f"{uar.mean():.2f} ± {uar.std(ddof=1):.2f}" in md
    assert len(json.loads((out / "results.json").read_text())["runs"]) == 4
    assert (out / "uar.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "uar_folds.png").read_bytes()[:4] == b"\x89PNG"

    # A second invocation makes nothing again.
    import liser.train.loop

    monkeypatch.setattr(liser.train.loop.Run, "fit", never)
    again = run_experiment(config, progress=False)
    assert again["ran"] == 0 and again["reused"] == 4
    assert again["rows"] == results["rows"]

    # An interrupted run (its last epoch saved, no metrics yet) resumes through train: no epoch
    # is trained again, only the test of the best checkpoint.
    (out / "runs" / "lr-0.004" / "fold-2-seed-0" / "metrics.json").unlink()
    monkeypatch.undo()
    monkeypatch.setattr(liser.train.loop.Run, "epoch", never)
    resumed = run_experiment(config, progress=False)
    assert resumed["ran"] == 1 and resumed["reused"] == 3
    assert resumed["rows"][1]["uar"] == pytest.approx(results["rows"][1]["uar"])


def test_fold_teacher_labels_hidden_clips(corpus, tmp_path, monkeypatch):
    rows = [{"name": "supervised 50 %", "data.label_fraction": 0.5},
            {"name": "50 % + teacher", "data": {"label_fraction": 0.5}, "teacher.kind": "student"}]  # fmt: skip
    teacher = {"student": {"student.lstm_hidden": 12}, "members": 2,
               "label": {"min_seconds": 0.5, "hop_seconds": 1.0}}  # fmt: skip
    config = experiment(corpus, tmp_path, rows=rows, teacher=teacher)
    config = dataclasses.replace(config, folds=(1,))
    out = tmp_path / "exp"
    # The teachers of the chosen rows alone first (no student, no table), then the whole grid,
    # which uses them as they are.
    made = run_experiment(config, progress=False, only=("teacher",), teachers_only=True)
    assert len(made["teachers"]) == 1 and not (out / "runs").exists()
    [prep] = list((out / "teachers").glob("student-*/fold-1-seed-0"))
    assert json.loads((prep / "prepared.json").read_text()) == made["teachers"][0]
    import liser.label.run

    with monkeypatch.context() as patch:
        patch.setattr(liser.label, "label", never)
        results = run_experiment(config, progress=False)
    assert results["ran"] == 2 and not results["failed"]
    info = json.loads((prep / "prepared.json").read_text())

    # The teacher saw only the fold's labeled clips; it labeled exactly the hidden-label ones.
    df = read_manifest(corpus)
    splits = split_fold(df, dataclasses.replace(config.base.data, fold=1, label_fraction=0.5), 0)
    labeled = read_manifest(prep / "labeled.parquet")
    hidden = set(splits["unlabeled"]["id"])
    assert hidden and not hidden & set(labeled["id"])
    assert set(labeled["id"]) == set(splits["train"]["id"]) | set(splits["val"]["id"]) | set(
        splits["test"]["id"]
    )
    assert set(labeled.loc[labeled["fold"] == 1, "id"]) == set(splits["test"]["id"])
    assert info["windows"] == len(hidden)  # one 1 s window per clip shorter than 1 s
    assert info["pseudo_clips"] == len(hidden) and info["pseudo_uar"] is not None
    assert len(info["spec"].split(",")) == 2  # the two-member ensemble
    for i in range(2):
        member = json.loads((prep / f"member-{i}" / "metrics.json").read_text())
        assert member["config"]["data"]["manifest"] == str((prep / "labeled.parquet").absolute())
        assert member["config"]["student"]["lstm_hidden"] == 12 and member["config"]["seed"] == i

    distilled = json.loads(
        (
            out / "runs" / "label_fraction-0.5_kind-student" / "fold-1-seed-0" / "metrics.json"
        ).read_text()
    )
    assert distilled["config"]["distill"]["stores"] == [str((prep / "store").absolute())]
    supervised = json.loads(
        (out / "runs" / "label_fraction-0.5" / "fold-1-seed-0" / "metrics.json").read_text()
    )
    assert supervised["config"]["distill"]["stores"] == []
    row = results["rows"][1]
    assert (
        row["teacher_uar"]["mean"] == info["teacher_uar"]
        and row["pseudo_uar"]["mean"] == info["pseudo_uar"]
    )
    assert results["rows"][0]["teacher_uar"] is None

    import liser.train.loop

    monkeypatch.setattr(liser.train.loop.Run, "fit", never)
    monkeypatch.setattr(liser.label, "label", never)
    again = run_experiment(config, progress=False)
    assert again["ran"] == 0 and again["rows"] == results["rows"]


def test_rows_names_and_errors(corpus, tmp_path):
    config = experiment(corpus, tmp_path, rows=[{"name": "A", "distill.loss": "ce"}, {"name": "B"}],
                        grid={"data.label_fraction": [0.5, 1.0]})  # fmt: skip
    rows = expand_rows(config)
    assert [r.name for r in rows] == ["A, label_fraction=0.5", "A, label_fraction=1.0",
                                      "B, label_fraction=0.5", "B, label_fraction=1.0"]  # fmt: skip
    assert rows[0].slug == "loss-ce_label_fraction-0.5" and rows[2].slug == "label_fraction-0.5"
    # the paper's supervised number only for all labels without distillation
    assert [r.paper for r in rows] == [None, "supervised", None, "supervised"]
    with pytest.raises(ConfigError, match="did you mean 'label_fraction'"):
        expand_rows(experiment(corpus, tmp_path, grid={"data.label_fractoin": [0.5]}))
    with pytest.raises(ValueError, match="same settings"):
        expand_rows(experiment(corpus, tmp_path, rows=[{"name": "x"}, {"name": "y"}]))
    # A missing store fails before any run starts.
    missing = experiment(
        corpus, tmp_path, rows=[{"name": "x", "distill.stores": [str(tmp_path / "no")]}]
    )
    with pytest.raises(FileNotFoundError, match="row 'x'.*not a soft-label store"):
        run_experiment(missing, progress=False)
    assert not (tmp_path / "exp" / "runs").exists()
    # A bad value is refused before any run starts, naming the row's key.
    nope = experiment(corpus, tmp_path, rows=[{"name": "bad", "optim.schedule": "nope"}], folds=[1])
    with pytest.raises(ConfigError, match="row 'bad': 'optim.schedule' must be one of 'onecycle'"):
        run_experiment(nope, progress=False)
    # A run that fails is reported with its traceback; the table is still written.
    gone = str(tmp_path / "gone.parquet")
    bad = experiment(corpus, tmp_path, rows=[{"name": "bad", "data.manifest": gone}], folds=[1])
    results = run_experiment(bad, progress=False)
    [failure] = results["failed"]
    assert failure["row"] == "bad" and "gone.parquet" in failure["error"]
    assert "gone.parquet" in Path(failure["traceback"]).read_text()
    assert "Failed runs (1)" in (tmp_path / "exp" / "results.md").read_text()


def test_teacher_folder_depends_on_what_the_teacher_is(corpus, tmp_path):
    from liser.config import ExperimentTeacherConfig
    from liser.experiment import teacher_identity

    cell = experiment(corpus, tmp_path).base
    teacher = ExperimentTeacherConfig(kind="student", student={"student.lstm_hidden": 12})
    ident = teacher_identity(teacher, cell)
    # runtime settings, fold and seed do not make another teacher
    label = dataclasses.replace(teacher.label, batch_size=7, device="cpu")
    other = dataclasses.replace(cell, num_threads=3, seed=5, output_dir=str(tmp_path / "x"))
    other = dataclasses.replace(other, data=dataclasses.replace(cell.data, fold=2, num_workers=2))
    assert teacher_identity(dataclasses.replace(teacher, label=label), other) == ident
    # what it is, what it labels, and the student's data and front end do
    assert teacher_identity(dataclasses.replace(teacher, members=2), cell) != ident
    assert teacher_identity(dataclasses.replace(teacher, unlabeled=("train",)), cell) != ident
    half = dataclasses.replace(cell, data=dataclasses.replace(cell.data, label_fraction=0.5))
    assert teacher_identity(teacher, half) != ident
    audio = dataclasses.replace(teacher, kind="fit-audio")  # student overrides do not matter
    assert teacher_identity(audio, cell) == teacher_identity(
        dataclasses.replace(audio, student={}), cell
    )
