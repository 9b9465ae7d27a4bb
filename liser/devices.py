"""Devices and numeric precision: the one place that turns "auto" into a device and a dtype.

``precision: auto`` picks bf16 only where bf16 matmuls run natively (CUDA with bf16; CPUs whose
oneDNN has bf16 kernels: AVX512-BF16 or AMX). On other CPUs bf16 autocast is emulated and about
3x slower than fp32 (benchmarks/bench_train.py), so "auto" is fp32 there. A fixed rule rather
than a timing, so runs stay reproducible on one machine.
"""

from __future__ import annotations

import os
import re

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """ "auto" -> CUDA when available, else CPU; a device this torch cannot use is a ValueError
    (for example "cuda" on a CPU-only build) instead of an assertion deep inside torch."""
    if isinstance(name, torch.device):
        name = str(name)
    name = str(name).strip()
    if not _DEVICE.match(name):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {name!r}: this torch build has no usable CUDA device "
                f"(torch {torch.__version__}); use --device cpu or auto"
            )
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s)")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' is not available on this machine")
    return torch.device(name)


def distributed_device(name: str) -> torch.device:
    """``resolve_device``, with "cuda" meaning this process's GPU under torchrun (LOCAL_RANK)."""
    device = resolve_device(name)
    import torch.distributed as dist

    if device.type == "cuda" and device.index is None and dist.is_initialized():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return device


def native_bf16(device: torch.device) -> bool:
    """True where bf16 matmuls run natively on ``device``."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    # not torch.ops.mkldnn._is_mkldnn_bf16_supported(): it is also true on AVX512 CPUs without
    # BF16, where oneDNN emulates bf16
    return bool(
        getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        or getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    )


def resolve_precision(precision: str, device: torch.device, allow_fp16: bool = False) -> str:
    """ "auto" | "fp32" | "bf16" (| "fp16" where ``allow_fp16``) -> the precision a run uses.

    "auto": bf16 where native (see ``native_bf16``); on CUDA without bf16 fp16 when allowed,
    else fp32."""
    allowed = PRECISIONS if allow_fp16 else PRECISIONS[:3]
    if precision not in allowed:
        raise ValueError(f"precision must be {' | '.join(allowed)}, got {precision!r}")
    if precision != "auto":
        return precision
    if native_bf16(device):
        return "bf16"
    return "fp16" if allow_fp16 and device.type == "cuda" else "fp32"


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device`` (None = plain fp32)."""
    name = resolve_precision(precision, device, allow_fp16=True)
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def precision_name(dtype: torch.dtype | None) -> str:
    """ "fp32" | "bf16" | "fp16" for an autocast dtype (None = fp32), as recorded in files."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))
