"""The CNN-LSTM student: log-Mel in, three heads of raw logits out.

    features (B, n_mels, T)
      -> conv blocks (3x3 conv, BatchNorm, ReLU, (freq, time) max-pool), one per conv channel
      -> mean over the remaining frequency bins      (B, T', C)
      -> (bi)LSTM over time                          (B, T', H * directions)
      -> temporal pooling (mean or attentive)        (B, D)
      -> dropout -> heads: logits (target classes), audio (speech teacher), video (FER teacher)

Only ONNX-friendly ops (conv, pool, mean, LSTM, softmax, linear).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .config import FrontEndConfig, StudentConfig

HEADS = ("logits", "audio", "video")


def head_sizes(config: StudentConfig) -> dict[str, int]:
    """Output sizes of the three heads; ``n_audio_classes == 0`` means ``n_classes``."""
    if config.n_classes <= 0:
        raise ValueError(
            "StudentConfig.n_classes must be set (> 0) before building a student; "
            "training fills it in from the data's classes"
        )
    return {
        "logits": config.n_classes,
        "audio": config.n_audio_classes or config.n_classes,
        "video": config.n_video_classes,
    }


def conv_output_shape(config: StudentConfig, frontend: FrontEndConfig, n_frames: int) -> tuple:
    """(freq bins, time steps) left after the conv blocks for an input of ``n_frames`` frames."""
    n_freq, n_time = frontend.n_mels, n_frames
    for _ in config.conv_channels:
        n_freq, n_time = n_freq // config.pool[0], n_time // config.pool[1]
    return n_freq, n_time


def max_pool(x: torch.Tensor, pool: tuple[int, int]) -> torch.Tensor:
    """Max-pool (floor mode, stride = kernel) by element-wise maxima of strided slices.

    x : shape = (B, C, F, T) -> (B, C, F // pool[0], T // pool[1]). Same values as
    ``nn.MaxPool2d(pool)``, several times faster on CPU at inference in PyTorch (no argmax
    indices).
    """
    kf, kt = pool
    nf, nt = x.shape[2] // kf * kf, x.shape[3] // kt * kt
    y = x[:, :, 0:nf:kf]
    for i in range(1, kf):
        y = torch.maximum(y, x[:, :, i:nf:kf])
    z = y[:, :, :, 0:nt:kt]
    for j in range(1, kt):
        z = torch.maximum(z, y[:, :, :, j:nt:kt])
    return z


class ConvBlock(nn.Module):
    """3x3 convolution (no bias), BatchNorm, ReLU, max-pool of ``pool`` = (freq, time)."""

    def __init__(self, in_channels: int, out_channels: int, pool: tuple[int, int]):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.norm: nn.Module = nn.BatchNorm2d(out_channels)
        self.pool = tuple(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x : shape = (B, C_in, F, T) -> (B, C_out, F // pool[0], T // pool[1])"""
        x = torch.relu(self.norm(self.conv(x)))
        # nn.MaxPool2d has the faster backward and is one ONNX MaxPool op (3x faster in
        # onnxruntime than the slices); the sliced maxima the faster forward in PyTorch.
        if self.training or torch.onnx.is_in_onnx_export():
            return F.max_pool2d(x, self.pool)
        return max_pool(x, self.pool)


class AttentivePooling(nn.Module):
    """Softmax-weighted mean over time: ``sum_t softmax(w . h_t) h_t``."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x : shape = (B, T, D) -> (B, D)"""
        weights = torch.softmax(self.score(x), dim=1)
        return (weights * x).sum(dim=1)


class Student(nn.Module):
    """CNN-LSTM over log-Mel with a supervised head and two distillation heads."""

    def __init__(self, config: StudentConfig, frontend: FrontEndConfig):
        super().__init__()
        self.config = config
        self.frontend = frontend
        self.sizes = head_sizes(config)
        if config.temporal_pooling not in ("mean", "attention"):
            raise ValueError(
                f"StudentConfig.temporal_pooling must be 'mean' or 'attention', "
                f"got {config.temporal_pooling!r}"
            )
        n_freq, n_time = conv_output_shape(config, frontend, frontend.n_frames)
        if n_freq < 1 or n_time < 1:
            raise ValueError(
                f"{len(config.conv_channels)} pools of {tuple(config.pool)} leave no "
                f"frequency bins or time steps of a {frontend.n_mels} x {frontend.n_frames} input"
            )
        channels = (1, *config.conv_channels)
        self.convs = nn.Sequential(
            *(
                ConvBlock(c_in, c_out, config.pool)
                for c_in, c_out in zip(channels, channels[1:], strict=False)
            )
        )
        self.lstm = nn.LSTM(
            input_size=channels[-1],
            hidden_size=config.lstm_hidden,
            num_layers=config.lstm_layers,
            batch_first=True,
            bidirectional=config.bidirectional,
        )
        dim = config.lstm_hidden * (2 if config.bidirectional else 1)
        self.pooling = AttentivePooling(dim) if config.temporal_pooling == "attention" else None
        self.dropout = nn.Dropout(config.dropout)
        self.heads = nn.ModuleDict({name: nn.Linear(dim, n) for name, n in self.sizes.items()})
        self.embedding_dim = dim

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """features : shape = (B, n_mels, T) log-Mel -> pooled embedding, shape = (B, D)"""
        x = self.convs(features.unsqueeze(1))  # (B, C, F', T')
        x = x.mean(dim=2).transpose(1, 2)  # (B, T', C)
        x, _ = self.lstm(x)  # (B, T', D)
        if self.pooling is None:
            return x.mean(dim=1)
        return self.pooling(x)

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """features : shape = (B, n_mels, T) -> {"logits": (B, C), "audio": (B, Ca), "video": (B, Cv)}"""
        x = self.dropout(self.embed(features))
        return {name: head(x) for name, head in self.heads.items()}


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(config: StudentConfig, frontend: FrontEndConfig, n_frames: int | None = None) -> int:
    """Multiply-accumulates of one forward pass on one window (default: frontend.n_frames).

    Counts convolutions, LSTM matrix products (input and recurrent) and linear layers; BatchNorm,
    ReLU, pooling and the LSTM's element-wise gates are not multiply-accumulates and are left out.
    """
    n_freq, n_time = frontend.n_mels, n_frames or frontend.n_frames
    macs, c_in = 0, 1
    for c_out in config.conv_channels:
        macs += c_out * c_in * 9 * n_freq * n_time
        n_freq, n_time = n_freq // config.pool[0], n_time // config.pool[1]
        c_in = c_out
    directions = 2 if config.bidirectional else 1
    hidden, lstm_in = config.lstm_hidden, c_in
    for _ in range(config.lstm_layers):
        macs += directions * n_time * 4 * hidden * (lstm_in + hidden)
        lstm_in = hidden * directions
    dim = lstm_in
    if config.temporal_pooling == "attention":
        macs += n_time * dim
    macs += dim * sum(head_sizes(config).values())
    return macs


def fuse_for_inference(model: Student) -> Student:
    """A copy in eval mode with each BatchNorm folded into its convolution (same outputs, faster).

    For prediction and export only: its state dict no longer matches a checkpoint's.
    """
    fused = copy.deepcopy(model).eval()
    for block in fused.convs:
        if isinstance(block.norm, nn.BatchNorm2d):
            block.conv = fuse_conv_bn_eval(block.conv, block.norm)
            block.norm = nn.Identity()
    return fused
