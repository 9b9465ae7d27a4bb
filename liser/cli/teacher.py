"""``liser teacher ...``: fit, inspect and calibrate teachers."""

from __future__ import annotations

from pathlib import Path

import typer

from .errors import errors

app = typer.Typer(help="Fit, inspect and calibrate teachers.")


@app.command("check-video")
def teacher_check_video(
    files: list[Path] = typer.Argument(None, help="Images or videos to look at."),
    video_teacher: list[str] = typer.Option(..., help="FER model(s): .hdf5, .onnx, .pt, folder."),
    face_detector: list[str] = typer.Option(..., help="Haar cascade .xml or BlazeFace .tflite."),
    labels: Path | None = typer.Option(
        None, help="CSV/Parquet of labeled clips (path, label): score every model x detector."
    ),
    out: Path = typer.Option(Path("check-video"), help="Report folder (with --labels)."),
    config: Path | None = typer.Option(None, help="YAML VideoTeacherConfig."),
    overrides: list[str] = typer.Option([], "--set", help="Config override key=value."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON records, not a table."),
) -> None:
    """Per-face (images) or per-window (videos) FER probabilities and face boxes; with --labels,
    accuracy per class and pooling, confusion matrices and a contact sheet for each FER model
    and face detector."""
    import json

    from rich.console import Console

    from liser.config import VideoTeacherConfig, load_config
    from liser.teachers.video import check_files, check_table, load_video_teacher

    with errors():  # FERModelError, FaceDetectorError, ConfigError
        settings = load_config(VideoTeacherConfig, config, overrides)
        if labels is not None:
            from liser.teachers.video_check import check_labeled

            typer.echo(check_labeled(labels, video_teacher, face_detector, settings, out))
            return
        if not files:
            raise ValueError("give files to look at, or --labels TABLE to score labeled clips")
        teacher = load_video_teacher(video_teacher[0], face_detector[0], settings)
        records = check_files(teacher, files)
    if json_output:
        typer.echo(json.dumps(records, indent=1))
    else:
        Console().print(check_table(records, teacher.classes))
    if any("error" in r for r in records):
        raise typer.Exit(1)


@app.command("fit-audio")
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

    from liser.config import AudioTeacherConfig, load_config
    from liser.teachers.fit_audio import fit_audio_teacher, fit_audio_teacher_folds

    with errors():
        cfg = load_config(AudioTeacherConfig, config, overrides)
        if folds:
            fold_list = tuple(int(f) for f in folds.split(","))
            typer.echo(json.dumps(fit_audio_teacher_folds(cfg, fold_list, not quiet), indent=1))
        else:
            typer.echo(fit_audio_teacher(cfg, progress=not quiet))


@app.command("calibrate")
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

    from liser.teachers.calibration import calibrate_teacher

    with errors():
        report = calibrate_teacher(audio_teacher, manifest, output, fold, split, store, device)
    typer.echo(json.dumps(report, indent=1))
