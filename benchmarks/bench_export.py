"""Inference speed and size of a student: PyTorch eager vs ONNX fp32 vs ONNX int8.

    python benchmarks/bench_export.py [CHECKPOINT]

Without a checkpoint, a freshly initialised default student is used (speed and size do not
depend on the weights). Prints latency for one 3 s clip on 1 thread (median and 10th percentile
of 200 calls, engines measured in turns), throughput at batch 32 on 2 threads, the real-time
factor and the model file sizes.
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import liser
from liser.deploy import export_onnx, onnx_session
from liser.testing import student_checkpoint


def interleaved(fns: dict, rounds: int) -> dict:
    """Seconds per call of each ``fn``, measured in turns (one call of each per round, after 5
    warm-up rounds) so that a slow spell of a shared machine hits every engine alike."""
    for _ in range(5):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: np.array(t) for name, t in times.items()}


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    checkpoint = Path(sys.argv[1]) if len(sys.argv) > 1 else student_checkpoint(tmp / "ckpt")
    fp32 = export_onnx(checkpoint, tmp / "model.onnx")
    int8 = export_onnx(checkpoint, tmp / "model.int8.onnx", int8=True)
    model = liser.load(checkpoint, device="cpu")
    rng = np.random.default_rng(0)
    one = (0.1 * rng.standard_normal((1, 48000))).astype(np.float32)
    batch = (0.1 * rng.standard_normal((32, 48000))).astype(np.float32)
    engines = {"pytorch eager": None, "onnx fp32": fp32["path"], "onnx int8": int8["path"]}
    single, many = {}, {}
    for name, path in engines.items():
        if path is None:
            single[name] = lambda: model.window_probs(one)
            many[name] = lambda: model.window_probs(batch)
        else:
            s1, s2 = onnx_session(path, 1), onnx_session(path, 2)
            single[name] = lambda s=s1: s.run(["probs"], {"waveform": one})
            many[name] = lambda s=s2: s.run(["probs"], {"waveform": batch})
    torch.set_num_threads(1)
    one_thread = interleaved(single, 200)
    torch.set_num_threads(2)
    two_threads = interleaved(many, 20)
    print("one 3 s clip on 1 thread (median, 10th percentile); batch 32 on 2 threads (median)")
    print(f"{'engine':<14}{'median':>10}{'p10':>10}{'batch 32':>16}{'RTF':>10}")
    for name in engines:
        t1, t2 = one_thread[name], two_threads[name]
        median = float(np.median(t1))
        print(
            f"{name:<14}{median * 1e3:>7.2f} ms{np.percentile(t1, 10) * 1e3:>7.2f} ms"
            f"{32 / np.median(t2):>9.0f} clips/s{median / 3.0:>10.5f}"
        )
    print(
        f"file sizes: onnx fp32 {fp32['bytes'] / 1e6:.2f} MB, onnx int8 {int8['bytes'] / 1e6:.2f} MB, "
        f"safetensors {(Path(checkpoint) / 'model.safetensors').stat().st_size / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
