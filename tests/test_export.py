import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

import liser
from liser.checkpoint import load_checkpoint, save_checkpoint
from liser.cli import app
from liser.deploy import export_onnx, onnx_metadata, run_onnx
from liser.testing import student_checkpoint, tone

CLASSES = ("angry", "happy", "neutral", "sad")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    checkpoint = student_checkpoint(folder / "ckpt", CLASSES, seed=3)
    # a fresh student answers almost uniformly; sharpen its head so that parity checks bite
    model, meta = load_checkpoint(checkpoint)
    with torch.no_grad():
        model.heads["logits"].weight.mul_(200.0)
    save_checkpoint(checkpoint, model, meta)
    fp32 = export_onnx(checkpoint, folder / "model.onnx")
    int8 = export_onnx(checkpoint, folder / "model.int8.onnx", int8=True)
    return checkpoint, fp32, int8


def _torch_probs(checkpoint, waves: np.ndarray) -> np.ndarray:
    model = liser.load(checkpoint, device="cpu")
    return model.window_probs(waves)


def test_onnx_matches_pytorch_on_random_and_tonal_audio(exported):
    checkpoint, fp32, _ = exported
    rng = np.random.default_rng(0)
    waves = np.stack(
        [0.1 * rng.standard_normal(48000), tone(3.0, 180.0), tone(3.0, 440.0, amplitude=0.8)]
    ).astype(np.float32)
    expected = _torch_probs(checkpoint, waves)
    got = run_onnx(fp32["path"], waves)
    assert got.shape == (3, len(CLASSES))
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # the three inputs do not all get the same answer: the check is not vacuous
    assert np.abs(expected[0] - expected[2]).max() > 0.05


def test_onnx_matches_pytorch_on_real_speech(exported, shared):
    checkpoint, fp32, _ = exported
    from liser.audio import load_audio
    from liser.windows import fit_window

    clip = next((shared / "data/ravdess/Actor_01").glob("03-01-05-*.flac"))
    wave = fit_window(load_audio(clip), 48000)[None]
    np.testing.assert_allclose(
        run_onnx(fp32["path"], wave), _torch_probs(checkpoint, wave), atol=1e-4
    )


def test_dynamic_batch_and_length(exported):
    _, fp32, _ = exported
    for batch, seconds in [(1, 1.0), (4, 3.0), (2, 7.5)]:
        waves = np.random.default_rng(batch).standard_normal((batch, int(seconds * 16000)))
        probs = run_onnx(fp32["path"], 0.1 * waves.astype(np.float32))
        assert probs.shape == (batch, len(CLASSES))
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_metadata_carries_classes_and_front_end(exported):
    checkpoint, fp32, _ = exported
    meta = onnx_metadata(fp32["path"])
    assert meta["classes"] == list(CLASSES)
    assert meta["sample_rate"] == 16000
    assert meta["window_seconds"] == 3.0
    stored = json.loads((checkpoint / "checkpoint.json").read_text())["frontend"]
    assert meta["frontend"] == stored


def test_int8_is_smaller_and_close(exported):
    _, fp32, int8 = exported
    assert int8["bytes"] < 0.75 * fp32["bytes"]
    assert int8["bytes"] <= 1_000_000
    front_end = [n for n in onnx.load(int8["path"]).graph.node if "/logmel/" in n.name]
    assert {n.op_type for n in front_end} >= {"Conv", "MatMul"}  # the DFT and mel stay fp32
    assert not any("Integer" in n.op_type or "Quant" in n.op_type for n in front_end)
    assert "DynamicQuantizeLSTM" in {n.op_type for n in onnx.load(int8["path"]).graph.node}
    waves = np.stack([tone(3.0, f) for f in (150, 300, 600)])
    a, b = run_onnx(fp32["path"], waves), run_onnx(int8["path"], waves)
    assert np.abs(a - b).max() < 0.25  # logits are sharpened x200 above; UAR parity: benchmarks
    assert (a.argmax(1) == b.argmax(1)).mean() >= 2 / 3


def test_cli_export_and_onnx_only_example(exported, tmp_path):
    checkpoint, _, _ = exported
    out = tmp_path / "cli.onnx"
    result = CliRunner().invoke(app, ["export", str(checkpoint), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists() and "max |onnx - torch|" in result.output
    wav = tmp_path / "speech.wav"
    sf.write(wav, tone(4.2, 220.0), 16000)
    run = subprocess.run(
        [sys.executable, "examples/onnx_predict.py", str(out), str(wav)],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = run.stdout.strip().splitlines()
    assert sorted(line.split()[0] for line in lines) == sorted(CLASSES)
    assert sum(float(line.split()[1]) for line in lines) == pytest.approx(1.0, abs=2e-3)


def test_export_of_missing_checkpoint_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(
        app, ["export", str(tmp_path / "nope"), "-o", str(tmp_path / "m.onnx")]
    )
    assert result.exit_code == 2
    assert "nope" in result.output


def test_export_leaves_torch_state_and_the_checkpoint_alone(tmp_path):
    import hashlib

    checkpoint = student_checkpoint(tmp_path / "c", CLASSES, seed=3)

    def state():
        files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in checkpoint.iterdir()}
        return torch.is_grad_enabled(), torch.get_num_threads(), torch.get_default_dtype(), files

    before = state()
    first = export_onnx(checkpoint, tmp_path / "a.onnx")
    second = export_onnx(checkpoint, tmp_path / "b.onnx")
    assert state() == before  # grad mode, threads, dtype, and the checkpoint's files unchanged
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()  # deterministic
    assert first["max_abs_diff"] < 1e-4 and second["max_abs_diff"] < 1e-4
