"""Unlabeled files -> 3 s windows -> teacher soft labels in a soft-label store.

``label(src, store, config)`` lists the clips of a folder (recursively), a manifest or one file,
and labels every clip not yet in the store (``label_clips.py`` does the per-clip work; the local
engine here, ``ray_engine.py`` for a Ray cluster). The job is resumable: shards are committed
atomically with the clips they complete, so a killed run started again skips what is done and
never duplicates rows. A teacher whose fingerprint differs from the rows' recomputes only its own
columns (``relabel.py``). Bad files are skipped and reported, with the reason, in store.json.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from liser import store as st
from liser.audio import AudioError
from liser.config import LabelConfig
from liser.devices import precision_name, resolve_device
from liser.store import shards
from liser.video_io import VideoError
from liser.windows import Clip

from .clips import MANIFEST_EXTENSIONS, audio_columns, clip_windows, list_clips
from .job import LabelJob, stamp
from .report import summarize


def label(
    src: str | Path,
    store_dir: str | Path,
    config: LabelConfig | None = None,
    audio_teacher=None,
    video_teacher=None,
    progress: bool = True,
) -> dict:
    """Label every clip of ``src`` into the store at ``store_dir``; return the store's summary.

    Teachers are objects (``.classes``, ``.fingerprint``, ``.predict`` / ``.predict_window``) or
    SPEC strings; when omitted, ``config.audio_teacher`` / ``config.video_teacher``, then the specs
    recorded in the store, are used. A rerun skips done clips; rows labeled by another version of
    a teacher (other fingerprint) get that teacher's columns recomputed, nothing else.
    """
    config = config or LabelConfig()
    _check_config(config)
    unreadable: list = []
    clips = list_clips(src, unreadable)
    store_dir = Path(store_dir)
    with StoreLock(store_dir):
        header = _open_header(store_dir, config)
        audio, video = _resolve_teachers(header, config, audio_teacher, video_teacher)
        shards.repair_store(store_dir)
        done = shards.done_clips(store_dir)
        todo = [c for c in clips if c.id not in done and not _skipped_before(header, c)]
        _check_unavailable(header, audio, video, todo)
        st.write_header(store_dir, header)
        job = LabelJob(store_dir, config, header, audio, video, todo, progress)
        _ = job.vad  # a speech detector that cannot be loaded fails before any clip
        for folder, reason in unreadable:
            job.skip(Clip(str(folder), str(folder)), reason)
        from .relabel import relabel_stale

        relabel_stale(job)
        if todo:
            if config.engine == "ray":
                from .ray_engine import label_clips_ray

                label_clips_ray(job)
            elif config.engine == "local":
                label_clips_local(job)
            else:
                raise ValueError(f"engine must be 'local' or 'ray', got {config.engine!r}")
        summary = summarize(job)
        if audio is not None and Path(src).suffix.lower() in MANIFEST_EXTENSIONS:
            _agreement(job, src, summary)
        return summary


def _agreement(job: LabelJob, src: Path, summary: dict) -> None:
    """Soft labels against the manifest's own labels, where it has any (``agreement``)."""
    from liser.manifest import read_manifest

    from .agreement import label_agreement

    df = read_manifest(src)
    if df["label"].isna().all():
        return
    result, table = label_agreement(job.store_dir, df, job.audio.classes)
    summary["label_agreement"] = result
    job.header["summary"] = summary
    st.write_header(job.store_dir, job.header)
    if job.show_progress and not table.empty:
        from rich.table import Table

        shown = Table(title=f"soft labels vs the manifest's own labels ({result['clips']} clips, "
                      f"never used to train): UAR over shared classes {result['uar_shared']} % "
                      f"({result['uar_restricted']} % with the argmax restricted to them), "
                      f"mean confidence {result['mean_confidence']}")  # fmt: skip
        for column in table.columns:
            shown.add_column(column.replace("_", " "))
        for row in table.itertuples(index=False):
            shown.add_row(*["" if v is None or v != v else str(v) for v in row])
        job.console.print(shown)


def label_clips_local(job: LabelJob) -> None:
    """Label ``job.todo`` in this process, batching the audio teacher across clips."""
    config = job.config
    writer = shards.ShardWriter(job.store_dir, config.shard_windows)
    pending: list[dict] = []  # rows waiting for the audio teacher

    def run_pending() -> None:
        if pending:
            rows = {k: [v for p in pending for v in p[k]] for k in pending[0] if k != "wave"}
            waves = np.concatenate([p["wave"] for p in pending])
            speech = rows.get("speech_fraction")
            rows.update(audio_columns(job.audio, waves, config.batch_size, speech, job.min_speech))
            writer.add(rows)
            pending.clear()

    with job.progress_bar() as bar:
        for clip in job.todo:
            n_windows = 0
            try:
                for rows in clip_windows(clip, config, job.logmel, job.video, job.vad):
                    pending.append(rows)
                    n_windows += len(rows["start"])
                    bar.advance(len(rows["start"]))
                    waiting = sum(len(p["start"]) for p in pending)
                    if waiting >= config.batch_size:
                        run_pending()
                        waiting = 0
                    if writer.rows + waiting >= config.shard_windows:
                        job.flush(writer, before=run_pending)
            except (AudioError, VideoError) as error:
                pending[:] = [p for p in pending if p["clip"][0] != clip.id]
                job.skip(clip, str(error), written=writer.discard(clip.id))
            else:
                if n_windows:
                    writer.complete(clip.id)
                    job.done_clip(clip, n_windows)
                else:
                    job.skip(clip, job.no_window_reason(clip))
            bar.file_done()
        job.flush(writer, before=run_pending, last=True)


# --------------------------------------------------------------------------------------------
# Preparing: lock, config, header, teachers


class StoreLock:
    """Exclusive use of a store by one labeling process: an ``flock`` on ``STORE/.lock``, which
    also holds the owner's pid for the error message.

    The kernel drops the lock when its process ends, however it ends (kill -9 included), so there
    is no stale lock to take over and no race between processes starting together. On network
    file systems this holds where the server supports locks: NFSv4 and Linux NFSv3 clients (which
    map flock to POSIX locks) do, SMB with Linux clients does; on file systems mounted with
    ``nolock`` or without a lock manager, labeling the same store from two machines at once is
    not detected. Windows uses ``msvcrt.locking`` on the same file.
    """

    def __init__(self, store_dir: str | Path):
        self.path = Path(store_dir) / ".lock"
        self.fd: int | None = None

    def __enter__(self) -> StoreLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd):
                os.close(fd)
                pid = _read_pid(self.path)
                who = f" (pid {pid})" if pid else ""
                raise st.StoreError(
                    f"{self.path.parent}: in use by another labeling process{who}"
                ) from None
            try:  # the file may have been unlinked by an owner that just finished: lock anew
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
                self.fd = fd
                return self
            os.close(fd)
        raise st.StoreError(f"{self.path.parent}: cannot take the lock {self.path}")

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # while still locked: no one holds a removed file
            os.close(self.fd)  # closing releases the lock
            self.fd = None


def _try_lock(fd: int) -> bool:
    """Take an exclusive lock on ``fd`` without waiting; False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def _check_config(config: LabelConfig) -> None:
    if abs(config.window_seconds - config.frontend.window_seconds) > 1e-9:
        raise ValueError(
            f"label window_seconds ({config.window_seconds}) must equal frontend.window_seconds "
            f"({config.frontend.window_seconds}): the student reads windows of that length"
        )
    if config.hop_seconds <= 0 or not 0 <= config.min_seconds <= config.window_seconds:
        raise ValueError(
            f"need hop_seconds > 0 and 0 <= min_seconds <= window_seconds, got hop "
            f"{config.hop_seconds}, min {config.min_seconds}"
        )
    if config.shard_windows < 1 or config.batch_size < 1 or config.chunk_seconds <= 0:
        raise ValueError("shard_windows, batch_size and chunk_seconds must be positive")


def _open_header(store_dir: Path, config: LabelConfig) -> dict:
    """The store's header, new or checked against ``config`` (front end, window, hop)."""
    if not (store_dir / st.HEADER).exists():
        return st.new_header(
            config.frontend, config.window_seconds, config.hop_seconds, config.min_seconds
        )
    header = st.read_header(store_dir)
    diff = st.frontend_differences(st.header_frontend(header), config.frontend)
    for key in ("window_seconds", "hop_seconds", "min_seconds"):
        if abs(header[key] - getattr(config, key)) > 1e-9:
            diff.append(f"{key}: {header[key]!r} != {getattr(config, key)!r}")
    if diff:
        raise st.StoreError(
            f"{store_dir}: the store was made with other settings ({'; '.join(diff)}); "
            "label into a new store or use the store's settings"
        )
    return header


def _resolve_teachers(header: dict, config: LabelConfig, audio_teacher, video_teacher):
    """Load the teachers (argument, then config, then the store's record) and record them."""
    stored = header["teachers"]
    audio = audio_teacher or config.audio_teacher or _stored_spec(stored, "audio")
    video = video_teacher or config.video_teacher or _stored_spec(stored, "video")
    detector = config.face_detector or (stored.get("video") or {}).get("face_detector") or ""
    if isinstance(audio, str):
        from liser.teachers import load_audio_teacher

        audio = load_audio_teacher(audio, device=str(resolve_device(config.device)))
    if isinstance(video, str):
        from liser.teachers import load_video_teacher

        video = load_video_teacher(video, face_detector=detector, config=config.video)
    for kind, teacher, spec in (
        ("audio", audio, audio_teacher or config.audio_teacher),
        ("video", video, video_teacher or config.video_teacher),
    ):
        if teacher is None:
            continue
        old = stored.get(kind) or {}
        info = {
            "spec": spec if isinstance(spec, str) else getattr(teacher, "spec", None),
            "classes": list(teacher.classes),
            "fingerprint": teacher.fingerprint,
            "precision": precision_name(getattr(teacher, "dtype", None)),
            "temperature": getattr(
                teacher,
                "temperature",
                getattr(getattr(teacher, "config", None), "temperature", None),
            ),
        }
        if info["spec"] is None and old.get("fingerprint") == teacher.fingerprint:
            info["spec"] = old.get("spec")
        if kind == "video":
            info["face_detector"] = detector or None
        stored[kind] = info
    return audio, video


def _stored_spec(stored: dict, kind: str):
    """The SPEC of the store's teacher (None when the store has none or was given an object)."""
    return (stored.get(kind) or {}).get("spec")


def _check_unavailable(header: dict, audio, video, todo: list[Clip]) -> None:
    """New clips need every teacher of the store; one given as an object must be given again."""
    for kind, teacher in (("audio", audio), ("video", video)):
        info = header["teachers"].get(kind)
        if todo and info and teacher is None:
            raise st.StoreError(
                f"the store's {kind} teacher (fingerprint {info['fingerprint']}) was given as an "
                f"object, not a SPEC; pass it again to label the {len(todo)} new clip(s)"
            )


def _skipped_before(header: dict, clip: Clip) -> bool:
    """True when the clip was skipped by an earlier run and its file has not changed since."""
    record = header["skipped"].get(clip.id)
    if record is None:
        return False
    now = stamp(clip)
    return now["size"] == record.get("size") and now["mtime"] == record.get("mtime")
