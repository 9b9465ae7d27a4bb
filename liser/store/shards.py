"""Writing soft-label shards atomically, and repairing a store after a crash.

A shard is streamed to a hidden temporary file (datasets ignore names starting with ".") and
renamed when complete, so a crash never leaves a half-written shard where readers look. Each
shard's Parquet key-value metadata lists the clips whose last window it holds
(``liser.complete``): a clip is done exactly when such a shard exists, which is what a resumed run
skips. ``repair_store`` removes the rows of clips that never completed.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .layout import (
    SCHEMA,
    SHARDS,
    check_unique_windows,
    corrupt_shard,
    read_shard,
    shard_metadata,
    shard_paths,
)

COMPLETE_KEY = b"liser.complete"
ROW_GROUP = 256  # rows per Parquet row group (~10 MB of features at 64 mels x 301 frames)


def shard_complete(path: Path) -> list[str]:
    """Clips whose last window is in this shard."""
    metadata = shard_metadata(path).metadata or {}
    try:
        return json.loads(metadata.get(COMPLETE_KEY, b"[]"))
    except json.JSONDecodeError as error:
        raise corrupt_shard(path, error) from None


def done_clips(store_dir: str | Path) -> set[str]:
    """Clips fully written to the store's shards."""
    done: set[str] = set()
    for path in shard_paths(store_dir):
        done.update(shard_complete(path))
    return done


class _ShardFile:
    """A shard being written: row groups go to a hidden temporary file (datasets ignore names
    starting with "."), which ``commit`` closes with the completed clips and renames."""

    def __init__(self, path: Path):
        self.path = path
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self.writer = pq.ParquetWriter(self.tmp, SCHEMA, compression="zstd")

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table.cast(SCHEMA), row_group_size=ROW_GROUP)

    def commit(self, complete: list[str]) -> Path:
        self.writer.add_key_value_metadata({COMPLETE_KEY: json.dumps(complete)})
        self.writer.close()
        with open(self.tmp, "rb") as file:
            os.fsync(file.fileno())
        self.tmp.replace(self.path)
        return self.path


def write_shard(path: Path, table: pa.Table, complete: list[str]) -> None:
    """Write ``table`` to ``path`` atomically, recording the completed clips in its metadata."""
    shard = _ShardFile(path)
    shard.write(table)
    shard.commit(complete)


class ShardWriter:
    """Write window rows as numbered shards of about ``shard_windows`` rows each.

    ``add(rows)`` takes a dict of columns (``SCHEMA`` names) or a table; rows are streamed to the
    shard's temporary file in row groups of ``ROW_GROUP`` rows, so memory holds one row group, not
    a shard. ``complete(clip)`` marks a clip whose rows have all been added; ``flush()`` commits
    the shard (with those clips); ``close()`` commits what is left. ``written`` holds the clips
    with rows in the current or a committed shard of this writer.
    """

    def __init__(self, store_dir: str | Path, shard_windows: int = 2048):
        self.folder = Path(store_dir) / SHARDS
        self.folder.mkdir(parents=True, exist_ok=True)
        self.shard_windows = shard_windows
        numbers = [int(re.findall(r"\d+", p.stem)[0]) for p in shard_paths(store_dir)]
        self.next_index = max(numbers, default=-1) + 1
        self.tables: list[pa.Table] = []  # rows not yet in a row group
        self.buffered = 0
        self.rows = 0  # rows in the current shard
        self.completed: list[str] = []
        self.written: set[str] = set()
        self.shard: _ShardFile | None = None

    def add(self, rows: dict | pa.Table) -> None:
        if isinstance(rows, pa.Table):
            table = rows.select(SCHEMA.names).cast(SCHEMA)
        else:
            n = len(next(iter(rows.values()))) if rows else 0
            table = pa.Table.from_pydict(
                {name: rows.get(name, [None] * n) for name in SCHEMA.names}, schema=SCHEMA
            )
        self.tables.append(table)
        self.buffered += table.num_rows
        self.rows += table.num_rows
        if self.buffered >= ROW_GROUP:
            self._write_buffer()

    def _write_buffer(self) -> None:
        if not self.tables:
            return
        if self.shard is None:
            self.shard = _ShardFile(self.folder / f"part-{self.next_index:06d}.parquet")
        table = pa.concat_tables(self.tables)
        self.written.update(table.column("clip").unique().to_pylist())
        self.shard.write(table)
        self.tables, self.buffered = [], 0

    def discard(self, clip: str) -> bool:
        """Drop the buffered rows of a clip that failed part way; True when some of its rows
        are already in a shard file (``repair_store`` removes them)."""
        tables = [t.filter(pc.not_equal(t.column("clip"), clip)) for t in self.tables]
        self.tables = [t for t in tables if t.num_rows]
        dropped = self.buffered - sum(t.num_rows for t in self.tables)
        self.buffered -= dropped
        self.rows -= dropped
        return clip in self.written

    def complete(self, clip: str) -> None:
        self.completed.append(clip)

    def full(self) -> bool:
        return self.rows >= self.shard_windows

    def flush(self) -> Path | None:
        """Commit the current shard (atomically); None when there was nothing to write."""
        if not self.tables and not self.completed and self.shard is None:
            return None
        self._write_buffer()
        if self.shard is None:  # only completions (a clip's rows all went to earlier shards)
            self.shard = _ShardFile(self.folder / f"part-{self.next_index:06d}.parquet")
        path = self.shard.commit(self.completed)
        self.next_index += 1
        self.shard, self.rows, self.completed = None, 0, []
        return path

    def close(self) -> None:
        self.flush()


def repair_store(store_dir: str | Path) -> list[str]:
    """Delete temporary files and rows of clips that never completed; return those clips.

    A run killed mid-clip leaves that clip's first windows in shards without the shard that marks
    it complete. Each affected shard is rewritten without them (atomically) or deleted if empty.
    """
    folder = Path(store_dir) / SHARDS
    for tmp in folder.glob(".part-*.tmp"):
        tmp.unlink(missing_ok=True)
    done = done_clips(store_dir)
    dropped: set[str] = set()
    for path in shard_paths(store_dir):
        clips = read_shard(path, ["clip"]).column("clip")
        keep = np.asarray([c in done for c in clips.to_pylist()], dtype=bool)
        if keep.all():
            continue
        dropped.update(c for c, k in zip(clips.to_pylist(), keep, strict=True) if not k)
        complete = shard_complete(path)
        if not keep.any() and not complete:
            path.unlink()
        else:
            write_shard(path, read_shard(path).filter(pa.array(keep)), complete)
    check_unique_windows(store_dir)  # after the rows of unfinished clips are gone
    return sorted(dropped)
