"""liser.features: mel filterbank, log-Mel (torch.stft and conv/ONNX paths), normalisation, cache."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import liser.audio
from liser.config import FrontEndConfig
from liser.features import (
    FeatureCache,
    LogMel,
    cached_features,
    features_for_clips,
    frontend_fingerprint,
    hz_to_mel,
    mel_filterbank,
    mel_to_hz,
)
from liser.testing import tone

SR = 16000

# Reference values from librosa 0.11.0, computed in a throwaway venv (librosa is not a liser
# dependency) with: librosa.filters.mel(sr=16000, n_fft=512, n_mels=64, fmin=0.0, fmax=8000.0,
# htk=False, norm="slaney")[m, k]
LIBROSA_64 = [
    (0, 1, 0.014511281624436378),
    (0, 2, 0.014075512066483498),
    (1, 2, 0.007473526056855917),
    (5, 8, 0.00834506656974554),
    (10, 16, 0.01669013313949108),
    (20, 30, 0.004316352773457766),
    (30, 51, 0.00952316727489233),
    (33, 60, 0.0036956346593797207),
    (40, 81, 0.007854706607758999),
    (40, 83, 0.004457242786884308),
    (50, 131, 0.00510024419054389),
    (50, 134, 0.002716538030654192),
    (63, 244, 0.002730021486058831),
    (63, 250, 0.0013737118570134044),
    (40, 90, 0.0),
    (63, 256, 0.0),
]
# fb.sum(axis=1)[[0, 15, 31, 47, 63]] and fb.argmax(axis=1) of the same matrix
LIBROSA_64_ROW_SUMS = [0.028586793690919876, 0.032138384878635406, 0.03220459073781967]
LIBROSA_64_ROW_SUMS += [0.03182991221547127, 0.03201951086521149]
LIBROSA_64_ARGMAX = [1, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16, 18, 19, 21, 22, 24, 25, 27, 28, 30, 31]
LIBROSA_64_ARGMAX += [33, 34, 36, 38, 40, 42, 44, 46, 48, 50, 53, 55, 58, 61, 64, 67, 70, 74, 77]
LIBROSA_64_ARGMAX += [81, 85, 89, 94, 98, 103, 108, 113, 119, 125, 131, 137, 144, 151, 159, 166]
LIBROSA_64_ARGMAX += [175, 183, 192, 202, 211, 222, 233, 244]
# librosa.filters.mel(sr=16000, n_fft=400, n_mels=40, fmin=50.0, fmax=7600.0, htk=False,
# norm="slaney")[m, k]
LIBROSA_40 = [
    (0, 2, 0.005928213242441416),
    (0, 3, 0.013832497410476208),
    (7, 17, 0.0020230403169989586),
    (20, 44, 0.007320383097976446),
    (39, 177, 0.0018652317812666297),
    (39, 188, 0.0002869587333407253),
]
# librosa.hz_to_mel([0, 500, 1000, 2000, 8000], htk=False)
LIBROSA_MELS = [0.0, 7.499999999999999, 14.999999999999998, 25.08188015730832, 45.245640471924965]


def test_mel_scale_matches_librosa():
    hz = np.array([0.0, 500.0, 1000.0, 2000.0, 8000.0])
    np.testing.assert_allclose(hz_to_mel(hz), LIBROSA_MELS, atol=1e-9)
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(hz)), hz, atol=1e-6)


def test_mel_filterbank_matches_librosa():
    fb = mel_filterbank(16000, 512, 64, 0.0, 8000.0)
    assert fb.shape == (64, 257) and fb.dtype == torch.float32
    for m, k, value in LIBROSA_64:
        assert fb[m, k].item() == pytest.approx(value, abs=1e-6), (m, k)
    np.testing.assert_allclose(fb.sum(1)[[0, 15, 31, 47, 63]], LIBROSA_64_ROW_SUMS, atol=1e-6)
    assert fb.argmax(1).tolist() == LIBROSA_64_ARGMAX
    fb = mel_filterbank(16000, 400, 40, 50.0, 7600.0)
    assert fb.shape == (40, 201)
    for m, k, value in LIBROSA_40:
        assert fb[m, k].item() == pytest.approx(value, abs=1e-6), (m, k)
    assert not fb[:, :2].any() and not fb[:, 191:].any()  # nothing outside 50..7600 Hz


def test_conv_stft_matches_torch_stft():
    frontend = FrontEndConfig()
    wave = torch.from_numpy(np.stack([tone(1.3, 440.0), tone(1.3, 2500.0, seed=1)]))  # (2, 20800)
    spec = torch.stft(
        wave,
        512,
        160,
        400,
        window=torch.hann_window(400),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    reference = spec.abs().square()
    conv = LogMel(frontend, stft="conv").power_spectrum(wave)
    assert conv.shape == reference.shape == (2, 257, 20800 // 160 + 1)
    assert ((conv - reference).abs().max() / reference.abs().max()).item() < 1e-5
    for mode in ("conv", "torch"):
        a = LogMel(dataclasses.replace(frontend, normalize="none"), stft=mode)(wave)
        b = LogMel(dataclasses.replace(frontend, normalize="none"), stft="torch")(wave)
        assert (a - b).abs().max().item() < 1e-3


@pytest.mark.parametrize("n_samples", [300, 16000, 47999, 48000, 48160])
def test_log_mel_shape_and_batching(n_samples):
    logmel = LogMel(FrontEndConfig())
    waves = torch.from_numpy(
        np.stack([tone(n_samples / SR, 300.0 * (i + 1), seed=i) for i in range(3)])
    )
    out = logmel(waves)
    assert out.shape == (3, 64, n_samples // 160 + 1) and out.dtype == torch.float32
    torch.testing.assert_close(out[1:2], logmel(waves[1:2]), atol=1e-5, rtol=1e-5)
    if n_samples == 48000:
        assert out.shape[-1] == FrontEndConfig().n_frames == 301


def test_a_tone_lights_the_mel_band_of_its_frequency():
    logmel = LogMel(FrontEndConfig(normalize="none"))
    centres = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(8000.0), 66))[1:-1]
    for freq in (250.0, 1000.0, 3000.0):
        features = logmel(torch.from_numpy(tone(1.0, freq, amplitude=0.5))[None])
        band = int(features[0].mean(-1).argmax())
        assert band == int(np.argmin(np.abs(centres - freq))), freq


def test_log_floor_on_silence_and_autocast():
    frontend = FrontEndConfig(normalize="none")
    out = LogMel(frontend)(torch.zeros(1, 16000))
    torch.testing.assert_close(out, torch.full_like(out, np.log(frontend.log_floor)))
    wave = torch.from_numpy(tone(1.0))[None]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = LogMel(frontend)(wave)
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, LogMel(frontend)(wave))


def test_utterance_normalisation():
    logmel = LogMel(FrontEndConfig(normalize="utterance"))
    wave = torch.from_numpy(np.stack([tone(3.0, 440.0), tone(3.0, 900.0, seed=3)]))
    out = logmel(wave)
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 64), atol=1e-4, rtol=0)
    active = out.std(-1, unbiased=False)
    assert ((active - 1).abs() < 1e-2).float().mean() > 0.9  # unit variance per band
    torch.testing.assert_close(logmel(3 * wave), out, atol=2e-3, rtol=0)  # gain invariant


def test_global_normalisation_from_training_statistics():
    logmel = LogMel(FrontEndConfig(normalize="global"))
    waves = torch.from_numpy(np.stack([tone(1.0, 200.0 * (i + 1), seed=i) for i in range(6)]))
    with pytest.raises(RuntimeError, match="fit_global_stats"):
        logmel(waves)
    raw = logmel.log_mel(waves)
    logmel.fit_global_stats([raw[:2], raw[2:5], raw[5]])  # batches and a single example
    flat = raw.transpose(0, 1).reshape(64, -1).double()
    torch.testing.assert_close(logmel.mean, flat.mean(1).float())
    torch.testing.assert_close(logmel.std, flat.std(1, unbiased=False).float())
    out = logmel(waves).transpose(0, 1).reshape(64, -1)
    torch.testing.assert_close(out.mean(1), torch.zeros(64), atol=1e-4, rtol=0)
    restored = LogMel(FrontEndConfig(normalize="global"))
    restored.load_state_dict(logmel.state_dict())
    torch.testing.assert_close(restored(waves), logmel(waves))
    again = LogMel(FrontEndConfig(normalize="global"))
    again.set_global_stats(**{k: v for k, v in logmel.global_stats().items()})
    torch.testing.assert_close(again(waves), logmel(waves))


@pytest.mark.filterwarnings("ignore:Constant folding")
@pytest.mark.parametrize("normalize", ["utterance", "global"])
def test_onnx_export_runs_in_onnxruntime(tmp_path, normalize):
    import onnx
    import onnxruntime as ort

    logmel = LogMel(FrontEndConfig(normalize=normalize)).eval()
    waves = torch.from_numpy(np.stack([tone(1.0, 300.0 * (i + 1), seed=i) for i in range(3)]))
    if normalize == "global":
        logmel.fit_global_stats(logmel.log_mel(waves))
    path = tmp_path / "logmel.onnx"
    torch.onnx.export(
        logmel,
        (waves,),
        str(path),
        opset_version=17,
        dynamo=False,
        input_names=["wave"],
        output_names=["features"],
        dynamic_axes={"wave": {0: "batch", 1: "samples"}, "features": {0: "batch", 2: "frames"}},
    )
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "Conv" in ops and not ops & {"STFT", "DFT"}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    other = torch.from_numpy(np.stack([tone(2.5, 700.0, seed=9), tone(2.5, 150.0, seed=8)]))
    (got,) = session.run(None, {"wave": other.numpy()})
    assert got.shape == (2, 64, 40000 // 160 + 1)
    np.testing.assert_allclose(got, _conv_reference(logmel, other), atol=1e-4)
    np.testing.assert_allclose(got, logmel(other).numpy(), atol=5e-3)  # torch.stft path


def test_torch_export_takes_the_conv_path():
    logmel = LogMel(FrontEndConfig()).eval()
    waves = torch.from_numpy(np.stack([tone(1.0, 440.0), tone(1.0, 880.0, seed=1)]))
    program = torch.export.export(logmel, (waves,))
    ops = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert "aten.conv1d.default" in ops and not any("stft" in op or "fft" in op for op in ops)
    torch.testing.assert_close(program.module()(waves), logmel(waves), atol=5e-3, rtol=0)


def _conv_reference(logmel: LogMel, waves: torch.Tensor) -> np.ndarray:
    logmel.stft = "conv"
    try:
        return logmel(waves).detach().numpy()
    finally:
        logmel.stft = "auto"


# --------------------------------------------------------------------------------------------
# Feature cache


def test_frontend_fingerprint():
    assert frontend_fingerprint(FrontEndConfig()) == frontend_fingerprint(FrontEndConfig())
    assert frontend_fingerprint(FrontEndConfig()) != frontend_fingerprint(FrontEndConfig(n_mels=40))
    assert len(frontend_fingerprint(FrontEndConfig())) == 16


def test_cache_put_get_and_keys(tmp_path):
    clip = tmp_path / "a.wav"
    sf.write(clip, tone(1.0), SR)
    cache = FeatureCache(tmp_path / "cache", FrontEndConfig())
    assert cache.get(clip, 0.0, None) is None
    features = np.random.default_rng(0).standard_normal((64, 101)).astype(np.float32)
    written = cache.put(clip, 0.0, None, features)
    assert written.exists() and not list(written.parent.glob("*.tmp"))
    np.testing.assert_array_equal(cache.get(clip, 0.0, None), features)
    assert cache.get(clip, 0.5, None) is None and cache.get(clip, 0.0, 1.0) is None
    assert cache.key(clip, 1, 2) == cache.key(clip, 1.0, 2.0)
    other_frontend = FeatureCache(tmp_path / "cache", FrontEndConfig(n_mels=40))
    assert other_frontend.get(clip, 0.0, None) is None
    copy = tmp_path / "copy of a.wav"  # keyed by content, not by path
    copy.write_bytes(clip.read_bytes())
    np.testing.assert_array_equal(cache.get(copy, 0.0, None), features)
    sf.write(clip, tone(1.0, 880.0), SR)  # new content: a miss
    assert cache.get(clip, 0.0, None) is None


def test_cached_features_do_not_recompute(tmp_path, monkeypatch):
    clip = tmp_path / "a.flac"
    sf.write(clip, tone(2.0, 440.0, 48000, seed=4), 48000)
    calls = []
    real_load = liser.audio.load_audio

    def counting_load(*args, **kwargs):
        calls.append(args)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(liser.audio, "load_audio", counting_load)
    frontend = FrontEndConfig()
    first = cached_features(clip, 0.0, None, cache=FeatureCache(tmp_path / "c", frontend))
    assert len(calls) == 1
    assert first.shape == (64, frontend.n_frames)  # a 2 s clip is padded to one 3 s window
    again = cached_features(clip, 0.0, None, cache=FeatureCache(tmp_path / "c", frontend))
    assert len(calls) == 1  # a new cache object (a re-run) reads the file from disk
    np.testing.assert_array_equal(again, first)
    part = cached_features(clip, 0.5, 1.0, cache=FeatureCache(tmp_path / "c", frontend))
    assert len(calls) == 2 and not np.array_equal(part, first)
    uncached = cached_features(clip, 0.0, None, logmel=LogMel(frontend))
    np.testing.assert_array_equal(uncached, first)


def test_a_damaged_cache_file_is_recomputed(tmp_path):
    clip = tmp_path / "a.wav"
    sf.write(clip, tone(3.5), SR)
    cache = FeatureCache(tmp_path / "c")
    first = cached_features(clip, cache=cache)
    assert first.shape == (64, 3.5 * SR // 160 + 1)
    file = cache.file_for(cache.key(clip))
    file.write_bytes(file.read_bytes()[:100])  # e.g. a disk that filled up
    assert cache.get(clip) is None
    np.testing.assert_array_equal(cached_features(clip, cache=cache), first)


def test_cached_features_report_bad_files(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(liser.audio.AudioError, match="0 bytes"):
        cached_features(empty, cache=FeatureCache(tmp_path / "c"))


def test_features_for_clips_skip_bad_files_and_go_on(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, tone(3.2), SR)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(SR, np.float32), SR)
    clips = [(good, 0.0, None), (tmp_path / "missing.wav", 0.0, None), (silent, 0.0, None)]
    clips.append((good, 1.0, 1.0))
    features, skipped = features_for_clips(clips, FeatureCache(tmp_path / "c"), progress=False)
    assert [f is None for f in features] == [False, True, True, False]
    assert features[0].shape == (64, 3.2 * SR // 160 + 1) and features[3].shape == (64, 301)
    assert [(Path(p).name, reason.split(" ")[0]) for p, reason in skipped] == [
        ("missing.wav", "file"),
        ("silent.wav", "all"),
    ]
