"""On-disk cache of a frozen encoder's pooled outputs, keyed by the audio of each window.

A teacher whose encoder is frozen (``fit-audio`` with ``freeze_encoder: true``) differs from
another fitted on the same encoder only in its small pooling head. Labeling the same unlabeled
pool with one such teacher per fold would run the encoder once per fold; with this cache it runs
once, and every later teacher costs only its head. The key is a hash of the window's samples (up
to its length), its length, the encoder's fingerprint and the compute precision, so a cached entry
is never used for other audio or another encoder. Entries are written atomically (a crash leaves
no half file); an unreadable entry is recomputed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


class WindowCache:
    """``pooled(waves (B, N), lengths (B,), encode) -> (B, L+1, D)`` float32, from
    ``folder/<key[:2]>/<key>.npy`` where present and from ``encode(waves, lengths)`` for the rest.
    ``hits`` and ``misses`` count windows since creation."""

    def __init__(self, folder: Path, salt: str):
        self.folder = Path(folder).expanduser()
        self.salt = salt.encode()
        self.hits = 0
        self.misses = 0

    def key(self, wave: np.ndarray, length: int) -> str:
        digest = hashlib.blake2b(self.salt, digest_size=16)
        digest.update(int(length).to_bytes(8, "little"))
        digest.update(np.ascontiguousarray(wave[:length], dtype=np.float32).tobytes())
        return digest.hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def _read(self, key: str) -> np.ndarray | None:
        path = self._path(key)
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None

    def _write(self, key: str, pooled: np.ndarray) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{key}.{os.getpid()}.tmp.npy")
        try:
            np.save(tmp, pooled, allow_pickle=False)
            tmp.replace(path)
        except OSError:  # a full or read-only disk costs speed, never the labels
            tmp.unlink(missing_ok=True)

    def pooled(
        self,
        waves: torch.Tensor,
        lengths: torch.Tensor,
        encode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        host = waves.detach().float().cpu().numpy()
        sizes = lengths.detach().cpu().numpy()
        keys = [self.key(w, n) for w, n in zip(host, sizes, strict=True)]
        found = [self._read(k) for k in keys]
        todo = [i for i, f in enumerate(found) if f is None]
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        if todo:
            index = torch.as_tensor(todo, device=waves.device)
            fresh = encode(waves[index], lengths[index]).float().cpu().numpy()
            for i, pooled in zip(todo, fresh, strict=True):
                found[i] = pooled
                self._write(keys[i], pooled)
        return torch.from_numpy(np.stack(found)).to(waves.device)
