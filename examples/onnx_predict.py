"""Run an exported liser model with onnxruntime alone (no torch, no liser).

    liser export runs/best -o model.onnx
    python examples/onnx_predict.py model.onnx speech.wav [more files ...]

Needs numpy, soundfile, soxr and onnxruntime; PyAV (``av``) too for video files and audio formats
libsndfile does not read. Cuts each file into the model's windows (hop = half a window), scores
them in one batch and prints the file-level probabilities (mean over windows). Files that cannot
be used are reported as ``skipped PATH: reason`` on stderr, as ``liser predict`` does; the exit
code is 2 for a bad model or usage, 1 when no file could be predicted, else 0.
"""

import json
import os
import sys

import numpy as np

MIN_SECONDS = 0.1  # shorter files are refused, as liser refuses them
SILENT_PEAK = 1e-6  # a file whose samples are all below this is digital silence


class Skip(Exception):
    """A file that cannot be used; the message says why."""


def fail(message: str):
    """Stop with ``error: message`` on stderr and exit code 2 (a bad model or usage)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def load_model(model_path: str):
    """(session, classes, sample rate, window samples) of a liser ONNX export."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - onnxruntime raises several kinds
        fail(f"{model_path}: not a readable ONNX model ({error})")
    meta = session.get_modelmeta().custom_metadata_map
    try:
        classes = json.loads(meta["liser.classes"])
        rate = int(meta["liser.sample_rate"])
        window = round(float(meta["liser.window_seconds"]) * rate)
    except (KeyError, ValueError) as error:
        fail(f"{model_path}: not a liser export (no metadata {error})")
    return session, classes, rate, window


def read_mono(path: str, rate: int) -> np.ndarray:
    """Any audio or video file -> float32 mono at ``rate`` (Skip when it cannot be used)."""
    import soundfile as sf
    import soxr

    if not os.path.isfile(path):
        raise Skip("not found" if not os.path.isdir(path) else "a folder, not a file")
    try:
        wave, source_rate = sf.read(path, dtype="float32", always_2d=True)
        wave = wave.mean(axis=1)
    except Exception:  # noqa: BLE001 - not for libsndfile (video, AAC, ...): try FFmpeg
        wave, source_rate = _read_av(path)
    if len(wave) < MIN_SECONDS * source_rate:
        raise Skip(f"too short: {len(wave) / max(source_rate, 1):.3f} s < {MIN_SECONDS} s minimum")
    if not np.isfinite(wave).all():
        raise Skip("the samples contain NaN or Inf")
    if np.abs(wave).max() < SILENT_PEAK:
        raise Skip("all silent (digital silence: every sample is ~0)")
    if source_rate != rate:
        wave = soxr.resample(wave, source_rate, rate)
    return wave.astype(np.float32)


def _read_av(path: str) -> tuple[np.ndarray, int]:
    try:
        import av
    except ImportError:
        raise Skip("not an audio file libsndfile reads (pip install av for video files)") from None
    try:
        with av.open(path) as container:
            if not container.streams.audio:
                raise Skip("no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono")
            parts = [
                out.to_ndarray().reshape(-1)
                for frame in container.decode(stream)
                for out in resampler.resample(frame)
            ]
            rate = stream.codec_context.sample_rate or stream.rate
    except Skip:
        raise
    except Exception as error:  # noqa: BLE001 - any FFmpeg failure means the file is unusable
        raise Skip(f"cannot be decoded ({type(error).__name__}: {error})") from None
    if not parts or not rate:
        raise Skip("no audio samples")
    return np.concatenate(parts).astype(np.float32), int(rate)


def predict_file(session, rate: int, window: int, path: str) -> np.ndarray:
    """File-level class probabilities: the mean of the windows' (Skip when unusable)."""
    wave = read_mono(path, rate)
    if len(wave) < window:  # short clips are tiled to one window, as liser does
        wave = np.tile(wave, -(-window // len(wave)))[:window]
    hop = window // 2
    starts = list(range(0, len(wave) - window + 1, hop))
    if starts[-1] + window < len(wave):
        starts.append(len(wave) - window)
    batch = np.stack([wave[s : s + window] for s in starts])
    probs = session.run(["probs"], {"waveform": batch})[0].mean(axis=0)
    if not np.isfinite(probs).all():
        fail("the model's outputs are NaN or Inf: this model is unusable")
    return probs


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    session, classes, rate, window = load_model(argv[0])
    predicted = 0
    for path in argv[1:]:
        try:
            probs = predict_file(session, rate, window, path)
        except Skip as why:
            print(f"skipped {path}: {why}", file=sys.stderr)
            continue
        predicted += 1
        if len(argv) > 2:  # several files: each one's probabilities under its path
            print(path)
        for name, p in sorted(zip(classes, probs, strict=True), key=lambda item: -item[1]):
            print(f"{name:>10s}  {p:.3f}")
    skipped = len(argv) - 1 - predicted
    print(f"{predicted} file(s) predicted, {skipped} skipped", file=sys.stderr)
    return 0 if predicted else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
