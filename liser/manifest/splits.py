"""Speaker-independent splits of a manifest: the test fold, validation speakers, the labeled subset.

``split_fold(df, data, seed)`` returns ``train``, ``val``, ``test`` and ``unlabeled`` manifests:

- test: the clips of fold ``data.fold`` (1-based). ``data.folds``:
  "ravdess" the EmoBox 6 folds (``constants.RAVDESS_FOLDS``, test actors by number),
  "speaker" ``data.n_folds`` folds of whole speakers (seeded, balanced in clips and speakers),
  "column" the manifest's own ``fold`` column, "auto" = "ravdess" for RAVDESS manifests, else
  "speaker".
- val: ``data.val_fraction`` of the remaining (training) speakers, at least one, seeded. It keeps
  all its labels: it only chooses the epoch.
- train / unlabeled: of the training clips, ``data.label_fraction`` per class (rounded, seeded)
  keep their labels; the others go to ``unlabeled`` with a null label.

No speaker is ever in two of train, val and test; ``check_speakers_disjoint`` raises otherwise.
Every draw is seeded and independent of the row order of ``df``.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter

import numpy as np
import pandas as pd

from liser.config import DataConfig
from liser.constants import RAVDESS_FOLDS

from .schema import COLUMNS, STR_DTYPE, ManifestError, validate_manifest

log = logging.getLogger(__name__)

FOLD_MODES = ("auto", "ravdess", "speaker", "column")
# Independent random streams for the three draws of one seed.
_FOLDS_STREAM, _VAL_STREAM, _LABEL_STREAM = 1, 2, 3


def _round(x: float) -> int:
    return int(math.floor(x + 0.5))


def resolve_folds(df: pd.DataFrame, folds: str) -> str:
    """The fold scheme ``folds`` names for ``df`` ("auto" becomes "ravdess" or "speaker")."""
    if folds not in FOLD_MODES:
        raise ManifestError(f"unknown folds '{folds}'; use one of {', '.join(FOLD_MODES)}")
    if folds == "auto":
        corpora = set(df["corpus"].dropna().tolist())
        return "ravdess" if corpora == {"ravdess"} else "speaker"
    return folds


def ravdess_actor(speaker: str) -> int:
    """The actor number of a RAVDESS speaker id ("Actor_07", "07" or "7")."""
    match = re.fullmatch(r"(?:Actor_)?([0-9]{1,2})", str(speaker))
    if match is None or not 1 <= int(match.group(1)) <= 24:
        raise ManifestError(
            f"folds 'ravdess' needs RAVDESS speakers (Actor_01..Actor_24), got '{speaker}'"
        )
    return int(match.group(1))


def speaker_folds(df: pd.DataFrame, n_folds: int, seed: int = 0) -> dict[str, int]:
    """Speaker -> fold (1..n_folds): speakers in seeded random order, largest first, each to the
    fold with the fewest clips (then fewest speakers), so folds differ by at most one speaker's clips."""
    counts = Counter(df["speaker"].tolist())
    if n_folds < 2:
        raise ManifestError(f"n_folds must be at least 2, got {n_folds}")
    if len(counts) < n_folds:
        raise ManifestError(
            f"{n_folds} speaker folds need at least {n_folds} speakers; the manifest has "
            f"{len(counts)} ({', '.join(sorted(counts)[:5])}); give a 'fold' column and folds='column'"
        )
    rng = np.random.default_rng([seed, _FOLDS_STREAM])
    order = [sorted(counts)[i] for i in rng.permutation(len(counts))]
    order.sort(key=lambda s: -counts[s])  # stable: random order among equal sizes
    clips, speakers, fold_of = [0] * n_folds, [0] * n_folds, {}
    for speaker in order:
        fold = min(range(n_folds), key=lambda f: (clips[f], speakers[f], f))
        fold_of[speaker] = fold + 1
        clips[fold] += counts[speaker]
        speakers[fold] += 1
    return fold_of


def speaker_halves(df: pd.DataFrame, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two manifests of disjoint speakers, each corpus's speakers halved as ``speaker_folds``
    does (seeded, balanced in clips): e.g. an adaptation half whose labels are hidden and a test
    half. The same seed gives the same halves whatever the row order."""
    corpora = df["corpus"].fillna("") if "corpus" in df.columns else pd.Series("", df.index)
    half = np.zeros(len(df), dtype=int)
    for corpus in sorted(corpora.unique()):
        rows = (corpora == corpus).to_numpy()
        if df.loc[rows, "speaker"].nunique() < 2:
            raise ManifestError(
                f"corpus '{corpus}' has one speaker; it cannot be halved by speaker"
            )
        fold_of = speaker_folds(df[rows], 2, seed)
        half[rows] = df.loc[rows, "speaker"].map(fold_of).to_numpy()
    first, second = df[half == 1].reset_index(drop=True), df[half == 2].reset_index(drop=True)
    return first, second


def _test_mask(df: pd.DataFrame, data: DataConfig, seed: int) -> np.ndarray:
    mode = resolve_folds(df, data.folds)
    if mode == "ravdess":
        if not 1 <= data.fold <= len(RAVDESS_FOLDS):
            raise ManifestError(
                f"fold {data.fold} is not 1..{len(RAVDESS_FOLDS)} of the RAVDESS folds"
            )
        actors = set(RAVDESS_FOLDS[data.fold - 1])
        return np.array([ravdess_actor(s) in actors for s in df["speaker"]], dtype=bool)
    if mode == "speaker":
        if not 1 <= data.fold <= data.n_folds:
            raise ManifestError(f"fold {data.fold} is not 1..{data.n_folds} (n_folds)")
        fold_of = speaker_folds(df, data.n_folds, seed)
        return (df["speaker"].map(fold_of) == data.fold).to_numpy()
    if "fold" not in df.columns:
        raise ManifestError("folds 'column' needs a 'fold' column in the manifest")
    folds = pd.to_numeric(df["fold"], errors="coerce")
    if folds.isna().any():
        raise ManifestError(f"{int(folds.isna().sum())} rows have no integer 'fold' value")
    if not (folds == data.fold).any():
        raise ManifestError(
            f"no clips in fold {data.fold}; the 'fold' column has {sorted(set(folds.astype(int)))}"
        )
    return (folds == data.fold).to_numpy()


def check_speakers_disjoint(splits: dict[str, pd.DataFrame]) -> None:
    """Raise ``ManifestError`` if a speaker is in more than one of train (with unlabeled), val, test."""
    groups = {
        "train": set(splits.get("train", pd.DataFrame(columns=COLUMNS))["speaker"])
        | set(splits.get("unlabeled", pd.DataFrame(columns=COLUMNS))["speaker"]),
        "val": set(splits.get("val", pd.DataFrame(columns=COLUMNS))["speaker"]),
        "test": set(splits.get("test", pd.DataFrame(columns=COLUMNS))["speaker"]),
    }
    names = list(groups)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = sorted(groups[a] & groups[b])
            if shared:
                raise ManifestError(
                    f"speaker leakage: {len(shared)} speakers in both {a} and {b} "
                    f"({', '.join(map(str, shared[:5]))}); each speaker must be in one fold only"
                )


def _labeled_subset(train: pd.DataFrame, fraction: float, seed: int) -> np.ndarray:
    """Mask of the rows that keep their label: round(fraction * n) per class, at least one."""
    keep = np.zeros(len(train), dtype=bool)
    rng = np.random.default_rng([seed, _LABEL_STREAM])
    labels = train["label"].to_numpy()
    for label in sorted(set(labels.tolist())):
        rows = np.flatnonzero(labels == label)  # train is sorted by id: independent of input order
        n_keep = min(len(rows), max(1, _round(fraction * len(rows))))
        keep[rng.choice(rows, size=n_keep, replace=False)] = True
    return keep


def split_fold(df: pd.DataFrame, data: DataConfig, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Split a labeled manifest for test fold ``data.fold``: dict of train, val, test, unlabeled
    manifests (sorted by id). Rows whose label is not in ``data.classes`` (when given) are dropped
    with a warning; rows with a null label become unlabeled training clips (or are dropped from
    val / test). Raises ``ManifestError`` on a bad manifest, fold or fraction."""
    validate_manifest(df, where="split_fold")
    if not 0 < data.label_fraction <= 1:
        raise ManifestError(f"label_fraction must be in (0, 1], got {data.label_fraction}")
    if not 0 <= data.val_fraction < 1:
        raise ManifestError(f"val_fraction must be in [0, 1), got {data.val_fraction}")
    df = df.sort_values("id", kind="stable").reset_index(drop=True)
    df.attrs = {}
    in_test = _test_mask(df, data, seed)  # on the whole manifest: folds do not depend on classes
    if data.classes:
        other = (df["label"].notna() & ~df["label"].isin(list(data.classes))).to_numpy()
        if other.any():
            counts = Counter(df.loc[other, "label"].tolist())
            log.warning("split_fold: dropped %d clips with labels outside data.classes: %s",
                        int(other.sum()), dict(sorted(counts.items())))  # fmt: skip
            df, in_test = df[~other].reset_index(drop=True), in_test[~other]
    test, pool = df[in_test], df[~in_test]
    check_speakers_disjoint({"train": pool, "test": test})

    speakers = sorted(set(pool["speaker"]))
    n_val = 0 if data.val_fraction == 0 else max(1, _round(data.val_fraction * len(speakers)))
    if n_val and n_val >= len(speakers):
        raise ManifestError(
            f"val_fraction {data.val_fraction} leaves no training speaker ({len(speakers)} speakers "
            "outside the test fold); lower it or set it to 0"
        )
    rng = np.random.default_rng([seed, _VAL_STREAM])
    val_speakers = set(rng.choice(speakers, size=n_val, replace=False).tolist()) if n_val else set()
    in_val = pool["speaker"].isin(val_speakers)
    val, train = pool[in_val], pool[~in_val]

    unlabeled = [train[train["label"].isna()]]
    train = train[train["label"].notna()].reset_index(drop=True)
    for name, part in (("val", val), ("test", test)):
        if part["label"].isna().any():
            log.warning(
                "split_fold: %d %s clips have no label; left out",
                int(part["label"].isna().sum()),
                name,
            )
    val, test = val[val["label"].notna()], test[test["label"].notna()]
    if data.label_fraction < 1:
        keep = _labeled_subset(train, data.label_fraction, seed)
        dropped = train[~keep].copy()
        dropped["label"] = pd.Series([None] * len(dropped), index=dropped.index, dtype=STR_DTYPE)
        unlabeled.append(dropped)
        train = train[keep]

    splits = {
        "train": train,
        "val": val,
        "test": test,
        "unlabeled": pd.concat(unlabeled) if len(unlabeled) > 1 else unlabeled[0],
    }
    splits = {
        k: v.sort_values("id", kind="stable").reset_index(drop=True) for k, v in splits.items()
    }
    check_speakers_disjoint(splits)
    if len(splits["train"]) == 0 or len(splits["test"]) == 0:
        raise ManifestError(
            f"fold {data.fold} leaves an empty train or test set: " + _sizes(splits)
        )
    log.info(
        "split_fold: fold %d (%s): %s", data.fold, resolve_folds(df, data.folds), _sizes(splits)
    )
    return splits


def _sizes(splits: dict[str, pd.DataFrame]) -> str:
    return ", ".join(
        f"{k} {len(v)} clips / {v['speaker'].nunique()} speakers" for k, v in splits.items()
    )
