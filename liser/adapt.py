"""Adapt a model to a new domain from the domain's unlabeled audio, by re-estimating the
statistics its normalisation layers hold (AdaBN, Li et al. 2018; the corpus normalisation of
cross-corpus emotion recognition, Schuller et al. 2010). No label is read and no weight is
trained: only means and variances change.

- student checkpoint: the front end's global log-Mel mean/std (``normalize: global``), then each
  BatchNorm's running mean/var, from the domain's windows (in order: each sees the layers below
  it already adapted);
- fitted audio teacher (``liser teacher fit-audio``): its pooling head's standardisation of the
  pooled layer features;
- an ensemble: each member; a student used as a teacher: as a student.

Statistics of the domain's *corpus*, never of one speaker: where a speaker is heard in one
emotional state (talk shows), per-speaker statistics remove the label itself (docs/results.md).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from liser.constants import SAMPLE_RATE

log = logging.getLogger(__name__)
ADAPTED_KEY = "adapted"  # the record in checkpoint.json / teacher.json


@dataclass
class DomainAudio:
    """The windows of a domain's clips, as batches (B, N) + valid lengths (B,); iterable more
    than once (each pass reads the files again). Unreadable clips are skipped and listed."""

    df: pd.DataFrame
    window_seconds: float = 3.0
    hop_seconds: float = 1.0
    pad: str = "zero"
    batch_size: int = 32
    progress: bool = True
    skipped: list[dict] = field(default_factory=list)
    windows: int = 0
    stage: str = "adapting"  # the progress bar's label for the current pass

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        from rich.progress import track

        from liser.audio import AudioError
        from liser.teachers.base import clip_windows
        from liser.windows import Clip

        window = round(self.window_seconds * SAMPLE_RATE)
        hop = round(self.hop_seconds * SAMPLE_RATE)
        self.skipped, self.windows = [], 0
        waves, lengths = [], []
        rows = list(self.df.itertuples(index=False))
        for row in track(rows, self.stage, disable=not self.progress, transient=True):
            try:
                wave = Clip.from_row(row).load_audio()
            except AudioError as err:
                self.skipped.append({"path": str(row.path), "error": err.reason})
                continue
            w, n = clip_windows(wave, window, hop, self.pad)
            waves += list(w)
            lengths += list(n)
            while len(waves) >= self.batch_size:
                self.windows += self.batch_size
                yield np.stack(waves[: self.batch_size]), np.array(lengths[: self.batch_size])
                waves, lengths = waves[self.batch_size :], lengths[self.batch_size :]
        if waves:
            self.windows += len(waves)
            yield np.stack(waves), np.array(lengths)
        if self.windows == 0:
            raise ValueError(f"no audio to adapt to: {len(self.skipped)} of {len(rows)} unreadable")


def _mean_var(n: int, total: torch.Tensor, squares: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Mean and unbiased variance (float32) from a count, a sum and a sum of squares."""
    mean = total / n
    return mean.float(), ((squares - n * mean.square()).clamp_min(0) / max(1, n - 1)).float()


class _Captured(Exception):
    """Ends a forward pass once a BatchNorm's input has been seen."""


@torch.no_grad()
def adapt_student(
    model: nn.Module, logmel, audio: DomainAudio, parts: tuple[str, ...] = ("frontend", "batchnorm")
) -> None:
    """Re-estimate a student's front-end statistics (global normalisation), then each BatchNorm's
    running mean and variance in turn, exactly, over ``audio`` with the layers below it already
    adapted (one pass over the audio per BatchNorm, each stopped at that layer). ``parts``: which
    of the two to re-estimate."""
    device = next(model.parameters()).device
    model.eval()
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    norms = norms if "batchnorm" in parts else []
    if logmel.frontend.normalize == "global" and "frontend" in parts:
        audio.stage = "adapting: log-Mel statistics"
        logmel.fit_global_stats(
            logmel.log_mel(torch.from_numpy(w).to(device)).cpu() for w, _ in audio
        )
    for i, norm in enumerate(norms):
        audio.stage = f"adapting: BatchNorm {i + 1} of {len(norms)}"
        sums = {"n": 0, "x": 0.0, "x2": 0.0}

        def capture(_module, args, sums=sums):
            x = args[0].double().transpose(0, 1).flatten(1)  # (C, everything else)
            sums["n"] += x.shape[1]
            sums["x"] = sums["x"] + x.sum(1)
            sums["x2"] = sums["x2"] + x.square().sum(1)
            raise _Captured

        handle = norm.register_forward_pre_hook(capture)
        try:
            for waves, _ in audio:
                try:
                    model(logmel(torch.from_numpy(waves).to(device)))
                except _Captured:
                    pass
        finally:
            handle.remove()
        mean, var = _mean_var(sums["n"], sums["x"], sums["x2"])
        norm.running_mean.copy_(mean)
        norm.running_var.copy_(var)


@torch.no_grad()
def adapt_teacher(teacher, audio: DomainAudio) -> None:
    """Re-estimate a teacher's normalisation on ``audio`` (see the module docstring)."""
    from liser.teachers.audio import EncoderTeacher
    from liser.teachers.base import EnsembleTeacher, StudentTeacher, TeacherError, autocast

    if isinstance(teacher, EnsembleTeacher):
        for member in teacher.members:
            adapt_teacher(member, audio)
        return _mark(teacher, [m.fingerprint for m in teacher.members])
    if isinstance(teacher, StudentTeacher):
        adapt_student(teacher.model, teacher.frontend, audio)
        return _mark(teacher, [teacher.model.state_dict(), teacher.frontend.global_stats()])
    if not isinstance(teacher, EncoderTeacher):
        raise TeacherError(f"{type(teacher).__name__} has no normalisation statistics to adapt")
    total = squares = None
    count = 0
    for waves, lengths in audio:
        x, n = torch.from_numpy(waves).to(teacher.device), torch.from_numpy(lengths)
        with autocast(teacher.device, teacher.dtype):
            encode = teacher._pooled
            cache = teacher.window_cache
            pooled = cache.pooled(x, n.to(x.device), encode) if cache else encode(x, n)
        flat = pooled.double().flatten(1).cpu()
        total = flat.sum(0) if total is None else total + flat.sum(0)
        squares = flat.square().sum(0) if squares is None else squares + flat.square().sum(0)
        count += len(flat)
    mean, var = _mean_var(count, total, squares)
    teacher.head.norm.running_mean.copy_(mean)
    teacher.head.norm.running_var.copy_(var)
    _mark(teacher, [mean, var])


def _mark(teacher, state) -> None:
    """A fingerprint of its own for an adapted teacher (stores and caches keyed by it)."""
    import hashlib

    h = hashlib.sha1()

    def feed(x) -> None:
        if isinstance(x, torch.Tensor):
            h.update(x.detach().float().cpu().numpy().tobytes())
        elif isinstance(x, dict):
            [feed(v) for v in x.values()]
        elif isinstance(x, list | tuple):
            [feed(v) for v in x]
        else:
            h.update(repr(x).encode())

    feed(state)
    digest = h.hexdigest()[:12]
    teacher.fingerprint = f"{teacher.fingerprint.split('+adapted:')[0]}+adapted:{digest}"


def adapted_record(audio: DomainAudio, sources: list[str], seconds: float) -> dict:
    return {
        "on": sources,
        "clips": int(len(audio.df)),
        "windows": int(audio.windows),
        "skipped": len(audio.skipped),
        "seconds": round(seconds, 1),
        "what": "normalisation statistics re-estimated on unlabeled audio (labels unused)",
    }


def adapted_teacher(spec: str, df: pd.DataFrame, batch_size: int = 32, progress: bool = True,
                    teacher=None, device: str = "cpu"):  # fmt: skip
    """A teacher (loaded from ``spec``, or ``teacher`` adapted again in place) with its statistics
    re-estimated on the clips of ``df``: (teacher, the DomainAudio it was adapted on)."""
    from liser.teachers import load_audio_teacher

    teacher = teacher or load_audio_teacher(str(spec), device=device)
    audio = DomainAudio(df, teacher.window_seconds, teacher.hop_seconds, teacher.pad,
                        batch_size, progress)  # fmt: skip
    adapt_teacher(teacher, audio)
    return teacher, audio


def adapted_student(checkpoint, df: pd.DataFrame, batch_size: int = 32, progress: bool = True,
                    window_seconds=None, hop_seconds=None):  # fmt: skip
    """A student checkpoint's (unfused) model and meta with its statistics re-estimated on the
    clips of ``df`` (``frontend_stats`` updated in the meta): (model, meta, DomainAudio)."""
    from liser.checkpoint import load_checkpoint, logmel_for

    model, meta = load_checkpoint(checkpoint)
    logmel = logmel_for(meta)
    spec = model.frontend.windows(hop_seconds, window_seconds)
    audio = DomainAudio(df, spec.window_seconds, spec.hop_seconds, model.frontend.pad,
                        batch_size, progress)  # fmt: skip
    adapt_student(model, logmel, audio)
    if meta.get("frontend_stats"):
        meta = meta | {"frontend_stats": logmel.global_stats()}
    return model, meta, audio


def adapt_folder(
    source: str | Path, manifests: list, out: str | Path, progress: bool = True,
    batch_size: int = 32,
) -> dict:  # fmt: skip
    """``liser adapt``: a copy of a student checkpoint or fitted-teacher folder at ``out`` with
    its statistics re-estimated on the clips of ``manifests`` (paths or DataFrames; labels, if
    any, are ignored). Returns the record also stored in the copy's JSON (``adapted``)."""
    from liser.checkpoint import save_checkpoint
    from liser.files import write_json
    from liser.manifest import read_manifest

    source, out = Path(source), Path(out)
    if out.resolve() == source.resolve():
        raise ValueError("adapt writes a copy: give an output folder other than the source")
    frames = [m if isinstance(m, pd.DataFrame) else read_manifest(m) for m in manifests]
    names = [m if isinstance(m, str | Path) else "<table>" for m in manifests]
    df = pd.concat(frames, ignore_index=True)
    started = time.time()
    if (source / "teacher.json").is_file():
        import json

        from safetensors.torch import save_file

        teacher, audio = adapted_teacher(source, df, batch_size, progress)
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(source, out, ignore=shutil.ignore_patterns("resume.*", "eval*"))
        (out / "teacher.json").unlink()  # written last: a folder without it is incomplete
        state = {k: v.detach().cpu().contiguous() for k, v in teacher.head.state_dict().items()}
        save_file(state, str(out / "head.safetensors"))
        meta = json.loads((source / "teacher.json").read_text())
        record = adapted_record(audio, [str(n) for n in names], time.time() - started)
        write_json(out / "teacher.json", meta | {ADAPTED_KEY: record}, indent=2)
        return record
    model, meta, audio = adapted_student(source, df, batch_size, progress)
    record = adapted_record(audio, [str(n) for n in names], time.time() - started)
    save_checkpoint(out, model, meta | {ADAPTED_KEY: record})
    return record
