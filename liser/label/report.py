"""Progress bar and end-of-run summary of a labeling job (store.json, and clips.csv: a row per
clip)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from liser import store as st

if TYPE_CHECKING:
    from .job import LabelJob


def summarize(job: LabelJob) -> dict:
    """Summary of the whole store (and of this run), written to store.json and printed."""
    import pyarrow.compute as pc

    shards = st.shard_paths(job.store_dir)
    columns = ["clip", "start", "end", "video_probs", "face_coverage", "audio_probs"]
    table = st.SCHEMA.empty_table().select(columns)
    if shards:
        table = job_dataset(job.store_dir).to_table(columns=columns)
    per_clip = table.group_by("clip").aggregate([("start", "min"), ("end", "max")])
    seconds = pc.sum(pc.subtract(per_clip["end_max"], per_clip["start_min"])).as_py() or 0.0
    with_video = table.num_rows - table["face_coverage"].null_count
    with_face = table.num_rows - table["video_probs"].null_count
    reasons: dict[str, int] = {}
    for record in job.header["skipped"].values():
        reasons[record["reason"]] = reasons.get(record["reason"], 0) + 1
    elapsed = time.perf_counter() - job.started
    summary = {
        "files": per_clip.num_rows,
        "windows": table.num_rows,
        "hours": round(seconds / 3600, 4),
        "windows_with_audio_labels": table.num_rows - table["audio_probs"].null_count,
        "windows_with_video": with_video,
        "windows_with_face": with_face,
        "face_share": round(with_face / with_video, 4) if with_video else None,
        "skipped_files": len(job.header["skipped"]),
        "skipped_reasons": reasons,
        "this_run": {
            "files": job.files,
            "windows": job.windows,
            "seconds": round(elapsed, 2),
            "windows_per_second": round(job.windows / elapsed, 2) if elapsed > 0 else None,
        },
    }
    job.header["summary"] = summary
    st.write_header(job.store_dir, job.header)
    if shards:
        clip_table(job.store_dir).to_csv(Path(job.store_dir) / "clips.csv", index=False)
    if job.show_progress:
        _print_summary(job, summary)
    return summary


def clip_table(store_dir: Path):
    """One row per clip of a store: seconds covered, windows, windows with an audio / video soft
    label, mean speech fraction, most faces seen at once, mean face coverage, and the most
    frequent reason a video label is missing. Written to ``clips.csv`` by ``summarize``."""
    columns = ["clip", "start", "end", "audio_probs", "video_probs", "speech_fraction",
               "faces_seen", "face_coverage", "video_absent"]  # fmt: skip
    rows = job_dataset(store_dir).to_table(columns=columns).to_pandas()
    rows["audio"] = rows.pop("audio_probs").notna()
    rows["video"] = rows.pop("video_probs").notna()
    table = rows.groupby("clip").agg(
        seconds=("end", "max"), first=("start", "min"), windows=("start", "size"),
        audio_labels=("audio", "sum"), video_labels=("video", "sum"),
        speech=("speech_fraction", "mean"), faces_seen=("faces_seen", "max"),
        face_coverage=("face_coverage", "mean"),
        video_missing=("video_absent", lambda r: r.mode().iloc[0] if r.notna().any() else ""),
    )  # fmt: skip
    table["seconds"] = (table["seconds"] - table.pop("first")).round(2)
    return table.round(3).reset_index()


def job_dataset(store_dir: Path):
    import pyarrow.dataset as ds

    return ds.dataset(Path(store_dir) / st.SHARDS, format="parquet", schema=st.SCHEMA)


def _print_summary(job: LabelJob, summary: dict) -> None:
    table = Table(title=f"store {job.store_dir}", show_header=False)
    face = summary["face_share"]
    run = summary["this_run"]
    rows = [
        ("files", f"{summary['files']} ({run['files']} this run)"),
        ("windows", f"{summary['windows']} ({run['windows']} this run, "
         f"{run['windows_per_second'] or 0:.1f} windows/s)"),
        ("hours", f"{summary['hours']:.3f}"),
        ("windows with a face", "no video" if face is None
         else f"{summary['windows_with_face']} of {summary['windows_with_video']} ({face:.1%})"),
        ("skipped files", str(summary["skipped_files"])),
    ]  # fmt: skip
    for reason, count in sorted(summary["skipped_reasons"].items(), key=lambda x: -x[1])[:10]:
        rows.append((f"  {count} x", reason))
    for key, value in rows:
        table.add_row(key, value)
    job.console.print(table)
