"""liser.dft: the real-op STFT power spectrum (factored and dense) against torch.stft."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from liser.dft import ConvPowerSpectrum, choose_split, dense_macs, factored_macs


def test_split_at_the_defaults_needs_a_quarter_of_the_dense_work():
    split = choose_split(512, 160, 400)
    assert split is not None and split[0] * split[1] == 512 and 160 % split[1] == 0
    assert factored_macs(512, split[0]) * 3.9 < dense_macs(512, 400)
    assert choose_split(512, 441, 400) is None  # hop and n_fft share no factor: dense


@pytest.mark.parametrize(
    "n_fft, hop, win",
    [(512, 160, 400), (400, 160, 400), (512, 100, 320), (512, 441, 400), (256, 128, 256)],
)
@pytest.mark.parametrize("n_samples", [257, 4000, 16001])
def test_power_spectrum_equals_torch_stft(n_fft, hop, win, n_samples):
    rng = np.random.default_rng(n_samples + hop)
    wave = torch.from_numpy(rng.standard_normal((2, max(n_samples, n_fft // 2 + 1)))).float()
    window = torch.hann_window(win, periodic=True, dtype=torch.float64)
    spec = torch.stft(
        wave.double(),
        n_fft,
        hop,
        win,
        window=window,
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    reference = spec.abs().square().float()
    power = ConvPowerSpectrum(n_fft, hop, window)(wave)
    assert power.shape == reference.shape == (2, n_fft // 2 + 1, wave.shape[1] // hop + 1)
    assert ((power - reference).abs().max() / reference.max()).item() < 1e-5
    assert (
        power[reference > 1e-3 * reference.max()] / reference[reference > 1e-3 * reference.max()]
        - 1
    ).abs().max() < 1e-3


def test_dft_weights_are_not_saved_in_state_dicts():
    module = ConvPowerSpectrum(512, 160, torch.hann_window(400, dtype=torch.float64))
    assert module.split == choose_split(512, 160, 400)
    assert module.state_dict() == {}
