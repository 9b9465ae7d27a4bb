"""``liser manifest ...``: build manifests (tables of clips) from corpora, folders and tables."""

from __future__ import annotations

from pathlib import Path

import typer

from .errors import errors

app = typer.Typer(help="Build manifests (tables of clips) from corpora and folders.")

_MANIFEST_OUT = typer.Option(
    ..., "-o", "--output", help="Manifest to write: .parquet, .csv or .jsonl."
)


@app.command("ravdess")
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


@app.command("cremad")
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


@app.command("folder")
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


@app.command("emobox")
def manifest_emobox(
    jsonl: Path = typer.Argument(..., help="EmoBox metadata (data/<corpus>/*.jsonl)."),
    output: Path = _MANIFEST_OUT,
    root: Path | None = typer.Option(None, help="Folder the 'wav' paths are relative to."),
) -> None:
    """Import EmoBox metadata as a manifest."""
    from liser.manifest import emobox_import, save_manifest

    with errors():
        typer.echo(save_manifest(emobox_import(jsonl, root), output))


@app.command("emobox-export")
def manifest_emobox_export(
    manifest: Path = typer.Argument(..., help="Manifest (.parquet, .csv, .jsonl)."),
    output: Path = typer.Option(..., "-o", "--output", help="EmoBox .jsonl to write."),
    root: Path | None = typer.Option(None, help="Write paths relative to this folder."),
) -> None:
    """Export a manifest as EmoBox metadata."""
    from liser.manifest import emobox_export, read_manifest

    with errors():
        typer.echo(emobox_export(read_manifest(manifest), output, root))


@app.command("table")
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


@app.command("halves")
def manifest_halves(
    manifest: Path = typer.Argument(..., help="Manifest to split."),
    first: Path = typer.Argument(..., help="Manifest of the first half's speakers."),
    second: Path = typer.Argument(..., help="Manifest of the second half's speakers."),
    seed: int = typer.Option(0, help="Seed of the speaker draw."),
    corpus: str = typer.Option("", help="Keep only this corpus's clips [default: all]."),
) -> None:
    """Two halves of disjoint speakers, each corpus halved and balanced in clips (seeded): an
    adaptation half whose labels a distilled run hides, and a test half (then swap them)."""
    from liser.manifest import ManifestError, read_manifest, save_manifest, speaker_halves

    with errors():
        df = read_manifest(manifest)
        if corpus:
            if corpus not in set(df["corpus"]):
                raise ManifestError(f"{manifest}: no clip of corpus '{corpus}'")
            df = df[df["corpus"] == corpus]
        for part, path in zip(speaker_halves(df, seed), (first, second), strict=True):
            typer.echo(save_manifest(part, path))


@app.command("videos")
def manifest_videos(
    root: Path = typer.Argument(..., help="Folder of videos / audio files (recursive)."),
    output: Path = _MANIFEST_OUT,
) -> None:
    """Unlabeled media files, probed without decoding (duration, streams, fps, size)."""
    from liser.manifest import save_manifest, videos_manifest

    with errors():
        typer.echo(save_manifest(videos_manifest(root), output))
