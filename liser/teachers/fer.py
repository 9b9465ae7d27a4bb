"""Facial-expression (FER) models: Keras HDF5 (ported to torch), ONNX, TorchScript.

A SPEC is a model file (``.hdf5``/``.h5``, ``.onnx``, TorchScript ``.pt``/``.pth``) or a folder
with one model file and ``classes.json``::

    {"classes": ["angry", ...],
     "input": {"size": [224, 224], "color": "rgb", "layout": "NCHW",
               "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
               "output": "logits"}}

The input is ``(x / 255 - mean) / std`` on uint8 crops. A file may also carry its JSON beside it
(``model.onnx`` + ``model.json``). Keras HDF5 files need no JSON: their input shape comes from the
file, classes default to FER2013's and the preprocessing to ``x / 255 * 2 - 1`` (mean 0.5,
std 0.5), as in the code that trained the mini-/big-Xception models.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from liser.constants import FER_CLASSES

MODEL_SUFFIXES = (".hdf5", ".h5", ".onnx", ".pt", ".pth", ".ts")


class FERModelError(ValueError):
    """A FER SPEC that is not a supported model; the message names the file and why."""


@dataclass(frozen=True)
class InputSpec:
    """How a FER model wants its face crops."""

    size: tuple[int, int] = (64, 64)  # (height, width) in pixels
    color: str = "gray"  # "gray" | "rgb" | "bgr"
    layout: str = "NHWC"  # "NHWC" | "NCHW"
    mean: tuple[float, ...] = (0.5,)  # subtracted from x / 255, per channel
    std: tuple[float, ...] = (0.5,)
    output: str = "logits"  # "logits" | "probs" (what the model returns)

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3


@dataclass
class FERModel:
    """A loaded FER model. ``logits(crops)`` runs it on face crops prepared by ``faces.crop_face``."""

    path: Path
    classes: tuple[str, ...]
    spec: InputSpec
    fingerprint: str  # sha256 of the model file (and its JSON), 16 hex digits
    backend: str  # "keras-h5" | "onnx" | "torchscript"
    runner: object = field(repr=False)

    def preprocess(self, crops: np.ndarray) -> np.ndarray:
        """uint8 crops (N, H, W) or (N, H, W, 3) RGB -> float32 model input in its layout."""
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[..., None]
        if self.spec.color == "gray" and crops.shape[-1] == 3:
            weights = np.array([0.299, 0.587, 0.114], np.float32)
            crops = (crops.astype(np.float32) @ weights)[..., None]
        elif self.spec.color != "gray" and crops.shape[-1] == 1:
            crops = np.repeat(crops, 3, axis=-1)
        elif self.spec.color == "bgr":
            crops = crops[..., ::-1]
        mean = np.asarray(self.spec.mean, np.float32)
        std = np.asarray(self.spec.std, np.float32)
        x = (crops.astype(np.float32) / 255.0 - mean) / std
        if self.spec.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=np.float32)

    def logits(self, crops: np.ndarray) -> np.ndarray:
        """Face crops (N, H, W[, 3]) uint8 at ``spec.size`` -> logits (N, C) float32.

        Models that return probabilities give ``log(p)``: softmax of it is p again.
        """
        if len(crops) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        x = self.preprocess(crops)
        if self.backend == "onnx":
            first = self.runner.get_inputs()[0]
            if first.shape and first.shape[0] == 1:  # exported with a fixed batch of one
                out = np.concatenate(
                    [self.runner.run(None, {first.name: x[i : i + 1]})[0] for i in range(len(x))]
                )
            else:
                out = self.runner.run(None, {first.name: x})[0]
        else:
            with torch.inference_mode():
                out = self.runner(torch.from_numpy(x))
                out = (out[0] if isinstance(out, (tuple, list)) else out).float().numpy()
        out = np.asarray(out, np.float32).reshape(len(x), -1)
        if out.shape[1] != len(self.classes):
            raise FERModelError(
                f"{self.path}: model gives {out.shape[1]} outputs for {len(self.classes)} classes"
            )
        if self.spec.output == "probs":
            out = np.log(np.clip(out, 1e-8, None))
        return out

    def predict(self, crops: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        """Face crops -> class probabilities (N, C), softmax(logits / temperature)."""
        return softmax(self.logits(crops) / temperature)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, float32."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def _sha256(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _find_model(folder: Path) -> Path:
    models = sorted(p for p in folder.iterdir() if p.suffix.lower() in MODEL_SUFFIXES)
    if len(models) != 1:
        found = ", ".join(p.name for p in models) or "none"
        raise FERModelError(
            f"{folder}: expected exactly one model file ({', '.join(MODEL_SUFFIXES)}), found {found}"
        )
    return models[0]


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise FERModelError(f"{path}: cannot read the model's JSON ({error})") from error
    if not isinstance(data, dict):
        raise FERModelError(f"{path}: must be a JSON object with 'classes' and 'input'")
    return data


def _input_spec(data: dict, where: Path) -> InputSpec:
    raw = dict(data.get("input", {}))
    if "output" in data and "output" not in raw:
        raw["output"] = data["output"]
    names = set(InputSpec.__dataclass_fields__)
    unknown = set(raw) - names
    if unknown:
        raise FERModelError(
            f"{where}: unknown input keys {sorted(unknown)} (valid: {sorted(names)})"
        )
    for key in ("size", "mean", "std"):
        if key in raw:
            raw[key] = tuple(float(v) if key != "size" else int(v) for v in raw[key])
    spec = InputSpec(**raw)
    if spec.color not in ("gray", "rgb", "bgr") or spec.layout not in ("NHWC", "NCHW"):
        raise FERModelError(f"{where}: input color must be gray|rgb|bgr and layout NHWC|NCHW")
    if spec.output not in ("logits", "probs") or len(spec.size) != 2:
        raise FERModelError(f"{where}: output must be logits|probs and size [height, width]")
    return spec


def load_fer_model(spec: str | Path) -> FERModel:
    """Load a FER model from a file or a folder (see the module docstring)."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise FERModelError(f"{path}: no such FER model file or folder")
    json_path = None
    if path.is_dir():
        json_path = path / "classes.json"
        if not json_path.exists():
            raise FERModelError(f"{path}: a FER model folder needs a classes.json")
        model_path = _find_model(path)
    else:
        model_path = path
        if path.with_suffix(".json").exists():
            json_path = path.with_suffix(".json")
    suffix = model_path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise FERModelError(
            f"{model_path}: not a supported FER model (expected {', '.join(MODEL_SUFFIXES)} "
            "or a folder with a model and classes.json)"
        )
    data = _read_json(json_path) if json_path else {}
    files = [model_path] + ([json_path] if json_path else [])
    if suffix in (".hdf5", ".h5"):
        return _load_keras(model_path, data, files)
    if "classes" not in data:
        raise FERModelError(
            f"{model_path}: ONNX/TorchScript models need their class list: put the model in a "
            "folder with classes.json, or write " + model_path.with_suffix(".json").name
        )
    classes = tuple(str(c) for c in data["classes"])
    input_spec = _input_spec(data, json_path)
    if suffix == ".onnx":
        runner = _load_onnx(model_path)
        backend = "onnx"
    else:
        try:
            runner = torch.jit.load(str(model_path), map_location="cpu").eval()
        except (RuntimeError, ValueError) as error:
            raise FERModelError(f"{model_path}: not a TorchScript model ({error})") from error
        backend = "torchscript"
    return FERModel(model_path, classes, input_spec, _sha256(files), backend, runner)


def _load_keras(model_path: Path, data: dict, files: list[Path]) -> FERModel:
    from .keras_h5 import KerasModelError, load_keras_h5

    try:
        module, (height, width, channels) = load_keras_h5(model_path)
    except KerasModelError as error:
        raise FERModelError(str(error)) from error
    input_data = {"size": [height, width], "color": "gray" if channels == 1 else "rgb"}
    input_data.update(data.get("input", {}))
    if not module.ends_in_softmax:
        input_data.setdefault("output", "logits")
    input_spec = _input_spec({"input": input_data}, model_path)
    classes = tuple(data.get("classes", FER_CLASSES))
    return FERModel(model_path, classes, input_spec, _sha256(files), "keras-h5", module)


def _load_onnx(model_path: Path):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    try:
        return onnxruntime.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:  # onnxruntime raises its own untyped errors
        raise FERModelError(f"{model_path}: not a valid ONNX model ({error})") from error
