"""EmoBox metadata (github.com/emo-box/EmoBox, ``data/<corpus>/*.jsonl``) to and from manifests.

One JSON object a line: ``{"key", "dataset", "wav", "type": "raw", "sample_rate", "num_frame",
"task": "category", "length" (seconds), "emo" (the corpus's own label string), "channel"}``.
liser adds ``"speaker"`` (and ``"start"`` for clips that do not start at 0) on export; EmoBox
readers ignore unknown keys.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from liser.constants import CREMAD_CODES
from liser.files import atomic_write
from liser.media import probe_media

from .corpora import parse_cremad_name, parse_ravdess_name
from .schema import absolute_path, is_null, json_value, make_manifest, validate_manifest

log = logging.getLogger(__name__)


def _emobox_label(dataset: str, emo):
    if is_null(emo):
        return None
    emo = str(emo)
    if dataset == "cremad":
        return CREMAD_CODES.get(emo, emo.lower())
    if dataset == "ravdess":
        return emo.lower()
    return emo


def _emobox_emo(corpus: str, label):
    if is_null(label):
        return None
    if corpus == "cremad":
        codes = {v: k for k, v in CREMAD_CODES.items()}
        return codes.get(label, label)
    if corpus == "ravdess":
        return str(label).capitalize()
    return label


def emobox_import(jsonl: str | Path, root: str | Path | None = None) -> pd.DataFrame:
    """Read EmoBox metadata; relative "wav" paths are resolved against ``root`` (default: the
    file's folder). Speakers come from a "speaker" key, else from RAVDESS / CREMA-D file names,
    else "unknown". Labels: CREMA-D codes and RAVDESS words map to liser's class names."""
    jsonl = Path(jsonl)
    root = Path(root) if root is not None else jsonl.parent
    rows, skipped, seen = [], [], set()
    with open(jsonl, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{jsonl}:{number}"
            try:
                item = json.loads(line)
                key, wav = str(item["key"]), str(item["wav"])
            except (ValueError, KeyError, TypeError) as error:
                skipped.append((where, f"not an EmoBox record ({error})"))
                continue
            if key in seen:
                skipped.append((where, f"duplicate: key '{key}' already seen"))
                continue
            seen.add(key)
            dataset = str(item.get("dataset") or "emobox").lower()
            name = Path(wav).name
            speaker, extra = item.get("speaker"), {}
            parse = {"ravdess": parse_ravdess_name, "cremad": parse_cremad_name}.get(dataset)
            if parse is not None:
                try:
                    fields = parse(name)
                except ValueError:
                    fields = None
                if fields is not None:
                    extra = {
                        k: v for k, v in fields.items() if k not in ("label", "actor", "speaker")
                    }
                    speaker = speaker if speaker is not None else fields["speaker"]
            length = item.get("length")
            rows.append(
                dict(
                    id=key,
                    path=str(absolute_path(wav, root.absolute())),
                    start=float(item.get("start") or 0.0),
                    duration=np.nan if length is None else float(length),
                    speaker="unknown" if speaker is None else str(speaker),
                    label=_emobox_label(dataset, item.get("emo")),
                    corpus=dataset,
                    sample_rate=item.get("sample_rate"),
                    channels=item.get("channel"),
                    **extra,
                )
            )
    missing = sum(not os.path.exists(row["path"]) for row in rows)
    if missing:
        log.warning(
            "%s: %d of %d files are not under %s (pass root=)", jsonl, missing, len(rows), root
        )
    return make_manifest(rows, skipped)


def emobox_export(df: pd.DataFrame, jsonl: str | Path, root: str | Path | None = None) -> Path:
    """Write a manifest as EmoBox metadata (atomically). Paths are written relative to ``root``
    when given and the file lies under it, else absolute. Sample rate and channels come from the
    manifest's columns when present, else from the file header (null when unreadable)."""
    validate_manifest(df, where="emobox export")
    jsonl = Path(jsonl)
    root = Path(root).absolute() if root is not None else None
    lines = []
    for row in df.to_dict(orient="records"):
        sample_rate, channels = row.get("sample_rate"), row.get("channels")
        if is_null(sample_rate) or is_null(channels):
            try:
                info = probe_media(row["path"])
                sample_rate, channels = info["sample_rate"] or None, info["channels"] or None
            except ValueError:  # a missing or unreadable file: leave them unknown
                sample_rate, channels = None, None
        sample_rate = None if is_null(sample_rate) else int(sample_rate)
        channels = None if is_null(channels) else int(channels)
        wav = Path(row["path"])
        if root is not None and wav.is_relative_to(root):
            wav = wav.relative_to(root)
        duration = json_value(row["duration"])
        record = {
            "key": row["id"],
            "dataset": row["corpus"],
            "wav": str(wav),
            "type": "raw",
            "sample_rate": sample_rate,
            "num_frame": None
            if duration is None or sample_rate is None
            else float(round(duration * sample_rate)),
            "task": "category",
            "length": duration,
            "emo": _emobox_emo(row["corpus"], row["label"]),
            "channel": channels,
            "speaker": row["speaker"],
        }
        if row["start"]:
            record["start"] = float(row["start"])
        lines.append(json.dumps(record))
    atomic_write(jsonl, "".join(line + "\n" for line in lines))
    return jsonl
