"""A manifest from any table of clips (CSV or Parquet): the form most corpora and users' own data
come in, for example the ``index.csv`` of each folder under ``../shared/data``."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd

from liser.media import probe_media, progress

from .schema import ManifestError, absolute_path, make_manifest

log = logging.getLogger(__name__)
TABLE_FORMATS = (".csv", ".parquet", ".tsv")
OPTIONAL = ("id", "speaker", "label", "start", "duration", "corpus", "fold")


def table_manifest(source: str | Path, measure: bool = True, corpus: str = "") -> pd.DataFrame:
    """One manifest row per row of the table at ``source`` (.csv, .tsv or .parquet).

    Columns: ``path`` (required; relative to the table's folder, or absolute), and optionally
    ``speaker`` (default "unknown"), ``label`` (lower-cased; empty = unlabeled), ``start`` and
    ``duration`` (seconds; a missing duration is read from the file header when ``measure``),
    ``corpus`` (default ``corpus`` or the table's folder name), ``fold`` (whole numbers, for
    ``data.folds: column``), ``id`` (default: the path relative to the table's folder without its
    extension; the file stem outside it). Other columns are kept. Rows whose file is missing or unreadable, or whose values
    are malformed, are skipped and listed in ``df.attrs["skipped"]``; a table without a ``path``
    column, or that cannot be read, is a ``ManifestError``.
    """
    source = Path(source)
    table = _read_table(source)
    if "path" not in table.columns:
        raise ManifestError(
            f"{source}: no 'path' column (columns: {', '.join(map(str, table.columns))}); a clip "
            f"table needs 'path' and may have {', '.join(OPTIONAL)}"
        )
    root = source.parent.absolute()
    default_corpus = corpus or root.name
    rows, skipped, ids = [], [], set()
    records = table.to_dict("records")
    for number, record in enumerate(progress(records, f"Reading {source.name}"), start=2):
        where = (
            f"{source}:{number}"
            if source.suffix.lower() != ".parquet"
            else f"{source}[{number - 2}]"
        )
        try:
            row = _row(record, root, default_corpus, measure)
        except ValueError as error:
            skipped.append((record.get("path") or where, str(error)))
            continue
        if row["id"] in ids:
            skipped.append((row["path"], f"duplicate: id {row['id']!r} is used by another row"))
            continue
        ids.add(row["id"])
        rows.append(row)
    if skipped:
        log.warning("%s: skipped %d rows (first: %s: %s)", source, len(skipped), *skipped[0])
    extra = tuple(c for c in table.columns if c not in ("path",) + OPTIONAL)
    return make_manifest(
        rows, skipped, extra=(("fold",) if "fold" in table.columns else ()) + extra
    )


def _read_table(source: Path) -> pd.DataFrame:
    suffix = source.suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise ManifestError(
            f"{source}: unknown table format '{suffix}' (use .csv, .tsv or .parquet)"
        )
    if not source.is_file():
        raise ManifestError(f"{source}: no such file")
    try:
        if suffix == ".parquet":
            return pd.read_parquet(source)
        text = {"dtype": str, "keep_default_na": False, "na_values": [""]}  # "01" stays "01"
        return pd.read_csv(source, sep="\t" if suffix == ".tsv" else ",", **text)
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise ManifestError(f"{source}: cannot read the table ({error})") from error


def _row(record: dict, root: Path, corpus: str, measure: bool) -> dict:
    """A manifest row from a table row (ValueError with the reason when it cannot be used)."""
    raw = _text(record.get("path"))
    if not raw:
        raise ValueError("bad row: empty path")
    path = absolute_path(raw, root)
    start = _seconds(record.get("start"), "start", default=0.0)
    duration = _seconds(record.get("duration"), "duration", default=math.nan)
    if not path.exists():
        raise ValueError("missing" if not path.is_symlink() else "broken link")
    if math.isnan(duration) and measure:
        try:
            duration = probe_media(path)["duration"] - start
        except ValueError as error:
            raise ValueError(f"unreadable: {error}") from None
        if duration <= 0:
            raise ValueError(f"bad row: start {start} s is beyond the end of the file")
    label = _text(record.get("label")).lower() or None
    clip_id = _text(record.get("id")) or _default_id(root, path)
    row = {k: v for k, v in record.items() if k not in ("path",) + OPTIONAL}
    row.update(id=clip_id, path=str(path), start=start, duration=duration, label=label,
               speaker=_text(record.get("speaker")) or "unknown",
               corpus=_text(record.get("corpus")) or corpus)  # fmt: skip
    if "fold" in record:
        fold = _seconds(record.get("fold"), "fold", default=math.nan)
        if not math.isnan(fold) and not fold.is_integer():
            raise ValueError(f"bad row: fold must be a whole number, got {record['fold']!r}")
        row["fold"] = fold
    return row


def _default_id(root: Path, path: Path) -> str:
    """The path below the table's folder without its extension; the file stem outside it."""
    try:
        return path.relative_to(root).with_suffix("").as_posix()
    except ValueError:
        return path.stem


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _seconds(value, name: str, default: float) -> float:
    text = _text(value)
    if not text:
        return default
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"bad row: {name} must be a number, got {text!r}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"bad row: {name} must be a finite number >= 0, got {text!r}")
    return number
