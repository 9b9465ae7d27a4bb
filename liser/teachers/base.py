"""What every audio teacher shares: windows of a clip, batching, precision, temperature, and the
teachers that need no encoder (liser student checkpoints and ensembles)."""

from __future__ import annotations

import abc
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from liser.constants import SAMPLE_RATE
from liser.devices import autocast_dtype, precision_name
from liser.files import write_json
from liser.windows import Clip, WindowSpec

log = logging.getLogger(__name__)
CALIBRATION_FILE = "calibration.json"


class TeacherError(ValueError):
    """A teacher spec that cannot be loaded; the message names the spec and the reason."""


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def clip_windows(
    wave: np.ndarray, window: int, hop: int, pad: str = "zero"
) -> tuple[np.ndarray, np.ndarray]:
    """Windows covering a clip (``windows.WindowSpec`` in samples, any tail covered by one more
    window aligned to the end): (K, window) float32 and their valid lengths (K,) in samples.

    A clip shorter than ``window`` gives one window, zero-padded (length = clip) or tiled
    (``pad="repeat"``, full length)."""
    wave = np.asarray(wave, dtype=np.float32)
    n = wave.shape[0]
    if n <= window:
        if pad == "repeat" and n > 0:
            return np.resize(wave, window)[None], np.array([window])
        return np.pad(wave, (0, window - n))[None], np.array([n])
    starts = WindowSpec(window, hop, min_tail_seconds=0.0, pad=pad).starts(n, rate=1)
    return np.stack([wave[s : s + window] for s in starts]), np.full(len(starts), window)


class Teacher(abc.ABC):
    """Base of audio teachers: ``classes``, ``fingerprint``, ``predict(waves (B, N)) -> (B, C)``.

    Subclasses implement ``logits(waves (B, N) tensor, lengths (B,)) -> (B, C)``; probabilities are
    ``softmax(logits / temperature)`` (temperature from calibration, 1.0 = as trained)."""

    classes: tuple[str, ...] = ()
    fingerprint: str = ""
    temperature: float = 1.0
    window_seconds: float = 3.0
    hop_seconds: float = 1.0
    pad: str = "zero"
    batch_size: int = 32
    device: torch.device = torch.device("cpu")
    dtype: torch.dtype | None = None

    @abc.abstractmethod
    def logits(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, C) logits of waves (B, N) whose first ``lengths`` samples hold audio."""

    @torch.no_grad()
    def predict(self, waves: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities of 16 kHz windows: waves (B, N) float32 -> (B, C) float32.
        ``lengths`` (B,) marks how many samples of each row hold audio (the rest is padding)."""
        waves = np.asarray(waves, dtype=np.float32)
        if waves.ndim != 2:
            raise ValueError(f"waves must be (batch, samples), got shape {waves.shape}")
        if lengths is None:
            lengths = np.full(len(waves), waves.shape[1])
        out = []
        for i in range(0, len(waves), self.batch_size):
            x = torch.from_numpy(waves[i : i + self.batch_size]).to(self.device)
            n = torch.as_tensor(lengths[i : i + self.batch_size], device=self.device)
            with autocast(self.device, self.dtype):
                z = self.logits(x, n).float()
            out.append(torch.softmax(z / self.temperature, dim=-1).cpu().numpy())
        if not out:
            return np.zeros((0, len(self.classes)), np.float32)
        return np.concatenate(out).astype(np.float32)

    def predict_clip(self, wave: np.ndarray) -> np.ndarray:
        """Probabilities (C,) of a whole clip: the mean over its windows."""
        window = round(self.window_seconds * SAMPLE_RATE)
        hop = round(self.hop_seconds * SAMPLE_RATE)
        windows, lengths = clip_windows(wave, window, hop, self.pad)
        return self.predict(windows, lengths).mean(axis=0)

    def set_temperature(self, temperature: float) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)


def predict_manifest(teacher: Teacher, df, progress: bool = True) -> np.ndarray:
    """Clip probabilities (N, C) for every row of a manifest; rows whose audio cannot be read are
    NaN (logged with the file and the reason)."""
    from rich.progress import track

    from liser.audio import AudioError

    out = np.full((len(df), len(teacher.classes)), np.nan, np.float32)
    rows = list(df.itertuples(index=False))
    for i, row in enumerate(track(rows, "teacher", disable=not progress, transient=True)):
        try:
            wave = Clip.from_row(row).load_audio()
        except AudioError as e:
            log.warning("skipped: %s", e)
            continue
        out[i] = teacher.predict_clip(wave)
    return out


def read_calibration(folder: Path, members: list[str] | None = None) -> float:
    """The temperature stored with a teacher folder (1.0 when none is stored)."""
    path = folder / CALIBRATION_FILE
    if not path.is_file():
        return 1.0
    data = json.loads(path.read_text())
    if data.get("members") != members:  # an ensemble's temperature is not its members'
        return 1.0
    return float(data.get("temperature", 1.0))


def write_calibration(folder: Path, info: dict) -> Path:
    """Store a calibration (``temperature`` plus diagnostics) with a teacher folder, atomically."""
    return write_json(Path(folder) / CALIBRATION_FILE, info, indent=2)


def quick_hash(paths: list[Path], chunk: int = 1 << 22) -> str:
    """sha1 over each file's size, first and last 4 MiB: a fast fingerprint of large weights."""
    h = hashlib.sha1()
    for path in sorted(paths):
        size = os.path.getsize(path)
        h.update(f"{path.name}:{size}".encode())
        with open(path, "rb") as f:
            h.update(f.read(chunk))
            if size > chunk:
                f.seek(max(chunk, size - chunk))
                h.update(f.read(chunk))
    return h.hexdigest()[:16]


class StudentTeacher(Teacher):
    """A trained liser student checkpoint as a teacher: its supervised head's softmax."""

    def __init__(self, folder: Path, device: torch.device, precision: str = "auto"):
        from liser.checkpoint import load_checkpoint, logmel_for
        from liser.config import FrontEndConfig, from_dict

        self.model, meta = load_checkpoint(folder)
        frontend = from_dict(FrontEndConfig, meta["frontend"])
        self.frontend = logmel_for(meta, device)  # with the training clips' statistics
        self.model.to(device).eval()
        self.classes = tuple(meta["classes"])
        self.window_seconds = frontend.window_seconds
        self.pad = frontend.pad
        self.device, self.dtype = device, autocast_dtype(device, precision)
        weights = [p for p in Path(folder).glob("*.safetensors")]
        self.fingerprint = f"student:{quick_hash(weights + [Path(folder) / 'checkpoint.json'])}"
        self.temperature = read_calibration(Path(folder))

    def logits(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, enabled=False):
            features = self.frontend(waves.float())
        return self.model(features)["logits"]


class EnsembleTeacher(Teacher):
    """Several teachers with the same classes; probabilities averaged. ``logits`` = log of the
    mean probability, so a temperature applies to the ensemble as a whole."""

    def __init__(self, members: list[Teacher], specs: list[str]):
        classes = {m.classes for m in members}
        if len(classes) != 1:
            raise TeacherError(f"ensemble members have different classes: {sorted(classes)}")
        self.members = members
        self.classes = members[0].classes
        self.device = members[0].device
        self.dtype = members[0].dtype
        self.window_seconds = members[0].window_seconds
        self.pad = members[0].pad
        joined = "+".join(m.fingerprint for m in members)
        self.fingerprint = "ensemble:" + hashlib.sha1(joined.encode()).hexdigest()[:16]
        self.specs = specs

    def logits(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        probs = [
            torch.softmax(m.logits(waves, lengths).float() / m.temperature, -1)
            for m in self.members
        ]
        return torch.stack(probs).mean(0).clamp_min(1e-12).log()


class TeacherPredictor:
    """A teacher with the interface of ``liser.predict.Predictor`` (``classes``, ``frontend``,
    ``window_seconds``, ``hop_seconds``, ``predict(wave) -> {"probs": {class: p}, ...}``), so that
    ``liser evaluate`` can score teachers as it scores students."""

    def __init__(
        self,
        teacher: Teacher,
        window_seconds: float | None = None,
        hop_seconds: float | None = None,
    ):
        from liser.config import FrontEndConfig

        self.teacher = teacher
        self.classes = teacher.classes
        self.window_seconds = teacher.window_seconds = window_seconds or teacher.window_seconds
        self.hop_seconds = teacher.hop_seconds = hop_seconds or teacher.hop_seconds
        self.frontend = FrontEndConfig(window_seconds=self.window_seconds)
        self.precision = precision_name(teacher.dtype)  # recorded in evaluation reports

    def predict(self, waveform, sample_rate: int | None = None) -> dict:
        if sample_rate not in (None, SAMPLE_RATE):
            raise ValueError(f"teachers take {SAMPLE_RATE} Hz audio, got {sample_rate} Hz")
        wave = np.asarray(waveform, dtype=np.float32).reshape(-1)
        probs = self.teacher.predict_clip(wave)
        return {
            "duration": len(wave) / SAMPLE_RATE,
            "label": self.classes[int(probs.argmax())],
            "probs": {c: round(float(p), 6) for c, p in zip(self.classes, probs, strict=True)},
        }
