"""Log-Mel front-end throughput: 3 s clips per second, batch 32, on 1 and 2 CPU threads.

    python benchmarks/bench_logmel.py [--seconds 3] [--batch 32] [--threads 1 2] [--repeats 10]

Prints clips/s for the torch.stft path (training), the factored conv DFT path (what ONNX export
uses), the exported ONNX graph in onnxruntime, and decoding + resampling real RAVDESS FLAC
(48 kHz) with `load_audio` when ../shared is present.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from liser.config import FrontEndConfig
from liser.features import LogMel
from liser.testing import shared_dir


def clips_per_second(run, batch: int, repeats: int) -> float:
    """Median throughput of `run()` (one batch) over `repeats` timed calls after a warm-up."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def bench_torch(waves: torch.Tensor, threads: int, repeats: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    results = {}
    for stft in ("torch", "conv"):
        logmel = LogMel(FrontEndConfig(), stft=stft).eval()
        with torch.inference_mode():
            results[f"LogMel stft={stft}"] = clips_per_second(
                lambda m=logmel: m(waves), len(waves), repeats
            )
    return results


def bench_onnx(waves: torch.Tensor, threads: int, repeats: int, folder: Path) -> float:
    import onnxruntime as ort

    path = folder / "logmel.onnx"
    if not path.exists():
        torch.onnx.export(
            LogMel(FrontEndConfig()).eval(),
            (waves[:1],),
            str(path),
            opset_version=17,
            dynamo=False,
            input_names=["wave"],
            output_names=["features"],
            dynamic_axes={"wave": {0: "batch"}, "features": {0: "batch"}},
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"wave": waves.numpy()}
    return clips_per_second(lambda: session.run(None, feed), len(waves), repeats)


def bench_decode(n_files: int) -> tuple[float, int] | None:
    from liser.audio import load_audio

    shared = shared_dir()
    if shared is None:
        return None
    files = sorted((shared / "data" / "ravdess").glob("Actor_*/*.flac"))[:n_files]
    load_audio(files[0])
    start = time.perf_counter()
    for file in files:
        load_audio(file)
    return len(files) / (time.perf_counter() - start), len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--decode-files", type=int, default=64)
    args = parser.parse_args()

    frontend = FrontEndConfig()
    n = round(args.seconds * frontend.sample_rate)
    waves = torch.from_numpy(
        np.random.default_rng(0).uniform(-0.3, 0.3, (args.batch, n)).astype(np.float32)
    )
    print(
        f"log-Mel {frontend.n_mels} mels, {frontend.win_samples}-sample Hann window, "
        f"hop {frontend.hop_samples}, n_fft {frontend.n_fft}; {args.seconds:g} s clips, "
        f"batch {args.batch}; torch {torch.__version__}"
    )
    with tempfile.TemporaryDirectory() as folder:
        for threads in args.threads:
            for name, rate in bench_torch(waves, threads, args.repeats).items():
                print(f"{threads} thread(s)  {name:<22} {rate:8.0f} clips/s")
            rate = bench_onnx(waves, threads, args.repeats, Path(folder))
            print(f"{threads} thread(s)  {'onnxruntime (conv)':<22} {rate:8.0f} clips/s")
    torch.set_num_threads(1)
    decoded = bench_decode(args.decode_files)
    if decoded is None:
        print("load_audio on real RAVDESS: skipped (../shared not present)")
    else:
        rate, count = decoded
        print(f"1 thread    load_audio RAVDESS 48 kHz FLAC -> 16 kHz: {rate:.0f} files/s ({count})")


if __name__ == "__main__":
    main()
