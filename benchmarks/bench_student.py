"""Student size and speed: parameters, MACs, 1-thread latency of one 3 s clip, batch throughput.

    python benchmarks/bench_student.py [--set conv_channels=[16,32,64,128] --set lstm_hidden=128]
                                       [--device cuda] [--repeats 200]

Latency is for one 3 s window, batch 1, eager PyTorch in inference mode, BatchNorm folded into
the convolutions as ``liser.predict`` runs it: from precomputed log-Mel features, and from the
raw waveform to probabilities (log-Mel included). Throughput: batches of 32 windows on 2 threads.
Wall-clock minimum and median, and the median process CPU time (what a call costs without other
jobs on the machine: the figure to read when the machine is shared).
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


def timings(fn, repeats: int, warmup: int = 10) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of ``repeats`` calls of ``fn`` after ``warmup`` calls.

    CPU time counts only the time the process ran: on a machine shared with other jobs it is
    what the call would take without them (for one thread), while wall time includes waiting.
    """
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    return wall, cpu


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

        def show(name: str, measured, clips: int = 1, threads: int = 1) -> None:
            wall, cpu = measured
            low, mid, busy = min(wall), statistics.median(wall), statistics.median(cpu)
            if clips == 1:
                print(f"{name:<42} wall min {low * 1e3:5.2f} ms, median {mid * 1e3:6.2f} ms; "
                      f"CPU median {busy * 1e3:5.2f} ms (real-time factor "
                      f"{busy / frontend.window_seconds:.4f})")  # fmt: skip
            else:
                print(f"{name:<42} wall {clips / mid:6.0f} clips/s median, {clips / low:6.0f} "
                      f"best; CPU {clips / busy * threads:6.0f} clips/s (CPU time / {threads})")  # fmt: skip

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
        show("student, features -> logits", run(lambda: fused(batch_features), 2, repeats), 32, 2)
        show("waveform -> probabilities", run(lambda: probs(batch_wave), 2, repeats), 32, 2)


if __name__ == "__main__":
    main()
