"""The ``liser`` command: one typer command per stage, each a few lines calling the library;
``liser manifest ...`` and ``liser teacher ...`` are the sub-apps of ``manifest.py`` and
``teacher.py``. Each command imports its stage inside the function, so ``liser --help`` is fast."""

from __future__ import annotations

from pathlib import Path

import typer

from .errors import errors
from .manifest import app as manifest_app
from .teacher import app as teacher_app

app = typer.Typer(
    help="Train small speech-emotion students by distillation from audio and video teachers.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(manifest_app, name="manifest")
app.add_typer(teacher_app, name="teacher")


@app.command()
def version() -> None:
    """Print the liser version."""
    from liser import __version__

    typer.echo(__version__)


@app.command("demo")
def demo_command(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Output folder (resumable)."),
    size: str = typer.Option("full", "--size", help="small (CI, < 2 min) | full (< 5 min)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the corpus and of every training run."),
    video_teacher: Path | None = typer.Option(
        None,
        help="FER SPEC instead of the FER CNN fitted on the demo's faces (e.g. mini-Xception).",
    ),
    face_detector: Path | None = typer.Option(
        None, help="Haar .xml or BlazeFace .tflite [default: OpenCV's Haar cascade]."
    ),
    quiet: bool = typer.Option(False, help="No progress output (the table is still printed)."),
) -> None:
    """The whole method on an embedded procedural audio-visual corpus, in minutes, no download:
    teachers label unlabeled videos; a distilled and a supervised student are compared."""
    from liser.demo import run_demo

    with errors():
        run_demo(out, size, seed, video_teacher, face_detector, progress=not quiet)


@app.command("label")
def label_command(
    src: Path = typer.Argument(..., help="Folder of videos/audio (recursive), manifest, or file."),
    output: Path = typer.Option(..., "-o", "--output", help="Soft-label store folder."),
    audio_teacher: str | None = typer.Option(None, help="Audio teacher SPEC."),
    video_teacher: str | None = typer.Option(None, help="Video teacher SPEC (FER model)."),
    face_detector: str | None = typer.Option(None, help="Haar .xml or BlazeFace .tflite."),
    engine: str | None = typer.Option(None, help="local | ray."),
    hop_seconds: float | None = typer.Option(None, "--hop", help="Window hop in seconds."),
    vad: str | None = typer.Option(
        None, help="silero (or its ONNX file): record speech, no audio label without it."
    ),
    config: Path | None = typer.Option(None, help="YAML LabelConfig."),
    overrides: list[str] = typer.Option([], "--set", help="Config override key=value."),
    quiet: bool = typer.Option(False, help="No progress bar or summary table."),
) -> None:
    """Cut files into 3 s windows and store both teachers' soft labels (resumable)."""
    import json

    from liser.config import LabelConfig, load_config, replace
    from liser.label import label

    options = {"audio_teacher": audio_teacher, "video_teacher": video_teacher,
               "face_detector": face_detector, "engine": engine, "hop_seconds": hop_seconds,
               "vad": vad}  # fmt: skip
    with errors():
        cfg = load_config(LabelConfig, config, overrides)
        cfg = replace(cfg, **{k: v for k, v in options.items() if v is not None})
        summary = label(src, output, cfg, progress=not quiet)
    if quiet:
        typer.echo(json.dumps(summary))


@app.command("train")
def train_command(
    config: Path = typer.Argument(..., help="YAML TrainConfig (see configs/)."),
    overrides: list[str] = typer.Option(
        [], "--set", help="Config override key=value, e.g. data.manifest=m.parquet optim.epochs=5."
    ),
    quiet: bool = typer.Option(False, help="No progress bars."),
) -> None:
    """Train a student on one fold (supervised, or distilled with distill.stores); the best
    checkpoint is tested. Run the same command again to resume an interrupted run."""
    from liser.config import TrainConfig, load_config
    from liser.train import train

    with errors():
        metrics = train(load_config(TrainConfig, config, overrides), progress=not quiet)
    test = metrics["test"]
    uar, war = 100 * test["uar"], 100 * test["war"]
    typer.echo(f"test UAR {uar:.2f} %  WAR {war:.2f} %  {metrics['checkpoint']}")


@app.command("cv")
def cv_command(
    config: Path = typer.Argument(..., help="YAML TrainConfig (see configs/)."),
    overrides: list[str] = typer.Option([], "--set", help="Config override key=value."),
    quiet: bool = typer.Option(False, help="No progress bars."),
) -> None:
    """Train and test on every fold (resumable: finished folds are not run again); writes
    OUTPUT_DIR/cv.json and cv.md with mean ± std UAR and WAR."""
    from rich.console import Console

    from liser.config import TrainConfig, load_config
    from liser.evaluate import summary_table
    from liser.train import cv

    with errors():
        summary = cv(load_config(TrainConfig, config, overrides), progress=not quiet)
    Console().print(summary_table(summary, title=summary["name"]))


@app.command("evaluate")
def evaluate_command(
    checkpoint: Path = typer.Argument(
        ..., help="Checkpoint folder, audio-teacher folder, or several joined by commas (ensemble)."
    ),
    manifests: list[Path] = typer.Argument(..., help="Labeled manifests (.parquet, .csv, .jsonl)."),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Report folder [default: CHECKPOINT/eval-MANIFEST]."
    ),
    classes: str | None = typer.Option(
        None,
        help="Classes to score, comma-separated (e.g. angry,happy,neutral,sad) [default: "
        "each corpus's own]; the argmax is restricted to the classes scored.",
    ),
    map: list[str] = typer.Option(
        [], "--map", help="Class mapping, repeatable: calm=neutral (merge), boredom= (drop)."
    ),
    restrict: bool = typer.Option(True, help="Restrict the argmax to the classes scored."),
    by_corpus: bool = typer.Option(True, help="Score each corpus of a manifest on its own."),
    window: float | None = typer.Option(None, help="Window seconds [default: the checkpoint's]."),
    hop: float | None = typer.Option(
        None, help="Window hop seconds [default: 1 s, as in training]."
    ),
    batch_size: int = typer.Option(32, help="Windows per forward pass."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:1."),
    adapt: bool = typer.Option(
        False,
        help="Re-estimate the model's normalisation statistics on each corpus's own audio before "
        "scoring it (labels unused; see `liser adapt`).",
    ),
    per_speaker: bool = typer.Option(
        False, help="With --adapt: on each speaker's own audio instead (their clips together)."
    ),
) -> None:
    """UAR, WAR, macro-F1, per-class recall and confusion matrices of a checkpoint on one corpus,
    or one table over several (OUTPUT/corpora.md, .csv, .json, .png) with their mean."""
    from rich.console import Console

    from liser.deploy import ScoringOptions
    from liser.evaluate import (
        ClassRules,
        corpus_parts,
        evaluate_checkpoint,
        evaluate_corpora,
        metrics_table,
        parse_mapping,
    )

    with errors():  # CheckpointError, ManifestError, unknown labels, bad mapping
        wanted = (
            tuple(c.strip().lower() for c in classes.split(",") if c.strip()) if classes else None
        )
        rules = ClassRules(wanted, parse_mapping(map), restrict)
        if per_speaker and not adapt:
            raise ValueError("--per-speaker goes with --adapt")
        mode = ("speaker" if per_speaker else "corpus") if adapt else ""
        options = ScoringOptions(window, hop, batch_size, device)
        if len(corpus_parts(manifests, by_corpus)) == 1:
            metrics = evaluate_checkpoint(
                checkpoint, manifests[0], output, options, rules, adapt=mode
            )
            Console().print(metrics_table(metrics, title=f"{checkpoint} on {manifests[0].name}"))
            typer.echo(metrics["rules"])
            return
        result = evaluate_corpora(
            checkpoint, manifests, output, options, rules, by_corpus, adapt=mode
        )
    for row in result["corpora"]:
        typer.echo(f"{row['corpus']}: UAR {100 * row['uar']:.2f} %  WAR {100 * row['war']:.2f} %  "
                   f"n {row['n']}  ({row['rules']})")  # fmt: skip
    typer.echo(
        f"mean over {len(result['corpora'])} corpora: UAR {100 * result['mean']['uar']:.2f} %"
    )


@app.command("adapt")
def adapt_command(
    source: Path = typer.Argument(..., help="Student checkpoint or fitted audio-teacher folder."),
    manifests: list[Path] = typer.Argument(
        ..., help="Manifests of the domain's audio (labels unused)."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Folder of the adapted copy."),
    batch_size: int = typer.Option(32, help="Windows per forward pass."),
) -> None:
    """A copy of a model with its normalisation statistics re-estimated on a new domain's
    unlabeled audio (front-end and BatchNorm statistics of a student, the pooled-feature
    standardisation of a teacher): no labels, no training, seconds to minutes."""
    from liser.adapt import adapt_folder

    with errors():
        record = adapt_folder(source, list(manifests), output, batch_size=batch_size)
    typer.echo(
        f"adapted on {record['clips']} clips ({record['windows']} windows, {record['skipped']} "
        f"unreadable, {record['seconds']} s) -> {output}"
    )


@app.command("predict")
def predict_command(
    checkpoint: Path = typer.Argument(..., help="Checkpoint folder (or its checkpoint.json)."),
    paths: list[Path] = typer.Argument(..., help="Audio or video files, or folders of them."),
    output: Path | None = typer.Option(None, "-o", "--output", help="File [default: stdout]."),
    format: str | None = typer.Option(
        None, "--format", help="json | jsonl | csv [default: OUTPUT's extension, else json]."
    ),
    window: float | None = typer.Option(None, help="Window seconds [default: the checkpoint's]."),
    hop: float | None = typer.Option(
        None, help="Window hop seconds [default: 1 s, as in training]."
    ),
    batch_size: int = typer.Option(32, help="Windows per forward pass."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:1."),
    config: Path | None = typer.Option(
        None, help="YAML TrainConfig whose front end must match the checkpoint's."
    ),
    vad: str = typer.Option(
        "", help="silero (or a Silero ONNX file): mark windows without speech 'no speech'."
    ),
    min_speech: float = typer.Option(0.2, help="Speech share of a window below which it has none."),
    quiet: bool = typer.Option(False, help="No progress bar."),
) -> None:
    """Per-window and per-file class probabilities for files of any length."""
    from liser.config import TrainConfig, load_config
    from liser.deploy import ScoringOptions, predict

    with errors():
        frontend = load_config(TrainConfig, config).frontend if config else None
        options = ScoringOptions(window, hop, batch_size, device, vad, min_speech)
        results = predict(checkpoint, paths, output, format, options, frontend, not quiet)
    if not any("error" not in r for r in results):
        raise typer.Exit(1)


@app.command("export")
def export_command(
    checkpoint: Path = typer.Argument(..., help="Checkpoint folder (or its checkpoint.json)."),
    output: Path = typer.Option(..., "-o", "--output", help="The .onnx file to write."),
    int8: bool = typer.Option(
        False,
        "--int8",
        help="Quantize the LSTM weights to int8 (onnxruntime dynamic quantization).",
    ),
) -> None:
    """ONNX model taking the raw 16 kHz waveform (front end inside), supervised head only."""
    from liser.deploy import export_onnx

    with errors():
        summary = export_onnx(checkpoint, output, int8=int8)
    typer.echo(
        f"wrote {summary['path']} ({summary['bytes'] / 1e6:.2f} MB, opset {summary['opset']}"
        f"{', int8' if int8 else ''}); max |onnx - torch| = {summary['max_abs_diff']:.2e}"
    )


@app.command("experiment")
def experiment_command(
    config: Path = typer.Argument(..., help="YAML ExperimentConfig (see configs/experiments/)."),
    overrides: list[str] = typer.Option(
        [], "--set", help="Config override key=value, e.g. base.optim.epochs=10 or folds=[1,2]."
    ),
    only: list[str] = typer.Option(
        [], help="Run only the rows whose name contains this (repeatable); others are read."
    ),
    teachers_only: bool = typer.Option(
        False, help="Only make the per-fold teachers and their stores; no student, no table."
    ),
    quiet: bool = typer.Option(False, help="No progress bars."),
) -> None:
    """A grid of training runs over folds and seeds -> results table (MD, CSV, JSON) and plots.
    Resumable: run the same command again to continue; finished runs are never run again."""
    import json

    from rich.console import Console

    from liser.config import ExperimentConfig, load_config
    from liser.experiment import results_table, run_experiment

    with errors():
        cfg = load_config(ExperimentConfig, config, overrides)
        results = run_experiment(cfg, not quiet, tuple(only), teachers_only)
    if teachers_only:
        typer.echo(json.dumps(results, indent=1))
        raise typer.Exit(1 if results["failed"] else 0)
    Console().print(results_table(results))
    typer.echo(str(Path(results["config"]["output_dir"]) / "results.md"))
    if results["failed"]:
        raise typer.Exit(1)
