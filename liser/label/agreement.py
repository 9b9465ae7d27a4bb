"""How a store's audio soft labels line up with labels the source manifest already has.

Unlabeled pools often carry their own corpus's labels, in another taxonomy (BAVED's
low/neutral/high arousal, EmoSpeech's angry/calm/fearful/happy). Those labels never train a
student; they tell whether the teacher's soft labels mean anything on that audio. Per
(corpus, label): clips, the teacher's mean confidence and its three most frequent top classes;
over labels that are also teacher classes: the clip-level UAR of the teacher's argmax
(``uar_shared``) and of its argmax restricted to those classes (``uar_restricted``, as ``liser
evaluate`` scores a model on a corpus with other classes). Written to ``agreement.csv`` in the
store and into its summary.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from liser import store as st

AGREEMENT_FILE = "agreement.csv"


def clip_probs(store_dir: Path) -> pd.DataFrame:
    """One row per clip with audio soft labels: ``clip``, ``path`` and ``probs`` (window mean)."""
    shards = st.shard_paths(store_dir)
    if not shards:
        return pd.DataFrame(columns=["clip", "path", "probs"])
    import pyarrow.dataset as ds

    table = ds.dataset(shards, format="parquet").to_table(columns=["clip", "audio_probs"])
    rows = table.to_pandas()
    rows = rows[rows["audio_probs"].notna()]
    if rows.empty:
        return pd.DataFrame(columns=["clip", "path", "probs"])
    probs = rows.groupby("clip")["audio_probs"].apply(
        lambda p: np.mean(np.stack([np.asarray(x, np.float32) for x in p]), 0)
    )
    out = probs.rename("probs").reset_index()
    out["path"] = out["clip"].str.split("#").str[0]
    return out


def label_agreement(store_dir: Path, manifest: pd.DataFrame, classes) -> tuple[dict, pd.DataFrame]:
    """(summary, per-label table) of the store's audio soft labels against ``manifest``'s labels.
    ``classes``: the audio teacher's classes, in the order of its probabilities."""
    classes = list(classes)
    known = manifest[manifest["label"].notna()]
    if "corpus" not in known.columns:
        known = known.assign(corpus="")
    known = known.assign(path=known["path"].map(lambda p: str(Path(p).absolute())))
    known = known.drop_duplicates("path")[["path", "corpus", "label"]]
    clips = clip_probs(store_dir).merge(known, on="path")
    if clips.empty:
        return {"clips": 0, "uar_shared": None, "shared_classes": []}, pd.DataFrame()
    probs = np.stack(clips["probs"].tolist())
    clips["top"] = [classes[k] for k in probs.argmax(1)]
    clips["confidence"] = probs.max(1)
    rows = []
    for (corpus, label), group in clips.groupby(["corpus", "label"], sort=True):
        shares = group["top"].value_counts(normalize=True).head(3)
        rows.append({
            "corpus": corpus, "label": label, "clips": len(group),
            "confidence": round(float(group["confidence"].mean()), 3),
            "same_class": round(float((group["top"] == label).mean()), 3)
            if label in classes else None,
            "top_classes": ", ".join(f"{c} {s:.0%}" for c, s in shares.items()),
        })  # fmt: skip
    table = pd.DataFrame(rows)
    shared = sorted(set(clips["label"]) & set(classes))
    recalls = [float((clips.loc[clips["label"] == c, "top"] == c).mean()) for c in shared]
    # as `liser evaluate` scores across taxonomies: the argmax restricted to the shared classes
    index = [classes.index(c) for c in shared]
    scored = clips["label"].isin(shared).to_numpy()
    restricted = np.array(shared, dtype=object)[probs[scored][:, index].argmax(1)] if index else []
    truth = clips.loc[scored, "label"].to_numpy()
    within = [float((restricted[truth == c] == c).mean()) for c in shared]
    summary = {
        "clips": len(clips),
        "shared_classes": shared,
        "uar_shared": round(100 * float(np.mean(recalls)), 2) if recalls else None,
        "uar_restricted": round(100 * float(np.mean(within)), 2) if within else None,
        "mean_confidence": round(float(clips["confidence"].mean()), 3),
    }
    table.to_csv(Path(store_dir) / AGREEMENT_FILE, index=False)
    return summary, table
