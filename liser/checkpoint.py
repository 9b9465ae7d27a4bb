"""Student checkpoints: ``model.safetensors`` (weights) + ``checkpoint.json`` (what they are).

A checkpoint folder describes itself: the student and front-end configs it was built with, the
class names of its three heads, training config, metrics, seed and library versions. The same
meta is also embedded in the safetensors header, so the weights file alone is a complete
checkpoint and a crash between writing the two files never leaves an unusable folder.

Only safetensors are read: pickle-based files (.pt, .pth, .bin, .ckpt) are refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .config import ConfigError, FrontEndConfig, StudentConfig, from_dict, to_dict
from .student import Student, count_macs, count_parameters

log = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
META_NAME = "checkpoint.json"
FORMAT = "liser-student"
FORMAT_VERSION = 1
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle", ".tar")


class CheckpointError(ValueError):
    """A checkpoint that cannot be written or read; the message names the file and the reason."""


def library_versions() -> dict[str, str]:
    """Versions of liser, torch, numpy and python, for reproducibility records."""
    from . import __version__

    return {
        "liser": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _json_default(value: Any):
    if isinstance(value, (np.generic, torch.Tensor)):
        return value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, fsync, then rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _check_classes(meta: dict, model: Student) -> None:
    if not meta.get("classes"):
        raise CheckpointError("checkpoint meta needs 'classes' (the supervised head's class names)")
    for key, head in (
        ("classes", "logits"),
        ("audio_classes", "audio"),
        ("video_classes", "video"),
    ):
        names = meta.get(key)
        if names and len(names) != model.sizes[head]:
            raise CheckpointError(
                f"meta['{key}'] has {len(names)} names but the '{head}' head has "
                f"{model.sizes[head]} outputs"
            )


def save_checkpoint(directory: str | os.PathLike, model: Student, meta: dict) -> Path:
    """Write ``directory/model.safetensors`` and ``directory/checkpoint.json`` atomically.

    meta : ``classes`` (required), ``audio_classes``, ``video_classes``, ``config`` (the
        TrainConfig dict), ``metrics``, ``seed``, and, for ``normalize="global"`` front ends,
        ``frontend_stats`` (``LogMel.global_stats()``). ``student``, ``frontend``, ``versions``,
        ``parameters``, ``macs`` and ``created`` are filled in from the model.

    Each file is written under a temporary name and renamed when complete, so the previous
    checkpoint in ``directory`` stays intact until the new one is. Returns the folder.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    frontend = to_dict(model.frontend)
    if meta.get("frontend") not in (None, frontend):
        raise CheckpointError(
            f"meta['frontend'] {meta['frontend']} differs from the model's front end {frontend}"
        )
    if model.frontend.normalize == "global" and not meta.get("frontend_stats"):
        raise CheckpointError(
            "normalize='global' needs the training statistics in meta['frontend_stats'] "
            "(LogMel.global_stats())"
        )
    _check_classes(meta, model)
    stale = ("weights", "weights_sha256")  # from a loaded checkpoint.json being saved again
    meta = {
        **{k: v for k, v in meta.items() if k not in stale},
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "student": to_dict(model.config),
        "frontend": frontend,
        "versions": {**meta.get("versions", {}), **library_versions()},
        "parameters": count_parameters(model),
        "macs": count_macs(model.config, model.frontend),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    text = json.dumps(meta, default=_json_default)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    header = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "meta": text}
    weights = directory / WEIGHTS_NAME
    _atomic_write(weights, lambda tmp: save_file(state, tmp, metadata=header))
    record = {**meta, "weights": WEIGHTS_NAME, "weights_sha256": _sha256(weights)}
    body = json.dumps(record, indent=2, default=_json_default) + "\n"
    _atomic_write(directory / META_NAME, lambda tmp: Path(tmp).write_text(body))
    return directory


def _weights_path(path: Path) -> Path:
    """The safetensors file of a checkpoint folder, ``checkpoint.json`` or weights file."""
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.is_dir():
        weights = path / WEIGHTS_NAME
        if not weights.exists():
            found = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
            hint = f" (found {', '.join(found)}: pickle files are not loaded)" if found else ""
            raise CheckpointError(f"{path}: no {WEIGHTS_NAME} in this folder{hint}")
        return weights
    if path.suffix == ".json":
        try:
            name = json.loads(path.read_text()).get("weights", WEIGHTS_NAME)
        except (json.JSONDecodeError, AttributeError) as err:
            raise CheckpointError(f"{path}: not a liser checkpoint.json ({err})") from err
        weights = path.parent / name
        if not weights.exists():
            raise CheckpointError(f"{path}: its weights file {weights} is missing")
        return weights
    if path.suffix == ".safetensors":
        return path
    why = (
        "pickle-based files are refused because unpickling can run arbitrary code"
        if path.suffix in PICKLE_SUFFIXES
        else "unknown format"
    )
    raise CheckpointError(
        f"{path}: not a liser checkpoint ({why}); expected a folder with {WEIGHTS_NAME} and "
        f"{META_NAME}, or either file"
    )


def read_meta(path: str | os.PathLike) -> dict:
    """The meta of a checkpoint (folder, .json or .safetensors) without building the model."""
    return _read(Path(path))[1]


def _read(path: Path) -> tuple[Path, dict]:
    weights = _weights_path(path)
    try:
        with safe_open(str(weights), framework="pt") as handle:
            header = handle.metadata() or {}
            if header.get("format") != FORMAT:
                raise CheckpointError(
                    f"{weights}: a safetensors file but not a liser student checkpoint "
                    f"(header format {header.get('format')!r}, expected {FORMAT!r})"
                )
            embedded = json.loads(header["meta"])
    except SafetensorError as err:
        raise CheckpointError(f"{weights}: not a valid safetensors file ({err})") from err
    if int(header.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{weights}: checkpoint format {header['format_version']} is newer than this liser "
            f"reads ({FORMAT_VERSION}); upgrade liser"
        )
    meta = embedded
    record = weights.parent / META_NAME
    if record.exists():
        try:
            stored = json.loads(record.read_text())
        except json.JSONDecodeError:
            stored = None
        if stored is not None and stored.get("weights_sha256") == _sha256(weights):
            meta = stored
        else:
            log.warning(
                "%s does not match %s; using the meta stored in the weights", record, weights
            )
    return weights, meta


def load_checkpoint(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[Student, dict]:
    """Rebuild the student of a checkpoint: ``(Student in eval mode on device, meta)``.

    path : a checkpoint folder, its ``checkpoint.json`` or its ``model.safetensors``.
    """
    weights, meta = _read(Path(path))
    try:
        config = from_dict(StudentConfig, meta["student"], "student.")
        frontend = from_dict(FrontEndConfig, meta["frontend"], "frontend.")
        model = Student(config, frontend)
    except (KeyError, ConfigError, ValueError) as err:
        raise CheckpointError(f"{weights}: cannot rebuild the student ({err})") from err
    with safe_open(str(weights), framework="pt", device="cpu") as handle:
        state = {key: handle.get_tensor(key) for key in handle.keys()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{weights}: weights do not fit the stored config ({err})") from err
    return model.to(device).eval(), meta


def logmel_for(meta: dict, device: str | torch.device = "cpu"):
    """The checkpoint's front end as a ``features.LogMel`` (eval mode, global statistics set)."""
    from .features import LogMel

    logmel = LogMel(from_dict(FrontEndConfig, meta["frontend"], "frontend."))
    stats = meta.get("frontend_stats")
    if stats:
        logmel.set_global_stats(stats["mean"], stats["std"], stats.get("count", 1))
    return logmel.to(device).eval()
