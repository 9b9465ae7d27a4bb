"""CTranslate2 model.bin reader and Whisper encoders (ours vs transformers vs ctranslate2)."""

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from liser.teachers.ct2 import CT2FormatError, read_ct2, whisper_encoder_from_ct2, write_ct2
from liser.teachers.whisper import N_SAMPLES_30S, WhisperLogMel, load_whisper_encoder
from liser.testing import tiny_whisper_ct2, tone


def test_model_bin_round_trips_every_dtype(tmp_path):
    g = torch.Generator().manual_seed(0)
    variables = {
        "encoder/a/weight": torch.randn(4, 3, generator=g),
        "encoder/b/weight": torch.randn(2, 5, generator=g).half(),
        "encoder/c": torch.randn(7, generator=g).bfloat16(),
        "encoder/d/weight": torch.randint(-127, 127, (3, 2), dtype=torch.int8),
        "encoder/e": torch.tensor(8, dtype=torch.int16),
        "encoder/f": torch.arange(6, dtype=torch.int32).view(1, 2, 3),
        "decoder/g": torch.ones(2),
    }
    write_ct2(tmp_path / "model.bin", variables, aliases={"decoder/h": "decoder/g"})
    model = read_ct2(tmp_path)
    assert model.spec == "WhisperSpec" and model.revision == 3
    assert model.aliases == {"decoder/h": "decoder/g"}
    for name, tensor in variables.items():
        got = model.variables[name]
        assert got.dtype == tensor.dtype and got.shape == tensor.shape and torch.equal(got, tensor)
    assert torch.equal(model.variables["decoder/h"], variables["decoder/g"])
    assert set(read_ct2(tmp_path, prefix="encoder/").variables) == {
        n for n in variables if n[0] == "e"
    }


def test_model_bin_layout_is_the_documented_one(tmp_path):
    """Bytes written by hand from the format in ../shared/bin/get-whisper's header."""

    def string(s):
        raw = s.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    data = struct.pack("<I", 6) + string("WhisperSpec") + struct.pack("<II", 3, 1)
    data += string("encoder/x") + struct.pack("<BII", 2, 2, 1) + struct.pack("<BI", 4, 4)
    data += np.array([1.5, -2.0], np.float16).tobytes() + struct.pack("<I", 0)
    (tmp_path / "model.bin").write_bytes(data)
    x = read_ct2(tmp_path).variables["encoder/x"]
    assert x.dtype == torch.float16 and x.shape == (2, 1) and x.flatten().tolist() == [1.5, -2.0]
    (tmp_path / "model.bin").write_bytes(data[:-7])
    with pytest.raises(CT2FormatError, match="truncated"):
        read_ct2(tmp_path)
    (tmp_path / "model.bin").write_bytes(struct.pack("<I", 99) + data[4:])
    with pytest.raises(CT2FormatError, match="version 99"):
        read_ct2(tmp_path)


def test_int8_weights_are_dequantized(tmp_path):
    w = torch.tensor([[0.5, -1.0], [2.0, 0.25]])
    scale = 127.0 / w.abs().amax(1)
    q = torch.round(w * scale[:, None]).to(torch.int8)
    from liser.teachers.ct2 import dequantize

    out = dequantize({"x/weight": q, "x/weight_scale": scale})
    assert set(out) == {"x/weight"} and torch.allclose(out["x/weight"], w, atol=0.01)


def _reference_encoder(encoder):
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    d = encoder.dims
    config = WhisperConfig(num_mel_bins=d.n_mels, d_model=d.d_model, encoder_layers=d.n_layers,
                           encoder_attention_heads=d.n_heads, encoder_ffn_dim=d.ffn_dim,
                           max_source_positions=d.n_ctx, decoder_layers=1)  # fmt: skip
    reference = WhisperEncoder(config).eval()
    reference.load_state_dict(encoder.encoder.state_dict())
    return reference


def test_encoder_from_model_bin_matches_transformers(tmp_path):
    folder = tiny_whisper_ct2(tmp_path)
    dims, state = whisper_encoder_from_ct2(read_ct2(folder))
    assert (dims.n_mels, dims.d_model, dims.n_heads, dims.n_layers, dims.n_ctx) == (
        80,
        32,
        2,
        2,
        1500,
    )
    encoder = load_whisper_encoder(folder, pad_30s=True)
    reference = _reference_encoder(encoder)
    wave = torch.from_numpy(tone(3.0, 440.0))[None]
    with torch.no_grad():
        hidden, mask = encoder(wave)
        mel = encoder.frontend(F.pad(wave, (0, N_SAMPLES_30S - wave.shape[1])))
        out = reference(mel, output_hidden_states=True)
    assert hidden.shape == (3, 1, 1500, 32) and mask.sum() == 150
    assert torch.allclose(hidden[-1], out.last_hidden_state, atol=1e-5)
    for ours, theirs in zip(hidden, out.hidden_states, strict=True):
        assert torch.allclose(ours, theirs, atol=1e-5)
    # the window's own frames: 3 s -> 150 encoder frames, positions 0..149 of the table
    short = load_whisper_encoder(folder)
    with torch.no_grad():
        own, own_mask = short(wave)
        x = F.gelu(reference.conv2(F.gelu(reference.conv1(short.frontend(wave))))).permute(0, 2, 1)
        x = x + reference.embed_positions.weight[:150]
        for layer in reference.layers:
            x = layer(x, None)
    assert own.shape == (3, 1, 150, 32) and bool(own_mask.all())
    assert torch.allclose(own[-1], reference.layer_norm(x), atol=1e-5)


def test_front_end_matches_transformers_feature_extractor():
    from transformers import WhisperFeatureExtractor

    wave = tone(2.0, 300.0) + tone(2.0, 3000.0, amplitude=0.1, seed=1)
    expected = WhisperFeatureExtractor(feature_size=80)(
        wave, sampling_rate=16000, return_tensors="np"
    ).input_features
    ours = WhisperLogMel(80)(F.pad(torch.from_numpy(wave), (0, N_SAMPLES_30S - len(wave)))[None])
    assert ours.shape == expected.shape == (1, 80, 3000)
    assert np.abs(ours.numpy() - expected).max() < 1e-4
    assert WhisperLogMel(128)(torch.from_numpy(wave)[None]).shape == (1, 128, 200)


def test_hf_whisper_folder_loads_the_same_encoder(tmp_path):
    from transformers import WhisperConfig, WhisperModel

    config = WhisperConfig(num_mel_bins=80, d_model=32, encoder_layers=2, encoder_attention_heads=2,
                           decoder_layers=1, decoder_attention_heads=2, encoder_ffn_dim=64,
                           decoder_ffn_dim=64, max_target_positions=16)  # fmt: skip
    torch.manual_seed(0)
    WhisperModel(config).save_pretrained(tmp_path)
    encoder = load_whisper_encoder(tmp_path)
    reference = WhisperModel.from_pretrained(tmp_path).encoder
    assert all(
        torch.equal(v, reference.state_dict()[k]) for k, v in encoder.encoder.state_dict().items()
    )


@pytest.mark.shared
def test_real_whisper_matches_ctranslate2(shared):
    folder = os.environ.get("LISER_WHISPER_DIR")
    if not folder or not (Path(folder) / "model.bin").is_file():
        pytest.skip(
            "set LISER_WHISPER_DIR to a CTranslate2 Whisper folder (../shared/bin/get-whisper)"
        )
    ctranslate2 = pytest.importorskip("ctranslate2")
    from liser.audio import load_audio

    wave = load_audio(shared / "data/ravdess/Actor_01/03-01-05-02-01-01-01.flac")[:48000]
    model = ctranslate2.models.Whisper(folder, device="cpu", compute_type="float32")
    for pad_30s in (False, True):
        encoder = load_whisper_encoder(folder, pad_30s=pad_30s)
        x = torch.from_numpy(wave)[None]
        with torch.no_grad():
            hidden, _ = encoder(x)
            mel = encoder.frontend(F.pad(x, (0, N_SAMPLES_30S - x.shape[1])) if pad_30s else x)
        expected = np.array(
            model.encode(ctranslate2.StorageView.from_array(mel.numpy()), to_cpu=True)
        )
        assert expected.shape == tuple(hidden[-1].shape)
        assert np.abs(hidden[-1].numpy() - expected).max() < 5e-3 * np.abs(expected).max()


def test_a_head_on_one_layer_runs_only_the_layers_below_it(tmp_path):
    from liser.config import AudioTeacherConfig
    from liser.teachers.audio import EncoderTeacher, PoolingHead

    folder = tiny_whisper_ct2(tmp_path, n_layers=3)
    encoder = load_whisper_encoder(folder)
    waves = torch.from_numpy(np.stack([tone(3.0, 300.0), tone(3.0, 520.0)]))
    lengths = torch.tensor([48000, 30000])
    ran = []
    for layer in encoder.layers:
        layer.register_forward_hook(lambda *_: ran.append(1))
    with torch.no_grad():
        full, mask = encoder(waves, lengths)
        ran.clear()
        part, part_mask = encoder(waves, lengths, depth=2)
    assert len(ran) == 2 and part.shape[0] == 3 and torch.equal(mask, part_mask)
    assert torch.allclose(part, full[:3], atol=1e-6)  # below the last layer: no final layer norm

    def teacher(layer: str) -> EncoderTeacher:
        torch.manual_seed(0)
        head = PoolingHead(encoder.n_hidden, encoder.dim, 4, layer).eval()
        head.norm.running_mean.uniform_(-1, 1)
        head.norm.running_var.uniform_(0.5, 2)
        config = AudioTeacherConfig(spec=str(folder), layer=layer, precision="fp32")
        return EncoderTeacher(encoder, head, "abcd", "x", config).eval()

    for layer, layers_run in (("1", 1), ("2", 2), ("3", 3), ("last", 3), ("weighted", 3)):
        one = teacher(layer)
        ran.clear()
        with torch.no_grad():
            got = one.logits(waves, lengths)
            assert len(ran) == layers_run * 1
            want = one.head(one.head.pool(*encoder(waves, lengths)))
        assert torch.allclose(got, want, atol=1e-5), layer
