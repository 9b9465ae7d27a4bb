"""Labeled clips cut into teacher windows, and on-disk caches of encoder outputs per clip."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .base import autocast, clip_windows

log = logging.getLogger(__name__)


def uar(labels: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Unweighted average recall: the mean over classes present in ``labels`` of their recall."""
    recalls = [
        float((pred[labels == c] == c).mean()) for c in range(n_classes) if (labels == c).any()
    ]
    return float(np.mean(recalls)) if recalls else float("nan")


@dataclass
class Clips:
    """The clips of one split and their windows. Window ``j`` belongs to clip ``owner[j]``;
    audio is decoded on demand (never all at once)."""

    rows: list  # manifest rows (path, start, duration)
    labels: np.ndarray  # (n_clips,) int class index
    owner: np.ndarray  # (n_windows,) clip index of each window
    window: int  # samples per window
    hop: int

    def __len__(self) -> int:
        return len(self.rows)

    @classmethod
    def load(cls, df, classes, window: int, hop: int, progress: bool = True, cache=None) -> Clips:
        """Count each clip's windows: from its entry in ``cache`` (a folder of per-clip arrays)
        when there is one, else by decoding it; unreadable clips are skipped (logged)."""
        from rich.progress import track

        index = {c: i for i, c in enumerate(classes)}
        rows, labels, owner = [], [], []
        for row in track(
            list(df.itertuples(index=False)), "reading clips", disable=not progress, transient=True
        ):
            if row.label not in index:
                continue
            entry = cache / f"{clip_key(row, window, hop)}.npz" if cache else None
            if entry is not None and entry.is_file():
                with np.load(entry) as f:
                    k = len(f["pooled"])
            else:
                wave = _read(row)
                if wave is None:
                    continue
                k = len(clip_windows(wave, window, hop)[0])
            owner += [len(rows)] * k
            rows.append(row)
            labels.append(index[row.label])
        return cls(
            rows, np.array(labels, dtype=np.int64), np.array(owner, dtype=np.int64), window, hop
        )

    def clip(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Windows (K, window) and valid lengths (K,) of clip ``i``."""
        return clip_windows(_read(self.rows[i], strict=True), self.window, self.hop)

    def windows(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Windows ``idx`` (global indices) -> (len(idx), window) and lengths."""
        first = np.searchsorted(self.owner, np.arange(len(self)))
        waves, lengths, decoded = [], [], {}
        for j in idx:
            i = int(self.owner[j])
            if i not in decoded:
                decoded[i] = self.clip(i)
            w, n = decoded[i]
            waves.append(w[j - first[i]])
            lengths.append(n[j - first[i]])
        return np.stack(waves), np.array(lengths)

    def key(self, i: int) -> str:
        return clip_key(self.rows[i], self.window, self.hop)


def clip_key(row, window: int, hop: int) -> str:
    """Cache key of a manifest row's windows: path, size, mtime, start, duration, window, hop."""
    stat = os.stat(row.path)
    text = f"{row.path}|{stat.st_size}|{stat.st_mtime_ns}|{row.start}|{row.duration}|{window}|{hop}"
    return hashlib.sha1(text.encode()).hexdigest()


def _read(row, strict: bool = False) -> np.ndarray | None:
    from liser.audio import AudioError
    from liser.windows import Clip

    try:
        return Clip.from_row(row).load_audio()
    except AudioError as e:
        if strict:
            raise
        log.warning("skipped: %s", e)
        return None


def _cached_per_clip(
    clips: Clips, cache: Path | None, compute, progress: bool, what: str, batch_windows: int = 32
):
    """For every clip, arrays from ``cache/<key>.npz`` or from ``compute(waves, lengths)`` on its
    windows (batched across clips, saved atomically). Returns a list (per clip) of dicts."""
    from rich.progress import Progress

    out: list = [None] * len(clips)
    todo = []
    for i in range(len(clips)):
        path = cache / f"{clips.key(i)}.npz" if cache else None
        if path is not None and path.is_file():
            with np.load(path) as f:
                out[i] = {k: f[k] for k in f.files}
        else:
            todo.append(i)
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"{what} ({len(todo)} clips)", total=len(todo))
        while todo:
            group, waves, lengths = [], [], []
            while todo and sum(len(w) for w in waves) < batch_windows:
                i = todo.pop(0)
                w, n = clips.clip(i)
                group.append((i, len(w)))
                waves.append(w)
                lengths.append(n)
            result = compute(np.concatenate(waves), np.concatenate(lengths))
            start = 0
            for i, k in group:
                out[i] = {name: value[start : start + k] for name, value in result.items()}
                start += k
                if cache:
                    tmp = cache / f"{clips.key(i)}.tmp.npz"
                    np.savez(tmp, **out[i])
                    tmp.replace(cache / f"{clips.key(i)}.npz")
            bar.advance(task, len(group))
    return out


@torch.no_grad()
def encode_clips(teacher, clips: Clips, cache: Path | None, progress: bool = True) -> np.ndarray:
    """Pooled features (n_windows, L+1, D) float32 of every window: the head's input."""
    encoder, head, device = teacher.encoder.eval(), teacher.head, teacher.device

    def compute(waves, lengths):
        pooled = []
        for i in range(0, len(waves), teacher.batch_size):
            x = torch.from_numpy(waves[i : i + teacher.batch_size]).to(device)
            n = torch.from_numpy(lengths[i : i + teacher.batch_size]).to(device)
            with autocast(device, teacher.dtype):
                hidden, mask = encoder(x, n)
            pooled.append(head.pool(hidden, mask).cpu())
        return {"pooled": torch.cat(pooled).numpy().astype(np.float32)}

    per_clip = _cached_per_clip(clips, cache, compute, progress, "encoding")
    return np.concatenate([c["pooled"] for c in per_clip])


@torch.no_grad()
def lower_layer_cache(
    encoder, clips: Clips, split_at: int, cache: Path | None, progress: bool = True
):
    """For LoRA in the top layers only: per window, the pooled hidden states 0..split_at
    (n_windows, split_at+1, D) float32, the input of layer ``split_at`` (n_windows, T, D) float16
    and the audio mask (n_windows, T)."""
    from .audio import PoolingHead

    was_training = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device

    def compute(waves, lengths):
        x = torch.from_numpy(waves).to(device)
        n = torch.from_numpy(lengths).to(device)
        h, mask = encoder.embed(x, n)
        hidden = [h]
        for layer in encoder.layers[:split_at]:
            hidden.append(layer(hidden[-1], None))
        pooled = PoolingHead.pool(torch.stack(hidden), mask)
        return {
            "pooled": pooled.float().cpu().numpy(),
            "seq": hidden[-1].half().cpu().numpy(),
            "mask": mask.cpu().numpy(),
        }

    per_clip = _cached_per_clip(
        clips, cache, compute, progress, f"encoding layers 0-{split_at - 1}", batch_windows=16
    )
    encoder.train(was_training)
    return tuple(
        torch.from_numpy(np.concatenate([c[k] for c in per_clip]))
        for k in ("pooled", "seq", "mask")
    )
