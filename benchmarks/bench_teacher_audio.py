"""Audio-teacher labeling throughput: 3 s windows per second and achieved GFLOP/s.

Whisper-base (real weights from a CTranslate2 folder when present, else random weights of the
same shape) and HuBERT-base (random weights: speed does not depend on them), fp32 and bf16
autocast, batch 1 and 32, through ``Teacher.predict`` (front end + encoder + pooling head).
FLOPs per window are counted by ``torch.utils.flop_counter`` (about 6.2 GFLOP for Whisper-base).

    python benchmarks/bench_teacher_audio.py [--models whisper-base,hubert-base]
        [--batches 1,32] [--precisions fp32,bf16] [--seconds 10] [--threads 0]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from liser.config import AudioTeacherConfig
from liser.teachers.audio import EncoderTeacher, HFAudioEncoder, PoolingHead
from liser.teachers.ct2 import WhisperEncoderDims
from liser.teachers.whisper import WhisperAudioEncoder, load_whisper_encoder

WINDOW = 48000  # 3 s at 16 kHz


def whisper_base() -> tuple[torch.nn.Module, str]:
    folder = Path(os.environ.get("LISER_WHISPER_DIR", "~/.cache/liser/whisper-base")).expanduser()
    if (folder / "model.bin").is_file():
        return load_whisper_encoder(folder), f"whisper-base ({folder})"
    dims = WhisperEncoderDims(
        n_mels=80, n_ctx=1500, d_model=512, n_heads=8, n_layers=6, ffn_dim=2048
    )
    return WhisperAudioEncoder(dims).eval(), "whisper-base (random weights)"


def hubert_base() -> tuple[torch.nn.Module, str]:
    from transformers import HubertConfig, HubertModel

    model = HubertModel(HubertConfig()).eval()  # the base shape: 12 layers, 768 wide
    return HFAudioEncoder(
        model, normalize=False, attention_mask=False
    ), "hubert-base (random weights)"


def flops_per_window(teacher: EncoderTeacher) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        teacher.logits(torch.zeros(1, WINDOW), torch.tensor([WINDOW]))
    return counter.get_total_flops()


def measure(teacher: EncoderTeacher, batch: int, seconds: float) -> float:
    """Windows per second of ``teacher.predict`` on batches of ``batch`` windows."""
    waves = np.random.default_rng(0).standard_normal((batch, WINDOW)).astype(np.float32) * 0.1
    teacher.batch_size = batch
    teacher.predict(waves)  # warm-up
    runs, started = 0, time.perf_counter()
    while runs == 0 or time.perf_counter() - started < seconds:
        teacher.predict(waves)
        runs += 1
    return runs * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="whisper-base,hubert-base")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per case")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    builders = {"whisper-base": whisper_base, "hubert-base": hubert_base}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}, "
          f"native CPU bf16: {torch.ops.mkldnn._is_mkldnn_bf16_supported()}")  # fmt: skip
    print(
        f"{'model':40s} {'precision':9s} {'batch':>5s} {'windows/s':>10s} {'GFLOP/win':>9s} {'GFLOP/s':>8s}"
    )
    for name in args.models.split(","):
        encoder, label = builders[name]()
        for precision in args.precisions.split(","):
            config = AudioTeacherConfig(precision=precision)
            head = PoolingHead(encoder.n_hidden, encoder.dim, 8).eval()
            teacher = EncoderTeacher(
                encoder, head, [str(i) for i in range(8)], name, config, "cpu"
            ).eval()
            gflop = flops_per_window(teacher) / 1e9
            for batch in (int(b) for b in args.batches.split(",")):
                rate = measure(teacher, batch, args.seconds)
                print(
                    f"{label:40s} {precision:9s} {batch:5d} {rate:10.2f} {gflop:9.2f} {rate * gflop:8.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
