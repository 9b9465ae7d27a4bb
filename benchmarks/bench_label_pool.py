"""Labeling throughput of the unlabeled speech pool with the Whisper-base audio teacher.

    python benchmarks/bench_label_pool.py [--teacher DIR] [--clips 400] [--threads 2]
                                          [--precision fp32 bf16]

The clips: a seeded sample of ``--clips`` clips of ``../shared/data/unlabeled-speech`` (Opus,
16 kHz; BAVED, EmoSpeech, LibriSpeech), labeled with ``liser label`` into a fresh store (3 s
windows, hop 3 s, clips of 0.5-3 s padded). The teacher: ``--teacher`` (a fitted teacher folder,
``liser teacher fit-audio``), or the Whisper-base encoder of ``$LISER_WHISPER_DIR`` /
``~/.cache/liser/whisper-base`` (``../shared/bin/get-whisper base DIR``) with an untrained
layer-3 pooling head (the speed is the same: the head is one linear layer).

Rows printed per precision (``auto`` picks bf16 only on CPUs with native bf16):
- cold: every window through the encoder (windows/s, real-time factor = audio seconds / wall s);
- warm: a second teacher of the same frozen encoder (another fold's head) on the same clips,
  served by the window cache (``teachers/window_cache.py``): what folds 2-6 of an experiment cost.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from liser.config import AudioTeacherConfig, LabelConfig
from liser.devices import native_bf16
from liser.label import label
from liser.manifest import table_manifest, write_manifest
from liser.testing import shared_dir


def whisper_teacher(spec: str, precision: str, cache: Path):
    """A frozen Whisper-base teacher with an 8-class layer-3 head (untrained)."""
    from liser.teachers.audio import EncoderTeacher, PoolingHead, load_audio_encoder

    encoder, fingerprint = load_audio_encoder(spec)
    head = PoolingHead(encoder.n_hidden, encoder.dim, 8, "3")
    config = AudioTeacherConfig(spec=spec, freeze_encoder=True, layer="3", precision=precision)
    classes = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    teacher = EncoderTeacher(encoder, head, classes, f"{fingerprint}+bench", config, "cpu")
    teacher.use_window_cache(cache, fingerprint)
    return teacher.eval()


def fitted_teacher(folder: str, precision: str, cache: Path):
    from liser.teachers.audio import load_fitted_teacher

    teacher = load_fitted_teacher(Path(folder), torch.device("cpu"), precision)
    if teacher.window_cache is not None:
        teacher.use_window_cache(cache, teacher._cache_at[1])
    return teacher


def run(manifest: Path, teacher, work: Path) -> tuple[float, dict]:
    store = work / "store"
    shutil.rmtree(store, ignore_errors=True)
    config = LabelConfig(hop_seconds=3.0, min_seconds=0.5, device="cpu")
    started = time.perf_counter()
    summary = label(manifest, store, config, audio_teacher=teacher, progress=False)
    return time.perf_counter() - started, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--teacher", default="", help="fitted teacher folder [default: an untrained head]"
    )
    parser.add_argument("--clips", type=int, default=400)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    args = parser.parse_args()
    shared = shared_dir()
    index = shared / "data" / "unlabeled-speech" / "index.csv" if shared else None
    if index is None or not index.is_file():
        raise SystemExit("needs ../shared/data/unlabeled-speech (see ../shared/README.md)")
    spec = args.teacher or os.environ.get("LISER_WHISPER_DIR", "~/.cache/liser/whisper-base")
    if not args.teacher and not Path(spec).expanduser().is_dir():
        raise SystemExit(f"no Whisper-base at {spec}: ../shared/bin/get-whisper base {spec}")
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="liser-bench-pool-"))
    pool = table_manifest(index).sample(n=args.clips, random_state=0)
    manifest = write_manifest(pool, work / "pool.parquet")
    print(f"{len(pool)} clips, {pool['duration'].sum() / 60:.1f} min of audio, {args.threads} threads, "
          f"native bf16: {native_bf16(torch.device('cpu'))}")  # fmt: skip
    for precision in args.precision:
        cache = work / f"cache-{precision}"
        for phase in ("cold", "warm"):
            make = fitted_teacher if args.teacher else whisper_teacher
            teacher = make(str(Path(args.teacher or spec).expanduser()), precision, cache)
            seconds, summary = run(manifest, teacher, work)
            audio = summary["hours"] * 3600
            print(f"{precision:>5} {phase}: {summary['windows']} windows in {seconds:6.1f} s = "
                  f"{summary['windows'] / seconds:6.1f} windows/s, {audio / seconds:6.1f}x real time")  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
