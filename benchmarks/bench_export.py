"""Inference speed and size of a student: PyTorch eager vs ONNX fp32 vs ONNX int8.

    python benchmarks/bench_export.py [CHECKPOINT]

Without a checkpoint, a freshly initialised default student is used (speed and size do not
depend on the weights). Prints latency for one 3 s clip on 1 thread, throughput at batch 32 on
2 threads, the real-time factor and the model file sizes.
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import liser
from liser.export import export_onnx, onnx_session
from liser.testing import student_checkpoint


def timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after 3 warm-up runs."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    checkpoint = Path(sys.argv[1]) if len(sys.argv) > 1 else student_checkpoint(tmp / "ckpt")
    fp32 = export_onnx(checkpoint, tmp / "model.onnx")
    int8 = export_onnx(checkpoint, tmp / "model.int8.onnx", int8=True)
    model = liser.load(checkpoint, device="cpu")
    rng = np.random.default_rng(0)
    one = (0.1 * rng.standard_normal((1, 48000))).astype(np.float32)
    batch = (0.1 * rng.standard_normal((32, 48000))).astype(np.float32)
    print(f"{'engine':<14}{'1 clip, 1 thread':>18}{'batch 32, 2 threads':>22}{'RTF (1 thr)':>13}")
    rows = [("pytorch eager", None), ("onnx fp32", fp32["path"]), ("onnx int8", int8["path"])]
    for name, path in rows:
        if path is None:
            torch.set_num_threads(1)
            single = timed(lambda: model.window_probs(one), 50)
            torch.set_num_threads(2)
            many = timed(lambda: model.window_probs(batch), 10)
        else:
            s1, s2 = onnx_session(path, 1), onnx_session(path, 2)
            single = timed(lambda s=s1: s.run(["probs"], {"waveform": one}), 50)
            many = timed(lambda s=s2: s.run(["probs"], {"waveform": batch}), 10)
        print(f"{name:<14}{single * 1e3:>15.2f} ms{32 / many:>17.0f} clips/s{single / 3.0:>13.5f}")
    print(
        f"file sizes: onnx fp32 {fp32['bytes'] / 1e6:.2f} MB, onnx int8 {int8['bytes'] / 1e6:.2f} MB, "
        f"safetensors {(Path(checkpoint) / 'model.safetensors').stat().st_size / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
