import csv
import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from liser.config import FrontEndConfig, StudentConfig
from liser.evaluate import (
    classification_metrics,
    confusion_matrix,
    evaluate_checkpoint,
    evaluate_model,
    summarize_folds,
    summary_table,
)
from liser.features import LogMel
from liser.student import Student
from liser.testing import student_checkpoint, tone

CLASSES = ("angry", "happy", "sad")


def test_metrics_by_hand():
    # true a a b b c c / predicted a b b b a a
    m = classification_metrics([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 0, 0], ["a", "b", "c"])
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [2, 0, 0]]
    assert m["per_class_recall"] == {"a": 0.5, "b": 1.0, "c": 0.0}
    assert m["uar"] == pytest.approx(0.5)
    assert m["war"] == pytest.approx(3 / 6)
    # precision a 1/3, b 2/3, c 0 (never predicted) -> F1 0.4, 0.8, 0
    assert m["per_class_f1"]["a"] == pytest.approx(0.4)
    assert m["per_class_f1"]["b"] == pytest.approx(0.8)
    assert m["macro_f1"] == pytest.approx(0.4)
    assert m["support"] == {"a": 2, "b": 2, "c": 2}
    assert m["n"] == 6


def test_class_absent_from_labels_is_left_out_of_uar_but_not_f1():
    # class c is predicted once but never true
    m = classification_metrics([0, 0, 1, 1], [0, 2, 1, 1], ["a", "b", "c"])
    assert m["per_class_recall"]["c"] is None
    assert m["uar"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["war"] == pytest.approx(0.75)
    # F1: a = 2/3 (precision 1, recall 1/2), b = 1, c = 0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    # class d neither true nor predicted: in no average
    m4 = classification_metrics([0, 0, 1, 1], [0, 2, 1, 1], ["a", "b", "c", "d"])
    assert m4["macro_f1"] == pytest.approx(m["macro_f1"])
    assert m4["per_class_f1"]["d"] is None


def test_confusion_counts_and_bad_indices():
    matrix = confusion_matrix([0, 1, 1, 2, 2, 2], [0, 1, 2, 2, 2, 0], 3)
    np.testing.assert_array_equal(matrix, [[1, 0, 0], [0, 1, 1], [1, 0, 2]])
    with pytest.raises(ValueError, match="in \\[0, 3\\)"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="no labeled clips"):
        classification_metrics([], [], ["a"])


def test_summarize_folds_mean_and_sample_std():
    folds = [
        {"uar": 0.5, "war": 0.6, "macro_f1": 0.4, "per_class_recall": {"a": 1.0, "b": None}},
        {"uar": 0.7, "war": 0.6, "macro_f1": 0.5, "per_class_recall": {"a": 0.0, "b": 0.5}},
    ]
    s = summarize_folds(folds)
    assert s["n_folds"] == 2
    assert s["uar"]["mean"] == pytest.approx(0.6)
    assert s["uar"]["std"] == pytest.approx(np.sqrt(0.02))  # ddof=1: sqrt(((0.1)^2 * 2) / 1)
    assert s["war"]["std"] == 0.0
    assert s["per_class_recall"]["a"]["mean"] == pytest.approx(0.5)
    assert s["per_class_recall"]["b"] == {"mean": 0.5, "std": 0.0}  # one fold has it
    assert "60.00 ± 14.14" in _render(summary_table(s))
    assert "confusion" not in s  # the folds carry no confusion matrices


def test_summarize_folds_pools_confusions_only_over_the_same_classes():
    a = {"uar": 0.5, "war": 0.5, "macro_f1": 0.5, "per_class_recall": {"x": 1.0, "y": 0.0},
         "classes": ["x", "y"], "confusion": [[2, 0], [1, 0]]}  # fmt: skip
    b = a | {"confusion": [[0, 1], [0, 3]]}
    s = summarize_folds([a, b])
    assert s["classes"] == ["x", "y"] and s["confusion"] == [[2, 1], [1, 3]]
    other = b | {"classes": ["y", "x"], "per_class_recall": {"y": 1.0, "x": 0.0}}
    assert "confusion" not in summarize_folds([a, other])


def _render(table) -> str:
    from rich.console import Console

    console = Console(width=120, record=True)
    console.print(table)
    return console.export_text()


def test_evaluate_model_averages_window_probabilities_per_clip():
    torch.manual_seed(0)
    model = Student(StudentConfig(n_classes=3), FrontEndConfig()).train()
    features = torch.randn(5, 64, 301)
    clip_of = torch.tensor([0, 0, 1, 2, 2])
    result = evaluate_model(model, features.half(), [2, 1, 0], CLASSES, clip_of=clip_of)
    assert model.training  # mode restored
    with torch.no_grad():
        windows = torch.softmax(model.eval()(features.half().float())["logits"], -1)
    expected = torch.stack([windows[:2].mean(0), windows[2], windows[3:].mean(0)]).numpy()
    np.testing.assert_allclose(result["probs"], expected, atol=1e-5)
    assert result["n"] == 3
    assert result["war"] == pytest.approx(np.mean(expected.argmax(1) == [2, 1, 0]))


def test_evaluate_model_on_waveforms_uses_prediction_windows():
    torch.manual_seed(0)
    frontend = FrontEndConfig()
    model = Student(StudentConfig(n_classes=3), frontend).eval()
    waves = [tone(0.5, 200), tone(4.0, 300, seed=1)]
    result = evaluate_model(model, waves, [0, 1], CLASSES)
    # the 4 s clip: windows at 0 and 1 s (end-aligned) with the default 1.5 s hop
    logmel = LogMel(frontend)
    with torch.no_grad():
        short = np.tile(waves[0], 6)[: frontend.window_samples]
        x = torch.from_numpy(np.stack([short, waves[1][:48000], waves[1][16000:]]))
        p = torch.softmax(model(logmel(x))["logits"], -1).numpy()
    np.testing.assert_allclose(result["probs"], [p[0], p[1:].mean(0)], atol=1e-5)


@pytest.fixture
def labeled_clips(tmp_path):
    rows = []
    for i, (label, freq) in enumerate([("angry", 200), ("happy", 400), ("sad", 600), ("sad", 700)]):
        path = tmp_path / "clips" / f"clip{i}.wav"
        path.parent.mkdir(exist_ok=True)
        seconds = 2.0 + i
        sf.write(path, tone(seconds, freq, seed=i), 16000)
        rows.append(dict(id=f"clip{i}", path=str(path), start=0.0, duration=seconds,
                         speaker="s1", label=label, corpus="test"))  # fmt: skip
    broken = tmp_path / "clips" / "broken.wav"
    broken.write_bytes(b"not audio at all")
    rows.append(dict(id="broken", path=str(broken), start=0.0, duration=float("nan"),
                     speaker="s1", label="happy", corpus="test"))  # fmt: skip
    rows.append(dict(id="unlabeled", path=rows[0]["path"], start=0.0, duration=2.0,
                     speaker="s1", label=None, corpus="test"))  # fmt: skip
    return pd.DataFrame(rows)


def test_evaluate_checkpoint_writes_the_report(tmp_path, labeled_clips):
    folder = student_checkpoint(tmp_path / "ckpt", CLASSES)
    manifest = tmp_path / "test.csv"
    labeled_clips.to_csv(manifest, index=False)
    metrics = evaluate_checkpoint(folder, labeled_clips, tmp_path / "report", progress=False)
    assert metrics["n"] == 4
    assert [s["id"] for s in metrics["skipped"]] == ["broken"]
    out = tmp_path / "report"
    stored = json.loads((out / "metrics.json").read_text())
    assert stored["uar"] == pytest.approx(metrics["uar"])
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "confusion.csv") as handle:
        table = list(csv.reader(handle))
    assert table[0][1:] == list(CLASSES)
    counts = np.array([[int(v) for v in row[1:]] for row in table[1:]])
    with open(out / "predictions.csv") as handle:
        predictions = list(csv.DictReader(handle))
    assert [p["id"] for p in predictions] == ["clip0", "clip1", "clip2", "clip3"]
    expected = np.zeros((3, 3), dtype=int)
    for p in predictions:
        expected[CLASSES.index(p["label"]), CLASSES.index(p["predicted"])] += 1
        assert sum(float(p[c]) for c in CLASSES) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_array_equal(counts, expected)
    assert counts.sum(1).tolist() == [1, 1, 2]


def test_unknown_labels_are_an_error(tmp_path, labeled_clips):
    folder = student_checkpoint(tmp_path / "ckpt", CLASSES)
    labeled_clips.loc[0, "label"] = "bored"
    with pytest.raises(ValueError, match="bored"):
        evaluate_checkpoint(folder, labeled_clips, tmp_path / "report", progress=False)


def test_cli_evaluate_prints_a_table(tmp_path, labeled_clips):
    from liser.cli import app
    from liser.manifest import write_manifest

    folder = student_checkpoint(tmp_path / "ckpt", CLASSES)
    manifest = tmp_path / "test.csv"
    write_manifest(labeled_clips, manifest)
    result = CliRunner().invoke(app, ["evaluate", str(folder), str(manifest)])
    assert result.exit_code == 0, result.output
    assert "UAR" in result.output and "recall sad" in result.output
    assert (folder / "eval-test" / "metrics.json").exists()
    missing = CliRunner().invoke(app, ["evaluate", str(tmp_path / "nope"), str(manifest)])
    assert missing.exit_code == 2
    assert "checkpoint not found" in missing.output
