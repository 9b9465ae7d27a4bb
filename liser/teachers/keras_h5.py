"""Keras HDF5 models (``model.save("x.h5")``) rebuilt as PyTorch modules from their own config.

The file's ``model_config`` JSON is parsed layer by layer (Functional or Sequential) into a graph
of torch modules, and the weights are copied from ``model_weights`` with Keras's layouts turned
into torch's: conv kernels (kh, kw, in, out) -> (out, in, kh, kw), depthwise kernels
(kh, kw, in, mult) -> (in*mult, 1, kh, kw), dense kernels (in, out) -> (out, in). TensorFlow's
'same' padding (extra pixel at the bottom/right) is computed from the input size at run time.
Tensors inside are NCHW; the module takes NHWC input like the Keras model.
"""

from __future__ import annotations

import functools
import json
import operator
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .keras_layers import (
    Bias,
    KerasModelError,
    Lambda,
    SameAvgPool,
    SameMaxPool,
    TFPad,
    activation,
    pair,
)


def _conv(cfg: dict, in_channels: int, weights: dict, depthwise: bool) -> nn.Module:
    kernel, stride = pair(cfg["kernel_size"]), pair(cfg.get("strides", 1))
    dilation = pair(cfg.get("dilation_rate", 1))
    padding = cfg.get("padding", "valid")
    # 'same' with stride 1 and odd kernels pads symmetrically: let the convolution do it
    static = padding == "same" and stride == (1, 1) and all(k % 2 for k in kernel)
    inner = tuple((k - 1) * d // 2 for k, d in zip(kernel, dilation, strict=True)) if static else 0
    if depthwise:
        mult = int(cfg.get("depth_multiplier", 1))
        out = in_channels * mult
        conv = nn.Conv2d(
            in_channels, out, kernel, stride, inner, dilation, groups=in_channels, bias=False
        )
        w = weights["depthwise_kernel"]  # (kh, kw, in, mult) -> (in*mult, 1, kh, kw)
        conv.weight.data = torch.from_numpy(
            w.reshape(*kernel, out).transpose(2, 0, 1)[:, None].copy()
        )
    else:
        out = int(cfg["filters"])
        conv = nn.Conv2d(in_channels, out, kernel, stride, inner, dilation, bias=False)
        conv.weight.data = torch.from_numpy(weights["kernel"].transpose(3, 2, 0, 1).copy())
    layers = [TFPad("valid" if static else padding, kernel, stride, dilation), conv]
    if "pointwise_kernel" in weights:  # SeparableConv2D: depthwise then 1x1
        pointwise = weights["pointwise_kernel"]  # (1, 1, in*mult, out)
        out = pointwise.shape[3]
        point = nn.Conv2d(pointwise.shape[2], out, 1, bias=False)
        point.weight.data = torch.from_numpy(pointwise.transpose(3, 2, 0, 1).copy())
        layers.append(point)
    if cfg.get("use_bias", True):
        layers.append(Bias(weights["bias"]))
    layers.append(activation(cfg.get("activation", "linear")))
    return nn.Sequential(*layers)


def _batch_norm(cfg: dict, channels: int, weights: dict) -> nn.Module:
    axis = cfg.get("axis", -1)
    if (axis[0] if isinstance(axis, list) else axis) not in (-1, 3, 1):
        raise KerasModelError(f"BatchNormalization over axis {axis} is not supported")
    bn = nn.BatchNorm2d(channels, eps=float(cfg.get("epsilon", 1e-3)))
    bn.running_mean.data = torch.from_numpy(weights["moving_mean"].copy())
    bn.running_var.data = torch.from_numpy(weights["moving_variance"].copy())
    if "gamma" in weights:
        bn.weight.data = torch.from_numpy(weights["gamma"].copy())
    if "beta" in weights:
        bn.bias.data = torch.from_numpy(weights["beta"].copy())
    return bn


def _dense(cfg: dict, weights: dict) -> nn.Module:
    kernel = weights["kernel"]
    linear = nn.Linear(kernel.shape[0], kernel.shape[1], bias=cfg.get("use_bias", True))
    linear.weight.data = torch.from_numpy(kernel.T.copy())
    if cfg.get("use_bias", True):
        linear.bias.data = torch.from_numpy(weights["bias"].copy())
    return nn.Sequential(linear, activation(cfg.get("activation", "linear")))


def _build_layer(kind: str, cfg: dict, channels: list[int], weights: dict) -> tuple[nn.Module, int]:
    """One Keras layer as a torch module, and its output channels (or features)."""
    c = channels[0] if channels else 0
    if cfg.get("data_format", "channels_last") != "channels_last":
        raise KerasModelError(f"layer '{cfg.get('name')}': only channels_last models are supported")
    if kind in ("Conv2D", "SeparableConv2D", "DepthwiseConv2D"):
        module = _conv(cfg, c, weights, depthwise=kind != "Conv2D")
        return module, [m for m in module if isinstance(m, nn.Conv2d)][-1].out_channels
    if kind == "BatchNormalization":
        return _batch_norm(cfg, c, weights), c
    if kind == "Activation":
        return activation(cfg["activation"]), c
    if kind == "ReLU":
        limit = cfg.get("max_value")
        return (nn.ReLU() if limit is None else nn.Hardtanh(0.0, float(limit))), c
    if kind == "LeakyReLU":
        return nn.LeakyReLU(float(cfg.get("alpha", cfg.get("negative_slope", 0.3)))), c
    if kind == "Softmax":
        return nn.Softmax(dim=1), c
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        kernel = pair(cfg.get("pool_size", 2))
        stride = pair(cfg.get("strides") or kernel)
        padding = cfg.get("padding", "valid")
        if kind == "AveragePooling2D":
            return SameAvgPool(padding, kernel, stride), c
        return SameMaxPool(padding, kernel, stride), c
    if kind == "GlobalAveragePooling2D":
        return Lambda(lambda x: x.mean(dim=(2, 3))), c
    if kind == "GlobalMaxPooling2D":
        return Lambda(lambda x: x.amax(dim=(2, 3))), c
    if kind == "ZeroPadding2D":
        pad = cfg.get("padding", 1)
        pad = [pad, pad] if isinstance(pad, int) else pad
        (top, bottom), (left, right) = [pair(p) for p in pad]
        return Lambda(lambda x: F.pad(x, (left, right, top, bottom))), c
    if kind in ("Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "InputLayer"):
        return nn.Identity(), c
    if kind == "Flatten":  # Keras flattens NHWC
        return Lambda(lambda x: x.permute(0, 2, 3, 1).flatten(1) if x.dim() == 4 else x), c
    if kind == "Dense":
        return _dense(cfg, weights), int(cfg["units"])
    if kind == "Add":
        return Lambda(lambda *xs: functools.reduce(operator.add, xs)), c
    if kind == "Multiply":
        return Lambda(lambda *xs: functools.reduce(operator.mul, xs)), c
    if kind == "Average":
        return Lambda(lambda *xs: functools.reduce(operator.add, xs) / len(xs)), c
    if kind == "Concatenate":
        if cfg.get("axis", -1) not in (-1, 3):
            raise KerasModelError("Concatenate is supported over the channel axis only")
        return Lambda(lambda *xs: torch.cat(xs, dim=1)), sum(channels)
    raise KerasModelError(f"unsupported Keras layer type '{kind}' (layer '{cfg.get('name')}')")


def _inbound(layer: dict) -> list[str]:
    """Names of the layers feeding ``layer`` (Keras 2 and Keras 3 config formats)."""
    nodes = layer.get("inbound_nodes") or []
    if not nodes:
        return []
    if len(nodes) > 1:
        raise KerasModelError(f"layer '{layer['config'].get('name')}' is shared; not supported")
    node = nodes[0]
    if isinstance(node, dict):  # Keras 3: {"args": [...keras_history...]}
        names = []

        def walk(value):
            if isinstance(value, dict):
                history = value.get("config", {}).get("keras_history")
                if history:
                    names.append(history[0])
                else:
                    for v in value.values():
                        walk(v)
            elif isinstance(value, list):
                for v in value:
                    walk(v)

        walk(node.get("args", []))
        return names
    return [entry[0] for entry in node]


class KerasGraph(nn.Module):
    """A Keras Functional/Sequential model as torch. ``forward(x (N, H, W, C))`` -> (N, out).

    When the model ends in a softmax, the softmax is left out and ``forward`` returns logits
    (``ends_in_softmax`` is then True). BatchNorms that follow a convolution are folded into it,
    and tensors are kept channels-last (faster pooling and depthwise convolutions on CPU).
    """

    def __init__(
        self, layers: dict[str, nn.Module], order: list[tuple[str, list[str]]], output: str
    ):
        super().__init__()
        self.layers = nn.ModuleDict(layers)
        self.order, self.output = order, output
        self.ends_in_softmax = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {}
        for name, inputs in self.order:
            if not inputs:
                values[name] = x.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
                continue
            values[name] = self.layers[name](*[values[i] for i in inputs])
        return values[self.output]


def load_keras_h5(path: str | Path) -> tuple[KerasGraph, tuple[int, ...]]:
    """Rebuild a Keras HDF5 model: (module in eval mode returning logits, input shape (H, W, C))."""
    path = Path(path)
    try:
        file = h5py.File(path, "r")
    except OSError as error:
        raise KerasModelError(f"{path}: not an HDF5 file ({error})") from error
    with file:
        if "model_config" not in file.attrs:
            raise KerasModelError(f"{path}: HDF5 file without a Keras model_config (weights only?)")
        config = json.loads(file.attrs["model_config"])
        group = file["model_weights"] if "model_weights" in file else file
        kind = config.get("class_name")
        body = config.get("config", {})
        layers = body if isinstance(body, list) else body.get("layers", [])
        if not layers:
            raise KerasModelError(f"{path}: model_config has no layers")
        try:
            return _assemble(kind, body, layers, group)
        except KerasModelError as error:
            raise KerasModelError(f"{path}: {error}") from error


def _read_weights(group, name: str) -> dict[str, np.ndarray]:
    if name not in group:
        return {}
    layer = group[name]
    weights = {}
    for full in layer.attrs.get("weight_names", []):
        full = full.decode() if isinstance(full, bytes) else full
        short = full.split("/")[-1].split(":")[0]
        weights[short] = np.asarray(layer[full], dtype=np.float32)
    return weights


def _assemble(kind, body, layers, group) -> tuple[KerasGraph, tuple[int, ...]]:
    sequential = kind == "Sequential" or not any("inbound_nodes" in la for la in layers)
    input_shape = None
    order, modules, channels = [], {}, {}
    previous = None
    if sequential:  # a Sequential model: an implicit input, then a chain
        first = layers[0]["config"]
        input_shape = first.get("batch_input_shape") or first.get("batch_shape")
        order.append(("__input__", []))
        previous = "__input__"
        channels[previous] = input_shape[-1] if input_shape else 0
    for layer in layers:
        cfg, name = layer["config"], layer["config"].get("name", layer.get("name"))
        inputs = [previous] if sequential else _inbound(layer)
        if layer["class_name"] == "InputLayer":
            input_shape = cfg.get("batch_input_shape") or cfg.get("batch_shape")
            if sequential:
                continue
            order.append((name, []))
            channels[name] = input_shape[-1]
            continue
        for i in inputs:
            if i not in channels:
                raise KerasModelError(f"layer '{name}' uses '{i}' before it is defined")
        module, out = _build_layer(
            layer["class_name"], cfg, [channels[i] for i in inputs], _read_weights(group, name)
        )
        modules[name], channels[name] = module, out
        order.append((name, inputs))
        previous = name
    if sequential:
        output = previous
    else:
        outputs = body.get("output_layers") or [[previous]]
        outputs = [outputs] if isinstance(outputs[0], str) else outputs  # Keras 3: one flat list
        if len(outputs) != 1:
            raise KerasModelError("models with several outputs are not supported")
        output = outputs[0][0] if isinstance(outputs[0], list) else outputs[0]
    if input_shape is None or len(input_shape) != 4:
        raise KerasModelError(f"expected an image input (N, H, W, C), got {input_shape}")
    ends_in_softmax = _strip_softmax(modules, output)
    _fold_batch_norms(modules, order)
    model = KerasGraph(modules, order, output).to(memory_format=torch.channels_last)
    model.ends_in_softmax = ends_in_softmax
    return model.eval(), tuple(int(v) for v in input_shape[1:])


@torch.no_grad()
def _fold_batch_norms(modules: dict[str, nn.Module], order: list[tuple[str, list[str]]]) -> None:
    """Fold each BatchNormalization that is the only consumer of a linear conv into that conv:
    w' = w * gamma / sqrt(var + eps), b' = (b - mean) * gamma / sqrt(var + eps) + beta."""
    consumers: dict[str, int] = {}
    for _, inputs in order:
        for i in inputs:
            consumers[i] = consumers.get(i, 0) + 1
    for name, inputs in order:
        bn = modules.get(name)
        if not isinstance(bn, nn.BatchNorm2d) or len(inputs) != 1 or consumers[inputs[0]] != 1:
            continue
        conv_block = modules.get(inputs[0])
        if not isinstance(conv_block, nn.Sequential) or not isinstance(conv_block[-1], nn.Identity):
            continue
        convs = [i for i, m in enumerate(conv_block) if isinstance(m, nn.Conv2d)]
        if not convs:
            continue
        conv = conv_block[convs[-1]]
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        bias = torch.zeros_like(scale)
        for i, m in enumerate(conv_block):
            if isinstance(m, Bias):
                bias = m.bias.detach().clone()
                conv_block[i] = nn.Identity()
        conv.weight.mul_(scale.view(-1, 1, 1, 1))
        conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
        modules[name] = nn.Identity()


def _strip_softmax(modules: dict[str, nn.Module], output: str) -> bool:
    """Drop a final softmax (so the model gives logits); True when there was one."""
    module = modules[output]
    if isinstance(module, nn.Softmax):
        modules[output] = nn.Identity()
        return True
    if isinstance(module, nn.Sequential) and isinstance(module[-1], nn.Softmax):
        module[-1] = nn.Identity()
        return True
    return False
