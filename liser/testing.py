"""Small synthetic builders and paths for tests, benchmarks and examples (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .constants import SAMPLE_RATE


def shared_dir() -> Path | None:
    """The real-data folder ``../shared`` (or ``$LISER_SHARED``), or None when absent."""
    env = os.environ.get("LISER_SHARED")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[1].parent / "shared")
    candidates.append(Path.cwd().parent / "shared")
    for path in candidates:
        if (path / "README.md").exists():
            return path
    return None


def tone(
    seconds: float = 1.0,
    freq: float = 220.0,
    sample_rate: int = SAMPLE_RATE,
    amplitude: float = 0.3,
    seed: int = 0,
) -> np.ndarray:
    """A sine tone with a little seeded noise, float32 mono, shape = (round(seconds * rate),)."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    wave = amplitude * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    return wave.astype(np.float32)
