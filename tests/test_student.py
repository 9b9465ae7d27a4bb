import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from liser.config import FrontEndConfig, StudentConfig
from liser.student import (
    AttentivePooling,
    Student,
    count_macs,
    count_parameters,
    fuse_for_inference,
    max_pool,
)

FRONTEND = FrontEndConfig()


def student(**changes) -> Student:
    torch.manual_seed(0)
    model = Student(StudentConfig(n_classes=8, **changes), FRONTEND)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
    return model.eval()


def test_heads_have_class_counts_and_any_length_works():
    model = student(n_audio_classes=5)
    for frames in (FRONTEND.n_frames, 457, 64):
        out = model(torch.randn(3, FRONTEND.n_mels, frames))
        assert {k: tuple(v.shape) for k, v in out.items()} == {
            "logits": (3, 8),
            "audio": (3, 5),
            "video": (3, 7),
        }
    # n_audio_classes = 0 means the target classes
    assert student().heads["audio"].out_features == 8


def test_class_count_must_be_set_and_pools_must_fit():
    with pytest.raises(ValueError, match="n_classes"):
        Student(StudentConfig(), FRONTEND)
    with pytest.raises(ValueError, match="pools"):
        Student(StudentConfig(n_classes=2, conv_channels=(4,) * 7), FRONTEND)
    with pytest.raises(ValueError, match="temporal_pooling"):
        Student(StudentConfig(n_classes=2, temporal_pooling="max"), FRONTEND)


@pytest.mark.parametrize("pool", [(2, 2), (2, 1), (1, 3), (3, 2)])
@pytest.mark.parametrize("shape", [(2, 3, 64, 301), (1, 4, 9, 17)])
def test_max_pool_equals_nn_max_pool(pool, shape):
    x = torch.randn(shape)
    assert torch.equal(max_pool(x, pool), nn.MaxPool2d(pool)(x))


def test_default_student_is_small():
    model = Student(StudentConfig(n_classes=8), FRONTEND)
    assert count_parameters(model) <= 1_000_000
    assert count_macs(model.config, FRONTEND) <= 50_000_000


def test_fused_student_gives_the_same_outputs():
    model = student()
    x = torch.randn(4, FRONTEND.n_mels, FRONTEND.n_frames)
    fused = fuse_for_inference(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    with torch.no_grad():
        for name, value in model(x).items():
            torch.testing.assert_close(fused(x)[name], value, atol=1e-5, rtol=1e-5)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # original untouched


def test_attentive_pooling_with_flat_scores_is_the_mean():
    pooling = AttentivePooling(6)
    nn.init.zeros_(pooling.score.weight)
    x = torch.randn(2, 5, 6)
    torch.testing.assert_close(pooling(x), x.mean(dim=1))
    nn.init.normal_(pooling.score.weight)
    assert not torch.allclose(pooling(x), x.mean(dim=1))


def test_training_step_reaches_every_parameter():
    model = student(temporal_pooling="attention").train()
    out = model(torch.randn(4, FRONTEND.n_mels, FRONTEND.n_frames))
    sum(v.square().mean() for v in out.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


def hook_macs(model: Student, frames: int) -> int:
    """MACs counted from the shapes the layers really see during one forward pass."""
    total = 0

    def conv(module, inputs, output):
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        total += output[0].numel() * k

    def linear(module, inputs, output):
        nonlocal total
        total += output[0].numel() * module.in_features

    def lstm(module, inputs, output):
        nonlocal total
        steps = inputs[0].shape[1]
        dirs = 2 if module.bidirectional else 1
        h = module.hidden_size
        for layer in range(module.num_layers):
            size = module.input_size if layer == 0 else h * dirs
            total += dirs * steps * 4 * h * (size + h)

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(conv)
        elif isinstance(m, nn.Linear):
            m.register_forward_hook(linear)
        elif isinstance(m, nn.LSTM):
            m.register_forward_hook(lstm)
    with torch.no_grad():
        model(torch.randn(1, FRONTEND.n_mels, frames))
    return total


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"temporal_pooling": "attention", "lstm_layers": 2},
        {"bidirectional": False, "conv_channels": (4, 8, 16), "pool": (2, 3)},
    ],
)
def test_count_macs_matches_a_hook_count(changes):
    model = student(**changes)
    assert count_macs(model.config, FRONTEND) == hook_macs(model, FRONTEND.n_frames)
    assert count_macs(model.config, FRONTEND, 500) == hook_macs(model, 500)


@pytest.mark.filterwarnings("ignore::UserWarning")  # tracer notes on nn.LSTM
def test_student_exports_to_onnx_with_dynamic_batch_and_length(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = fuse_for_inference(student(temporal_pooling="attention"))

    class Logits(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, features):
            return self.model(features)["logits"]

    wrapper = Logits().eval()
    path = tmp_path / "student.onnx"
    torch.onnx.export(
        wrapper,
        (torch.randn(2, FRONTEND.n_mels, FRONTEND.n_frames),),
        str(path),
        input_names=["features"],
        output_names=["logits"],
        dynamic_axes={"features": {0: "batch", 2: "frames"}},
        dynamo=False,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, FRONTEND.n_mels, FRONTEND.n_frames), (3, FRONTEND.n_mels, 457)]:
        x = torch.randn(shape)
        (got,) = session.run(None, {"features": x.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(got, wrapper(x).numpy(), atol=1e-4)
    assert dataclasses.asdict(model.config)["temporal_pooling"] == "attention"
