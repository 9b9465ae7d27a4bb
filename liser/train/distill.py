"""The unlabeled side of a distillation run: windows streamed from soft-label stores, and which
teachers' terms the run uses."""

from __future__ import annotations

import numpy as np
import torch

from liser.config import FrontEndConfig
from liser.store import StoreError, open_store

from .losses import DistillationLoss


class UnlabeledStream:
    """Windows with teacher soft labels from one or more soft-label stores.

    Each epoch starts a fresh seeded shuffle of every store (``iter_batches(seed, epoch)``); each
    step takes the next batch of a store drawn with probability proportional to its size, and a
    store that runs out starts another shuffled pass. Only a store's read buffer is in memory.
    The epoch's stream is a function of (seed, epoch) alone, so a resumed run continues exactly.

    Batches: ``features`` (B, n_mels, n_frames), ``audio_probs`` (B, Ca), ``audio_mask`` (B,),
    ``video_probs`` (B, Cv), ``video_mask`` (B,), and the teachers' calibration temperatures
    ``audio_temperature`` / ``video_temperature`` (floats from the stores' headers, 1 if unset).
    Stores of a ``normalize: global`` front end keep raw log-Mel; ``normalise`` (the student's
    ``LogMel.normalise``, with its training statistics) is applied to their features.
    """

    def __init__(self, paths, frontend: FrontEndConfig, seed: int = 0, normalise=None):
        from liser.store import check_frontend

        self.stores = [open_store(p) for p in paths]
        self.seed = seed
        self.normalise = normalise
        for store in self.stores:
            check_frontend(store, frontend)
            if len(store) == 0:
                raise StoreError(f"{store.path}: the store holds no windows")
            if not store.features_normalized and normalise is None:
                raise StoreError(f"{store.path}: raw log-Mel features need the student's normalise")
        self.audio_classes = _agree(self.stores, "audio_classes")
        self.video_classes = _agree(self.stores, "video_classes")
        self.sizes = np.array([len(s) for s in self.stores], dtype=np.float64)

    def __len__(self) -> int:
        return int(self.sizes.sum())

    def epoch(self, epoch: int, batch_size: int):
        """Endless iterator of batches for one epoch (close it when the epoch ends)."""
        rng = np.random.default_rng([self.seed, epoch, 17])
        passes = [0] * len(self.stores)
        iters = [self._open(i, epoch, 0, batch_size) for i in range(len(self.stores))]
        try:
            while True:
                i = int(rng.choice(len(self.stores), p=self.sizes / self.sizes.sum()))
                batch = next(iters[i], None)
                if batch is None:
                    passes[i] += 1
                    iters[i] = self._open(i, epoch, passes[i], batch_size)
                    batch = next(iters[i])
                yield self._complete(self.stores[i], batch)
        finally:
            for it in iters:
                it.close()

    def _open(self, i: int, epoch: int, n_pass: int, batch_size: int):
        return self.stores[i].iter_batches(
            batch_size, shuffle=True, seed=self.seed + 1000003 * i, epoch=epoch * 1000 + n_pass
        )

    def _complete(self, store, batch: dict) -> dict:
        """Give every batch both teachers' columns (zeros, masked, for a teacher a store lacks)
        and features normalised as the student's."""
        if not store.features_normalized:
            batch["features"] = self.normalise(batch["features"].float())
        n = batch["features"].shape[0]
        for kind, classes in (("audio", self.audio_classes), ("video", self.video_classes)):
            info = store.header["teachers"].get(kind)
            if not info:
                batch[f"{kind}_probs"] = torch.zeros(n, len(classes))
                batch[f"{kind}_mask"] = torch.zeros(n, dtype=torch.bool)
            batch[f"{kind}_temperature"] = float((info or {}).get("temperature") or 1.0)
        return batch


def _agree(stores, attribute: str) -> tuple[str, ...]:
    """The class list all stores with that teacher share; StoreError when two stores differ."""

    found = {}
    for store in stores:
        classes = getattr(store, attribute)
        if classes:
            found.setdefault(classes, store.path)
    if len(found) > 1:
        listing = "; ".join(f"{path}: {list(c)}" for c, path in found.items())
        raise StoreError(f"stores disagree on the {attribute.replace('_', ' ')}: {listing}")
    return next(iter(found), ())


def unlabeled_stream(config, normalise) -> tuple[UnlabeledStream | None, dict[str, bool]]:
    """The unlabeled windows of ``config.distill.stores`` (None without stores) and which teachers'
    terms are used ({"audio": bool, "video": bool}); ValueError for settings that use none."""
    use = {"audio": False, "video": False}
    distill = config.distill
    if not distill.stores:
        return None, use
    DistillationLoss(distill.loss, distill.weighting)  # unknown names fail here, not later
    stream = UnlabeledStream(distill.stores, config.frontend, config.seed, normalise)
    for kind in ("audio", "video"):
        wanted = distill.teachers in ("both", kind)
        have = bool(getattr(stream, f"{kind}_classes"))
        if distill.teachers == kind and not have:
            raise ValueError(f"distill.teachers='{kind}' but no store has a {kind} teacher")
        use[kind] = wanted and have and getattr(distill, f"{kind}_weight") > 0
    if not any(use.values()):
        raise ValueError("distill.stores are set but no teacher is used (weights 0?)")
    return stream, use
