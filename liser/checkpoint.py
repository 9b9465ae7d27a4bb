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
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save, save_file

from .config import ConfigError, FrontEndConfig, StudentConfig, from_dict, to_dict
from .files import atomic_write
from .student import Student, count_macs, count_parameters

log = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
META_NAME = "checkpoint.json"
FORMAT = "liser-student"
FORMAT_VERSION = 1
CONTENT_KEY = "content_sha256"  # header: SHA-256 of the embedded meta + the tensor data
META_KEYS = ("classes", "audio_classes", "video_classes", "student", "frontend", "frontend_stats")
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


def non_finite(state: dict[str, torch.Tensor]) -> str:
    """The names (up to three) of the floating-point tensors holding NaN or Inf; "" if none."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    return ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")


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
    if bad := non_finite(state):
        raise CheckpointError(f"{directory}: not saved: the weights hold NaN or Inf ({bad})")
    header = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "meta": text}
    header[CONTENT_KEY] = _content_sha256(text, _tensor_data(save(state, metadata=header)))
    weights = directory / WEIGHTS_NAME
    atomic_write(weights, lambda tmp: save_file(state, tmp, metadata=header))
    record = {**meta, "weights": WEIGHTS_NAME, "weights_sha256": _sha256(weights)}
    atomic_write(directory / META_NAME, json.dumps(record, indent=2, default=_json_default) + "\n")
    return directory


def _tensor_data(blob: bytes | memoryview) -> memoryview:
    """The tensor bytes of a safetensors file (after its 8-byte length and JSON header)."""
    n = int.from_bytes(bytes(blob[:8]), "little")
    return memoryview(blob)[8 + n :]


def _content_sha256(meta_text: str, data: bytes | memoryview) -> str:
    digest = hashlib.sha256(meta_text.encode())
    digest.update(data)
    return digest.hexdigest()


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
        name = _read_record(path).get("weights", WEIGHTS_NAME)
        if not isinstance(name, str) or Path(name).name != name:
            raise CheckpointError(f"{path}: 'weights' must be a file name, got {name!r}")
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
    blob = weights.read_bytes()  # read once: both hashes come from it
    verified = _verify_content(weights, blob, header)
    record = weights.parent / META_NAME
    if record.exists():
        stored = _read_record(record)
        if stored.get("weights_sha256") == hashlib.sha256(blob).hexdigest():
            changed = [k for k in META_KEYS if _plain(stored.get(k)) != _plain(embedded.get(k))]
            if changed:
                raise CheckpointError(
                    f"{record} disagrees with the meta embedded in {weights} on "
                    f"{', '.join(changed)}; it was edited by hand: restore it, or delete it to use "
                    "the embedded meta"
                )
        elif verified:  # a crash between writing the weights and checkpoint.json
            log.warning(
                "%s is stale (it describes other weights); using the meta stored in %s",
                record,
                weights,
            )
        else:
            raise CheckpointError(
                f"{weights}: its SHA-256 does not match the one recorded in {record}: the weights "
                "may be corrupt. If checkpoint.json is the stale file (a crash while saving), "
                "delete it to use the meta embedded in the weights"
            )
    return weights, embedded


def _read_record(path: Path) -> dict:
    """A checkpoint.json as a dict (CheckpointError when it is not a JSON object)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: not a liser checkpoint.json ({err})") from err
    if not isinstance(record, dict):
        kind = type(record).__name__
        raise CheckpointError(f"{path}: not a liser checkpoint.json (a JSON {kind}, not an object)")
    return record


def _plain(value):
    return json.loads(json.dumps(value, default=_json_default))


def _verify_content(weights: Path, blob: bytes, header: dict) -> bool:
    """True when the header records the content hash and it matches the file's bytes ``blob``;
    CheckpointError when it does not (a corrupted file); False for files saved before liser
    recorded it."""
    expected = header.get(CONTENT_KEY)
    if not expected:
        return False
    if _content_sha256(header["meta"], _tensor_data(blob)) != expected:
        raise CheckpointError(
            f"{weights}: corrupt: the SHA-256 of its meta and tensor data does not match the one "
            "recorded when it was saved; restore the file or train again"
        )
    return True


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
    if bad := non_finite(state):
        raise CheckpointError(f"{weights}: the weights hold NaN or Inf ({bad})")
    try:
        _check_classes(meta, model)
    except CheckpointError as err:
        raise CheckpointError(f"{weights}: {err}") from None
    return model.to(device).eval(), meta


def logmel_for(meta: dict, device: str | torch.device = "cpu"):
    """The checkpoint's front end as a ``features.LogMel`` (eval mode, global statistics set)."""
    from .features import LogMel

    logmel = LogMel(from_dict(FrontEndConfig, meta["frontend"], "frontend."))
    stats = meta.get("frontend_stats")
    if stats:
        logmel.set_global_stats(stats["mean"], stats["std"], stats.get("count", 1))
    return logmel.to(device).eval()
