"""STFT power spectra from real-valued convolutions and matrix products, for exported graphs.

Exported students carry their front end, so the STFT has to be built from ops every runtime has.
ONNX's own STFT operator was slower in onnxruntime on CPU than a plain convolution (6.3 ms vs 4.6
ms per 3 s clip, one thread), and a dense DFT as one convolution costs ``2 * bins * win`` MACs per
frame (205 k at the defaults, 62 M per 3 s clip: three times the student).

`ConvPowerSpectrum` factors the DFT once, Cooley-Tukey style, with ``n_fft = N1 * N2`` where ``N2``
divides the hop, sample ``n = N2 * n1 + n2`` and bin ``k = k1 + N1 * k2``:

1. the centred, reflect-padded wave cut into rows of ``N2`` samples is ``(B, N2, rows)``; frame
   ``t`` is rows ``t * hop / N2 + n1``, so a grouped convolution (one group per ``n2``, kernel
   ``N1``, stride ``hop / N2``) gives the ``N1``-point DFTs over ``n1``, with the window and the
   twiddle factors ``exp(-2 pi i n2 k1 / n_fft)`` folded into its weights (taps that only see
   the zeros around a short window are dropped: 26 of 32 at the defaults);
2. one matrix product over ``(n2, real/imaginary)`` gives the ``N2``-point DFTs; its output is
   laid out ``(k2, k1)``, which is bin order.

At the defaults (512-point DFT, hop 160: ``N1 = 32, N2 = 16``) that is 45 k MACs per frame
instead of 205 k. Configurations where no split saves work (e.g. a hop sharing no factor with
``n_fft``) use the dense convolution.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def dense_macs(n_fft: int, win: int) -> int:
    """MACs per frame of the dense DFT convolution (only the taps under the window)."""
    return 2 * (n_fft // 2 + 1) * win


def factored_macs(n_fft: int, n1: int) -> int:
    """MACs per frame of the two-stage DFT with ``n_fft = n1 * n2``, before the stage-1 taps
    outside the window are dropped (the ranking of splits does not need them)."""
    n2, k2 = n_fft // n1, (n_fft // 2) // n1 + 1
    return n2 * 2 * n1 * n1 + 2 * k2 * 2 * n2 * n1


def choose_split(n_fft: int, hop: int, win: int) -> tuple[int, int] | None:
    """(N1, N2) with the fewest MACs, N2 dividing hop and n_fft; None when dense is cheaper."""
    common = math.gcd(n_fft, hop)
    splits = [(n_fft // n2, n2) for n2 in range(2, common + 1) if common % n2 == 0]
    # ties: the smaller N2 (fewer, larger groups in the convolution: faster in onnxruntime)
    best = min(splits, key=lambda s: factored_macs(n_fft, s[0]), default=None)
    if best is None or factored_macs(n_fft, best[0]) >= dense_macs(n_fft, win):
        return None
    return best


class ConvPowerSpectrum(nn.Module):
    """|STFT|^2 as torch.stft(center=True, pad_mode="reflect") computes it, from real ops only.

    window: the analysis window (win samples <= n_fft), centred in the n_fft frame as torch.stft
    does. Forward: wave (B, N) -> (B, n_fft // 2 + 1, N // hop + 1). The DFT weights are
    non-persistent buffers (rebuilt from the settings, never saved in checkpoints).
    """

    def __init__(self, n_fft: int, hop: int, window: torch.Tensor):
        super().__init__()
        win = len(window)
        self.n_fft, self.hop, self.n_bins = n_fft, hop, n_fft // 2 + 1
        self.left = (n_fft - win) // 2
        frame = F.pad(window.double(), (self.left, n_fft - win - self.left))  # (n_fft,)
        self.split = choose_split(n_fft, hop, win)
        if self.split is None:
            self._dense(frame, win)
        else:
            self._factored(frame, *self.split)

    def _dense(self, frame: torch.Tensor, win: int) -> None:
        phase = torch.outer(torch.arange(self.n_bins), torch.arange(self.n_fft)) % self.n_fft
        angle = 2 * math.pi * phase.double() / self.n_fft
        basis = torch.cat([frame * torch.cos(angle), -frame * torch.sin(angle)])
        taps = basis[:, self.left : self.left + win]  # the window is zero elsewhere
        self.register_buffer("dft_basis", taps.float().unsqueeze(1), persistent=False)

    def _factored(self, frame: torch.Tensor, n1: int, n2: int) -> None:
        i1 = torch.arange(n1, dtype=torch.float64)
        i2 = torch.arange(n2, dtype=torch.float64)
        # stage 1, group n2, output (re/im, k1), tap n1: w[n] exp(-2 pi i n k1 / n_fft),
        # with n = N2 n1 + n2
        n = n2 * i1[None, None, :] + i2[:, None, None]  # (n2, 1, n1)
        angle = 2 * math.pi * (n * i1[None, :, None] % self.n_fft) / self.n_fft  # (n2, k1, n1)
        w = frame.reshape(n1, n2).T[:, None, :]
        stage1 = torch.stack([w * torch.cos(angle), -w * torch.sin(angle)], dim=1)
        under = (frame.reshape(n1, n2) != 0).any(dim=1).nonzero()  # taps n1 under the window
        self.taps = (int(under[0]), int(under[-1]) + 1)
        stage1 = stage1[..., self.taps[0] : self.taps[1]].reshape(n2 * 2 * n1, 1, -1)
        self.register_buffer("stage1", stage1.float(), persistent=False)
        # stage 2: (re/im', k2) <- (n2, re/im): multiply by exp(-2 pi i n2 k2 / N2)
        k2 = (self.n_bins - 1) // n1 + 1
        angle = 2 * math.pi * (torch.outer(torch.arange(k2), torch.arange(n2)) % n2).double() / n2
        cos, sin = torch.cos(angle), -torch.sin(angle)
        stage2 = torch.stack(
            [torch.stack([cos, -sin], dim=-1), torch.stack([sin, cos], dim=-1)]
        )  # (re/im', k2, n2, re/im)
        self.register_buffer("stage2", stage2.reshape(2 * k2, 2 * n2).float(), persistent=False)
        self.k2 = k2

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """wave (B, N) -> power (B, n_fft // 2 + 1, N // hop + 1)."""
        half = self.n_fft // 2
        x = F.pad(wave.unsqueeze(1), (half, half), mode="reflect")
        if self.split is None:
            right = self.n_fft - self.dft_basis.shape[-1] - self.left
            x = x[:, :, self.left : x.shape[-1] - right]
            real, imag = F.conv1d(x, self.dft_basis, stride=self.hop).chunk(2, dim=1)
            return real * real + imag * imag
        n1, n2 = self.split
        batch = wave.shape[0]
        usable = x.shape[-1] // n2 * n2
        rows = x[:, 0, :usable].reshape(batch, -1, n2).transpose(1, 2)  # (B, n2, rows)
        frames, stride = wave.shape[-1] // self.hop + 1, self.hop // n2
        first, last = self.taps
        rows = rows[:, :, first : first + stride * (frames - 1) + last - first]
        a = F.conv1d(rows, self.stage1, stride=stride, groups=n2)  # (B, n2*2*n1, T)
        out = torch.matmul(self.stage2, a.reshape(batch, 2 * n2, n1 * frames))
        real, imag = out[:, : self.k2], out[:, self.k2 :]  # (B, k2, n1 * T) each
        power = (real * real + imag * imag).reshape(batch, self.k2 * n1, frames)
        return power[:, : self.n_bins]
