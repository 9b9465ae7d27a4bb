"""Video-teacher throughput: sampled frames/s for face detection + crop + FER, and FER GFLOP/s.

    python benchmarks/bench_teacher_video.py [--frames 64] [--size 480x640] [--threads 1]
                                             [--repeats 3]

Needs ../shared (the FER models and face detectors; $LISER_SHARED elsewhere). Frames: the Grace
Hopper photo pasted at moving positions on a size HxW background, as a video teacher sees them
after decoding (decoding is not timed: see ``video_io``). For each face detector (Haar cascade,
BlazeFace short-range) x FER model (mini-/big-Xception, Keras HDF5 ported to torch) it times
``VideoTeacher.frame_probabilities`` (detect the largest face, square crop, FER in one batch) and,
separately, detection alone and FER alone on ready crops. FER FLOPs per crop are counted with
torch's FlopCounterMode (2 per multiply-add); GFLOP/s = FLOPs x crops/s. The best of ``repeats``
runs is printed (a shared machine's noise only ever slows a run down).
"""

from __future__ import annotations

import argparse
import sys
import time

import cv2
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from liser.config import VideoTeacherConfig
from liser.teachers.faces import FaceDetectorError
from liser.teachers.video import load_video_teacher
from liser.testing import face_photo, shared_dir


def make_frames(n: int, height: int, width: int) -> list[np.ndarray]:
    """``n`` RGB frames with the face photo (about 60 % of the height) moving left to right."""
    face = cv2.resize(face_photo(), (int(height * 0.52), int(height * 0.6)))
    frames = []
    for i in range(n):
        frame = np.full((height, width, 3), 96, np.uint8)
        x = int((width - face.shape[1]) * i / max(n - 1, 1))
        y = (height - face.shape[0]) // 2
        frame[y : y + face.shape[0], x : x + face.shape[1]] = face
        frames.append(frame)
    return frames


def best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def fer_flops(teacher) -> int:
    """FLOPs of one FER forward pass on one crop."""
    height, width = teacher.fer.spec.size
    x = torch.zeros(1, height, width, teacher.fer.spec.channels)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        teacher.fer.runner(x)
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=64, help="sampled frames per run")
    parser.add_argument("--size", default="480x640", help="frame size HxW")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    shared = shared_dir()
    if shared is None:
        sys.exit("needs ../shared (FER models and face detectors); set LISER_SHARED")
    torch.set_num_threads(args.threads)
    height, width = (int(v) for v in args.size.split("x"))
    frames = make_frames(args.frames, height, width)
    detectors = {
        "haar": shared / "models/face/haarcascade_frontalface_default.xml",
        "blazeface": shared / "models/face/face_detection_short_range.tflite",
    }
    models = {
        "mini-xception": shared / "models/fer/fer2013_mini_xception.hdf5",
        "big-xception": shared / "models/fer/fer2013_big_xception.hdf5",
    }
    print(
        f"{args.frames} frames {height}x{width}, torch threads {args.threads}, best of {args.repeats}"
    )
    header = f"{'detector':<10} {'FER model':<14} {'faces':>5} {'frames/s':>9} {'detect/s':>9}"
    print(header + f" {'FER crops/s':>11} {'MFLOP/crop':>10} {'GFLOP/s':>8}")
    for det_name, det_path in detectors.items():
        for fer_name, fer_path in models.items():
            config = VideoTeacherConfig(batch_size=args.frames)
            try:
                teacher = load_video_teacher(fer_path, det_path, config)
            except FaceDetectorError as error:
                print(f"{det_name:<10} skipped: {error}")
                break
            boxes = teacher.faces(frames)
            found = [(f, b) for f, b in zip(frames, boxes, strict=True) if b is not None]
            crops = teacher.crops(*zip(*found, strict=True)) if found else None
            total = best_seconds(lambda t=teacher: t.frame_probabilities(frames), args.repeats)
            detect = best_seconds(lambda t=teacher: t.faces(frames), args.repeats)
            flops = fer_flops(teacher)
            if crops is not None:
                fer = best_seconds(lambda t=teacher, c=crops: t.classify(c), args.repeats)
                crops_per_s = len(crops) / fer
            else:
                crops_per_s = float("nan")
            print(
                f"{det_name:<10} {fer_name:<14} {len(found):>5} {args.frames / total:>9.1f} "
                f"{args.frames / detect:>9.1f} {crops_per_s:>11.0f} {flops / 1e6:>10.1f} "
                f"{flops * crops_per_s / 1e9:>8.2f}"
            )


if __name__ == "__main__":
    main()
