import json
import math

import numpy as np
import pytest
import soundfile as sf

from liser.config import FrontEndConfig, TrainConfig, from_dict
from liser.constants import WINDOW_HOP_SECONDS
from liser.manifest import read_manifest, write_manifest
from liser.testing import emotion_tones, tiny_train_config, tone
from liser.windows import Clip, WindowCutter, WindowSpec, clips_of

RATE = 16000


def test_one_rule_for_every_stage():
    spec = FrontEndConfig().windows()  # evaluation and prediction: 3 s every 1 s, tail >= 0.5 s
    assert (spec.window_seconds, spec.hop_seconds, spec.pad) == (3.0, WINDOW_HOP_SECONDS, "repeat")
    s = RATE
    assert spec.starts(10 * s) == [0, 1 * s, 2 * s, 3 * s, 4 * s, 5 * s, 6 * s, 7 * s]
    assert spec.starts(int(5.4 * s)) == [0, s, 2 * s]  # 0.4 s tail < half a hop: no window
    assert spec.starts(int(5.5 * s)) == [0, s, 2 * s, int(2.5 * s)]  # end-aligned tail window
    assert spec.starts(int(0.3 * s)) == [0]  # short clip: one (padded) window
    assert spec.starts(0) == []
    # labeling: its own hop, tails and whole clips shorter than min_seconds get nothing
    label = WindowSpec(3.0, 3.0, min_tail_seconds=1.0, min_clip_seconds=1.0)
    assert label.starts(int(7.5 * s)) == [0, 3 * s, int(4.5 * s)]
    assert label.starts(int(6.9 * s)) == [0, 3 * s]
    assert label.starts(int(0.9 * s)) == [] and label.starts(int(1.2 * s)) == [0]
    with pytest.raises(ValueError, match="hop_seconds must be a positive"):
        WindowSpec(3.0, 0.0)


def test_cut_pads_as_the_front_end_says():
    wave = np.arange(1, 5, dtype=np.float32)
    tiled, starts = WindowSpec(6, 6).cut(wave, rate=1)
    assert starts == [0] and tiled.tolist() == [[1, 2, 3, 4, 1, 2]]
    zeros, _ = WindowSpec(6, 6, pad="zero").cut(wave, rate=1)
    assert zeros.tolist() == [[1, 2, 3, 4, 0, 0]]
    windows, starts = WindowSpec(2, 1, min_tail_seconds=0).cut(np.arange(5.0, dtype=np.float32), 1)
    assert starts == [0, 1, 2, 3] and windows[-1].tolist() == [3, 4]


@pytest.mark.parametrize("n", [1, 7000, 47_999, 48_000, 56_000, 100_001])
def test_streamed_cutting_matches_the_spec(n):
    wave = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    spec = FrontEndConfig().windows()
    cutter, out = WindowCutter(spec, RATE), []
    for at in range(0, n, 5000):
        out += cutter.feed(wave[at : at + 5000])
    out += cutter.finish()
    whole, starts = spec.cut(wave, RATE)
    assert [w[1] for w in out] == starts
    assert np.array_equal(np.stack([w[3] for w in out]), whole)


def test_clip_from_manifest_rows(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, tone(2.0, 300.0), RATE)
    rows = [{"id": "a", "path": str(path), "start": 0.5, "duration": 1.0, "label": "sad", "speaker": "s1"},
            {"id": "b", "path": str(path), "start": math.nan, "duration": math.nan, "label": None,
             "speaker": math.nan}]  # fmt: skip
    a, b = (Clip.from_row(r) for r in rows)
    assert (a.start, a.duration, a.end, a.label, a.speaker) == (0.5, 1.0, 1.5, "sad", "s1")
    assert (b.start, b.duration, b.end, b.label, b.speaker) == (0.0, None, None, None, "unknown")
    assert len(a.load_audio()) == RATE and len(b.load_audio()) == 2 * RATE
    assert not a.has_video and b.whole_file and not a.whole_file
    windows, starts = a.windows(FrontEndConfig().windows())
    assert windows.shape == (1, 3 * RATE) and starts == [0]


def test_evaluate_scores_the_windows_training_tested(tmp_path):
    """Training's test and ``liser evaluate`` on the same clips cut the same windows."""
    from liser.evaluate import evaluate_checkpoint
    from liser.train import train

    df = emotion_tones(tmp_path / "wav", n_speakers=4, clips_per_class=2, n_classes=2,
                       seconds=(2.5, 5.5), distractors=0)  # fmt: skip
    manifest = write_manifest(df, tmp_path / "m.csv")
    metrics = train(
        from_dict(TrainConfig, tiny_train_config(manifest, tmp_path / "run")), progress=False
    )
    assert metrics["windows"]["hop_seconds"] == WINDOW_HOP_SECONDS
    tested = read_manifest(manifest)
    ids = [
        line.split(",")[0]
        for line in (tmp_path / "run" / "test" / "predictions.csv").read_text().splitlines()[1:]
    ]
    again = evaluate_checkpoint(metrics["checkpoint"], tested[tested["id"].isin(ids)],
                                tmp_path / "eval", progress=False)  # fmt: skip
    assert again["hop_seconds"] == metrics["windows"]["hop_seconds"]
    assert again["n"] == metrics["test"]["n"] and again["uar"] == pytest.approx(
        metrics["test"]["uar"]
    )
    assert again["confusion"] == metrics["test"]["confusion"]
    meta = json.loads((tmp_path / "run" / "best" / "checkpoint.json").read_text())
    assert meta["windows"] == metrics["windows"]
    assert len(clips_of(tested)) == len(tested)
