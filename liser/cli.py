"""The `liser` command: one typer command per stage, each a few lines calling the library."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import click
import typer

app = typer.Typer(
    help="Train small speech-emotion students by distillation from audio and video teachers.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
manifest_app = typer.Typer(help="Build manifests (tables of clips) from corpora and folders.")
teacher_app = typer.Typer(help="Fit, inspect and calibrate teachers.")
app.add_typer(manifest_app, name="manifest")
app.add_typer(teacher_app, name="teacher")


@app.command()
def version() -> None:
    """Print the liser version."""
    from . import __version__

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
    from .demo import run_demo

    with errors():
        run_demo(out, size, seed, video_teacher, face_detector, progress=not quiet)


@contextlib.contextmanager
def errors():
    """Bad input (OSError, ValueError: every liser error is one) -> "error: ..." and exit code 2;
    any other exception -> one line naming it and exit code 1 (the traceback with LISER_DEBUG=1);
    Ctrl-C -> exit code 130. A command never shows a traceback for bad input."""
    try:
        yield
    except (typer.Exit, typer.Abort, click.ClickException):
        raise
    except KeyboardInterrupt:
        typer.echo("interrupted (long jobs resume when the same command is run again)", err=True)
        raise typer.Exit(130) from None
    except (OSError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    except Exception as error:  # noqa: BLE001 - the last line of defence against tracebacks
        if os.environ.get("LISER_DEBUG"):
            raise
        typer.echo(
            f"error: unexpected {type(error).__name__}: {error} (set LISER_DEBUG=1 for the "
            "traceback, and please report it)",
            err=True,
        )
        raise typer.Exit(1) from None


# Each stage adds its commands below, importing its module inside the function so that
# `liser --help` stays fast.


_MANIFEST_OUT = typer.Option(
    ..., "-o", "--output", help="Manifest to write: .parquet, .csv or .jsonl."
)


@manifest_app.command("ravdess")
def manifest_ravdess(
    root: Path = typer.Argument(
        ..., help="RAVDESS folder (any layout, e.g. Actor_01 ... Actor_24)."
    ),
    output: Path = _MANIFEST_OUT,
    modality: list[str] = typer.Option(
        ["audio-only", "audio-visual", "video-only"], help="Modalities to keep (repeatable)."
    ),
    channel: list[str] = typer.Option(["speech", "song"], help="Vocal channels to keep."),
    measure: bool = typer.Option(True, help="Read durations from file headers."),
) -> None:
    """RAVDESS clips from their names MM-VV-EE-II-SS-RR-AA (8 classes, speaker = actor)."""
    from liser.manifest import ravdess_manifest, save_manifest

    with errors():
        typer.echo(
            save_manifest(ravdess_manifest(root, tuple(modality), tuple(channel), measure), output)
        )


@manifest_app.command("cremad")
def manifest_cremad(
    source: Path = typer.Argument(
        ..., help="CREMA-D folder, or a file list such as AudioWAV_filelist.txt."
    ),
    output: Path = _MANIFEST_OUT,
    demographics: Path | None = typer.Option(None, help="VideoDemographics.csv (gender)."),
    root: Path | None = typer.Option(None, help="Folder of the files of a file list."),
    measure: bool = typer.Option(True, help="Read durations from file headers."),
) -> None:
    """CREMA-D clips from names ActorID_Sentence_Emotion_Level (6 classes, 91 speakers)."""
    from liser.manifest import cremad_manifest, save_manifest

    with errors():
        typer.echo(save_manifest(cremad_manifest(source, demographics, root, measure), output))


@manifest_app.command("folder")
def manifest_folder(
    root: Path = typer.Argument(..., help="Folder with one sub-folder per class."),
    output: Path = _MANIFEST_OUT,
    speaker_pattern: str | None = typer.Option(
        None, help="Regex on the path below the class folder; group 1 is the speaker."
    ),
) -> None:
    """Labeled clips from one sub-folder per class."""
    from liser.manifest import folder_manifest, save_manifest

    with errors():
        typer.echo(save_manifest(folder_manifest(root, speaker_pattern), output))


@manifest_app.command("emobox")
def manifest_emobox(
    jsonl: Path = typer.Argument(..., help="EmoBox metadata (data/<corpus>/*.jsonl)."),
    output: Path = _MANIFEST_OUT,
    root: Path | None = typer.Option(None, help="Folder the 'wav' paths are relative to."),
) -> None:
    """Import EmoBox metadata as a manifest."""
    from liser.manifest import emobox_import, save_manifest

    with errors():
        typer.echo(save_manifest(emobox_import(jsonl, root), output))


@manifest_app.command("emobox-export")
def manifest_emobox_export(
    manifest: Path = typer.Argument(..., help="Manifest (.parquet, .csv, .jsonl)."),
    output: Path = typer.Option(..., "-o", "--output", help="EmoBox .jsonl to write."),
    root: Path | None = typer.Option(None, help="Write paths relative to this folder."),
) -> None:
    """Export a manifest as EmoBox metadata."""
    from liser.manifest import emobox_export, read_manifest

    with errors():
        typer.echo(emobox_export(read_manifest(manifest), output, root))


@manifest_app.command("table")
def manifest_table(
    source: Path = typer.Argument(
        ..., help="CSV, TSV or Parquet table of clips with a 'path' column."
    ),
    output: Path = _MANIFEST_OUT,
    measure: bool = typer.Option(True, help="Read missing durations from file headers."),
    corpus: str = typer.Option(
        "", help="Corpus name for rows without one [default: the folder's]."
    ),
) -> None:
    """Clips from any table: path (relative to the table or absolute), and optionally speaker,
    label, start, duration, corpus, fold, id; other columns are kept."""
    from liser.manifest import save_manifest, table_manifest

    with errors():
        typer.echo(save_manifest(table_manifest(source, measure, corpus), output))


@manifest_app.command("videos")
def manifest_videos(
    root: Path = typer.Argument(..., help="Folder of videos / audio files (recursive)."),
    output: Path = _MANIFEST_OUT,
) -> None:
    """Unlabeled media files, probed without decoding (duration, streams, fps, size)."""
    from liser.manifest import save_manifest, videos_manifest

    with errors():
        typer.echo(save_manifest(videos_manifest(root), output))


@teacher_app.command("check-video")
def teacher_check_video(
    files: list[Path] = typer.Argument(..., help="Images or videos to look at."),
    video_teacher: str = typer.Option(..., help="FER model: .hdf5, .onnx, .pt, or folder."),
    face_detector: str = typer.Option(..., help="Haar cascade .xml or BlazeFace .tflite."),
    config: Path | None = typer.Option(None, help="YAML VideoTeacherConfig."),
    overrides: list[str] = typer.Option([], "--set", help="Config override key=value."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON records, not a table."),
) -> None:
    """Per-face (images) or per-window (videos) FER probabilities and face boxes."""
    import json

    from rich.console import Console

    from .config import VideoTeacherConfig, load_config
    from .teachers.video import check_files, check_table, load_video_teacher

    with errors():  # FERModelError, FaceDetectorError, ConfigError
        teacher = load_video_teacher(
            video_teacher, face_detector, load_config(VideoTeacherConfig, config, overrides)
        )
        records = check_files(teacher, files)
    if json_output:
        typer.echo(json.dumps(records, indent=1))
    else:
        Console().print(check_table(records, teacher.classes))
    if any("error" in r for r in records):
        raise typer.Exit(1)


@teacher_app.command("fit-audio")
def teacher_fit_audio(
    config: Path | None = typer.Argument(None, help="YAML AudioTeacherConfig."),
    overrides: list[str] = typer.Option([], "--set", help="Config override key=value."),
    folds: str | None = typer.Option(
        None,
        help="Comma-separated test folds (e.g. 1,2,3,4,5,6): one teacher per fold in "
        "OUTPUT_DIR/foldK and summary.json [default: data.fold only].",
    ),
    quiet: bool = typer.Option(False, help="No progress bars."),
) -> None:
    """Fit an audio teacher (LoRA + pooling head, or a head on a frozen encoder) on a fold."""
    import json

    from .config import AudioTeacherConfig, load_config
    from .teachers.fit_audio import fit_audio_teacher, fit_audio_teacher_folds

    with errors():
        cfg = load_config(AudioTeacherConfig, config, overrides)
        if folds:
            fold_list = tuple(int(f) for f in folds.split(","))
            typer.echo(json.dumps(fit_audio_teacher_folds(cfg, fold_list, not quiet), indent=1))
        else:
            typer.echo(fit_audio_teacher(cfg, progress=not quiet))


@teacher_app.command("calibrate")
def teacher_calibrate(
    audio_teacher: str = typer.Option(..., help="Teacher SPEC (fitted folder, checkpoint, ...)."),
    manifest: Path = typer.Option(..., help="Labeled manifest."),
    output: Path = typer.Option(..., "-o", "--output", help="Report folder."),
    fold: int | None = typer.Option(
        None, help="Test fold whose SPLIT is used [default: all clips]."
    ),
    split: str = typer.Option("val", help="train | val | test (with --fold)."),
    store: bool = typer.Option(True, help="Store the fitted temperature with the teacher."),
    device: str = typer.Option("cpu", help="cpu | cuda | auto."),
) -> None:
    """ECE, reliability diagrams, confidence-correctness correlation and temperature scaling."""
    import json

    from .teachers.calibration import calibrate_teacher

    with errors():
        report = calibrate_teacher(audio_teacher, manifest, output, fold, split, store, device)
    typer.echo(json.dumps(report, indent=1))


@app.command("label")
def label_command(
    src: Path = typer.Argument(..., help="Folder of videos/audio (recursive), manifest, or file."),
    output: Path = typer.Option(..., "-o", "--output", help="Soft-label store folder."),
    audio_teacher: str | None = typer.Option(None, help="Audio teacher SPEC."),
    video_teacher: str | None = typer.Option(None, help="Video teacher SPEC (FER model)."),
    face_detector: str | None = typer.Option(None, help="Haar .xml or BlazeFace .tflite."),
    engine: str | None = typer.Option(None, help="local | ray."),
    hop_seconds: float | None = typer.Option(None, "--hop", help="Window hop in seconds."),
    config: Path | None = typer.Option(None, help="YAML LabelConfig."),
    overrides: list[str] = typer.Option([], "--set", help="Config override key=value."),
    quiet: bool = typer.Option(False, help="No progress bar or summary table."),
) -> None:
    """Cut files into 3 s windows and store both teachers' soft labels (resumable)."""
    import json

    from liser.label import label

    from .config import LabelConfig, load_config, replace

    options = {"audio_teacher": audio_teacher, "video_teacher": video_teacher,
               "face_detector": face_detector, "engine": engine, "hop_seconds": hop_seconds}  # fmt: skip
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
    from liser.train import train

    from .config import TrainConfig, load_config

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

    from liser.evaluate import summary_table
    from liser.train import cv

    from .config import TrainConfig, load_config

    with errors():
        summary = cv(load_config(TrainConfig, config, overrides), progress=not quiet)
    Console().print(summary_table(summary, title=summary["name"]))


@app.command("evaluate")
def evaluate_command(
    checkpoint: Path = typer.Argument(..., help="Checkpoint folder, or an audio-teacher folder."),
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
    hop: float | None = typer.Option(None, help="Window hop seconds [default: window / 2]."),
    batch_size: int = typer.Option(32, help="Windows per forward pass."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:1."),
) -> None:
    """UAR, WAR, macro-F1, per-class recall and confusion matrices of a checkpoint on one corpus,
    or one table over several (OUTPUT/corpora.md, .csv, .json, .png) with their mean."""
    from rich.console import Console

    from liser.evaluate import (
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
        rules = dict(classes=wanted, mapping=parse_mapping(map), restrict=restrict)
        options = dict(window_seconds=window, hop_seconds=hop, batch_size=batch_size, device=device)
        if len(corpus_parts(manifests, by_corpus)) == 1:
            metrics = evaluate_checkpoint(checkpoint, manifests[0], output, **options, **rules)
            Console().print(metrics_table(metrics, title=f"{checkpoint} on {manifests[0].name}"))
            typer.echo(metrics["rules"])
            return
        result = evaluate_corpora(checkpoint, manifests, output, **options, **rules,
                                  by_corpus=by_corpus)  # fmt: skip
    for row in result["corpora"]:
        typer.echo(f"{row['corpus']}: UAR {100 * row['uar']:.2f} %  WAR {100 * row['war']:.2f} %  "
                   f"n {row['n']}  ({row['rules']})")  # fmt: skip
    typer.echo(
        f"mean over {len(result['corpora'])} corpora: UAR {100 * result['mean']['uar']:.2f} %"
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
    hop: float | None = typer.Option(None, help="Window hop seconds [default: window / 2]."),
    batch_size: int = typer.Option(32, help="Windows per forward pass."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:1."),
    config: Path | None = typer.Option(
        None, help="YAML TrainConfig whose front end must match the checkpoint's."
    ),
    quiet: bool = typer.Option(False, help="No progress bar."),
) -> None:
    """Per-window and per-file class probabilities for files of any length."""
    from liser.deploy import predict

    from .config import TrainConfig, load_config

    with errors():
        frontend = load_config(TrainConfig, config).frontend if config else None
        results = predict(checkpoint, paths, output, format, window, hop, batch_size, device,
                          frontend, progress=not quiet)  # fmt: skip
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

    from liser.experiment import results_table, run_experiment

    from .config import ExperimentConfig, load_config

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


if __name__ == "__main__":  # python -m liser.cli ..., as torchrun -m liser.cli train CONFIG runs it
    app()
