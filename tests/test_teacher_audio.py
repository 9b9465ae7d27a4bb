"""Audio teachers: tiny HuBERT built locally, LoRA fine-tuning on tones, loading, errors."""

import json
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from liser.config import AudioTeacherConfig, DataConfig
from liser.teachers import TeacherError, load_audio_teacher
from liser.teachers.audio import PoolingHead, load_audio_encoder
from liser.teachers.base import clip_windows
from liser.testing import tiny_hubert, tiny_whisper_ct2, tone


@pytest.fixture(scope="module")
def hubert(tmp_path_factory):
    return tiny_hubert(tmp_path_factory.mktemp("hubert"))


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    """Two classes (low 150-300 Hz, high 1.2-2.4 kHz tones), 8 speakers x 10 clips of 1-2 s."""
    from liser.manifest import make_manifest, write_manifest

    root = tmp_path_factory.mktemp("tones")
    rng = np.random.default_rng(0)
    rows = []
    for speaker in range(8):
        for i in range(10):
            label = ("low", "high")[i % 2]
            freq = rng.uniform(150, 300) if label == "low" else rng.uniform(1200, 2400)
            seconds = float(rng.uniform(1.0, 2.0))
            path = root / f"s{speaker}_{i}.wav"
            sf.write(path, tone(seconds, freq, seed=speaker * 10 + i), 16000)
            rows.append(dict(id=path.stem, path=str(path), start=0.0, duration=seconds,
                             speaker=f"s{speaker}", label=label, corpus="tones"))  # fmt: skip
    return write_manifest(make_manifest(rows), root / "tones.parquet")


def _config(spec, manifest, tmp_path, **changes):
    data = DataConfig(
        manifest=str(manifest),
        classes=("low", "high"),
        folds="speaker",
        n_folds=4,
        fold=1,
        val_fraction=0.3,
    )
    base = dict(spec=str(spec), window_seconds=1.0, hop_seconds=0.5, batch_size=4, epochs=8, patience=3,
                lr=3e-3, head_lr=1e-2, precision="fp32", device="cpu", output_dir=str(tmp_path / "teacher"),
                cache_dir=str(tmp_path / "cache"), data=data)  # fmt: skip
    return AudioTeacherConfig(**(base | changes))


def test_lora_fine_tuning_beats_chance_and_reloads(hubert, tones, tmp_path):
    from liser.teachers.fit_audio import fit_audio_teacher

    folder = fit_audio_teacher(_config(hubert, tones, tmp_path), progress=False)
    meta = json.loads((folder / "teacher.json").read_text())
    assert meta["lora"] and (folder / "adapter.safetensors").is_file()
    assert meta["metrics"]["test_uar"] >= 0.8  # chance is 0.5
    teacher = load_audio_teacher(str(folder))
    assert teacher.classes == ("low", "high")
    # (not multiples of 200 Hz: the tiny model's 80-sample frame hop aliases those to DC)
    waves = np.stack([tone(1.0, 230.0, seed=99), tone(1.0, 1930.0, seed=98)])
    probs = teacher.predict(waves)
    assert probs.shape == (2, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert probs[0].argmax() == 0 and probs[1].argmax() == 1
    # the adapters matter: the same encoder without them gives other outputs
    no_lora = load_audio_encoder(str(hubert))[0]
    with torch.no_grad():
        a = teacher.encoder(torch.from_numpy(waves))[0]
        b = no_lora(torch.from_numpy(waves))[0]
    assert not torch.allclose(a, b, atol=1e-4)
    # the temperature fitted on validation is stored and applied
    stored = json.loads((folder / "calibration.json").read_text())["temperature"]
    assert teacher.temperature == pytest.approx(stored)


def test_frozen_head_uses_the_feature_cache(hubert, tones, tmp_path):
    from liser.teachers.fit_audio import fit_audio_teacher

    config = _config(hubert, tones, tmp_path, freeze_encoder=True, head_epochs=30)
    folder = fit_audio_teacher(config, progress=False)
    meta = json.loads((folder / "teacher.json").read_text())
    assert not meta["lora"] and not (folder / "adapter.safetensors").exists()
    assert meta["metrics"]["test_uar"] >= 0.8
    cached = list((tmp_path / "cache").rglob("*.npz"))
    assert len(cached) == sum(meta["metrics"]["sizes"].values())
    first = {p: p.stat().st_mtime_ns for p in cached}
    fit_audio_teacher(config, progress=False)  # a second fit reads the cache, writes nothing
    assert {p: p.stat().st_mtime_ns for p in cached} == first
    # bf16 encoder outputs are not fp32 ones: another precision gets a cache of its own
    fit_audio_teacher(
        AudioTeacherConfig(**{**config.__dict__, "precision": "bf16"}), progress=False
    )
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 2 * len(cached)


def test_lora_in_top_layers_of_whisper_resumes(tones, tmp_path):
    from liser.teachers.fit_audio import fit_audio_teacher

    spec = tiny_whisper_ct2(tmp_path / "whisper", n_layers=3)
    config = _config(spec, tones, tmp_path, lora_top_layers=1, epochs=2, patience=0)
    folder = fit_audio_teacher(config, progress=False)
    state = json.loads((folder / "resume.json").read_text())
    assert state["epoch"] == 2
    adapter = json.loads((folder / "teacher.json").read_text())
    assert adapter["lora"]
    from safetensors.torch import load_file

    names = list(load_file(folder / "adapter.safetensors"))
    assert names and all(".layers.2." in n for n in names)  # only the top layer is adapted
    (folder / "teacher.json").unlink()
    fit_audio_teacher(AudioTeacherConfig(**{**config.__dict__, "epochs": 3}), progress=False)
    state = json.loads((folder / "resume.json").read_text())
    assert state["epoch"] == 3 and len(state["history"]) == 3  # went on from epoch 2
    assert load_audio_teacher(str(folder)).predict(
        np.zeros((1, 16000), np.float32) + 0.01
    ).shape == (1, 2)


def test_lora_adapts_the_top_layers_the_head_reads(tones, tmp_path):
    """A head on layer 2 of 4 reads layers 0-1: LoRA goes there, not into layers 2-3 it never
    sees, and the teacher saved with them reloads."""
    from safetensors.torch import load_file

    from liser.teachers.audio import lora_layers
    from liser.teachers.fit_audio import fit_audio_teacher

    assert lora_layers(AudioTeacherConfig(layer="2", lora_top_layers=1), 4) == (1, 2)
    assert lora_layers(AudioTeacherConfig(layer="weighted", lora_top_layers=1), 4) == (3, 4)
    assert lora_layers(AudioTeacherConfig(layer="2", lora_top_layers=0), 4) == (0, 2)
    with pytest.raises(TeacherError, match="layer 0"):
        lora_layers(AudioTeacherConfig(layer="0", lora_top_layers=1), 4)
    spec = tiny_whisper_ct2(tmp_path / "whisper", n_layers=4)
    config = _config(spec, tones, tmp_path, layer="2", lora_top_layers=1, epochs=2, patience=0)
    folder = fit_audio_teacher(config, progress=False)
    names = list(load_file(folder / "adapter.safetensors"))
    assert names and all(".layers.1." in n for n in names)
    meta = json.loads((folder / "teacher.json").read_text())
    teacher = load_audio_teacher(str(folder))
    waves = np.random.default_rng(0).normal(0, 0.1, (3, 16000)).astype(np.float32)
    probs = teacher.predict(waves)
    assert probs.shape == (3, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert meta["metrics"]["test_uar"] >= 0.8, meta["metrics"]  # cached lower layers + LoRA learn


def test_missing_hub_model_fails_at_once_with_a_hint():
    started = time.time()
    with pytest.raises(TeacherError, match="local path"):
        load_audio_teacher("facebook/hubert-base-ls960")
    assert time.time() - started < 2.0
    with pytest.raises(TeacherError, match="no such file"):
        load_audio_teacher("./no/such/folder")


def test_bare_encoder_is_not_a_teacher(hubert, tmp_path):
    with pytest.raises(TeacherError, match="fit-audio"):
        load_audio_teacher(str(hubert))
    with pytest.raises(TeacherError, match="fit-audio"):
        load_audio_teacher(str(tiny_whisper_ct2(tmp_path / "w")))


def test_pooling_ignores_padding_and_batches_agree(hubert):
    encoder, _ = load_audio_encoder(str(hubert))
    head = PoolingHead(encoder.n_hidden, encoder.dim, 3).eval()
    wave = tone(0.6, 440.0)
    windows, lengths = clip_windows(wave, 16000, 8000)
    assert windows.shape == (1, 16000) and lengths.tolist() == [9600]
    with torch.no_grad():
        hidden, mask = encoder(torch.from_numpy(windows), torch.from_numpy(lengths))
        assert 0 < mask.sum() < mask.numel()
        pooled = head.pool(hidden, mask)
        expected = hidden[:, 0, mask[0]].mean(1)
        assert torch.allclose(pooled[0], expected, atol=1e-5)
        # weighted layers: softmax weights of the learned logits
        head.layer_logits.data = torch.tensor([0.0, 100.0, 0.0])
        one = PoolingHead(encoder.n_hidden, encoder.dim, 3, layer="1").eval()
        one.linear.load_state_dict(head.linear.state_dict())
        assert torch.allclose(head(pooled), one(pooled), atol=1e-4)


def test_clip_windows_cover_the_clip():
    wave = np.arange(35, dtype=np.float32)
    windows, lengths = clip_windows(wave, 10, 10)
    assert windows[:, 0].tolist() == [0, 10, 20, 25] and lengths.tolist() == [10] * 4
    tiled, n = clip_windows(np.array([1, 2, 3], np.float32), 7, 7, pad="repeat")
    assert tiled.tolist() == [[1, 2, 3, 1, 2, 3, 1]] and n.tolist() == [7]


def test_student_checkpoint_and_ensemble_as_teacher(tmp_path):
    checkpoint = pytest.importorskip("liser.checkpoint")
    from liser.config import FrontEndConfig, StudentConfig, to_dict
    from liser.student import Student

    frontend = FrontEndConfig()
    folders = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = Student(StudentConfig(n_classes=3, n_audio_classes=3), frontend)
        meta = {"config": {}, "classes": ["a", "b", "c"], "audio_classes": ["a", "b", "c"],
                "video_classes": list("abcdefg"), "frontend": to_dict(frontend), "metrics": {}, "seed": seed}  # fmt: skip
        checkpoint.save_checkpoint(tmp_path / f"s{seed}", model, meta)
        folders.append(str(tmp_path / f"s{seed}"))
    waves = np.stack([tone(3.0, 300.0), tone(3.0, 900.0)])
    # fp32 pinned: "auto" is bf16 on CPUs with native bf16 (AVX512-BF16, AMX), fp32 elsewhere
    single = [load_audio_teacher(f, precision="fp32").predict(waves) for f in folders]
    ensemble = load_audio_teacher(",".join(folders), precision="fp32")
    assert ensemble.classes == ("a", "b", "c")
    assert np.allclose(ensemble.predict(waves), (single[0] + single[1]) / 2, atol=1e-5)
    # the student's own supervised head: softmax of its logits
    model, _ = checkpoint.load_checkpoint(folders[0])
    from liser.features import LogMel

    with torch.no_grad():
        logits = model(LogMel(frontend)(torch.from_numpy(waves)))["logits"]
    reference = torch.softmax(logits, -1).numpy()
    assert np.allclose(single[0], reference, atol=1e-5)
    # bf16 (forced, so that every CPU runs it): within bf16's 8-bit mantissa of the fp32 result
    bf16 = load_audio_teacher(folders[0], precision="bf16")
    assert bf16.dtype == torch.bfloat16
    assert np.allclose(bf16.predict(waves), reference, atol=2e-2)


def test_head_weight_decay_shrinks_the_linear_layer_only(hubert, tones, tmp_path):
    from safetensors.torch import load_file

    from liser.teachers.fit_audio import fit_audio_teacher

    norms = {}
    for decay in (0.0, 100.0):
        config = _config(hubert, tones, tmp_path, freeze_encoder=True, head_epochs=6, patience=10,
                         head_weight_decay=decay, output_dir=str(tmp_path / f"wd{decay}"))  # fmt: skip
        head = load_file(fit_audio_teacher(config, progress=False) / "head.safetensors")
        norms[decay] = (
            head["linear.weight"].norm().item(),
            head["layer_logits"].abs().max().item(),
        )
    assert norms[100.0][0] < 0.5 * norms[0.0][0]  # the linear layer is pulled toward zero
    assert norms[100.0][1] > 0.1 * norms[0.0][1]  # the layer weights keep their own, small decay
