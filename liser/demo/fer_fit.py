"""The demo's video teacher: a small facial-expression CNN fitted on a rendered FER image set.

As the paper's video teacher was trained on a facial-expression corpus of its own (not on the
speech corpus), the demo's is fitted on still faces of many rendered identities that are not
speakers of the corpus: the analogue of FER2013. Faces are found and cropped exactly as
``liser.teachers.video.VideoTeacher`` does when it labels (same detector, margin, crop size).
The model is saved as TorchScript with a ``classes.json``, a FER SPEC folder that
``liser.teachers.load_video_teacher`` (and ``liser label --video-teacher``) accepts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

CROP_SIZE = 24  # pixels, square gray face crops: drawn faces need no more, and it is fast
HAAR_FILE = "haarcascade_frontalface_default.xml"


def haar_cascade() -> Path:
    """OpenCV's frontal-face Haar cascade as shipped in the opencv-python wheel."""
    import cv2

    path = Path(cv2.data.haarcascades) / HAAR_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: OpenCV's Haar cascade is missing from this OpenCV install; "
            "pass --face-detector with a Haar .xml or BlazeFace .tflite file"
        )
    return path


FACE_MARGIN = 0.2  # crop margin of the demo's FER image set, and of its video teacher when labeling


class TinyFER(nn.Module):
    """Three conv blocks and a linear layer: gray crops (N, 1, 24, 24) -> logits (N, C)."""

    def __init__(self, n_classes: int, channels: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        layers, c_in = [], 1
        for c_out in channels:
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(c_in, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # each crop standardised: skin tone, lighting and contrast say nothing about expression
        x = x - x.mean(dim=(2, 3), keepdim=True)
        x = x / (x.square().mean(dim=(2, 3), keepdim=True).sqrt() + 1e-3)
        x = self.features(x).mean(dim=(2, 3))
        return self.head(self.dropout(x))


def fer_image_set(
    n_faces: int,
    classes: tuple[str, ...],
    detector_path: str | Path,
    seed: int = 0,
    stills: int = 4,
    frame_size: int = 80,
    margin: float = FACE_MARGIN,
) -> tuple[np.ndarray, np.ndarray]:
    """A FER2013-like training set: still faces of ``n_faces`` random identities (none of them a
    corpus speaker) with every expression at random intensities, mouth openings and blinks,
    cropped by the detector as at labeling time. Returns crops uint8 (N, 24, 24), labels (N,)."""
    from liser.teachers.faces import crop_face, largest_face, load_face_detector

    from .face import expression, face_intensity, random_face, render_face

    detector = load_face_detector(detector_path)
    rng = np.random.default_rng([seed, 48_000])  # a stream of its own, not the corpus's
    crops, labels = [], []
    for _ in range(n_faces):
        style = random_face(rng)
        for index, emotion in enumerate(classes):
            for _ in range(stills):
                intensity = 1.0 if emotion == "neutral" else rng.uniform(0.5, 1.0)
                face = expression(emotion, face_intensity(intensity))
                frame = render_face(style, face, rng.random(1), 25.0, frame_size, rng)[0]
                box = largest_face(detector.detect(frame))
                if box is not None:
                    crops.append(crop_face(frame, box, (CROP_SIZE, CROP_SIZE), margin, gray=True))
                    labels.append(index)
    if not crops:
        raise ValueError(f"{detector_path}: found no face in the rendered FER image set")
    return np.stack(crops), np.array(labels, dtype=np.int64)


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random zoom (0.85-1.15), shift (+-10 %), horizontal flip, gamma, contrast, noise:
    x (B, 1, H, W) in [-1, 1]."""
    b = x.shape[0]
    u = torch.rand(b, 6, generator=generator)
    scale = 0.85 + 0.3 * u[:, 0]
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = torch.where(u[:, 1] < 0.5, -scale, scale)  # flip
    theta[:, 1, 1] = scale
    theta[:, :, 2] = 0.2 * (u[:, 2:4] - 0.5)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    gamma = (0.6 + 0.8 * u[:, 4]).view(b, 1, 1, 1)
    x = ((x + 1) / 2).clamp(0, 1) ** gamma * 2 - 1
    x = x * (0.6 + 0.8 * u[:, 5]).view(b, 1, 1, 1)
    return x + 0.05 * torch.randn(x.shape, generator=generator)


def fit_face_model(
    crops: np.ndarray, labels: np.ndarray, n_classes: int, epochs: int = 8, seed: int = 0
) -> TinyFER:
    """Train a ``TinyFER`` on crops (N, 24, 24) uint8 with class labels (N,); eval mode."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = TinyFER(n_classes)
    x = torch.from_numpy(crops).float().div(255.0).sub(0.5).div(0.5)[:, None]  # as FERModel does
    y = torch.from_numpy(labels)
    batch = 64
    steps = max(1, len(x) // batch) * epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-3, total_steps=steps)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for i in range(max(1, len(x) // batch)):
            idx = order[i * batch : (i + 1) * batch]
            loss = F.cross_entropy(model(_augment(x[idx], generator)), y[idx], label_smoothing=0.05)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def save_face_model(model: TinyFER, classes: tuple[str, ...], folder: str | Path) -> Path:
    """Write ``folder/model.pt`` (TorchScript) and ``folder/classes.json``, atomically."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    example = torch.zeros(1, 1, CROP_SIZE, CROP_SIZE)
    with torch.no_grad():
        traced = torch.jit.trace(model.eval(), example)
    traced.save(str(tmp / "model.pt"))
    spec = {
        "classes": list(classes),
        "input": {
            "size": [CROP_SIZE, CROP_SIZE],
            "color": "gray",
            "layout": "NCHW",
            "mean": [0.5],
            "std": [0.5],
            "output": "logits",
        },
    }
    (tmp / "classes.json").write_text(json.dumps(spec, indent=2) + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def fit_video_teacher(
    folder: str | Path,
    classes: tuple[str, ...],
    detector_path: str | Path,
    n_faces: int = 80,
    epochs: int = 20,
    seed: int = 0,
    margin: float = FACE_MARGIN,
) -> dict:
    """Fit the demo's FER model on a rendered FER image set (``fer_image_set``) and save it to
    ``folder``. Returns {"path", "faces", "crops", "train_accuracy"}."""
    crops, labels = fer_image_set(n_faces, classes, detector_path, seed, margin=margin)
    model = fit_face_model(crops, labels, len(classes), epochs, seed)
    with torch.no_grad():
        x = torch.from_numpy(crops).float().div(255.0).sub(0.5).div(0.5)[:, None]
        accuracy = float((model(x).argmax(1).numpy() == labels).mean())
    path = save_face_model(model, classes, folder)
    return {
        "path": str(path),
        "faces": n_faces,
        "crops": int(len(crops)),
        "train_accuracy": accuracy,
    }
