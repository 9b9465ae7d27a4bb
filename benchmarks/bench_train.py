"""Student training throughput (clips/s) of liser's real training loop at batch 32.

Variants: fp32 vs bf16 autocast; whole-clip log-Mel from the feature cache ("features" mode)
vs log-Mel computed per batch from waveforms ("waves" mode, no cache); supervised vs distillation
(each step also passes round(32 * unlabeled_ratio) store windows through the student).

Clips/s counts labeled clips; with distillation "windows/s" also counts the unlabeled windows.
The data are synthetic 3.5 s clips (``liser.testing.emotion_tones``) with the default front end
(3 s windows, 64 mels) and the default student; timing covers whole epochs of optimizer steps
(data preparation, forward, backward, AdamW), not validation or checkpoints.

    python benchmarks/bench_train.py [--threads 2] [--steps 6]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from liser.config import DataConfig, DistillConfig, OptimConfig, TrainConfig, replace
from liser.manifest import write_manifest
from liser.testing import emotion_tone, emotion_tones, soft_label_store
from liser.train import Run


def build(root: Path, steps: int, batch: int) -> tuple[Path, Path]:
    """A manifest of 2 * steps * batch training clips (two speakers for val and test) and a store."""
    per_class = -(-steps * batch // 4) + 1  # clips per class per speaker
    df = emotion_tones(root / "wav", n_speakers=3, clips_per_class=per_class, n_classes=4,
                       seconds=(3.2, 3.8))  # fmt: skip
    df["fold"] = [1 if s == "spk0" else 2 for s in df.speaker]
    manifest = write_manifest(df, root / "tones.csv")
    rng = np.random.default_rng(0)
    waves = [emotion_tone(i % 4, 3.0, seed=int(rng.integers(2**31))) for i in range(256)]
    probs = [np.eye(4)[i % 4] * 0.7 + 0.075 for i in range(256)]
    store = soft_label_store(root / "store", TrainConfig().frontend, waves, probs,
                             audio_classes=tuple(f"class{i}" for i in range(4)), shard_windows=128)  # fmt: skip
    return manifest, store


def throughput(config: TrainConfig, repeats: int) -> tuple[float, float]:
    """Seconds per optimizer step (best of ``repeats`` epochs) and labeled clips per step."""
    run = Run(config, rank=0, world=1, progress=False)
    run.prepare()
    run.build()
    run.new_optimizer(0)
    run.epoch(0)  # warm-up: allocator, oneDNN kernels
    best = float("inf")
    for epoch in range(1, repeats + 1):
        start = time.perf_counter()
        run.epoch(epoch)
        best = min(best, (time.perf_counter() - start) / run.steps)
    return best, run.global_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per timed epoch")
    parser.add_argument("--repeats", type=int, default=2, help="timed epochs (best is kept)")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest, store = build(root, args.steps, args.batch)
        base = TrainConfig(
            output_dir=str(root / "run"),
            data=DataConfig(
                manifest=str(manifest),
                folds="column",
                val_fraction=0.0,
                cache_dir=str(root / "cache"),
            ),  # fmt: skip
            optim=OptimConfig(batch_size=args.batch),
        )
        print(f"batch {args.batch}, {args.threads} thread(s), torch {torch.__version__}, "
              f"{torch.backends.cpu.get_cpu_capability()}")  # fmt: skip
        print(
            f"{'precision':9} {'features':17} {'training':12} {'ms/step':>8} {'clips/s':>8} {'windows/s':>9}"
        )
        for distill in (False, True):
            for cache in (True, False):
                for precision in ("fp32", "bf16"):
                    config = replace(base, precision=precision)
                    if not cache:
                        config = replace(config, **{"data.cache_dir": ""})
                    if distill:
                        config = replace(config, distill=DistillConfig(stores=(str(store),)))
                    seconds, clips = throughput(config, args.repeats)
                    windows = clips + (
                        round(args.batch * config.distill.unlabeled_ratio) if distill else 0
                    )
                    print(f"{precision:9} {'cache (crop)' if cache else 'waves (per batch)':17} "
                          f"{'distillation' if distill else 'supervised':12} {1000 * seconds:8.0f} "
                          f"{clips / seconds:8.1f} {windows / seconds:9.1f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
