"""Losses and instance weights against values computed by hand."""

import math

import pytest
import torch

from liser.train import (
    DistillationLoss,
    SupervisedLoss,
    class_weights,
    divergence,
    instance_weights,
    normalize_weights,
)

LN2 = math.log(2.0)


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_divergences_hand_values():
    z = t([[0.0, 0.0]])  # q = (0.5, 0.5)
    p = t([[1.0, 0.0]])
    assert divergence(z, p, "mae").item() == pytest.approx(0.5)  # (0.5 + 0.5) / 2 classes
    assert divergence(z, p, "mse").item() == pytest.approx(0.25)  # (0.25 + 0.25) / 2
    assert divergence(z, p, "ce").item() == pytest.approx(LN2, abs=1e-6)  # -log 0.5
    assert divergence(z, p, "kl").item() == pytest.approx(LN2, abs=1e-6)  # log(1 / 0.5)
    # MAE averages over classes: with 4 classes the same absolute error gives half the value.
    z4, p4 = t([[0.0, 0.0, 0.0, 0.0]]), t([[1.0, 0.0, 0.0, 0.0]])
    assert divergence(z4, p4, "mae").item() == pytest.approx((0.75 + 3 * 0.25) / 4)
    # A student that matches the teacher has zero MAE / MSE / KL, and CE = H(p).
    p3 = t([[0.7, 0.2, 0.1]])
    z3 = p3.log()
    assert divergence(z3, p3, "mae").item() == pytest.approx(0.0, abs=1e-6)
    assert divergence(z3, p3, "kl").item() == pytest.approx(0.0, abs=1e-6)
    assert divergence(z3, p3, "ce").item() == pytest.approx(0.8018186, abs=1e-5)


def test_kl_temperature_softens_both_and_scales_by_t_squared():
    z = t([[math.log(4.0), 0.0]])  # z / 2 = (ln 2, 0): q_T = (2/3, 1/3)
    # teacher (0.8, 0.2) softened with T = 2: proportional to sqrt(p) = (2/3, 1/3): KL = 0
    assert divergence(z, t([[0.8, 0.2]]), "kl", temperature=2.0).item() == pytest.approx(
        0.0, abs=1e-6
    )
    # teacher (0.5, 0.5): 4 * [0.5 ln(0.5 / (2/3)) + 0.5 ln(0.5 / (1/3))] = 2 ln 1.125
    value = divergence(z, t([[0.5, 0.5]]), "kl", temperature=2.0).item()
    assert value == pytest.approx(2 * math.log(1.125), abs=1e-5)


def test_instance_weights_hand_values():
    p = t([[0.7, 0.2, 0.1], [1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    assert instance_weights(p, "none").tolist() == [1.0, 1.0, 1.0]
    assert instance_weights(p, "confidence").tolist() == pytest.approx([0.7, 1.0, 1 / 3])
    # 1 - H / ln 3 with H(0.7, 0.2, 0.1) = 0.8018186
    assert instance_weights(p, "entropy").tolist() == pytest.approx(
        [1 - 0.8018186 / math.log(3), 1.0, 0.0], abs=1e-5
    )
    # T = 2: softmax(log p / 2) = sqrt(p) / sum sqrt(p) -> 0.83666 / 1.60010
    assert instance_weights(p, "calibrated", temperature=2.0)[0].item() == pytest.approx(
        0.83666 / 1.60010, abs=1e-4
    )
    # T = 1 calibration is plain confidence; T < 1 sharpens (more confident)
    assert instance_weights(p, "calibrated", temperature=1.0)[0].item() == pytest.approx(0.7)
    assert instance_weights(p, "calibrated", temperature=0.5)[0].item() > 0.7
    with pytest.raises(ValueError, match="unknown instance weighting"):
        instance_weights(p, "max")


def test_normalize_weights_divides_by_unmasked_sum():
    w = t([0.5, 0.25, 1.0])
    mask = torch.tensor([True, True, False])
    assert normalize_weights(w, mask).tolist() == pytest.approx([2 / 3, 1 / 3, 0.0])
    assert normalize_weights(w, torch.zeros(3, dtype=torch.bool)).tolist() == [0.0, 0.0, 0.0]


def test_distillation_loss_weighting_and_masking():
    z = torch.zeros(3, 2, requires_grad=True)  # q = (0.5, 0.5) for every window
    p = t([[1.0, 0.0], [0.6, 0.4], [float("nan"), float("nan")]])  # third: no teacher output
    mask = torch.tensor([True, True, False])
    # MAE per window: 0.5 and 0.1; confidence 1.0 and 0.6 -> weights 1/1.6 and 0.6/1.6
    loss = DistillationLoss("mae", "confidence")(z, p, mask)
    assert loss.item() == pytest.approx(0.5 / 1.6 + 0.1 * 0.6 / 1.6)
    loss.backward()
    assert torch.isfinite(z.grad).all()
    assert z.grad[2].abs().sum().item() == 0.0  # the masked window gets no gradient
    assert z.grad[0].abs().sum().item() > 0.0
    # unweighted: plain mean over the two unmasked windows
    assert DistillationLoss("mae", "none")(z, p, mask).item() == pytest.approx(0.3)
    # soft CE, mean of -0.5 log 0.5 * 2 terms = ln 2 for both windows
    assert DistillationLoss("ce", "none")(z, p, mask).item() == pytest.approx(LN2, abs=1e-6)


def test_distillation_loss_all_masked_is_zero_with_finite_grad():
    z = torch.randn(4, 7, requires_grad=True)
    p = torch.full((4, 7), float("nan"))
    loss = DistillationLoss("kl", "confidence", temperature=2.0)(z, p, torch.zeros(4, dtype=bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(z.grad, torch.zeros_like(z))


def test_distillation_loss_scale_independent_of_confidence_level():
    z = torch.zeros(2, 2)
    mask = torch.ones(2, dtype=torch.bool)
    sure = DistillationLoss("mae", "confidence")(z, t([[1.0, 0.0], [0.0, 1.0]]), mask)
    # A uniformly less confident but equally wrong-by-MAE batch has the same scale after
    # normalisation (weights 0.9 each -> 0.5 each).
    unsure = DistillationLoss("mae", "confidence")(z, t([[0.9, 0.1], [0.1, 0.9]]), mask)
    assert sure.item() == pytest.approx(0.5)
    assert unsure.item() == pytest.approx(0.4)  # MAE (0.4 + 0.4) / 2, weights sum to 1


def test_calibrated_weighting_uses_the_teacher_temperature():
    z = torch.zeros(2, 3)
    p = t([[0.7, 0.2, 0.1], [0.4, 0.3, 0.3]])
    mask = torch.ones(2, dtype=torch.bool)
    plain = DistillationLoss("mae", "calibrated", calibration_temperature=1.0)(z, p, mask)
    assert plain.item() == pytest.approx(DistillationLoss("mae", "confidence")(z, p, mask).item())
    hot = DistillationLoss("mae", "calibrated", calibration_temperature=3.0)(z, p, mask)
    assert hot.item() != pytest.approx(plain.item())
    with pytest.raises(ValueError, match="unknown distillation loss"):
        DistillationLoss("l1")


def test_supervised_loss_class_weights_and_smoothing():
    logits = t([[math.log(3.0), 0.0], [0.0, 0.0]])  # softmax (0.75, 0.25) and (0.5, 0.5)
    y = torch.tensor([0, 1])
    # unweighted mean of -ln 0.75 and ln 2
    assert SupervisedLoss()(logits, y).item() == pytest.approx((-math.log(0.75) + LN2) / 2)
    # weights (1, 3): (1 * 0.287682 + 3 * 0.693147) / (1 + 3)
    weighted = SupervisedLoss(t([1.0, 3.0]))(logits, y).item()
    assert weighted == pytest.approx((-math.log(0.75) + 3 * LN2) / 4, abs=1e-6)
    # smoothing 0.2 over 2 classes: targets (0.9, 0.1) on softmax (0.75, 0.25)
    smooth = SupervisedLoss(label_smoothing=0.2)(logits[:1], y[:1]).item()
    assert smooth == pytest.approx(-(0.9 * math.log(0.75) + 0.1 * math.log(0.25)), abs=1e-6)
    mixed = SupervisedLoss().mixed(logits[:1], y[:1], torch.tensor([1]), lam=0.3).item()
    assert mixed == pytest.approx(0.3 * -math.log(0.75) + 0.7 * -math.log(0.25), abs=1e-6)


def test_class_weights_inverse_frequency():
    w = class_weights(torch.tensor([0, 0, 0, 1]), 3)  # N / (C n_c) = 4/9, 4/3, absent -> 0
    assert w.tolist() == pytest.approx([4 / 9, 4 / 3, 0.0])
    assert class_weights(torch.tensor([0, 1, 2, 0, 1, 2]), 3).tolist() == pytest.approx([1, 1, 1])
