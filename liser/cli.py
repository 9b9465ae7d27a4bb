"""The `liser` command: one typer command per stage, each a few lines calling the library."""

from __future__ import annotations

from pathlib import Path

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


# Each stage adds its commands below, importing its module inside the function so that
# `liser --help` stays fast.


def _unused(_: Path) -> None:  # keeps the Path import for commands added below
    pass


_MANIFEST_OUT = typer.Option(
    ..., "-o", "--output", help="Manifest to write: .parquet, .csv or .jsonl."
)


def _manifest_errors(error: Exception) -> typer.Exit:
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(2)


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
    from .manifest import ravdess_manifest, save_manifest

    try:
        typer.echo(
            save_manifest(ravdess_manifest(root, tuple(modality), tuple(channel), measure), output)
        )
    except (OSError, ValueError) as error:
        raise _manifest_errors(error) from error


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
    from .manifest import cremad_manifest, save_manifest

    try:
        typer.echo(save_manifest(cremad_manifest(source, demographics, root, measure), output))
    except (OSError, ValueError) as error:
        raise _manifest_errors(error) from error


@manifest_app.command("folder")
def manifest_folder(
    root: Path = typer.Argument(..., help="Folder with one sub-folder per class."),
    output: Path = _MANIFEST_OUT,
    speaker_pattern: str | None = typer.Option(
        None, help="Regex on the path below the class folder; group 1 is the speaker."
    ),
) -> None:
    """Labeled clips from one sub-folder per class."""
    from .manifest import folder_manifest, save_manifest

    try:
        typer.echo(save_manifest(folder_manifest(root, speaker_pattern), output))
    except (OSError, ValueError) as error:
        raise _manifest_errors(error) from error


@manifest_app.command("emobox")
def manifest_emobox(
    jsonl: Path = typer.Argument(..., help="EmoBox metadata (data/<corpus>/*.jsonl)."),
    output: Path = _MANIFEST_OUT,
    root: Path | None = typer.Option(None, help="Folder the 'wav' paths are relative to."),
) -> None:
    """Import EmoBox metadata as a manifest."""
    from .manifest import emobox_import, save_manifest

    try:
        typer.echo(save_manifest(emobox_import(jsonl, root), output))
    except (OSError, ValueError) as error:
        raise _manifest_errors(error) from error


@manifest_app.command("emobox-export")
def manifest_emobox_export(
    manifest: Path = typer.Argument(..., help="Manifest (.parquet, .csv, .jsonl)."),
    output: Path = typer.Option(..., "-o", "--output", help="EmoBox .jsonl to write."),
    root: Path | None = typer.Option(None, help="Write paths relative to this folder."),
) -> None:
    """Export a manifest as EmoBox metadata."""
    from .manifest import emobox_export, read_manifest

    try:
        typer.echo(emobox_export(read_manifest(manifest), output, root))
    except (OSError, ValueError) as error:
        raise _manifest_errors(error) from error


@manifest_app.command("videos")
def manifest_videos(
    root: Path = typer.Argument(..., help="Folder of videos / audio files (recursive)."),
    output: Path = _MANIFEST_OUT,
) -> None:
    """Unlabeled media files, probed without decoding (duration, streams, fps, size)."""
    from .manifest import save_manifest, videos_manifest

    try:
        typer.echo(save_manifest(videos_manifest(root), output))
    except (OSError, ValueError) as error:
        raise _manifest_errors(error) from error


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

    cfg = load_config(VideoTeacherConfig, config, overrides)
    try:
        teacher = load_video_teacher(video_teacher, face_detector, cfg)
    except ValueError as error:  # FERModelError, FaceDetectorError, ConfigError
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    records = check_files(teacher, files)
    if json_output:
        typer.echo(json.dumps(records, indent=1))
    else:
        Console().print(check_table(records, teacher.classes))
    if any("error" in r for r in records):
        raise typer.Exit(1)


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

    from .config import LabelConfig, load_config, replace
    from .label import label

    options = {"audio_teacher": audio_teacher, "video_teacher": video_teacher,
               "face_detector": face_detector, "engine": engine, "hop_seconds": hop_seconds}  # fmt: skip
    try:
        cfg = load_config(LabelConfig, config, overrides)
        cfg = replace(cfg, **{k: v for k, v in options.items() if v is not None})
        summary = label(src, output, cfg, progress=not quiet)
    except (OSError, ValueError) as error:  # StoreError, ConfigError, TeacherError, bad SRC
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from error
    if quiet:
        typer.echo(json.dumps(summary))
