"""Run an exported liser model with onnxruntime alone (no torch, no liser).

    liser export runs/best -o model.onnx
    python examples/onnx_predict.py model.onnx speech.wav

Needs numpy, soundfile, soxr and onnxruntime. Cuts the file into the model's windows (hop = half a
window), scores them in one batch and prints the file-level probabilities (mean over windows).
"""

import json
import sys

import numpy as np
import onnxruntime as ort
import soundfile as sf
import soxr


def main(model_path: str, audio_path: str) -> None:
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    classes = json.loads(meta["liser.classes"])
    rate = int(meta["liser.sample_rate"])
    window = round(float(meta["liser.window_seconds"]) * rate)

    wave, source_rate = sf.read(audio_path, dtype="float32", always_2d=True)
    wave = soxr.resample(wave.mean(axis=1), source_rate, rate).astype(np.float32)
    if len(wave) < window:  # short clips are tiled to one window, as liser does
        wave = np.tile(wave, -(-window // len(wave)))[:window]
    hop = window // 2
    starts = list(range(0, len(wave) - window + 1, hop))
    if starts[-1] + window < len(wave):
        starts.append(len(wave) - window)
    batch = np.stack([wave[s : s + window] for s in starts])

    probs = session.run(["probs"], {"waveform": batch})[0].mean(axis=0)
    for name, p in sorted(zip(classes, probs), key=lambda item: -item[1]):
        print(f"{name:>10s}  {p:.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
