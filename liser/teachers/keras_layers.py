"""TensorFlow's layer semantics in torch, for rebuilt Keras models: activations by name, 'same'
padding with the extra pixel at the bottom/right, 'same' pooling, lambdas, bias-only layers."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class KerasModelError(ValueError):
    """An HDF5 file that is not a Keras model liser can rebuild; the message says why."""


ACTIVATIONS = {
    "linear": nn.Identity,
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "softplus": nn.Softplus,
    "swish": nn.SiLU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "softmax": lambda: nn.Softmax(dim=1),
}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise KerasModelError(f"unsupported activation '{name}'")
    return ACTIVATIONS[name]()


def pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow 'same' padding of one dimension: (before, after), the extra pixel after."""
    effective = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


class TFPad(nn.Module):
    """Pads (N, C, H, W) as TensorFlow's 'same' for the given kernel/stride, or not at all."""

    def __init__(self, padding: str, kernel, stride, dilation=(1, 1), value: float = 0.0):
        super().__init__()
        self.same = padding == "same"
        self.kernel, self.stride, self.dilation, self.value = kernel, stride, dilation, value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.same:
            return x
        top, bottom = same_padding(x.shape[2], self.kernel[0], self.stride[0], self.dilation[0])
        left, right = same_padding(x.shape[3], self.kernel[1], self.stride[1], self.dilation[1])
        if top == bottom == left == right == 0:
            return x
        return F.pad(x, (left, right, top, bottom), value=self.value)


class SameMaxPool(nn.Module):
    """MaxPooling2D; 'same' padding as TensorFlow (padded pixels never win)."""

    def __init__(self, padding: str, kernel, stride):
        super().__init__()
        self.pad = TFPad(padding, kernel, stride, value=-math.inf)
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad.same:
            top, _ = same_padding(x.shape[2], self.kernel[0], self.stride[0])
            left, _ = same_padding(x.shape[3], self.kernel[1], self.stride[1])
            if top == left == 0:  # padding only after: ceil mode gives the same windows, no copy
                return F.max_pool2d(x, self.kernel, self.stride, ceil_mode=True)
        return F.max_pool2d(self.pad(x), self.kernel, self.stride)


class SameAvgPool(nn.Module):
    """AveragePooling2D with 'same' padding: the padded pixels do not count in the mean."""

    def __init__(self, padding: str, kernel, stride):
        super().__init__()
        self.pad = TFPad(padding, kernel, stride)
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = F.avg_pool2d(self.pad(x), self.kernel, self.stride)
        ones = self.pad(torch.ones_like(x[:, :1]))
        return total / F.avg_pool2d(ones, self.kernel, self.stride)


class Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)


class Bias(nn.Module):
    def __init__(self, bias: np.ndarray):
        super().__init__()
        self.bias = nn.Parameter(torch.from_numpy(bias.copy()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias.view(1, -1, *([1] * (x.dim() - 2)))
