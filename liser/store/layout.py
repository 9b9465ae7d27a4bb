"""The soft-label store: a folder of Parquet shards of 3 s windows labeled by the teachers.

Layout::

    STORE/store.json             header: front end, window/hop, teachers (classes, fingerprints),
                                 schema version, skipped files and the last summary
    STORE/shards/part-*.parquet  one row per window (``SCHEMA``), readable as one table by
                                 ``pyarrow.dataset.dataset(STORE / "shards")``

Writing (atomic shards, completed clips, repair after a crash) is in ``shards.py``; this module
holds the layout, the header and reading.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from liser.config import FrontEndConfig, from_dict, to_dict
from liser.files import write_json

SCHEMA_VERSION = 1
HEADER = "store.json"
SHARDS = "shards"

SCHEMA = pa.schema(
    [
        ("window_id", pa.string()),  # sha1(clip)[:12] + "-" + window index in the clip
        ("clip", pa.string()),  # the clip labeled: source path, or "path#start+duration"
        ("source", pa.string()),  # absolute path of the media file
        ("start", pa.float64()),  # seconds in the source
        ("end", pa.float64()),  # seconds; end - start < window for a padded trailing window
        ("features", pa.binary()),  # float16 log-Mel, C order, shape = (n_mels, n_frames)
        ("audio_probs", pa.list_(pa.float32())),  # null without an audio teacher
        ("audio_confidence", pa.float32()),  # max audio probability
        ("audio_teacher", pa.string()),  # fingerprint of the teacher that wrote audio_probs
        ("video_probs", pa.list_(pa.float32())),  # null without video, teacher or face
        ("video_confidence", pa.float32()),
        ("video_teacher", pa.string()),
        ("face_coverage", pa.float32()),  # share of sampled frames with the tracked face
        # Added later; shards written before read them as null.
        ("speech_fraction", pa.float32()),  # share of the window's 32 ms frames with speech (VAD)
        ("audio_absent", pa.string()),  # why audio_probs is null ("no speech"); null otherwise
        ("video_absent", pa.string()),  # why video_probs is null ("no face", "too dark", ...)
        ("face_box", pa.list_(pa.float32())),  # tracked face: median x, y, w, h (pixels)
        ("faces_seen", pa.int16()),  # most faces detected in one sampled frame of the window
    ]
)
TEACHER_COLUMNS = {
    "audio": ("audio_probs", "audio_confidence", "audio_teacher", "audio_absent"),
    "video": ("video_probs", "video_confidence", "video_teacher", "face_coverage",
              "video_absent", "face_box", "faces_seen"),
}  # fmt: skip


class StoreError(ValueError):
    """A store that cannot be used as asked; the message names the store and the reason."""


# --------------------------------------------------------------------------------------------
# Header (store.json)


def new_header(frontend: FrontEndConfig, window_seconds, hop_seconds, min_seconds) -> dict:
    """The store.json of an empty store (no teachers yet)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "frontend": to_dict(frontend),
        "window_seconds": window_seconds,
        "hop_seconds": hop_seconds,
        "min_seconds": min_seconds,
        "n_mels": frontend.n_mels,
        "n_frames": frontend.n_frames,
        "features_normalized": frontend.normalize != "global",  # global: the student's stats
        "teachers": {"audio": None, "video": None},
        "skipped": {},
        "summary": {},
    }


def read_header(store_dir: str | Path) -> dict:
    """store.json of a store; ``StoreError`` when missing, unreadable or of another schema."""
    path = Path(store_dir) / HEADER
    if not path.is_file():
        raise StoreError(f"{store_dir}: not a soft-label store (no {HEADER})")
    try:
        header = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise StoreError(f"{path}: unreadable ({error})") from error
    version = header.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StoreError(f"{store_dir}: store schema {version}, this liser reads {SCHEMA_VERSION}")
    return header


def write_header(store_dir: str | Path, header: dict) -> None:
    """Write store.json atomically (temp name, fsync, rename)."""
    write_json(Path(store_dir) / HEADER, header, indent=2)


def header_frontend(header: dict) -> FrontEndConfig:
    return from_dict(FrontEndConfig, header["frontend"])


def frontend_differences(a: FrontEndConfig, b: FrontEndConfig) -> list[str]:
    """``name: a != b`` for each front-end setting that differs."""
    da, db = to_dict(a), to_dict(b)
    return [f"{k}: {da[k]!r} != {db[k]!r}" for k in da if da[k] != db.get(k)]


def check_frontend(store: SoftLabelStore | str | Path, frontend: FrontEndConfig) -> None:
    """Raise ``StoreError`` when the store's features were made with other front-end settings."""
    if not isinstance(store, SoftLabelStore):
        store = open_store(store)
    diff = frontend_differences(store.frontend, frontend)
    if diff:
        raise StoreError(
            f"{store.path}: its features were computed with other front-end settings than the "
            f"student's ({'; '.join(diff)}); relabel the files with this front end"
        )


# --------------------------------------------------------------------------------------------
# Shards


def shard_paths(store_dir: str | Path) -> list[Path]:
    return sorted((Path(store_dir) / SHARDS).glob("part-*.parquet"))


def read_shard(path: Path, columns: list[str] | None = None) -> pa.Table:
    """A shard (or some of its columns) as a table; ``StoreError`` naming it when corrupt."""
    try:
        return pq.read_table(path, columns=columns, schema=SCHEMA if columns is None else None)
    except (pa.ArrowException, OSError) as error:
        raise corrupt_shard(path, error) from None


def shard_metadata(path: Path) -> pq.FileMetaData:
    """A shard's Parquet footer; ``StoreError`` naming it when corrupt."""
    try:
        return pq.read_metadata(path)
    except (pa.ArrowException, OSError) as error:
        raise corrupt_shard(path, error) from None


def corrupt_shard(path: Path, error: Exception) -> StoreError:
    return StoreError(
        f"{path}: corrupt shard ({type(error).__name__}: {error}); delete it and run `liser label` "
        "again on the same files to label its clips anew"
    )


def check_unique_windows(store_dir: str | Path) -> None:
    """``StoreError`` when two shards hold the same window (a copied or restored shard), naming
    both; each window must be in the store once, or it would count twice in training."""
    owner: dict[str, Path] = {}
    for path in shard_paths(store_dir):
        for window in read_shard(path, ["window_id"]).column("window_id").to_pylist():
            first = owner.setdefault(window, path)
            if first != path:
                raise StoreError(
                    f"{store_dir}: window {window} is in two shards, {first.name} and {path.name} "
                    "(a copy of a shard?); remove the extra copy"
                )


# --------------------------------------------------------------------------------------------
# Reading


class SoftLabelStore:
    """A soft-label store opened for reading; see ``open_store``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.header = read_header(self.path)
        self.frontend = header_frontend(self.header)
        self.teachers = self.header["teachers"]  # {"audio": dict | None, "video": dict | None}
        audio, video = self.teachers.get("audio"), self.teachers.get("video")
        self.audio_classes = tuple(audio["classes"]) if audio else ()
        self.video_classes = tuple(video["classes"]) if video else ()
        self.n_mels = int(self.header["n_mels"])
        self.n_frames = int(self.header["n_frames"])
        # False for normalize="global": features are raw log-Mel, the student applies its stats
        self.features_normalized = bool(self.header.get("features_normalized", True))
        self.shards = shard_paths(self.path)
        self._rows = [shard_metadata(p).num_rows for p in self.shards]
        check_unique_windows(self.path)

    def __len__(self) -> int:
        return sum(self._rows)

    def __repr__(self) -> str:
        return (
            f"SoftLabelStore({str(self.path)!r}, windows={len(self)}, shards={len(self.shards)}, "
            f"audio_classes={len(self.audio_classes)}, video_classes={len(self.video_classes)})"
        )

    def dataset(self):
        """The shards as one ``pyarrow.dataset.Dataset``."""
        import pyarrow.dataset as ds

        return ds.dataset(self.path / SHARDS, format="parquet", schema=SCHEMA)

    def iter_batches(
        self,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        epoch: int = 0,
        buffer_windows: int = 4096,
        drop_last: bool = False,
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Batches of windows, reading one shard at a time.

        Yields dicts of tensors: ``features`` (B, n_mels, n_frames) float32, ``audio_probs``
        (B, Ca), ``audio_mask`` (B,) bool, ``video_probs`` (B, Cv), ``video_mask`` (B,) bool,
        ``face_coverage`` (B,) float32 (NaN without video). Masks are False where a teacher gave
        no label (or a label from a teacher other than the one in store.json). With ``shuffle``,
        shard order and rows within a buffer of ``buffer_windows`` rows are permuted, seeded by
        (seed, epoch); memory holds at most one buffer plus one record batch.
        """
        order = np.arange(len(self.shards))
        rng = np.random.default_rng([seed, epoch])
        if shuffle:
            rng.shuffle(order)
        buffer: list[dict[str, np.ndarray]] = []
        buffered = 0
        for index in order:
            for record_batch in _record_batches(self.shards[index]):
                buffer.append(self._decode(record_batch))
                buffered += record_batch.num_rows
                if buffered >= max(buffer_windows, batch_size):
                    rest = yield from _emit(buffer, batch_size, shuffle, rng, keep_rest=True)
                    buffer, buffered = [rest], len(rest["audio_mask"])
        if buffered:
            yield from _emit(buffer, batch_size, shuffle, rng, keep_rest=drop_last)

    def _decode(self, batch: pa.RecordBatch) -> dict[str, np.ndarray]:
        n = batch.num_rows
        features = _binary_to_array(batch.column("features"), np.float16)
        features = features.reshape(n, self.n_mels, self.n_frames)
        out = {"features": features}
        for name in ("audio", "video"):
            info = self.teachers.get(name)
            classes = len(info["classes"]) if info else 0
            probs, mask = _lists_to_array(batch.column(f"{name}_probs"), classes)
            if info:
                teacher = batch.column(f"{name}_teacher").to_numpy(zero_copy_only=False)
                mask &= teacher == info["fingerprint"]
            probs[~mask] = 0.0
            out[f"{name}_probs"], out[f"{name}_mask"] = probs, mask
        coverage = batch.column("face_coverage").to_numpy(zero_copy_only=False)
        out["face_coverage"] = np.asarray(coverage, dtype=np.float32)
        return out


def _record_batches(path: Path) -> Iterator[pa.RecordBatch]:
    try:
        yield from pq.ParquetFile(path).iter_batches(batch_size=1024, columns=_READ_COLUMNS)
    except (pa.ArrowException, OSError) as error:
        raise corrupt_shard(path, error) from None


_READ_COLUMNS = [
    "features", "audio_probs", "audio_teacher", "video_probs", "video_teacher", "face_coverage"
]  # fmt: skip


def _emit(parts, batch_size, shuffle, rng, keep_rest):
    """Yield batches from concatenated parts; return the rows left (< batch_size) if keep_rest."""
    rows = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    n = len(rows["audio_mask"])
    order = rng.permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if keep_rest else n
    for begin in range(0, stop, batch_size):
        take = order[begin : begin + batch_size]
        batch = {k: torch.from_numpy(v[take]) for k, v in rows.items()}
        batch["features"] = batch["features"].float()
        yield batch
    rest = order[stop:]
    return {k: v[rest] for k, v in rows.items()}


def _binary_to_array(column: pa.Array, dtype) -> np.ndarray:
    """Concatenate the bytes of a binary column without copying each value: flat array of dtype."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if column.null_count:
        raise StoreError("a row has no features (null in the features column)")
    _, offsets, data = column.buffers()
    offsets = np.frombuffer(offsets, dtype=np.int32)[
        column.offset : column.offset + len(column) + 1
    ]
    return np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]].view(dtype)


def _lists_to_array(column: pa.Array, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """list<float32> column -> ((n, classes) float32 with zeros for nulls, (n,) valid mask)."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(column)
    mask = column.is_valid().to_numpy(zero_copy_only=False).astype(bool)
    probs = np.zeros((n, classes), dtype=np.float32)
    if mask.any() and classes:
        values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        if values.size != mask.sum() * classes:
            raise StoreError(f"teacher probabilities do not have {classes} classes per row")
        probs[mask] = values.reshape(-1, classes)
    elif mask.any():
        mask[:] = False  # labels from a teacher the header no longer lists
    return probs, mask


def open_store(path: str | Path) -> SoftLabelStore:
    """Open a soft-label store folder for reading (``StoreError`` if it is not one)."""
    return SoftLabelStore(path)
