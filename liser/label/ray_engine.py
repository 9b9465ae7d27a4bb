"""The labeling job as a Ray Data pipeline, for many cores, GPUs or machines (``--engine ray``).

clips -> ``ClipWorker`` actors (decode in chunks, windows, log-Mel features, video teacher) ->
``AudioWorker`` actors (audio teacher on batches of ``batch_size`` windows, ``ray_gpus_per_actor``
GPUs each) -> the driver, which writes the same atomic shards as the local engine. Both engines
run the same per-clip code (``label_clips.py``), so their stores hold the same rows (row order
within shards may differ). Ray is optional: ``pip install 'liser[ray]'``.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pyarrow as pa

from liser import store as st
from liser.store import shards
from liser.windows import Clip

from .clips import audio_columns, clip_windows

# Rows between the two stages: the store's columns without the audio teacher's, plus the window's
# samples, the clip's window count (on the rows of its last chunk, else -1) and a skip reason.
_AUDIO = set(st.TEACHER_COLUMNS["audio"])
WORK_SCHEMA = pa.schema(
    [f for f in st.SCHEMA if f.name not in _AUDIO]
    + [
        ("wave", pa.list_(pa.float32())),
        ("clip_windows", pa.int64()),
        ("skip_reason", pa.string()),
    ]
)


def _teacher_arg(job, kind: str):
    """What a Ray actor needs to rebuild a teacher: its SPEC when the store has one, else it."""
    teacher = job.teacher(kind)
    info = job.header["teachers"].get(kind) or {}
    if teacher is None or not info.get("spec"):
        return teacher
    return {"spec": info["spec"], "face_detector": info.get("face_detector")}


def _load_teacher(kind: str, arg, config):
    if not isinstance(arg, dict):
        return arg
    if kind == "audio":
        from liser.devices import resolve_device
        from liser.teachers import load_audio_teacher

        return load_audio_teacher(arg["spec"], device=str(resolve_device(config.device)))
    from liser.teachers import load_video_teacher

    return load_video_teacher(arg["spec"], face_detector=arg["face_detector"], config=config.video)


def _threads(cpus: float) -> None:
    import torch

    torch.set_num_threads(max(1, math.floor(cpus)))


class ClipWorker:
    """Ray actor: one clip in, its windows out as tables of ``WORK_SCHEMA`` (one per chunk)."""

    def __init__(self, config, video, cpus: float):
        from liser.features import LogMel

        _threads(cpus)
        self.config = config
        self.logmel = LogMel(config.frontend).eval()
        self.video = _load_teacher("video", video, config)
        self.vad = None
        if config.vad:
            from liser.vad import load_speech_detector

            self.vad = load_speech_detector(config.vad, config.vad_threshold)

    def __call__(self, batch: dict):
        from liser.audio import AudioError
        from liser.video_io import VideoError

        for key, path, start, end in zip(
            batch["key"], batch["path"], batch["start"], batch["end"], strict=True
        ):
            clip = Clip(
                str(key),
                str(path),
                float(start),
                None if np.isnan(end) else float(end) - float(start),
            )
            held, n = None, 0
            try:
                for rows in clip_windows(clip, self.config, self.logmel, self.video, self.vad):
                    if held is not None:
                        yield _work_table(held, -1)
                    held, n = rows, n + len(rows["start"])
            except (AudioError, VideoError) as error:
                yield _marker(clip, str(error).removeprefix(f"{clip.path}: "))
                continue
            yield _work_table(held, n) if held is not None else _marker(clip, None)


def _work_table(rows: dict, n_total: int) -> pa.Table:
    waves = rows.pop("wave")
    n = len(waves)
    columns = {name: rows.get(name, [None] * n) for name in WORK_SCHEMA.names}
    flat = pa.array(np.ascontiguousarray(waves, dtype=np.float32).ravel())
    offsets = pa.array(np.arange(n + 1, dtype=np.int32) * waves.shape[1])
    columns["wave"] = pa.ListArray.from_arrays(offsets, flat)
    columns["clip_windows"] = [n_total] * n
    columns["skip_reason"] = [None] * n
    return pa.Table.from_pydict(columns, schema=WORK_SCHEMA)


def _marker(clip: Clip, reason: str | None) -> pa.Table:
    """A row saying that a clip ended without windows (``reason`` None) or failed."""
    columns = {name: [None] for name in WORK_SCHEMA.names}
    columns.update(clip=[clip.id], source=[clip.path], clip_windows=[0], skip_reason=[reason])
    return pa.Table.from_pydict(columns, schema=WORK_SCHEMA)


class AudioWorker:
    """Ray actor: adds the audio teacher's columns to a batch of windows and drops the samples."""

    def __init__(self, config, audio, cpus: float):
        _threads(cpus)
        self.config = config
        self.audio = _load_teacher("audio", audio, config)

    def __call__(self, table: pa.Table) -> pa.Table:
        valid = table.column("wave").is_valid().to_numpy(zero_copy_only=False)
        n, n_samples = table.num_rows, self.config.frontend.window_samples
        columns = {name: [None] * n for name in st.TEACHER_COLUMNS["audio"]}
        if valid.any():
            waves = table.filter(pa.array(valid)).column("wave").combine_chunks().flatten()
            waves = waves.to_numpy().reshape(-1, n_samples)
            speech = table.filter(pa.array(valid)).column("speech_fraction").to_pylist()
            gate = self.config.min_speech if self.config.vad else 0.0
            computed = audio_columns(self.audio, waves, self.config.batch_size, speech, gate)
            where = np.flatnonzero(valid)
            for name, values in computed.items():
                for i, value in zip(where, values, strict=True):
                    columns[name][i] = value.tolist() if isinstance(value, np.ndarray) else value
        table = table.drop_columns(["wave"])
        for name in st.TEACHER_COLUMNS["audio"]:
            table = table.append_column(
                st.SCHEMA.field(name), pa.array(columns[name], st.SCHEMA.field(name).type)
            )
        return table


def label_clips_ray(job) -> None:
    """Label ``job.todo`` with Ray Data; the driver writes shards and keeps the books."""
    try:
        import ray
    except ImportError:
        raise ValueError(
            "engine 'ray' needs Ray: pip install 'liser[ray]' (or label with --engine local)"
        ) from None

    config = job.config
    if not ray.is_initialized():
        ray.init(address=config.ray_address or None, log_to_driver=False)
    items = [
        {"key": c.id, "path": c.path, "start": c.start, "end": np.nan if c.end is None else c.end}
        for c in job.todo
    ]
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # liser's own bar counts windows
    logger = logging.getLogger("ray.data")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        _collect(job, _pipeline(ray, job, items))
    finally:
        logger.setLevel(level)


def _pipeline(ray, job, items: list[dict]):
    """clips -> ClipWorker actors -> AudioWorker actors; an iterator of pyarrow tables."""
    config = job.config
    ds = ray.data.from_items(items, override_num_blocks=min(len(items), 2000))
    ds = ds.map_batches(
        ClipWorker,
        batch_size=1,
        batch_format="numpy",
        fn_constructor_kwargs={"config": config, "video": _teacher_arg(job, "video"),
                               "cpus": config.ray_cpus_per_worker},
        concurrency=config.ray_workers,
        num_cpus=config.ray_cpus_per_worker,
    )  # fmt: skip
    ds = ds.map_batches(
        AudioWorker,
        batch_size=config.batch_size,
        batch_format="pyarrow",
        fn_constructor_kwargs={"config": config, "audio": _teacher_arg(job, "audio"),
                               "cpus": config.ray_cpus_per_actor},
        concurrency=config.ray_actors,
        num_cpus=config.ray_cpus_per_actor,
        num_gpus=config.ray_gpus_per_actor or None,
    )  # fmt: skip
    return ds.iter_batches(batch_size=None, batch_format="pyarrow")


def _collect(job, tables) -> None:
    """Write arriving rows to shards; a clip completes when all its windows have arrived."""
    writer = shards.ShardWriter(job.store_dir, job.config.shard_windows)
    clips = {c.id: c for c in job.todo}
    counts: dict[str, int] = {}
    totals: dict[str, int] = {}
    failed: set[str] = set()
    with job.progress_bar() as bar:
        for table in tables:
            keys = table.column("clip").to_pylist()
            n_windows = table.column("clip_windows").to_pylist()
            reasons = table.column("skip_reason").to_pylist()
            for key, total, reason in zip(keys, n_windows, reasons, strict=True):
                if reason is not None and key not in failed:
                    failed.add(key)
                    job.skip(clips[key], reason, written=writer.discard(key))
                    bar.file_done()
                elif total == 0 and reason is None:
                    job.skip(clips[key], job.no_window_reason(clips[key]))
                    bar.file_done()
                elif total > 0:
                    totals[key] = total
            keep = [k not in failed and t != 0 for k, t in zip(keys, n_windows, strict=True)]
            rows = table.filter(pa.array(keep, pa.bool_())).select(st.SCHEMA.names)
            if rows.num_rows:
                writer.add(rows)
                bar.advance(rows.num_rows)
                for key in rows.column("clip").to_pylist():
                    counts[key] = counts.get(key, 0) + 1
            for key in [k for k, total in totals.items() if counts.get(k) == total]:
                writer.complete(key)
                job.done_clip(clips[key], totals.pop(key))
                bar.file_done()
            if writer.full():
                job.flush(writer)
        job.flush(writer, last=True)
