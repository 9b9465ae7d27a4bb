"""The demo's report: ``report.md`` with the UAR table, confusion matrices and learning curves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from liser.files import atomic_write

ROWS = (  # (key in results["test"], model, what it learned from)
    ("supervised", "student, supervised", "labeled clips only"),
    (
        "distilled",
        "student, distilled (LiSER)",
        "labeled clips + both teachers on unlabeled videos",
    ),
)


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def confusions_png(evaluations: dict) -> bytes:
    """Supervised and distilled confusion matrices side by side (colour: recall, text: counts)."""
    names = [n for n in ("supervised", "distilled") if n in evaluations]
    fig = _figure(4.2 * len(names), 3.8)
    for i, name in enumerate(names):
        metrics = evaluations[name]
        matrix, classes = np.array(metrics["confusion"]), metrics["classes"]
        share = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
        ax = fig.add_subplot(1, len(names), i + 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for r in range(len(classes)):
            for c in range(len(classes)):
                color = "white" if share[r, c] > 0.6 else "black"
                ax.text(c, r, str(matrix[r, c]), ha="center", va="center", color=color, fontsize=9)
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("predicted")
        if i == 0:
            ax.set_ylabel("true")
        ax.set_title(f"{name}: UAR {100 * metrics['uar']:.1f} %")
    fig.tight_layout()
    return _png(fig)


def curves_png(runs: dict) -> bytes:
    """Training losses per epoch: supervised CE of both students and the distillation terms."""
    fig = _figure(8.5, 3.4)
    ax_ce, ax_kd = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for name, metrics in runs.items():
        history = metrics.get("history", [])
        epochs = [h["epoch"] for h in history]
        ax_ce.plot(epochs, [h.get("ce", np.nan) for h in history], label=name)
        for kind in ("audio", "video"):
            values = [h.get(kind, np.nan) for h in history]
            if not np.all(np.isnan(values)):
                ax_kd.plot(epochs, values, label=f"{name}: {kind} teacher")
    ax_ce.set(title="cross-entropy on labeled clips", xlabel="epoch", ylabel="loss")
    ax_kd.set(title="distillation loss (MAE, confidence-weighted)", xlabel="epoch")
    for ax in (ax_ce, ax_kd):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def report_markdown(results: dict) -> str:
    """The text of report.md (figures are linked, written beside it)."""
    test, agree, corpus, speakers = (
        results["test"],
        results["teacher_agreement"],
        results["corpus"],
        results["speakers"],
    )
    gain = test["distilled"]["uar"] - test["supervised"]["uar"]
    out = results["out"]
    lines = [
        f"# liser demo ({results['size']}, seed {results['seed']})",
        "",
        "The LiSER method end to end on a procedural audio-visual corpus: synthetic speakers whose "
        "voice and face both show the emotion. A few speakers are labeled; many other speakers "
        "come as unlabeled videos; the test speakers are unseen. Speakers differ in pitch, "
        "formants, speaking rate, voice quality and in how much each cue changes with emotion, so "
        "few labeled speakers generalise poorly; faces show the emotion the same way for everyone, "
        "so the video teacher labels the unlabeled videos well, and its knowledge reaches the "
        "audio-only student through distillation.",
        "",
        "## Corpus",
        "",
        "| split | clips | speakers | files |",
        "|---|---|---|---|",
        f"| labeled | {corpus['labeled']} | {speakers['labeled']} | mp4 (H.264 + AAC) |",
        f"| unlabeled | {corpus['unlabeled']} | {speakers['unlabeled']} | mp4, labels hidden |",
        f"| test | {corpus['test']} | {speakers['test']} (unseen) | wav |",
        "",
        f"## Results on unseen speakers ({corpus['test']} clips)",
        "",
        "| model | learned from | UAR % | WAR % | macro-F1 % |",
        "|---|---|---|---|---|",
    ]
    for key, model, source in ROWS:
        if key in test:
            m = test[key]
            lines.append(
                f"| {model} | {source} | {_pct(m['uar'])} | {_pct(m['war'])} | {_pct(m['macro_f1'])} |"
            )
    lines += [
        "",
        f"Distillation gain: **{100 * gain:+.1f} UAR points**.",
        "",
        "Teachers on the unlabeled windows, against the hidden labels (training never reads them): "
        f"audio teacher ({results['audio_teacher']['kind']}) {_pct(agree.get('audio'))} % "
        f"accuracy, video teacher "
        f"{_pct(agree.get('video'))} % ({_pct(agree.get('video_masked'))} % of "
        f"{agree['windows']} windows masked: too few frames with a face).",
        "",
        "![confusion matrices](confusion.png)",
        "",
        "![learning curves](curves.png)",
        "",
        "## Time per stage",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {k} | {v:.1f} |" for k, v in results["seconds"].items()],
        f"| total | {sum(results['seconds'].values()):.1f} |",
        "",
        "## Use the students",
        "",
        "```bash",
        f"liser evaluate {out}/students/distilled {out}/corpus/test.csv",
        f"liser predict {out}/students/distilled {out}/corpus/test",
        f"liser export {out}/students/distilled -o {out}/distilled.onnx",
        "```",
        "",
        f"Store of soft labels: `{out}/store`; teachers: `{out}/teachers`; training runs: "
        f"`{out}/runs`; everything is resumable: the same `liser demo` command reuses it.",
        "",
    ]
    return "\n".join(lines)


def write_report(out: Path, results: dict, evaluations: dict, runs: dict) -> Path:
    """Write report.md, confusion.png, curves.png and results.json into ``out``."""
    atomic_write(out / "confusion.png", confusions_png(evaluations))
    atomic_write(out / "curves.png", curves_png(runs))
    atomic_write(out / "results.json", json.dumps(results, indent=2, default=str) + "\n")
    path = out / "report.md"
    atomic_write(path, report_markdown(results))
    return path


def print_table(results: dict, console) -> None:
    """The UAR/WAR table on the console."""
    from rich.table import Table

    table = Table(title=f"liser demo: unseen speakers ({results['corpus']['test']} clips)")
    for column in ("model", "learned from", "UAR %", "WAR %"):
        table.add_column(column, justify="right" if "%" in column else "left")
    for key, model, source in ROWS:
        if key in results["test"]:
            m = results["test"][key]
            table.add_row(model, source, _pct(m["uar"]), _pct(m["war"]))
    console.print(table)
    console.print(f"report: {Path(results['out']) / 'report.md'}")
