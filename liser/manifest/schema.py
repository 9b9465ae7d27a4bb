"""The clip table (manifest): schema, reading and writing, validation, class lists, reports.

A manifest is a ``pandas.DataFrame`` with one row per clip and the columns

    id        str    unique clip id (the file stem for corpus files)
    path      str    absolute path of the audio or video file
    start     float  seconds from the start of the file (0.0 for whole files)
    duration  float  seconds; measured from the file header (soundfile / PyAV, no decoding),
                     NaN when unknown (a name-only file list, or ``measure=False``)
    speaker   str    speaker id ("Actor_01" for RAVDESS, "1001" for CREMA-D, "unknown")
    label     str    class name, or null for unlabeled clips
    corpus    str    "ravdess", "cremad", "videos", a folder's name, ...

plus corpus fields (RAVDESS: modality, vocal_channel, intensity, statement, repetition, gender;
CREMA-D: sentence, level, gender). Builders return the files they skipped, with the reason, in
``df.attrs["skipped"]`` as a list of ``(path, reason)``.

The builders live in ``liser/corpora.py`` (names, corpora, videos), ``liser/emobox.py`` (EmoBox
metadata) and ``liser/media.py`` (listing, probing); the splits in ``liser/splits.py``. All are
importable from here: ``from liser.manifest import ravdess_manifest, split_fold``.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from liser.constants import CREMAD_CLASSES, RAVDESS_CLASSES
from liser.files import atomic_write

COLUMNS = ("id", "path", "start", "duration", "speaker", "label", "corpus")
STRING_COLUMNS = ("id", "path", "speaker", "label", "corpus")
FLOAT_COLUMNS = ("start", "duration")
CORPUS_CLASSES = {"ravdess": RAVDESS_CLASSES, "cremad": CREMAD_CLASSES}
FORMATS = (".parquet", ".csv", ".jsonl")
# Text columns: pandas 3's string dtype (NaN for null); plain objects (None for null) on pandas 2.
STR_DTYPE = "str" if int(pd.__version__.split(".")[0]) >= 3 else object


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file or rows and the reason."""


def make_manifest(rows: list[dict], skipped=(), extra: tuple[str, ...] = ()) -> pd.DataFrame:
    """A manifest from row dicts: base columns first, then ``extra`` and any other keys, sorted by id."""
    df = pd.DataFrame(rows)
    for column in COLUMNS + tuple(extra):
        if column not in df.columns:
            df[column] = np.nan
    others = [c for c in df.columns if c not in COLUMNS and c not in extra]
    df = normalize_manifest(df[list(COLUMNS) + list(extra) + others])
    df = df.sort_values("id", kind="stable").reset_index(drop=True)
    df.attrs["skipped"] = [(str(p), str(r)) for p, r in skipped]
    return df


def normalize_manifest(df: pd.DataFrame) -> pd.DataFrame:
    """Coerce the base columns to their types (strings with NaN for null, float seconds)."""
    df = df.copy()
    for column in STRING_COLUMNS:
        if column in df.columns:
            df[column] = _as_str(df[column])
    for column in FLOAT_COLUMNS:
        if column in df.columns:
            df[column] = pd.to_numeric(df[column], errors="coerce").astype("float64")
    return df


def _as_str(series: pd.Series) -> pd.Series:
    values = [None if is_null(v) else str(v) for v in series.tolist()]
    return pd.Series(values, index=series.index, dtype=STR_DTYPE)


def is_null(value) -> bool:
    """None, NA or a float NaN."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


# --------------------------------------------------------------------------------------------
# Reading and writing


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a .parquet, .csv or .jsonl manifest; relative paths are resolved against its folder."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ManifestError(
            f"{path}: unknown manifest format '{suffix}' (use {', '.join(FORMATS)})"
        )
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file")
    try:
        if suffix == ".parquet":
            df = pd.read_parquet(path)
        elif suffix == ".csv":
            # Read every base string column as text ("01" stays "01"); only empty cells are null.
            dtypes = {c: str for c in STRING_COLUMNS}
            df = pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values=[""])
        else:
            records = []
            with open(path, encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        records.append(json.loads(line))
                    except ValueError as error:
                        raise ValueError(f"line {number}: {error}") from error
            df = pd.DataFrame(records) if records else pd.DataFrame(columns=list(COLUMNS))
    except (OSError, ValueError) as error:
        raise ManifestError(f"{path}: cannot read manifest ({error})") from error
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(f"{path}: missing columns {missing} (a manifest needs {list(COLUMNS)})")
    df = normalize_manifest(df)
    root = path.parent.absolute()
    df["path"] = [p if is_null(p) else str(absolute_path(p, root)) for p in df["path"].tolist()]
    df["path"] = _as_str(df["path"])
    df.attrs = {}
    return df


def absolute_path(path: str, root: Path) -> Path:
    """``path`` (``~`` expanded) made absolute against ``root`` when relative, normalised."""
    p = Path(os.path.expanduser(path))
    return Path(os.path.normpath(p if p.is_absolute() else root / p))


def write_manifest(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a manifest as .parquet, .csv or .jsonl (by extension), atomically; returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ManifestError(
            f"{path}: unknown manifest format '{suffix}' (use {', '.join(FORMATS)})"
        )
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(f"cannot write {path}: missing columns {missing}")
    df = normalize_manifest(df)
    df.attrs = {}  # the skipped-files report is not part of the table

    def write(tmp: str) -> None:
        if suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        elif suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                for record in df.to_dict(orient="records"):
                    f.write(json.dumps({k: json_value(v) for k, v in record.items()}) + "\n")

    return atomic_write(path, write)


def json_value(value):
    """A JSON-ready Python value (numpy scalars unwrapped, NaN as None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        return [json_value(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return None if is_null(value) else value


# --------------------------------------------------------------------------------------------
# Validation, classes, report


def manifest_problems(df: pd.DataFrame, classes: tuple[str, ...] | None = None) -> list[str]:
    """Everything wrong with a manifest, one readable sentence each (empty list when usable)."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        return [f"missing columns {missing} (a manifest needs {list(COLUMNS)})"]
    problems = []
    ids = df["id"]
    if ids.isna().any():
        problems.append(f"{int(ids.isna().sum())} rows have no id (rows {_rows(ids.isna())})")
    duplicated = ids[ids.duplicated(keep=False) & ids.notna()]
    if len(duplicated):
        names = sorted(set(duplicated.tolist()))
        problems.append(f"{len(names)} duplicate ids: {_some(names)}")
    for column in ("path", "speaker"):
        null = df[column].isna()
        if null.any():
            problems.append(f"{int(null.sum())} rows have no {column}: ids {_some(df.id[null])}")
    relative = df["path"].notna() & ~df["path"].map(lambda p: os.path.isabs(str(p)))
    if relative.any():
        problems.append(f"{int(relative.sum())} paths are not absolute: {_some(df.path[relative])}")
    start = pd.to_numeric(df["start"], errors="coerce")
    duration = pd.to_numeric(df["duration"], errors="coerce")
    bad = start.isna() | (start < 0)
    if bad.any():
        problems.append(
            f"{int(bad.sum())} rows have a missing or negative start: ids {_some(df.id[bad])}"
        )
    if (duration <= 0).any():
        problems.append(
            f"{int((duration <= 0).sum())} rows have duration <= 0: ids {_some(df.id[duration <= 0])}"
        )
    if classes is not None:
        labels = df["label"]
        unknown = labels.notna() & ~labels.isin(list(classes))
        if unknown.any():
            counts = Counter(labels[unknown].tolist())
            listed = ", ".join(f"'{k}' ({n} clips)" for k, n in sorted(counts.items()))
            problems.append(f"unknown labels {listed}; expected one of {list(classes)}")
    return problems


def validate_manifest(df: pd.DataFrame, classes=None, where: str = "manifest") -> None:
    """Raise ``ManifestError`` listing every problem of ``df`` (see ``manifest_problems``)."""
    problems = manifest_problems(df, None if classes is None else tuple(classes))
    if problems:
        raise ManifestError(f"{where}: " + "; ".join(problems))


def _rows(mask: pd.Series) -> str:
    return _some([int(i) for i in np.flatnonzero(mask.to_numpy())])


def _some(values, n: int = 5) -> str:
    values = list(values)
    shown = ", ".join(str(v) for v in values[:n])
    return shown + (f", ... ({len(values) - n} more)" if len(values) > n else "")


def corpus_classes(df: pd.DataFrame) -> tuple[str, ...]:
    """The class list of a manifest: the corpus's own list for RAVDESS / CREMA-D (merged in order
    when both), otherwise the sorted distinct labels."""
    corpora = sorted(set(df["corpus"].dropna().tolist())) if len(df) else []
    if corpora and all(c in CORPUS_CLASSES for c in corpora):
        order = ["ravdess", "cremad"]
        merged: list[str] = []
        for corpus in sorted(corpora, key=order.index):
            merged += [c for c in CORPUS_CLASSES[corpus] if c not in merged]
        return tuple(merged)
    return tuple(sorted(set(df["label"].dropna().tolist())))


def save_manifest(df: pd.DataFrame, path: str | Path) -> str:
    """Write a built manifest (atomically) and return its ``manifest_report``. Raises
    ``ManifestError`` (and writes nothing) when no clip was found."""
    if len(df) == 0:
        raise ManifestError(f"no clips found; nothing written to {path}\n" + manifest_report(df))
    write_manifest(df, path)
    return manifest_report(df, path)


def manifest_report(
    df: pd.DataFrame, output: str | Path | None = None, max_listed: int = 10
) -> str:
    """A few lines on a built manifest: clips, speakers, labels, hours, and the skipped files."""
    durations = df["duration"].to_numpy(dtype=float)
    unknown = int(np.isnan(durations).sum())
    hours = f"{np.nansum(durations) / 3600:.2f} h" if unknown < len(df) else "duration unknown"
    if 0 < unknown < len(df):
        hours += f" (duration unknown for {unknown} clips)"
    labels = Counter(df["label"].dropna().tolist())
    lines = [
        f"{len(df)} clips, {df['speaker'].nunique()} speakers, {hours}"
        + (f" -> {output}" if output else ""),
        "labels: " + (", ".join(f"{k} {n}" for k, n in sorted(labels.items())) or "none"),
    ]
    skipped = df.attrs.get("skipped", [])
    if skipped:
        reasons = Counter(reason.split(":")[0] for _, reason in skipped)
        lines.append(
            f"skipped {len(skipped)} files: "
            + ", ".join(f"{r} ({n})" for r, n in reasons.most_common())
        )
        lines += [f"  {path}: {reason}" for path, reason in skipped[:max_listed]]
        if len(skipped) > max_listed:
            lines.append(f"  ... {len(skipped) - max_listed} more")
    return "\n".join(lines)
