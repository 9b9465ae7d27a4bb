"""Calibration diagnostics, checked by hand, and temperature scaling stored with a teacher."""

import json

import numpy as np
import pytest
import torch

from liser.teachers.calibration import (
    confidence_correctness,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
    reliability_diagram,
    reliability_figure,
)

PROBS = np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.3, 0.7]])
LABELS = np.array([0, 1, 0, 1])  # right, wrong, right, right


def test_ece_by_hand():
    # four bins of one sample each: |1-0.9| + |0-0.6| + |1-0.8| + |1-0.7| over 4 = 0.3
    assert expected_calibration_error(PROBS, LABELS, n_bins=10) == pytest.approx(0.3)
    # one bin holding all (confidence 0.65 mean, accuracy 0.75): |0.75 - 0.75| ... by hand:
    # confidences 0.9, 0.6, 0.8, 0.7 -> mean 0.75; accuracy 3/4 = 0.75 -> ECE 0
    assert expected_calibration_error(PROBS, LABELS, n_bins=1) == pytest.approx(0.0)
    bins = reliability_bins(PROBS, LABELS, n_bins=2)  # (0, .5] empty, (.5, 1] all four
    assert bins["count"].tolist() == [0, 4] and bins["accuracy"][1] == pytest.approx(0.75)
    assert expected_calibration_error(np.eye(3), np.arange(3)) == 0.0


def test_confidence_correctness_by_hand():
    stats = confidence_correctness(PROBS, LABELS)
    # confidence 0.9 0.6 0.8 0.7, correct 1 0 1 1: the only wrong one has the lowest confidence
    assert stats["auroc"] == pytest.approx(1.0)
    c, y = np.array([0.9, 0.6, 0.8, 0.7]), np.array([1, 0, 1, 1.0])
    r = ((c - c.mean()) * (y - y.mean())).sum() / np.sqrt(
        ((c - c.mean()) ** 2).sum() * ((y - y.mean()) ** 2).sum()
    )
    assert stats["pearson"] == pytest.approx(r) and r == pytest.approx(0.7746, abs=1e-4)
    assert stats["accuracy"] == 0.75 and stats["mean_confidence"] == pytest.approx(0.75)
    flipped = confidence_correctness(PROBS[[1, 0, 2, 3]] * 0 + [[0.55, 0.45]] * 4, LABELS)
    assert np.isnan(flipped["auroc"])  # constant confidence says nothing


def test_temperature_is_recovered():
    g = torch.Generator().manual_seed(0)
    true_logits = 2.0 * torch.randn(20000, 5, generator=g)
    labels = torch.multinomial(torch.softmax(true_logits, -1), 1, generator=g).squeeze(1)
    # a teacher that is 2.5x overconfident: its logits are the true ones times 2.5
    assert fit_temperature(2.5 * true_logits, labels) == pytest.approx(2.5, rel=0.05)
    assert fit_temperature(0.5 * true_logits, labels) == pytest.approx(0.5, rel=0.05)
    probs = torch.softmax(2.5 * true_logits, -1).numpy()
    fixed = torch.softmax(2.5 * true_logits / 2.5, -1).numpy()
    assert expected_calibration_error(fixed, labels.numpy()) < 0.3 * expected_calibration_error(
        probs, labels.numpy()
    )


def test_reliability_diagram_draws_the_bins(tmp_path):
    import matplotlib.image

    fig = reliability_figure(PROBS, LABELS, "test", n_bins=10)
    ax = fig.axes[0]
    accuracy, share = ax.containers  # the two bar series, one bar a bin
    bins = reliability_bins(PROBS, LABELS, n_bins=10)
    assert [b.get_height() for b in accuracy] == pytest.approx(np.nan_to_num(bins["accuracy"]))
    assert [b.get_height() for b in share] == pytest.approx(bins["count"] / 4)
    # confidences 0.9, 0.6, 0.8, 0.7 in the right-closed bins 8, 5, 7 and 6: right, wrong, right,
    # right; the other bins hold nothing
    heights = [round(b.get_height(), 6) for b in accuracy]
    assert heights == [0, 0, 0, 0, 0, 0.0, 1.0, 1.0, 1.0, 0]
    assert ax.get_title() == "test  ECE 30.0 %"  # the hand-computed ECE of test_ece_by_hand
    path = reliability_diagram(PROBS, LABELS, tmp_path / "r.png", "test", n_bins=10)
    image = matplotlib.image.imread(path)
    assert image.shape[:2] == (540, 540) and image[..., :3].std() > 0.05  # 4.5 in at 120 dpi, drawn
    assert not list(tmp_path.glob("*.tmp*"))


def test_calibrate_stores_the_temperature_and_loading_applies_it(tmp_path):
    """A tiny fitted teacher: calibrate on its manifest, reload, probabilities follow T."""
    from test_teacher_audio import _config

    from liser.teachers import load_audio_teacher
    from liser.teachers.calibration import calibrate_teacher
    from liser.teachers.fit_audio import fit_audio_teacher
    from liser.testing import tiny_hubert, tone

    manifest = _tones(tmp_path)
    config = _config(
        tiny_hubert(tmp_path / "h"), manifest, tmp_path, freeze_encoder=True, head_epochs=20
    )
    folder = fit_audio_teacher(config, progress=False)
    before = load_audio_teacher(str(folder))
    waves = np.stack([tone(1.0, 250.0, seed=5), tone(1.0, 2000.0, seed=6)])
    p0 = before.predict(waves)
    report = calibrate_teacher(str(folder), manifest, tmp_path / "report", progress=False)
    assert report["n_clips"] == 40 and (tmp_path / "report" / "reliability_after.png").is_file()
    assert report["nll_after"] <= report["nll_before"] + 1e-6  # T minimises the NLL
    stored = json.loads((folder / "calibration.json").read_text())["temperature"]
    assert stored == pytest.approx(report["temperature"])
    after = load_audio_teacher(str(folder))
    assert after.temperature == pytest.approx(stored)
    expected = torch.softmax(
        torch.log(torch.from_numpy(p0)) * before.temperature / stored, -1
    ).numpy()
    assert np.allclose(after.predict(waves), expected, atol=1e-4)


def _tones(tmp_path):
    import soundfile as sf

    from liser.manifest import make_manifest, write_manifest
    from liser.testing import tone

    rng = np.random.default_rng(1)
    rows = []
    for speaker in range(8):
        for i in range(5):
            label = ("low", "high")[i % 2]
            freq = rng.uniform(150, 300) if label == "low" else rng.uniform(1200, 2400)
            path = tmp_path / f"c{speaker}_{i}.wav"
            sf.write(
                path,
                tone(1.5, freq, seed=speaker * 10 + i)
                + 0.05 * rng.standard_normal(24000).astype(np.float32),
                16000,
            )
            rows.append(
                dict(
                    id=path.stem,
                    path=str(path),
                    start=0.0,
                    duration=1.5,
                    speaker=f"s{speaker}",
                    label=label,
                    corpus="tones",
                )
            )
    return write_manifest(make_manifest(rows), tmp_path / "tones.parquet")
