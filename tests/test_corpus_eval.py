import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from liser.cli import app
from liser.config import TrainConfig, from_dict
from liser.evaluate import (
    FOUR_CLASSES,
    ClassRules,
    class_scoring,
    classification_metrics,
    evaluate_checkpoint,
    evaluate_corpora,
    parse_mapping,
    scored_label,
)
from liser.manifest import read_manifest, write_manifest
from liser.testing import emotion_tones, student_checkpoint, tiny_train_config

MODEL = ("angry", "calm", "happy", "neutral", "sad")


def test_parse_mapping():
    assert parse_mapping(["calm=neutral", "Boredom=", "a=b,c=d"]) == {
        "calm": "neutral", "boredom": None, "a": "b", "c": "d"}  # fmt: skip
    assert parse_mapping({"calm": "neutral", "x": ""}) == {"calm": "neutral", "x": None}
    for bad in (["calm"], ["=neutral"]):
        with pytest.raises(ValueError, match="class mapping"):
            parse_mapping(bad)


def test_restriction_and_mapping_by_hand():
    # A corpus with angry, neutral, calm (mapped to neutral) and boredom (dropped) clips.
    labels = ["angry", "angry", "neutral", "calm", "boredom"]
    scoring = class_scoring(MODEL, labels, parse_mapping(["calm=neutral", "boredom="]))
    assert scoring.classes == ("angry", "neutral") and scoring.dropped_labels == {"boredom": 1}
    assert scoring.columns == [[0], [1, 3]]  # the model's calm + neutral make "neutral"
    assert [scored_label(scoring, x) for x in labels] == [
        "angry",
        "angry",
        "neutral",
        "neutral",
        None,
    ]
    probs = np.array([
        [0.40, 0.00, 0.50, 0.10, 0.00],  # angry clip: happy is the model's argmax, restricted: angry
        [0.10, 0.30, 0.00, 0.30, 0.30],  # angry clip: calm + neutral = 0.6 > 0.1 -> neutral (wrong)
        [0.30, 0.25, 0.00, 0.25, 0.20],  # neutral clip: 0.30 vs 0.50 -> neutral (right)
        [0.45, 0.40, 0.00, 0.10, 0.05],  # calm clip: 0.45 vs 0.50 -> neutral (right)
    ])  # fmt: skip
    restricted = scoring.probabilities(probs)
    assert restricted[1].tolist() == pytest.approx([0.1, 0.6])
    y = [0, 0, 1, 1]
    metrics = classification_metrics(y, restricted.argmax(1), scoring.classes)
    assert metrics["uar"] == pytest.approx((1 / 2 + 2 / 2) / 2)  # angry 1 of 2, neutral 2 of 2
    assert "mapping: boredom=, calm=neutral" in scoring.describe()
    # Without restriction the argmax runs over all mapped classes: clip 0 goes to happy (wrong).
    free = class_scoring(MODEL, labels, parse_mapping(["calm=neutral", "boredom="]), restrict=False)
    assert free.classes == ("angry", "neutral", "happy", "sad") and free.labels == (
        "angry",
        "neutral",
    )
    assert free.probabilities(probs).argmax(1).tolist() == [2, 1, 1, 1]


def test_explicit_classes_and_their_errors():
    scoring = class_scoring(MODEL, ["angry", "calm", "sad"], classes=FOUR_CLASSES)
    assert scoring.classes == FOUR_CLASSES and scoring.dropped_labels == {"calm": 1}
    with pytest.raises(ValueError, match=r"classes \['fear'\] are not among the model's"):
        class_scoring(MODEL, ["angry"], classes=("angry", "fear"))
    with pytest.raises(ValueError, match="no class of the corpus"):
        class_scoring(MODEL, ["ang", "dis"])


@pytest.fixture(scope="module")
def two_corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    df = emotion_tones(root / "wav", n_speakers=2, clips_per_class=2, n_classes=3, distractors=0)
    df["corpus"] = ["a" if s == df["speaker"].iloc[0] else "b" for s in df["speaker"]]
    df.loc[(df["corpus"] == "b") & (df["label"] == "class2"), "label"] = "other"
    return write_manifest(df, root / "both.csv")


def test_evaluate_corpora_writes_one_table(two_corpora, tmp_path):
    checkpoint = student_checkpoint(tmp_path / "c", ("class0", "class1", "class2"))
    with pytest.raises(ValueError, match=r"labels \['other'\] are not among"):
        evaluate_corpora(checkpoint, [two_corpora], tmp_path / "e", progress=False)
    rules = ClassRules(mapping={"other": None})
    result = evaluate_corpora(
        checkpoint, [two_corpora], tmp_path / "e", rules=rules, progress=False
    )
    rows = {r["corpus"]: r for r in result["corpora"]}
    assert set(rows) == {"a", "b"}
    assert rows["a"]["classes"] == ["class0", "class1", "class2"] and rows["a"]["n"] == 6
    assert rows["b"]["classes"] == ["class0", "class1"] and rows["b"]["n"] == 4
    assert rows["b"]["chance"] == 0.5 and "clips not scored: other (2)" in rows["b"]["rules"]
    assert result["mean"]["uar"] == pytest.approx((rows["a"]["uar"] + rows["b"]["uar"]) / 2)
    for name in ("a", "b"):
        metrics = json.loads((tmp_path / "e" / name / "metrics.json").read_text())
        assert metrics["uar"] == rows[name]["uar"]
    table = pd.read_csv(tmp_path / "e" / "corpora.csv")
    assert table["corpus"].tolist() == ["a", "b"]
    assert "| mean |" in (tmp_path / "e" / "corpora.md").read_text()
    assert (tmp_path / "e" / "corpora.png").read_bytes()[:4] == b"\x89PNG"
    # one corpus alone is the classic report; same scores as in the table
    single = evaluate_checkpoint(checkpoint, read_manifest(two_corpora).query("corpus == 'a'"),
                                 tmp_path / "one", progress=False)  # fmt: skip
    assert single["uar"] == rows["a"]["uar"]


def test_cli_evaluate_several_manifests(two_corpora, tmp_path):
    checkpoint = student_checkpoint(tmp_path / "c", ("class0", "class1", "class2"))
    result = CliRunner().invoke(app, ["evaluate", str(checkpoint), str(two_corpora),
                                      "--map", "other=", "-o", str(tmp_path / "e")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "mean over 2 corpora: UAR" in result.output
    result = CliRunner().invoke(app, ["evaluate", str(checkpoint), str(two_corpora),
                                      "--map", "other"])  # fmt: skip
    assert result.exit_code == 2 and "not of the form from=to" in result.output


def test_training_scores_other_corpora_and_cv_summarises_them(two_corpora, tmp_path, monkeypatch):
    from liser.train import cv, train
    from liser.train import loop as train_loop

    df = emotion_tones(
        tmp_path / "wav", n_speakers=4, clips_per_class=2, n_classes=3, distractors=0
    )
    manifest = write_manifest(df, tmp_path / "m.csv")
    base = tiny_train_config(manifest, tmp_path / "run", **{"optim.epochs": 1})
    metrics = train(from_dict(TrainConfig, base), progress=False)
    assert metrics["corpora"] is None
    monkeypatch.setattr(train_loop.Run, "fit", lambda self: pytest.fail("trained again"))
    more = {"data.eval_manifests": [str(two_corpora)], "data.eval_map": ["other="]}
    later = train(from_dict(TrainConfig, tiny_train_config(manifest, tmp_path / "run", **{"optim.epochs": 1}, **more)), progress=False)  # fmt: skip
    assert set(later["corpora"]["corpora"]) == {"a", "b"}
    assert (
        json.loads((tmp_path / "run" / "metrics.json").read_text())["corpora"] == later["corpora"]
    )
    adapted = train(from_dict(TrainConfig, tiny_train_config(manifest, tmp_path / "run", **{"optim.epochs": 1}, **more, **{"data.eval_adapt": "corpus"})), progress=False)  # fmt: skip
    assert all("re-estimated" in c["rules"] for c in adapted["corpora"]["corpora"].values())
    assert all("re-estimated" not in c["rules"] for c in later["corpora"]["corpora"].values())
    monkeypatch.undo()
    summary = cv(from_dict(TrainConfig, tiny_train_config(manifest, tmp_path / "cv", **{"optim.epochs": 1}, **more)), progress=False)  # fmt: skip
    folds = [
        json.loads((tmp_path / "cv" / f"fold-{k}" / "metrics.json").read_text()) for k in (1, 2)
    ]
    uars = [f["corpora"]["corpora"]["a"]["uar"] for f in folds]
    assert summary["corpora"]["a"]["uar"]["mean"] == pytest.approx(np.mean(uars))
    assert summary["corpora"]["mean"]["uar"]["mean"] == pytest.approx(
        np.mean([f["corpora"]["mean"]["uar"] for f in folds])
    )


def test_experiment_tables_show_the_other_corpora(two_corpora, tmp_path):
    from liser.config import ExperimentConfig
    from liser.experiment import run_experiment

    df = emotion_tones(
        tmp_path / "wav", n_speakers=4, clips_per_class=2, n_classes=3, distractors=0
    )
    manifest = write_manifest(df, tmp_path / "m.csv")
    base = tiny_train_config(manifest, tmp_path / "unused", **{"optim.epochs": 1,
                             "data.eval_manifests": [str(two_corpora)], "data.eval_map": ["other="]})  # fmt: skip
    config = from_dict(ExperimentConfig, {"name": "cc", "output_dir": str(tmp_path / "exp"), "base": base,
                                          "folds": [1], "rows": [{"name": "a"}, {"name": "b", "seed": 1}]})  # fmt: skip
    results = run_experiment(config, progress=False)
    run = {r["row"]: r for r in results["runs"]}
    assert set(run["a"]["corpora"]) == {"a", "b"}
    row = {r["name"]: r for r in results["rows"]}["a"]
    assert row["corpora"]["b"]["mean"] == pytest.approx(run["a"]["corpora"]["b"])
    text = (tmp_path / "exp" / "results.md").read_text()
    assert (
        "Other corpora (`data.eval_manifests`), UAR %" in text and "| row | a | b | mean |" in text
    )


def test_evaluate_an_ensemble_of_checkpoints(two_corpora, tmp_path):
    """Checkpoints joined by commas are scored as one model: the mean of their probabilities."""
    classes = ("class0", "class1", "class2")
    a = student_checkpoint(tmp_path / "a", classes, seed=0)
    b = student_checkpoint(tmp_path / "b", classes, seed=1)
    rules = ClassRules(mapping={"other": None})
    probs = {}
    for name, spec in (("a", a), ("b", b), ("ab", f"{a},{b}")):
        evaluate_corpora(spec, [two_corpora], tmp_path / name, rules=rules, progress=False)
        table = pd.read_csv(tmp_path / name / "a" / "predictions.csv")
        probs[name] = table[list(classes)].to_numpy()
    # (members run as teachers: in bf16 where the CPU has it natively)
    np.testing.assert_allclose(probs["ab"], (probs["a"] + probs["b"]) / 2, atol=1e-3)
    assert np.abs(probs["a"] - probs["b"]).max() > 5e-3
