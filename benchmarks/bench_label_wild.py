"""Labeling real talking-face video (``../shared/data/wild-av``): real-time factor per stage and
end to end, with both real teachers.

    python benchmarks/bench_label_wild.py [--threads 2] [--teacher DIR] [--fer mini|big]
                                          [--detector blazeface|haar] [--repeats 1]
                                          [--detect-every 1] [--no-fast-decode]
                                          [--precision auto|fp32|bf16]

Stages, each timed over every clip (the others' work done outside the clock where it feeds them):
decode audio (16 kHz), decode + sample frames (5 fps), Silero VAD, face detection, FER on the
tracked crops, the Whisper-base audio teacher on the 3 s windows; then ``liser label`` end to end
(both teachers + VAD) into a fresh store. The audio teacher: ``--teacher`` (a fitted teacher
folder) or Whisper-base from ``$LISER_WHISPER_DIR`` / ``~/.cache/liser/whisper-base`` with an
untrained layer-3 head (same speed). Real-time factor = seconds of video / wall seconds.
An AVX2-only machine, approximately, on an AVX512 one: ``ONEDNN_MAX_CPU_ISA=AVX2
ATEN_CPU_CAPABILITY=avx2 ... --precision fp32`` (torch's kernels only; ONNX Runtime and LiteRT
still pick their own).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from liser.audio import load_audio
from liser.config import LabelConfig, VideoTeacherConfig
from liser.devices import native_bf16
from liser.label import label, list_clips
from liser.teachers import load_video_teacher
from liser.teachers.faces import as_rgb, crop_face
from liser.testing import shared_dir
from liser.vad import SpeechDetector
from liser.video_io import iter_frames, probe
from liser.windows import WindowCutter, WindowSpec


def load_teacher(folder: str, cache: Path, precision: str = "auto"):
    """A fitted teacher folder, or a raw Whisper folder with an untrained head."""
    from liser.teachers.audio import (
        EncoderTeacher,
        PoolingHead,
        load_audio_encoder,
        load_fitted_teacher,
    )

    if (Path(folder) / "teacher.json").is_file():
        teacher = load_fitted_teacher(Path(folder), torch.device("cpu"), precision)
        teacher.window_cache = None  # every window through the encoder: that is the cost
        return teacher
    from liser.config import AudioTeacherConfig

    encoder, fingerprint = load_audio_encoder(folder)
    head = PoolingHead(encoder.n_hidden, encoder.dim, 8, "3")
    config = AudioTeacherConfig(
        spec=folder, freeze_encoder=True, layer="3", cache_dir="", precision=precision
    )
    classes = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    return EncoderTeacher(encoder, head, classes, f"{fingerprint}+bench", config, "cpu").eval()


def stages(clips, video, audio, vad) -> dict[str, float]:
    clock: dict[str, float] = {}

    def tick(name, start):
        clock[name] = clock.get(name, 0.0) + time.perf_counter() - start

    spec = WindowSpec(3.0, 3.0, 1.0, 1.0, "repeat")
    for clip in clips:
        t = time.perf_counter()
        wave = load_audio(clip.path, 16000, allow_silent=True)
        tick("decode audio", t)
        t = time.perf_counter()
        sampled = iter_frames(clip.path, video.config.frame_rate, fast=video.config.fast_decode)
        frames = [as_rgb(f) for _, f in sampled]
        tick("decode + sample frames", t)
        t = time.perf_counter()
        vad.frame_probs(wave)
        tick("VAD (Silero)", t)
        t = time.perf_counter()
        boxes = [video.detector.detect(f) for f in frames[:: video.config.detect_every]]
        boxes = [b for b in boxes for _ in range(video.config.detect_every)][: len(frames)]
        tick("face detection", t)
        size, gray = video.fer.spec.size, video.fer.spec.color == "gray"
        crops = [
            crop_face(f, b[0], size, video.config.face_margin, gray)
            for f, b in zip(frames, boxes, strict=True)
            if b
        ]
        t = time.perf_counter()
        if crops:
            video.classify(np.stack(crops))
        tick("FER", t)
        cutter = WindowCutter(spec, 16000)
        windows = cutter.feed(wave) + cutter.finish()
        t = time.perf_counter()
        if windows:
            audio.predict(np.stack([w[3] for w in windows]))
        tick("audio teacher (Whisper-base)", t)
    return clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--teacher", default=os.environ.get("LISER_WHISPER_DIR", "~/.cache/liser/whisper-base")
    )
    parser.add_argument("--fer", choices=("mini", "big"), default="mini")
    parser.add_argument("--detector", choices=("blazeface", "haar"), default="blazeface")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--detect-every", type=int, default=1, help="VideoTeacherConfig.detect_every"
    )
    parser.add_argument(
        "--precision", default="auto", choices=("auto", "fp32", "bf16"),
        help="the audio teacher's (auto: bf16 where native)",
    )  # fmt: skip
    parser.add_argument(
        "--fast-decode", action=argparse.BooleanOptionalAction, default=True,
        help="VideoTeacherConfig.fast_decode",
    )  # fmt: skip
    args = parser.parse_args()
    shared = shared_dir()
    if shared is None or not (shared / "data" / "wild-av").is_dir():
        raise SystemExit("needs ../shared/data/wild-av (see ../shared/README.md)")
    teacher_dir = str(Path(args.teacher).expanduser())
    if not Path(teacher_dir).is_dir():
        raise SystemExit(f"no audio teacher at {teacher_dir}: ../shared/bin/get-whisper base DIR")
    torch.set_num_threads(args.threads)
    folder = shared / "data" / "wild-av"
    clips = list_clips(folder)
    seconds = sum(probe(c.path).duration for c in clips)
    fer = shared / "models" / "fer" / f"fer2013_{args.fer}_xception.hdf5"
    detector = shared / "models" / "face" / (
        "face_detection_short_range.tflite" if args.detector == "blazeface"
        else "haarcascade_frontalface_default.xml")  # fmt: skip
    video = load_video_teacher(
        fer,
        detector,
        VideoTeacherConfig(detect_every=args.detect_every, fast_decode=args.fast_decode),
    )
    work = Path(tempfile.mkdtemp(prefix="liser-bench-wild-"))
    audio = load_teacher(teacher_dir, work / "cache", args.precision)
    print(f"{len(clips)} clips, {seconds:.0f} s of video; {args.threads} threads; native bf16: "
          f"{native_bf16(torch.device('cpu'))}; {fer.stem} + {detector.stem}; audio teacher precision "
          f"{audio.config.precision} ({audio.dtype})", flush=True)  # fmt: skip
    vad = SpeechDetector()
    for name, took in stages(clips, video, audio, vad).items():
        print(f"  {name:32s} {took:7.2f} s  {seconds / took:7.1f}x real time", flush=True)
    config = LabelConfig(hop_seconds=3.0, device="cpu", vad="silero", video=video.config)
    for name, teachers in (
        ("video teacher only", (None, video)),
        ("both teachers", (audio, video)),
    ):
        best = float("inf")
        for _ in range(args.repeats):
            shutil.rmtree(work / "store", ignore_errors=True)
            start = time.perf_counter()
            summary = label(folder, work / "store", config, *teachers, progress=False)
            best = min(best, time.perf_counter() - start)
        print(f"liser label, VAD + {name}: {summary['windows']} windows in {best:.1f} s = "
              f"{seconds / best:.1f}x real time", flush=True)  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
