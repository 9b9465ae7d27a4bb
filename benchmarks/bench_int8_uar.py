"""UAR of an exported student, ONNX fp32 vs int8, on the test speakers of one RAVDESS fold.

    python benchmarks/bench_int8_uar.py CHECKPOINT MANIFEST [FOLD]

Each test clip is cut into the checkpoint's windows (hop = half a window, as `liser predict`);
clip probabilities are the mean over windows. Prints UAR/WAR for PyTorch, ONNX fp32, ONNX int8
and the two file sizes.
"""

import sys
import tempfile
from pathlib import Path

import numpy as np

import liser
from liser.audio import AudioError, load_audio
from liser.constants import RAVDESS_FOLDS
from liser.deploy import export_onnx, onnx_session
from liser.evaluate import classification_metrics
from liser.manifest import read_manifest
from liser.windows import fit_window, window_starts


def main(checkpoint: str, manifest: str, fold: int = 1) -> None:
    df = read_manifest(manifest)
    actors = {f"Actor_{a:02d}" for a in RAVDESS_FOLDS[fold - 1]}
    test = df[df.speaker.isin(actors)]
    model = liser.load(checkpoint, device="cpu")
    tmp = Path(tempfile.mkdtemp())
    fp32 = export_onnx(checkpoint, tmp / "m.onnx")
    int8 = export_onnx(checkpoint, tmp / "m8.onnx", int8=True)
    sessions = {
        "onnx fp32": onnx_session(fp32["path"], 2),
        "onnx int8": onnx_session(int8["path"], 2),
    }
    window = model.window
    preds = {"pytorch": [], "onnx fp32": [], "onnx int8": []}
    labels = []
    for row in test.itertuples():
        try:
            wave = load_audio(row.path)
        except AudioError as error:
            print(f"skipped {error}")
            continue
        starts = window_starts(len(wave), window, window // 2, window // 4) or [0]
        batch = np.stack([fit_window(wave[s : s + window], window) for s in starts])
        preds["pytorch"].append(model.window_probs(batch).mean(0))
        for name, session in sessions.items():
            preds[name].append(session.run(["probs"], {"waveform": batch})[0].mean(0))
        labels.append(model.classes.index(row.label))
    print(f"fold {fold}: {len(labels)} test clips of actors {sorted(actors)}")
    for name, probs in preds.items():
        m = classification_metrics(np.array(labels), np.stack(probs).argmax(1), model.classes)
        print(f"{name:<10} UAR {100 * m['uar']:.2f} %  WAR {100 * m['war']:.2f} %")
    print(f"sizes: fp32 {fp32['bytes'] / 1e6:.2f} MB, int8 {int8['bytes'] / 1e6:.2f} MB")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1)
