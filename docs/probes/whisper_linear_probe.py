"""Linear probe of frozen Whisper features across corpora: RAVDESS-global vs per-speaker
standardisation, and the strength of the L2 penalty (docs/results.md, "Per-speaker
standardisation and a stronger head"). Not part of the package: a measurement, kept runnable.

    python docs/probes/whisper_linear_probe.py runs/ravdess.parquet runs/crosscorpus.parquet \
        --whisper ~/.cache/liser/whisper-base --cache runs/probe-features.npz [--folds 1,2,3,4,5,6]

Features: mean over each 3 s window's frames of every encoder layer (bf16 where native), one clip
= the mean of its windows; cached in ``--cache``. Probe: softmax regression (LBFGS) per RAVDESS
fold, trained on the fold's training actors; other corpora scored with the argmax restricted to
their own classes. Prints UAR % per setting.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from liser.audio import load_audio
from liser.constants import RAVDESS_FOLDS
from liser.devices import native_bf16
from liser.teachers.audio import load_audio_encoder


def encode(manifests: list[str], whisper: str) -> tuple[np.ndarray, pd.DataFrame]:
    encoder, _ = load_audio_encoder(whisper)
    encoder.eval()
    df = pd.concat([pd.read_parquet(m) for m in manifests], ignore_index=True)
    window, out = 48000, []
    bf16 = native_bf16(torch.device("cpu"))
    for i, row in enumerate(df.itertuples()):
        wave = load_audio(row.path, 16000, start=float(row.start), duration=float(row.duration))
        pieces = [wave[k : k + window] for k in range(0, max(1, len(wave)), window)]
        pieces = [p for p in pieces if len(p) >= 8000] or pieces[:1]
        lengths = torch.tensor([len(p) for p in pieces])
        x = torch.zeros(len(pieces), int(lengths.max()))
        for k, p in enumerate(pieces):
            x[k, : len(p)] = torch.from_numpy(p)
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            hidden, mask = encoder(x, lengths)
        m = mask.float()[None, :, :, None]
        out.append(((hidden.float() * m).sum(2) / m.sum(2)).mean(1).numpy())
        if i % 500 == 0:
            print(f"encoded {i}/{len(df)}", flush=True)
    return np.stack(out).astype(np.float32), df[["speaker", "label", "corpus"]]


def per_speaker(features: np.ndarray, speakers: np.ndarray) -> np.ndarray:
    out = features.copy()
    for s in np.unique(speakers):
        i = speakers == s
        out[i] = (out[i] - out[i].mean(0)) / (out[i].std(0) + 1e-5)
    return out


def uar(y: np.ndarray, pred: np.ndarray) -> float:
    return 100 * float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))


def fit_softmax(x: np.ndarray, y: np.ndarray, c: float):
    classes = np.unique(y)
    t = torch.from_numpy(np.searchsorted(classes, y))
    xt = torch.from_numpy(x)
    torch.manual_seed(0)
    linear = torch.nn.Linear(x.shape[1], len(classes))
    opt = torch.optim.LBFGS(linear.parameters(), max_iter=2000, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(xt), t)
        loss = loss + linear.weight.pow(2).sum() / (1000 * c)
        loss.backward()
        return loss

    opt.step(closure)
    return classes, linear


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("manifests", nargs="+", help="RAVDESS manifest first, then others")
    parser.add_argument("--whisper", default=str(Path("~/.cache/liser/whisper-base").expanduser()))
    parser.add_argument("--cache", default="runs/probe-features.npz")
    parser.add_argument("--folds", default="1,2,3,4,5,6")
    parser.add_argument("--layers", default="3,mean")
    parser.add_argument("--C", default="0.01,0.1")
    args = parser.parse_args()
    if Path(args.cache).is_file():
        saved = np.load(args.cache, allow_pickle=False)
        features = saved["features"]
        meta = pd.DataFrame({k: saved[k] for k in ("speaker", "label", "corpus")})
    else:
        features, meta = encode(args.manifests, args.whisper)
        np.savez(args.cache, features=features,
                 **{k: meta[k].to_numpy(str) for k in ("speaker", "label", "corpus")})  # fmt: skip
    rav = (meta.corpus == "ravdess").to_numpy()
    labels, speakers = meta.label.to_numpy(str), meta.speaker.to_numpy(str)
    others = [c for c in meta.corpus.unique() if c != "ravdess"]
    folds = [int(f) for f in args.folds.split(",")]
    for layer in args.layers.split(","):
        pooled = features.mean(1) if layer == "mean" else features[:, int(layer)]
        for norm in ("global", "speaker"):
            x0 = per_speaker(pooled, speakers) if norm == "speaker" else pooled
            for c in (float(v) for v in args.C.split(",")):
                scores = []
                for fold in folds:
                    test = {f"Actor_{a:02d}" for a in RAVDESS_FOLDS[fold - 1]}
                    train = rav & ~np.isin(speakers, list(test))
                    mu, sd = x0[train].mean(0), x0[train].std(0) + 1e-5
                    x = ((x0 - mu) / sd).astype(np.float32)
                    classes, linear = fit_softmax(x[train], labels[train], c)
                    with torch.no_grad():
                        probs = torch.softmax(linear(torch.from_numpy(x)), 1).numpy()
                    row = [uar(labels[rav & ~train], classes[probs[rav & ~train].argmax(1)])]
                    for corpus in others:
                        i = (meta.corpus == corpus).to_numpy()
                        own = sorted(set(labels[i]))
                        cols = [list(classes).index(k) for k in own]
                        row.append(uar(labels[i], np.array(own)[probs[i][:, cols].argmax(1)]))
                    scores.append(row)
                m = np.mean(scores, 0)
                shown = " ".join(
                    f"{n} {v:.1f}" for n, v in zip(["ravdess", *others], m, strict=True)
                )
                print(
                    f"layer {layer:4s} {norm:7s} C={c:<6g} {shown}  others mean {m[1:].mean():.1f}"
                )


if __name__ == "__main__":
    main()
