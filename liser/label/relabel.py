"""Recompute one teacher's columns in an existing store (a teacher added or replaced).

Each row carries the fingerprint of the teacher that wrote its columns (``audio_teacher``,
``video_teacher``). Rows whose fingerprint differs from the job's teacher get that teacher's
columns recomputed from the source file; features and the other teacher's columns are kept.
Shards are rewritten one at a time, atomically, so a killed relabel resumes where it stopped.
Readers mask rows whose fingerprint is not the store's (``SoftLabelStore.iter_batches``).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from liser import store as st
from liser.audio import AudioError, load_audio
from liser.store import shards
from liser.video_io import VideoError
from liser.windows import fit_window

from .clips import audio_columns, clip_faces, clip_from_key, video_columns


def stale_rows(table: pa.Table, kind: str, fingerprint: str) -> np.ndarray:
    """(n,) bool: rows whose ``kind`` columns were not written by the teacher ``fingerprint``."""
    written = pc.equal(table.column(f"{kind}_teacher"), fingerprint)
    return ~pc.fill_null(written, False).to_numpy(zero_copy_only=False).astype(bool)


def relabel_stale(job) -> int:
    """Recompute the columns of each of the job's teachers where rows are stale; return rows."""
    kinds = [k for k in ("audio", "video") if job.teacher(k) is not None]
    total = 0
    for path in st.shard_paths(job.store_dir) if kinds else []:
        fingerprints = st.read_shard(path, [f"{k}_teacher" for k in kinds])
        stale = {k: stale_rows(fingerprints, k, job.teacher(k).fingerprint) for k in kinds}
        stale = {k: m for k, m in stale.items() if m.any()}
        if not stale:
            continue
        table = st.read_shard(path)
        for kind, mask in stale.items():
            if job.show_progress:
                job.console.print(f"relabel {path.name}: {int(mask.sum())} windows, {kind} teacher")
            table = _replace(table, mask, _recompute(job, kind, table.filter(pa.array(mask))))
            total += int(mask.sum())
        shards.write_shard(path, table, shards.shard_complete(path))
    return total


def _recompute(job, kind: str, rows: pa.Table) -> dict:
    """New ``kind`` columns for ``rows`` (in their order), grouped by clip to decode each once."""
    out: dict[str, list] = {name: [None] * rows.num_rows for name in st.TEACHER_COLUMNS[kind]}
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, (clip, source) in enumerate(
        zip(rows["clip"].to_pylist(), rows["source"].to_pylist(), strict=True)
    ):
        groups[(clip, source)].append(i)
    starts, ends = rows["start"].to_numpy(), rows["end"].to_numpy()
    for (key, source), index in groups.items():
        index = sorted(index, key=lambda i: starts[i])
        clip = clip_from_key(key, source)
        try:
            if kind == "audio":
                waves = _window_waves(clip.path, starts[index], ends[index], job.config)
                speech = rows["speech_fraction"].to_numpy(zero_copy_only=False)[index]
                columns = audio_columns(job.audio, waves, job.config.batch_size,
                                        speech.tolist(), job.min_speech)  # fmt: skip
            else:
                faces = clip_faces(job.video, clip)
                columns = video_columns(job.video, faces, starts[index], ends[index])
        except (AudioError, VideoError) as error:
            job.console.print(f"[yellow]relabel failed[/] {key}: {error} (rows stay masked)")
            continue
        for name, values in columns.items():
            for i, value in zip(index, values, strict=True):
                out[name][i] = value
    return out


def _window_waves(path: str, starts, ends, config) -> np.ndarray:
    """The audio of windows [start, end) of one file: (n, window_samples), padded as labeled."""
    fe = config.frontend
    sr, window = fe.sample_rate, fe.window_samples
    waves = np.zeros((len(starts), window), np.float32)
    segment, seg_start = np.zeros(0, np.float32), 0.0
    for i, (start, end) in enumerate(zip(starts, ends, strict=True)):
        n_real = min(window, round((end - start) * sr))
        offset = round((start - seg_start) * sr)
        if offset < 0 or offset + n_real > len(segment):
            seg_start = float(start)
            duration = max(config.chunk_seconds, end - start)
            segment = load_audio(path, sr, seg_start, duration, min_seconds=0, allow_silent=True)
            offset = 0
        piece = segment[offset : offset + n_real]
        if len(piece) == 0:
            raise AudioError(path, f"no audio at {start:.3f} s any more (file changed?)")
        waves[i] = piece if len(piece) == window else fit_window(piece, window, fe.pad)
    return waves


def _replace(table: pa.Table, mask: np.ndarray, columns: dict) -> pa.Table:
    """``table`` with ``columns`` (values for the masked rows, in order) put in place."""
    where = np.flatnonzero(mask)
    for name, values in columns.items():
        field = st.SCHEMA.field(name)
        old = table.column(name).to_pylist()
        for i, value in zip(where, values, strict=True):
            old[i] = value.tolist() if isinstance(value, np.ndarray) else value
        table = table.set_column(
            table.schema.get_field_index(name), field, pa.array(old, field.type)
        )
    return table
