import csv
import io
import json

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

import liser
from liser.config import FrontEndConfig
from liser.deploy import FrontEndMismatch, format_predictions, iter_windows, predict_waveform
from liser.testing import student_checkpoint, tone
from liser.windows import WindowSpec, window_starts

CLASSES = ("angry", "happy", "neutral", "sad")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return student_checkpoint(tmp_path_factory.mktemp("ckpt"), CLASSES)


@pytest.fixture(scope="module")
def model(checkpoint):
    return liser.load(checkpoint, device="cpu")


@pytest.mark.parametrize("n", [1, 7, 29, 30, 31, 45, 50, 99, 100, 1234])
def test_streamed_windows_match_window_starts_for_any_chunking(n):
    rng = np.random.default_rng(n)
    wave = rng.standard_normal(n).astype(np.float32)
    for window, hop in [(30, 10), (30, 20), (30, 30), (30, 45)]:
        expected = window_starts(n, window, hop, hop // 2) or [0]
        for chunk in (1, 13, 30, 1000):
            chunks = [wave[i : i + chunk] for i in range(0, n, chunk)]
            spec = WindowSpec(window, hop)  # seconds at a rate of 1 sample per second
            assert spec.starts(n, rate=1) == expected
            got = list(iter_windows(chunks, spec, 1))
            assert [s for s, _ in got] == expected
            for start, samples in got:
                np.testing.assert_array_equal(samples, wave[start : start + window])


def test_half_second_wave_gives_one_padded_window(model):
    result = model.predict(tone(0.5), 16000)
    assert len(result["windows"]) == 1
    assert result["windows"][0]["start"] == 0.0
    assert result["windows"][0]["end"] == pytest.approx(0.5)
    assert result["duration"] == pytest.approx(0.5)
    assert sum(result["probs"].values()) == pytest.approx(1.0, abs=1e-5)
    assert list(result["probs"]) == list(CLASSES)
    assert result["label"] == max(result["probs"], key=result["probs"].get)


def test_ten_second_wave_windows_and_file_mean(model, checkpoint):
    result = model.predict(tone(10.0, 300), 16000)
    # the front end's windows (as in training): every 1 s while they fit (0 .. 7 s)
    assert [w["start"] for w in result["windows"]] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    assert all(w["end"] - w["start"] == pytest.approx(3.0) for w in result["windows"])
    for w in result["windows"]:
        assert sum(w["probs"].values()) == pytest.approx(1.0, abs=1e-5)
    mean = np.mean([[w["probs"][c] for c in CLASSES] for w in result["windows"]], axis=0)
    np.testing.assert_allclose([result["probs"][c] for c in CLASSES], mean, atol=2e-6)
    hop3 = liser.load(checkpoint, "cpu", hop_seconds=3.0).predict(tone(10.0, 300))
    # the last 1 s is less than half a hop: no end-aligned window for it
    assert [w["start"] for w in hop3["windows"]] == [0.0, 3.0, 6.0]


def test_channels_rates_and_batch_size_do_not_change_results(model, checkpoint):
    wave = tone(4.0, 250)
    mono = model.predict(wave, 16000)
    stereo = model.predict(np.stack([wave, wave], axis=1), 16000)
    assert stereo["probs"] == pytest.approx(mono["probs"], abs=1e-5)
    small = liser.load(checkpoint, "cpu", batch_size=1).predict(wave)
    assert small["probs"] == pytest.approx(mono["probs"], abs=1e-5)
    import soxr

    at_8k = model.predict(soxr.resample(wave, 16000, 8000), 8000)
    assert at_8k["duration"] == pytest.approx(4.0)
    assert len(at_8k["windows"]) == len(mono["windows"])
    pcm = model.predict(np.round(wave * 32768).astype(np.int16), 16000)
    assert pcm["probs"] == pytest.approx(mono["probs"], abs=1e-4)
    with pytest.raises(ValueError, match="NaN"):
        model.predict(np.full(16000, np.nan, np.float32))


def test_predict_file_streams_to_the_same_result(model, tmp_path):
    wave = tone(10.0, 300)
    path = tmp_path / "long.flac"
    sf.write(path, wave, 16000)
    from_file = model.predict_file(path, chunk_seconds=0.7)
    in_memory = model.predict(wave, 16000)
    assert from_file["path"] == str(path)
    assert len(from_file["windows"]) == 8
    for a, b in zip(from_file["windows"], in_memory["windows"], strict=True):
        assert a["start"] == b["start"]
        assert a["probs"] == pytest.approx(b["probs"], abs=1e-4)


def test_predict_waveform_function(checkpoint):
    model, meta = liser.checkpoint.load_checkpoint(checkpoint)
    result = predict_waveform(model, meta, tone(3.5), 16000, hop_seconds=0.25)
    assert [w["start"] for w in result["windows"]] == [0.0, 0.25, 0.5]


def test_bad_files_are_reported_and_the_others_processed(model, tmp_path):
    good = tmp_path / "a.wav"
    sf.write(good, tone(2.0), 16000)
    empty = tmp_path / "b.wav"
    empty.write_bytes(b"")
    silent = tmp_path / "c.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    garbage = tmp_path / "d.mp3"
    garbage.write_bytes(b"\x00garbage" * 100)
    tiny = tmp_path / "e.wav"
    sf.write(tiny, tone(0.05), 16000)
    (tmp_path / "f.wav").symlink_to(tmp_path / "gone.wav")
    missing = tmp_path / "missing.wav"
    results = model.predict_files([tmp_path, missing], progress=False)
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in results}
    assert list(by_name) == ["a.wav", "b.wav", "c.wav", "d.mp3", "e.wav", "f.wav", "missing.wav"]
    assert "not found" in by_name["f.wav"]["error"]
    assert by_name["a.wav"]["label"] in CLASSES
    assert "empty" in by_name["b.wav"]["error"]
    assert "silent" in by_name["c.wav"]["error"]
    assert "decode" in by_name["d.mp3"]["error"]
    assert "too short" in by_name["e.wav"]["error"]
    assert "not found" in by_name["missing.wav"]["error"]


def test_load_predict_file_end_to_end(checkpoint, tmp_path):
    path = tmp_path / "speech.wav"
    sf.write(path, tone(5.5, 220, sample_rate=44100, seed=2), 44100)
    model = liser.load(checkpoint, device="cpu")
    assert model.classes == CLASSES
    result = model.predict_file(path)
    assert result["duration"] == pytest.approx(5.5, abs=1e-3)
    # every 1 s while they fit (0 .. 2 s), one more aligned to the end for the 0.5 s tail
    assert [w["start"] for w in result["windows"]] == [0.0, 1.0, 2.0, 2.5]
    assert result["label"] in CLASSES
    json.dumps(result)  # plain data


def test_front_end_mismatch_is_a_clear_error(checkpoint):
    with pytest.raises(FrontEndMismatch, match="n_mels: 64 != 40"):
        liser.load(checkpoint, "cpu", frontend=FrontEndConfig(n_mels=40))
    liser.load(checkpoint, "cpu", frontend=FrontEndConfig())  # the same one is fine


def test_output_formats(model):
    results = [
        {"path": "a.wav", **model.predict(tone(4.0))},
        {"path": "b.wav", "error": "empty file (0 bytes)"},
    ]
    rows = list(csv.DictReader(io.StringIO(format_predictions(results, "csv", CLASSES))))
    assert [r["level"] for r in rows] == ["file", "window", "window", "error"]
    assert rows[0]["label"] == results[0]["label"]
    assert float(rows[2]["start"]) == 1.0 and float(rows[2]["end"]) == 4.0
    assert sum(float(rows[1][c]) for c in CLASSES) == pytest.approx(1.0, abs=1e-5)
    assert rows[3]["error"] == "empty file (0 bytes)"
    lines = format_predictions(results, "jsonl", CLASSES).splitlines()
    assert [json.loads(line)["path"] for line in lines] == ["a.wav", "b.wav"]
    assert json.loads(format_predictions(results, "json", CLASSES)) == json.loads(
        json.dumps(results)
    )
    with pytest.raises(ValueError, match="format"):
        format_predictions(results, "xml", CLASSES)


def test_cli_predict(checkpoint, tmp_path):
    from liser.cli import app

    good = tmp_path / "a.wav"
    sf.write(good, tone(2.0), 16000)
    bad = tmp_path / "b.wav"
    bad.write_bytes(b"")
    runner = CliRunner()
    result = runner.invoke(app, ["predict", str(checkpoint), str(good), str(bad), "--quiet"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out.csv"
    result = runner.invoke(
        app,
        ["predict", str(checkpoint), str(tmp_path), "-o", str(out), "--window", "1", "--hop", "1"],
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert [r["level"] for r in rows] == ["file", "window", "window", "error"]
    result = runner.invoke(app, ["predict", str(checkpoint), str(bad)])
    assert result.exit_code == 1
