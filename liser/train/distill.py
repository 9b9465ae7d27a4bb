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


def class_map(teacher: tuple[str, ...], student: tuple[str, ...], extra=()) -> torch.Tensor:
    """(len(teacher), len(student)) 0/1 matrix putting each teacher class on the student class
    of the same name (FER words and corpus words alike: fear = fearful); ``extra``: more
    ``"teacher=student"`` pairs (``"fear="``: dropped). ValueError when nothing maps."""
    from liser.constants import FER_ALIASES
    from liser.evaluate.taxonomy import parse_mapping

    def word(name: str) -> str:
        return FER_ALIASES.get(name.lower(), name.lower())

    explicit = parse_mapping(list(extra))
    index = {word(c): j for j, c in enumerate(student)}
    matrix = torch.zeros(len(teacher), len(student))
    for i, name in enumerate(teacher):
        target = explicit.get(name.lower(), name)
        if target is not None and word(target) in index:
            matrix[i, index[word(target)]] = 1.0
    if not matrix.any():
        raise ValueError(f"no teacher class {list(teacher)} maps onto {list(student)}")
    return matrix


class DistillTerms:
    """The distillation terms of one step: ``terms(out, batch, labeled) -> {kind: loss}`` for the
    teachers in ``use``, each on the unlabeled rows ``out[kind][labeled:]``, or, for a teacher
    whose ``{kind}_target`` is "classes", on the supervised head with mapped soft labels."""

    def __init__(self, distill, use: dict, classes: tuple[str, ...], teacher_classes: dict):
        self.distill, self.use = distill, use
        self.maps: dict[str, torch.Tensor] = {}
        for kind in ("audio", "video"):
            target = getattr(distill, f"{kind}_target")
            if target not in ("head", "classes"):
                raise ValueError(f"distill.{kind}_target must be 'head' or 'classes', "
                                 f"not {target!r}")  # fmt: skip
            if use.get(kind) and target == "classes":
                extra = distill.video_map if kind == "video" else distill.audio_map
                self.maps[kind] = class_map(tuple(teacher_classes[kind]), tuple(classes), extra)

    def __call__(self, out: dict, batch: dict, labeled: int) -> dict[str, torch.Tensor]:
        terms = {}
        for kind in ("audio", "video"):
            if not self.use[kind]:
                continue
            head, probs = out[kind][labeled:], batch[f"{kind}_probs"].to(out[kind].device)
            mask = batch[f"{kind}_mask"].to(head.device)
            if kind in self.maps:
                head = out["logits"][labeled:]
                probs = probs.float() @ self.maps[kind].to(head.device)
                mass = probs.sum(1, keepdim=True)
                mask = mask & (mass[:, 0] > 1e-6)  # all the teacher's mass on dropped classes
                probs = probs / mass.clamp_min(1e-6)
            d = self.distill
            loss = DistillationLoss(
                d.loss, d.weighting, d.temperature, batch[f"{kind}_temperature"]
            )
            terms[kind] = loss(head, probs, mask)
        return terms
