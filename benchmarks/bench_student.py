"""Student size and speed: parameters, MACs, 1-thread latency of one 3 s clip, batch throughput.

    python benchmarks/bench_student.py [--set conv_channels=[16,32,64,128] --set lstm_hidden=128]
                                       [--device cuda] [--repeats 200]

Latency is for one 3 s window, batch 1, eager PyTorch in inference mode, BatchNorm folded into
the convolutions as ``liser.predict`` runs it: from precomputed log-Mel features, and from the
raw waveform to probabilities (log-Mel included). Throughput: batches of 32 windows on 2 threads.
On a shared machine the minimum is the most stable figure; the median is printed beside it.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from liser.config import FrontEndConfig, StudentConfig, apply_overrides, from_dict, to_dict
from liser.features import LogMel
from liser.student import Student, count_macs, count_parameters, fuse_for_inference
from liser.testing import tone


def timings(fn, repeats: int, warmup: int = 10) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="StudentConfig override, e.g. lstm_hidden=128")  # fmt: skip
    parser.add_argument("--classes", type=int, default=8, help="target classes (RAVDESS: 8)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()

    frontend = FrontEndConfig()
    config = from_dict(
        StudentConfig,
        apply_overrides({**to_dict(StudentConfig()), "n_classes": args.classes}, args.overrides),
    )
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = Student(config, frontend).eval()
    fused = fuse_for_inference(model).to(device)
    logmel = LogMel(frontend).to(device).eval()
    macs = count_macs(config, frontend)
    print(f"config: {to_dict(config)}")
    print(f"parameters: {count_parameters(model):,} ({count_parameters(model) / 1e3:.1f} k)")
    print(f"MACs per {frontend.window_seconds:g} s window: {macs:,} ({macs / 1e6:.1f} M)")
    print(f"torch {torch.__version__}, device {device}")

    wave = torch.from_numpy(tone(frontend.window_seconds, 220)).to(device)[None]
    with torch.inference_mode():
        features = logmel(wave)

        def run(fn, threads: int, repeats: int):
            torch.set_num_threads(threads)

            def call():
                fn()
                sync(device)

            return timings(call, repeats)

        def show(name: str, seconds: list[float], clips: int = 1) -> None:
            low, mid = min(seconds), statistics.median(seconds)
            if clips == 1:
                rtf = mid / frontend.window_seconds
                print(f"{name:<44} min {low * 1e3:6.2f} ms  median {mid * 1e3:6.2f} ms  "
                      f"(real-time factor {rtf:.4f})")  # fmt: skip
            else:
                print(f"{name:<44} {clips / mid:8.0f} clips/s (median), {clips / low:8.0f} best")

        print("\nlatency, 1 thread, batch 1 (one 3 s clip)")
        show(
            "student, features -> logits (BN folded)", run(lambda: fused(features), 1, args.repeats)
        )
        show(
            "student, features -> logits (unfused)",
            run(lambda: model.to(device)(features), 1, args.repeats),
        )
        show("log-Mel, waveform -> features", run(lambda: logmel(wave), 1, args.repeats))
        probs = lambda x: torch.softmax(fused(logmel(x))["logits"], -1)  # noqa: E731
        show("waveform -> probabilities", run(lambda: probs(wave), 1, args.repeats))

        batch_wave = wave.repeat(32, 1)
        batch_features = features.repeat(32, 1, 1)
        repeats = max(5, args.repeats // 10)
        print("\nthroughput, 2 threads, batch 32")
        show("student, features -> logits", run(lambda: fused(batch_features), 2, repeats), 32)
        show("waveform -> probabilities", run(lambda: probs(batch_wave), 2, repeats), 32)


if __name__ == "__main__":
    main()
