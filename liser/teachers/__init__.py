"""Teachers that label unlabeled windows: audio (HF encoders, Whisper, liser students) and video.

``load_audio_teacher(spec)`` takes any of:
- a folder saved by ``liser teacher fit-audio`` (``teacher.json``: base encoder + LoRA + head);
- a liser student checkpoint folder (``checkpoint.json``), or several joined by commas (an
  ensemble: probabilities averaged);
- a transformers audio-classification model (hub id or folder with ``id2label``).
A bare encoder (``facebook/hubert-base-ls960``, a CTranslate2 Whisper folder, ``openai/whisper-base``)
has no classes: fit a head on it first with ``liser teacher fit-audio``.
"""

from __future__ import annotations

import json
from pathlib import Path

from .base import (
    EnsembleTeacher,
    StudentTeacher,
    Teacher,
    TeacherError,
    predict_manifest,
    read_calibration,
)

__all__ = [
    "Teacher",
    "TeacherError",
    "load_audio_teacher",
    "load_teacher_predictor",
    "load_video_teacher",
    "predict_manifest",
]


def load_audio_teacher(
    spec: str, config=None, device: str = "cpu", precision: str | None = None
) -> Teacher:
    """An audio teacher (eval mode, on ``device``) from a SPEC; see the module docstring.

    ``config``: an ``AudioTeacherConfig`` whose ``precision``/``batch_size`` apply to teachers
    that do not carry their own; ``precision`` overrides ("auto" | "fp32" | "bf16" | "fp16")."""
    from liser.devices import resolve_device

    from .audio import (
        TEACHER_FILE,
        HFClassifierTeacher,
        load_fitted_teacher,
        require_safetensors,
        resolve_spec,
    )

    dev = resolve_device(device)
    precision = precision or getattr(config, "precision", "auto")
    specs = [s.strip() for s in str(spec).split(",") if s.strip()]
    if not specs:
        raise TeacherError("empty audio teacher spec")
    if len(specs) > 1:
        members = [load_audio_teacher(s, config, device, precision) for s in specs]
        ensemble = EnsembleTeacher(members, specs)
        first = resolve_spec(specs[0])[0]
        ensemble.temperature = read_calibration(
            first, members=[str(resolve_spec(s)[0]) for s in specs]
        )
        return ensemble
    folder, fingerprint = resolve_spec(specs[0])
    if folder.is_file() and folder.name in ("checkpoint.json", TEACHER_FILE):
        folder = folder.parent
    require_safetensors(folder, spec)  # a transformers folder with pickled weights only
    if (folder / TEACHER_FILE).is_file():
        teacher = load_fitted_teacher(folder, dev, precision)
    elif (folder / "checkpoint.json").is_file():
        teacher = StudentTeacher(folder, dev, precision)
    elif (
        (folder / "config.json").is_file()
        and not (folder / "model.bin").is_file()
        and (require_safetensors(folder, spec) or _is_audio_classifier(folder))
    ):
        teacher = HFClassifierTeacher(folder, fingerprint, dev, precision)
    elif folder.is_file() and folder.suffix in (".pt", ".pth", ".bin", ".pkl", ".ckpt"):
        raise TeacherError(
            f"audio teacher '{spec}' ({folder.name}) is a pickle file, which liser does not load "
            "(unpickling can run arbitrary code); pass a transformers model folder (safetensors), "
            "a CTranslate2 Whisper folder, a folder saved by `liser teacher fit-audio`, or a liser "
            "checkpoint folder"
        )
    else:
        raise TeacherError(
            f"audio teacher '{spec}' ({folder}) is an encoder without a classification head (or not "
            "a model at all); fit a head on it first: `liser teacher fit-audio CONFIG` with "
            f"spec: {spec}, then pass the folder it writes"
        )
    if hasattr(config, "batch_size") and not (folder / TEACHER_FILE).is_file():
        teacher.batch_size = config.batch_size
    return teacher


def load_teacher_predictor(
    spec: str, device: str = "cpu", window_seconds=None, hop_seconds=None, batch_size: int = 32
):
    """An audio teacher behind ``liser.predict.Predictor``'s interface, for ``liser evaluate``:
    ``predict.load`` can return this when the folder holds ``teacher.json``."""
    from .base import TeacherPredictor

    teacher = load_audio_teacher(spec, device=device)
    teacher.batch_size = batch_size
    return TeacherPredictor(teacher, window_seconds, hop_seconds)


def _is_audio_classifier(folder: Path) -> bool:
    config = folder / "config.json"
    if not config.is_file() or (folder / "model.bin").is_file():
        return False
    data = json.loads(config.read_text())
    archs = data.get("architectures") or []
    return bool(data.get("id2label")) and any(
        "SequenceClassification" in a or "AudioClassification" in a for a in archs
    )


def load_video_teacher(*args, **kwargs):
    """See ``liser.teachers.video.load_video_teacher``."""
    from .video import load_video_teacher as load

    return load(*args, **kwargs)
