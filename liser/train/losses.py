"""Training losses of LiSER: supervised cross-entropy, distillation divergences, instance weights.

The paper (Hussain et al., "Leveraging Unlabeled Audio-Visual Data in Speech Emotion Recognition
using Knowledge Distillation", arXiv 2507.00055) trains the student jointly with

    L = CE(supervised head, y) + lambda_a * D(audio head, p_audio) + lambda_v * D(video head, p_video)

where D is the mean absolute error between the head's softmax and the teacher's soft labels, and each
unlabeled window is weighted by the teacher's confidence (its maximum probability). The other
divergences and weightings here are the ablations the paper compares (CE) or asks about (calibrated
confidence, entropy).

Shapes: ``B`` windows in a batch, ``C`` classes of the head / teacher.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

DIVERGENCES = ("mae", "ce", "kl", "mse")
WEIGHTINGS = ("none", "confidence", "entropy", "calibrated")
_EPS = 1e-8


def class_weights(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Inverse-frequency class weights ``w_c = N / (C * n_c)`` (1 on balanced data).

    labels : (N,) int64 class indices of the training clips. A class absent from ``labels`` gets
    weight 0 (it cannot be learned from these data). Returns (C,) float32.
    """
    counts = torch.bincount(labels, minlength=n_classes).float()
    weights = torch.where(counts > 0, labels.numel() / (n_classes * counts.clamp(min=1)), 0.0)
    return weights


class SupervisedLoss(nn.Module):
    """Cross-entropy on labeled clips, with optional class weights and label smoothing.

    ``CE = - sum_i w_{y_i} sum_c q_ic log softmax(z_i)_c / sum_i w_{y_i}`` with
    ``q_ic = (1 - eps) [c = y_i] + eps / C`` (label smoothing ``eps``) and ``w`` the class weights
    (all 1 when None). This is ``torch.nn.functional.cross_entropy`` with ``weight`` and
    ``label_smoothing``; the paper's supervised term is the case ``w = 1, eps = 0``.
    Mixup is handled by :meth:`mixed`.
    """

    def __init__(self, weights: torch.Tensor | None = None, label_smoothing: float = 0.0):
        super().__init__()
        self.register_buffer("weights", weights, persistent=False)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """logits (B, C) raw scores, targets (B,) int64 -> scalar."""
        weight = None if self.weights is None else self.weights.to(logits.device)
        return F.cross_entropy(
            logits.float(), targets, weight=weight, label_smoothing=self.label_smoothing
        )

    def mixed(
        self, logits: torch.Tensor, targets: torch.Tensor, other: torch.Tensor, lam: float
    ) -> torch.Tensor:
        """Mixup loss ``lam * CE(z, y) + (1 - lam) * CE(z, y')`` for inputs mixed with weight lam."""
        return lam * self(logits, targets) + (1.0 - lam) * self(logits, other)


def divergence(
    student_logits: torch.Tensor,
    teacher_probs: torch.Tensor,
    kind: str = "mae",
    temperature: float = 1.0,
) -> torch.Tensor:
    """Per-window distance between a distillation head and the teacher's soft labels.

    student_logits : (B, C) raw scores ``z``; q = softmax(z).
    teacher_probs : (B, C) probabilities ``p`` (rows sum to 1).
    Returns (B,) float32, one value per window:

    - ``"mae"`` (the paper's): ``(1/C) * sum_c |q_c - p_c|``, the mean absolute error over classes
      (so its range is [0, 2/C]); bounded gradients make it robust to noisy teachers.
    - ``"ce"``: soft cross-entropy ``-sum_c p_c log q_c``.
    - ``"kl"``: ``T^2 * KL(p_T || q_T) = T^2 * sum_c p_T,c (log p_T,c - log q_T,c)`` with
      ``q_T = softmax(z / T)`` and the teacher softened the same way, ``p_T = softmax(log p / T)``
      (Hinton et al. 2015; the ``T^2`` keeps gradient scale independent of T).
    - ``"mse"``: ``(1/C) * sum_c (q_c - p_c)^2``.
    """
    z = student_logits.float()
    p = teacher_probs.float()
    if kind == "mae":
        return (z.softmax(-1) - p).abs().mean(-1)
    if kind == "mse":
        return (z.softmax(-1) - p).pow(2).mean(-1)
    if kind == "ce":
        return -(p * z.log_softmax(-1)).sum(-1)
    if kind == "kl":
        log_q = (z / temperature).log_softmax(-1)
        log_p = (p.clamp(min=_EPS).log() / temperature).log_softmax(-1)
        return temperature**2 * (log_p.exp() * (log_p - log_q)).sum(-1)
    raise ValueError(f"unknown distillation loss '{kind}'; choose one of {', '.join(DIVERGENCES)}")


def instance_weights(
    teacher_probs: torch.Tensor, kind: str = "confidence", temperature: float = 1.0
) -> torch.Tensor:
    """Weight of each unlabeled window from the teacher's soft labels p (B, C) -> (B,) in [0, 1].

    - ``"none"``: 1.
    - ``"confidence"`` (the paper's): ``max_c p_c``.
    - ``"entropy"``: ``1 - H(p) / log C`` with ``H(p) = -sum_c p_c log p_c`` (1 for a one-hot
      teacher, 0 for a uniform one).
    - ``"calibrated"``: ``max_c softmax(log p / T)_c``, the confidence after temperature scaling with
      the teacher's fitted temperature ``T`` (from the store's teacher metadata; T > 1 softens an
      over-confident teacher).
    """
    p = teacher_probs.float()
    if kind == "none":
        return torch.ones(p.shape[0], device=p.device)
    if kind == "confidence":
        return p.max(-1).values
    if kind == "entropy":
        n_classes = p.shape[-1]
        entropy = -(p * p.clamp(min=_EPS).log()).sum(-1)
        return (1.0 - entropy / math.log(n_classes)).clamp(0.0, 1.0)
    if kind == "calibrated":
        return (p.clamp(min=_EPS).log() / temperature).softmax(-1).max(-1).values
    raise ValueError(f"unknown instance weighting '{kind}'; choose one of {', '.join(WEIGHTINGS)}")


def normalize_weights(weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-batch normalisation: ``w_i * m_i / sum_j (w_j * m_j)``, zero where masked.

    The weighted loss ``sum_i w_i D_i`` is then a weighted *mean* over the windows that have a
    teacher output, so its scale does not depend on how confident the teacher is on average or on
    how many windows are masked, and lambda keeps one meaning across weightings. With
    ``weighting="none"`` it is the plain mean over unmasked windows. All-masked (or all-zero)
    batches give all-zero weights.
    """
    w = weights.float() * mask.float()
    total = w.sum()
    return torch.where(total > 0, w / total.clamp(min=_EPS), torch.zeros_like(w))


class DistillationLoss(nn.Module):
    """``L_D = sum_i wn_i * D(z_i, p_i)`` over one head, ``wn`` from :func:`normalize_weights`.

    D is :func:`divergence` (``loss``: "mae" | "ce" | "kl" | "mse"), the raw weights come from
    :func:`instance_weights` (``weighting``), windows whose ``mask`` is False (no teacher output, e.g.
    no face found) contribute nothing. ``calibration_temperature`` is the teacher's fitted T for
    ``weighting="calibrated"``; ``temperature`` is the KL temperature. Paper's setting:
    ``DistillationLoss("mae", "confidence")``.
    """

    def __init__(
        self,
        loss: str = "mae",
        weighting: str = "confidence",
        temperature: float = 1.0,
        calibration_temperature: float = 1.0,
    ):
        super().__init__()
        if loss not in DIVERGENCES:
            raise ValueError(f"unknown distillation loss '{loss}'; choose one of {DIVERGENCES}")
        if weighting not in WEIGHTINGS:
            raise ValueError(
                f"unknown instance weighting '{weighting}'; choose one of {WEIGHTINGS}"
            )
        self.loss, self.weighting = loss, weighting
        self.temperature, self.calibration_temperature = temperature, calibration_temperature

    def forward(
        self, student_logits: torch.Tensor, teacher_probs: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """student_logits (B, C), teacher_probs (B, C), mask (B,) bool -> scalar."""
        # Rows without a teacher output may hold anything (NaN, zeros): replace them before use.
        safe = torch.where(
            mask[:, None], teacher_probs.float(), torch.full_like(teacher_probs.float(), 1.0)
        )
        safe = safe / safe.sum(-1, keepdim=True)
        temperature = self.calibration_temperature if self.weighting == "calibrated" else 1.0
        weights = normalize_weights(instance_weights(safe, self.weighting, temperature), mask)
        per_window = divergence(student_logits, safe, self.loss, self.temperature)
        return (weights.detach() * per_window).sum()
