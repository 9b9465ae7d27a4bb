"""Speech detection: the Silero VAD model (``silero-vad`` package) through onnxruntime.

The package's batched "sequence" ONNX model gives one speech probability per 32 ms frame of
16 kHz audio (512 samples, each with the 64 samples before it as context), its LSTM state carried
from block to block, so a file is one ONNX call per ~16 s. Nothing is downloaded: the model file
ships inside the package, found without importing it (its ``__init__`` pulls in torch helpers).

``fraction(samples)`` is the share of a window's frames that hold speech: the store's
``speech_fraction`` and ``predict``'s no-speech marking.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
FRAME = 512  # samples per VAD frame at 16 kHz
CONTEXT = 64  # samples of the previous frame prepended to each
FRAME_SECONDS = FRAME / SAMPLE_RATE
MODEL_FILE = "silero_vad_16k_sequence.onnx"
BLOCK_FRAMES = 512  # frames per ONNX call (~16.4 s)


class VADError(ValueError):
    """A speech detector that cannot be used; the message says why."""


def silero_model_path() -> Path:
    """The sequence ONNX model inside the installed ``silero-vad`` package."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise VADError("speech detection needs the silero-vad package: pip install silero-vad")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / MODEL_FILE
    if not path.is_file():
        raise VADError(f"{path} is missing: this silero-vad release has no sequence ONNX model")
    return path


class SpeechDetector:
    """``frame_probs(wave (N,) 16 kHz) -> (ceil(N / 512),)`` speech probabilities in [0, 1];
    ``threshold``: a frame is speech when its probability reaches it."""

    def __init__(self, model: str | Path | None = None, threshold: float = 0.5, threads: int = 1):
        import onnxruntime

        if not 0.0 < threshold < 1.0:
            raise ValueError(f"VAD threshold must be in (0, 1), got {threshold}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        self.path = Path(model) if model else silero_model_path()
        self.session = onnxruntime.InferenceSession(
            str(self.path), options, providers=["CPUExecutionProvider"]
        )
        self.threshold = float(threshold)
        self.fingerprint = f"silero:{self.path.stat().st_size}:{threshold:g}"

    def frame_probs(self, wave: np.ndarray) -> np.ndarray:
        wave = np.ascontiguousarray(wave, dtype=np.float32).reshape(-1)
        n_frames = -(-wave.size // FRAME)
        if n_frames == 0:
            return np.zeros(0, np.float32)
        frames = np.zeros((n_frames, FRAME), np.float32)
        frames.reshape(-1)[: wave.size] = wave
        context = np.zeros((n_frames, CONTEXT), np.float32)
        context[1:] = frames[:-1, -CONTEXT:]
        inputs = np.concatenate([context, frames], axis=1)
        h = np.zeros((1, 1, 128), np.float32)
        c = np.zeros((1, 1, 128), np.float32)
        out = []
        for first in range(0, n_frames, BLOCK_FRAMES):
            block = inputs[first : first + BLOCK_FRAMES]
            probs, h, c = self.session.run(None, {"input": block, "h": h, "c": c})
            out.append(np.asarray(probs, np.float32).reshape(-1))
        return np.concatenate(out)

    def fraction(self, samples: np.ndarray) -> float:
        """Share of the 32 ms frames of ``samples`` (a window's own audio) that hold speech."""
        probs = self.frame_probs(samples)
        return float((probs >= self.threshold).mean()) if len(probs) else 0.0


def load_speech_detector(spec: str, threshold: float = 0.5) -> SpeechDetector | None:
    """``""`` -> None (no gating); ``"silero"`` -> the package's model; else an ONNX file with
    the sequence model's inputs (input, h, c)."""
    if not spec:
        return None
    if spec != "silero" and not Path(spec).expanduser().is_file():
        raise VADError(f"VAD '{spec}': give 'silero' (the silero-vad package) or an ONNX file")
    try:
        return SpeechDetector(None if spec == "silero" else Path(spec).expanduser(), threshold)
    except VADError:
        raise
    except Exception as error:  # onnxruntime: not an ONNX model, or not Silero's
        raise VADError(
            f"VAD '{spec}': cannot be loaded ({type(error).__name__}: {error})"
        ) from None
