"""The video teacher on labeled face videos: accuracy per class, confusion, pooling, contact sheet.

``liser teacher check-video --labels index.csv`` runs each FER model x face detector over the
labeled clips once (faces tracked, the main person's frames classified), then pools each clip's
frame probabilities in every way ``pool_window`` knows (mean of 0.5 s clips as the paper,
max-confidence, confidence-weighted) and scores the clip's top class against its label. A label
counts where it names a FER class (``fer_class``: "disgusted" = disgust, "surprised" = surprise,
...); others (MEAD's "contempt") appear in the confusion matrix only. The confusion matrix
(corpus labels x FER classes) is the taxonomy table: where a corpus's classes land in FER's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from liser.constants import FER_ALIASES

from .clip_faces import pool_window

POOLINGS = ("mean", "max_confidence", "confidence_weighted")


def fer_class(label: str, classes) -> str | None:
    """The FER class a corpus label names, or None."""
    label = str(label).lower()
    label = FER_ALIASES.get(label, label)
    return label if label in classes else None


def read_labeled(source: str | Path) -> pd.DataFrame:
    """A table of labeled clips (``path`` relative to the table or absolute, ``label``)."""
    source = Path(source)
    df = pd.read_parquet(source) if source.suffix == ".parquet" else pd.read_csv(source)
    missing = {"path", "label"} - set(df.columns)
    if missing:
        raise ValueError(f"{source}: needs the columns path and label (missing {sorted(missing)})")
    df = df.assign(
        path=[str(p if Path(p).is_absolute() else source.parent / p) for p in df["path"]]
    )
    return df


def score_clips(teacher, df: pd.DataFrame) -> dict:
    """Clip probabilities of ``teacher`` for every pooling, and the scores of each."""
    classes = list(teacher.classes)
    config, rows, faces_of = teacher.config, [], {}
    for path, label in zip(df["path"], df["label"], strict=True):
        faces = teacher.clip_faces(path)
        faces_of[path] = faces
        row = {"path": path, "label": label, "target": fer_class(label, classes),
               "people": faces.tracks, "coverage": float((~np.isnan(faces.probs[:, 0])).mean())}  # fmt: skip
        for pooling in POOLINGS:
            probs, _ = pool_window(faces.times, faces.probs, config.clip_seconds, 0.0, pooling)
            row[pooling] = None if probs is None else classes[int(np.argmax(probs))]
            row[f"{pooling}_p"] = None if probs is None else float(np.max(probs))
        rows.append(row)
    clips = pd.DataFrame(rows)
    scored = clips[clips["target"].notna()]
    out = {"clips": clips, "faces": faces_of, "n_scored": len(scored), "pooling": {}}
    for pooling in POOLINGS:
        hits = scored[pooling] == scored["target"]
        per_class = hits.groupby(scored["target"]).mean()
        out["pooling"][pooling] = {
            "accuracy": float(hits.mean()) if len(scored) else None,
            "per_class": {c: round(float(v), 3) for c, v in per_class.items()},
        }
    labels = sorted(clips["label"].unique())
    out["confusion"] = {
        p: pd.crosstab(
            pd.Categorical(clips["label"], labels), pd.Categorical(clips[p], classes), dropna=False
        )  # fmt: skip
        for p in POOLINGS
    }
    return out


def report_markdown(results: dict[str, dict], chance: float) -> str:
    """One section per teacher (``name``: model + detector): accuracy by pooling, per class,
    and the confusion matrix (corpus labels x FER classes) of the paper's mean pooling."""
    lines = ["# Video teacher on labeled face videos", "",
             "| teacher | clips scored | " + " | ".join(POOLINGS) + " |",
             "|---|---|" + "---|" * len(POOLINGS)]  # fmt: skip
    for name, r in results.items():
        cells = [f"{100 * r['pooling'][p]['accuracy']:.1f}" for p in POOLINGS]
        lines.append(f"| {name} | {r['n_scored']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Accuracy %, on clips whose label is a FER class; chance {100 * chance:.1f} %.",
        "",
    ]
    for name, r in results.items():
        per_class = r["pooling"]["mean"]["per_class"]
        lines += [f"## {name}", "", "Per class (mean pooling): "
                  + ", ".join(f"{c} {100 * v:.0f} %" for c, v in per_class.items()), ""]  # fmt: skip
        table = r["confusion"]["mean"]
        lines += ["| label \\ FER | " + " | ".join(table.columns) + " |",
                  "|---|" + "---|" * len(table.columns)]  # fmt: skip
        for label, counts in table.iterrows():
            lines.append(f"| {label} | " + " | ".join(str(int(v)) for v in counts) + " |")
        lines.append("")
    return "\n".join(lines)


def contact_sheet(teacher, df: pd.DataFrame, faces_of: dict, out: Path, per_clip: int = 4) -> Path:
    """A PNG grid: ``per_clip`` sampled frames of each clip with the tracked face's box, its top
    FER class and probability (what the teacher saw), the clip's label on the left."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from liser.video_io import read_frames

    rate = teacher.config.frame_rate
    fig, axes = plt.subplots(
        len(df), per_clip, figsize=(2.0 * per_clip, 2.0 * len(df)), squeeze=False
    )
    for row, (path, label) in enumerate(zip(df["path"], df["label"], strict=True)):
        faces = faces_of[path]
        times, frames = read_frames(path, rate, fast=teacher.config.fast_decode)
        picks = np.linspace(0, len(frames) - 1, per_clip).round().astype(int) if frames else []
        for col, ax in enumerate(axes[row]):
            ax.axis("off")
            if col >= len(picks):
                continue
            i = picks[col]
            ax.imshow(frames[i])
            box, probs = faces.boxes[i], faces.probs[i]
            if not np.isnan(box[0]):
                x, y, w, h = box
                ax.add_patch(plt.Rectangle((x, y), w, h, fill=False, color="lime", lw=1.5))
                k = int(np.argmax(probs))
                ax.set_title(f"{teacher.classes[k]} {probs[k]:.2f}", fontsize=8)
            else:
                ax.set_title("no tracked face", fontsize=8)
        axes[row][0].text(-0.05, 0.5, str(label), transform=axes[row][0].transAxes, ha="right",
                          va="center", fontsize=9)  # fmt: skip
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def check_labeled(labels, models, detectors, config, out: Path) -> Path:
    """Score every FER model x face detector on the labeled clips of ``labels``; write
    ``check-video.md`` / ``.json`` and one contact sheet per teacher to ``out``."""
    import json

    from .video import load_video_teacher

    df = read_labeled(labels)
    out = Path(out)
    results, sheets = {}, []
    for model in models:
        for detector in detectors:
            teacher = load_video_teacher(model, detector, config)
            name = f"{Path(model).stem} + {Path(detector).stem}"
            results[name] = score_clips(teacher, df)
            slug = name.replace(" + ", "__").replace(" ", "_")
            sheets.append(contact_sheet(teacher, df, results[name]["faces"], out / f"{slug}.png"))
    chance = 1.0 / len(teacher.classes)
    (out / "check-video.md").write_text(report_markdown(results, chance) + "\n")
    summary = {name: {"n_scored": r["n_scored"], "pooling": r["pooling"],
                      "clips": json.loads(r["clips"].to_json(orient="records")),
                      "confusion": {p: r["confusion"][p].to_dict() for p in POOLINGS}}
               for name, r in results.items()}  # fmt: skip
    (out / "check-video.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    return out / "check-video.md"
