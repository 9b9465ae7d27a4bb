"""Where clips come from: the file-name parsers and the manifest builder of each corpus.

Every builder lists files, parses names, measures durations from file headers (no decoding) and
returns a manifest (see ``liser/manifest.py``). Files it cannot use (a wrong name, an unreadable
or empty file, a duplicate) are skipped, logged, and listed in ``df.attrs["skipped"]`` as
``(path, reason)``; the run goes on without them.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from liser.constants import CREMAD_CODES, RAVDESS_CLASSES, VIDEO_EXTENSIONS
from liser.media import MEDIA_EXTENSIONS, list_media, probe_media, progress

from .schema import make_manifest

log = logging.getLogger(__name__)

RAVDESS_MODALITIES = {"01": "audio-visual", "02": "video-only", "03": "audio-only"}
RAVDESS_CHANNELS = {"01": "speech", "02": "song"}
RAVDESS_FIELDS = ("modality", "vocal_channel", "intensity", "statement", "repetition", "gender")
CREMAD_SENTENCES = (
    "IEO",
    "TIE",
    "IOM",
    "IWW",
    "TAI",
    "MTI",
    "IWL",
    "ITH",
    "DFA",
    "ITS",
    "TSI",
    "WSI",
)
CREMAD_LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
CREMAD_FIELDS = ("sentence", "level", "gender")

_RAVDESS_NAME = re.compile(
    r"([0-9]{2})-([0-9]{2})-([0-9]{2})-([0-9]{2})-([0-9]{2})-([0-9]{2})-([0-9]{2})"
)
_CREMAD_NAME = re.compile(r"([0-9]{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})")


# --------------------------------------------------------------------------------------------
# File-name parsers: a dict of fields, or ValueError with the reason


def _split_name(name: str, allowed: tuple[str, ...]) -> str:
    """The stem of a file name whose extension (if any) is one of ``allowed``."""
    path = Path(name)
    if path.name != name or not name:
        raise ValueError(f"'{name}' is not a file name")
    if path.suffix and path.suffix.lower() not in allowed:
        raise ValueError(f"extension '{path.suffix}' is not one of {' '.join(allowed)}")
    return path.stem if path.suffix else name


def parse_ravdess_name(name: str) -> dict:
    """Fields of a RAVDESS name ``MM-VV-EE-II-SS-RR-AA[.ext]`` (modality, vocal channel, emotion,
    intensity, statement, repetition, actor). Audio-only (03) names must be audio files, 01/02
    video files. Raises ValueError saying what is wrong."""
    is_video = Path(name).suffix.lower() in VIDEO_EXTENSIONS
    stem = _split_name(name, MEDIA_EXTENSIONS)
    match = _RAVDESS_NAME.fullmatch(stem)
    if match is None:
        raise ValueError("not a RAVDESS name MM-VV-EE-II-SS-RR-AA (seven 2-digit codes)")
    modality, channel, emotion, intensity, statement, repetition, actor = match.groups()
    if modality not in RAVDESS_MODALITIES:
        raise ValueError(f"modality {modality} is not 01, 02 or 03")
    if Path(name).suffix and (modality == "03") == is_video:
        kind = "an audio" if modality == "03" else "a video"
        raise ValueError(f"modality {modality} ({RAVDESS_MODALITIES[modality]}) needs {kind} file")
    if channel not in RAVDESS_CHANNELS:
        raise ValueError(f"vocal channel {channel} is not 01 (speech) or 02 (song)")
    if not 1 <= int(emotion) <= len(RAVDESS_CLASSES):
        raise ValueError(f"emotion {emotion} is not 01..08")
    if intensity not in ("01", "02"):
        raise ValueError(f"intensity {intensity} is not 01 (normal) or 02 (strong)")
    if emotion == "01" and intensity == "02":
        raise ValueError("neutral (01) has no strong intensity (02) in RAVDESS")
    if channel == "02" and emotion in ("07", "08"):
        raise ValueError(f"song (02) has no emotion {emotion} in RAVDESS")
    for field, code in (("statement", statement), ("repetition", repetition)):
        if code not in ("01", "02"):
            raise ValueError(f"{field} {code} is not 01 or 02")
    if not 1 <= int(actor) <= 24:
        raise ValueError(f"actor {actor} is not 01..24")
    return dict(
        speaker=f"Actor_{actor}",
        actor=int(actor),
        label=RAVDESS_CLASSES[int(emotion) - 1],
        modality=RAVDESS_MODALITIES[modality],
        vocal_channel=RAVDESS_CHANNELS[channel],
        intensity="normal" if intensity == "01" else "strong",
        statement=int(statement),
        repetition=int(repetition),
        gender="male" if int(actor) % 2 else "female",
    )


def parse_cremad_name(name: str) -> dict:
    """Fields of a CREMA-D name ``ActorID_Sentence_Emotion_Level[.ext]`` (e.g. 1001_DFA_ANG_XX.wav).
    Raises ValueError saying what is wrong."""
    stem = _split_name(name, MEDIA_EXTENSIONS)
    match = _CREMAD_NAME.fullmatch(stem)
    if match is None:
        raise ValueError("not a CREMA-D name ActorID_Sentence_Emotion_Level (e.g. 1001_DFA_ANG_XX)")
    actor, sentence, emotion, level = match.groups()
    if not 1001 <= int(actor) <= 1091:
        raise ValueError(f"actor {actor} is not 1001..1091")
    if sentence not in CREMAD_SENTENCES:
        raise ValueError(f"sentence {sentence} is not one of {' '.join(CREMAD_SENTENCES)}")
    if emotion not in CREMAD_CODES:
        raise ValueError(f"emotion {emotion} is not one of {' '.join(CREMAD_CODES)}")
    if level not in CREMAD_LEVELS:
        raise ValueError(f"level {level} is not one of {' '.join(CREMAD_LEVELS)}")
    return dict(
        speaker=actor, actor=int(actor), label=CREMAD_CODES[emotion], sentence=sentence, level=level
    )


# --------------------------------------------------------------------------------------------
# Builders


def _build(
    files: Iterable[Path],
    parse: Callable[[Path], dict],
    corpus: str,
    fields: tuple[str, ...],
    measure: bool | str,
    skipped: list,
    keep: Callable[[dict], bool] = lambda fields: True,
) -> list[dict]:
    """Rows for ``files``: parsed names, durations (``measure``: True, False, or "existing" to
    measure files that exist and leave the others NaN), duplicates of an id skipped."""
    rows, first = [], {}
    files = list(files)
    for path in progress(files, f"Reading {corpus}"):
        try:
            parsed = parse(path)
        except ValueError as error:
            skipped.append((path, f"bad name: {error}"))
            continue
        if not keep(parsed):
            continue
        clip_id = path.stem
        if clip_id in first:
            skipped.append((path, f"duplicate: same clip id as {first[clip_id]}"))
            continue
        duration = math.nan
        if measure is True or (measure == "existing" and os.path.lexists(path)):
            try:
                duration = probe_media(path)["duration"]
            except ValueError as error:
                skipped.append((path, f"unreadable: {error}"))
                continue
        first[clip_id] = path
        extra = {k: parsed[k] for k in fields if k in parsed}
        rows.append(dict(id=clip_id, path=str(path), start=0.0, duration=duration, speaker=parsed["speaker"],
                         label=parsed.get("label"), corpus=corpus, **extra))  # fmt: skip
    return rows


def _finish(rows: list[dict], skipped: list, fields: tuple[str, ...], source) -> pd.DataFrame:
    for path, reason in skipped:
        log.debug("skipped %s: %s", path, reason)
    if skipped:
        log.warning("%s: skipped %d files (first: %s: %s)", source, len(skipped), *skipped[0])
    return make_manifest(rows, skipped, extra=fields)


def _preferred_first(files: list[Path]) -> list[Path]:
    """Audio before video for files of the same stem (so a duplicate .flv of a .wav is skipped)."""
    rank = {ext: i for i, ext in enumerate(MEDIA_EXTENSIONS)}
    return sorted(files, key=lambda p: (p.stem, rank.get(p.suffix.lower(), len(rank)), str(p)))


def ravdess_manifest(
    root: str | Path,
    modalities: tuple[str, ...] = ("audio-only", "audio-visual", "video-only"),
    vocal_channels: tuple[str, ...] = ("speech", "song"),
    measure: bool = True,
) -> pd.DataFrame:
    """RAVDESS under ``root`` (any layout; names ``MM-VV-EE-II-SS-RR-AA``): audio-only 03- files
    (wav, flac, ...) and audio-visual / video-only 01- / 02- videos, speech and song, 8 classes.
    Speaker "Actor_NN"; a file inside an ``Actor_MM`` folder with another actor is skipped."""
    skipped: list = []
    files = _preferred_first(list_media(root, errors=skipped))

    def parse(path: Path) -> dict:
        fields = parse_ravdess_name(path.name)
        folder = re.fullmatch(r"Actor_([0-9]+)", path.parent.name)
        if folder and int(folder.group(1)) != fields["actor"]:
            raise ValueError(
                f"actor {fields['actor']:02d} in the name but in folder {path.parent.name}"
            )
        return fields

    keep = lambda f: f["modality"] in modalities and f["vocal_channel"] in vocal_channels  # noqa: E731
    rows = _build(files, parse, "ravdess", RAVDESS_FIELDS, measure, skipped, keep)
    return _finish(rows, skipped, RAVDESS_FIELDS, root)


def cremad_manifest(
    source: str | Path,
    demographics: str | Path | None = None,
    root: str | Path | None = None,
    measure: bool = True,
) -> pd.DataFrame:
    """CREMA-D from a folder (any layout) or a file list (one name or relative path a line, e.g.
    ``AudioWAV_filelist.txt``; paths resolved against ``root``, default the list's folder; files
    absent there get a NaN duration). Names ``ActorID_Sentence_Emotion_Level``; speaker = ActorID;
    6 classes. ``demographics``: ``VideoDemographics.csv`` for gender (found automatically beside
    the list or in the folder)."""
    source = Path(source)
    skipped: list = []
    if source.is_file() and source.suffix.lower() not in MEDIA_EXTENSIONS:
        base = Path(root) if root is not None else source.parent
        names = [line.strip() for line in source.read_text(encoding="utf-8").splitlines()]
        files = [(base / n).absolute() for n in names if n and not n.startswith("#")]
        measure_mode: bool | str = "existing" if measure else False
        candidates = [source.parent / "VideoDemographics.csv"]
    else:
        files = list_media(source, errors=skipped)
        measure_mode = measure
        candidates = [source / "VideoDemographics.csv", source.parent / "VideoDemographics.csv"]
    parse = lambda path: parse_cremad_name(path.name)  # noqa: E731
    rows = _build(_preferred_first(files), parse, "cremad", CREMAD_FIELDS, measure_mode, skipped)
    if demographics is None:
        demographics = next((c for c in candidates if c.is_file()), None)
    if demographics is not None:
        table = pd.read_csv(demographics)
        if not {"ActorID", "Sex"} <= set(table.columns):
            raise ValueError(
                f"{demographics}: needs columns ActorID and Sex (VideoDemographics.csv)"
            )
        sex = dict(
            zip(table["ActorID"].astype(str), table["Sex"].astype(str).str.lower(), strict=True)
        )
        for row in rows:
            row["gender"] = sex.get(row["speaker"])
    return _finish(rows, skipped, CREMAD_FIELDS, source)


def folder_manifest(root: str | Path, speaker_pattern: str | None = None) -> pd.DataFrame:
    """One sub-folder of ``root`` per class (its name is the label), media files at any depth below.
    ``speaker_pattern``: a regex searched in the path relative to the class folder whose first group
    (or whole match) is the speaker, e.g. ``r"^([^/]+)/"`` for ``class/speaker/clip.wav`` or
    ``r"^([a-z]+)_"`` for ``class/anna_01.wav``; without it every speaker is "unknown" (speaker
    folds then need a ``fold`` column). Duplicate stems get ids ``label/stem``. Symlinks are
    followed, but a path that leads into another class folder of ``root`` (or back into ``root``)
    is skipped and reported, so no clip is filed under a class it is not in."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    pattern = re.compile(speaker_pattern) if speaker_pattern else None
    rows, skipped, seen = [], [], set()
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    loose = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in MEDIA_EXTENSIONS]
    skipped += [(p.absolute(), "bad name: not inside a class folder") for p in sorted(loose)]
    folders: set = set()  # real folders listed, over all classes: loops end, nothing twice
    for class_dir in classes:
        found = list_media(class_dir, errors=skipped, seen=folders, confine=root)
        for path in progress(found, f"Reading {class_dir.name}"):
            relative = path.relative_to(class_dir.absolute()).as_posix()
            speaker = "unknown"
            if pattern is not None:
                match = pattern.search(relative)
                if match is None:
                    skipped.append(
                        (path, f"bad name: speaker pattern {pattern.pattern!r} does not match")
                    )
                    continue
                speaker = match.group(1) if match.groups() else match.group(0)
            try:
                duration = probe_media(path)["duration"]
            except ValueError as error:
                skipped.append((path, f"unreadable: {error}"))
                continue
            clip_id = path.stem if path.stem not in seen else f"{class_dir.name}/{relative}"
            if clip_id in seen:
                skipped.append((path, "duplicate: same clip id as another file"))
                continue
            seen.add(clip_id)
            rows.append(dict(id=clip_id, path=str(path), start=0.0, duration=duration, speaker=speaker,
                             label=class_dir.name, corpus=root.absolute().name))  # fmt: skip
    return _finish(rows, skipped, (), root)


VIDEO_FIELDS = ("has_audio", "has_video", "fps", "width", "height")


def videos_manifest(root: str | Path) -> pd.DataFrame:
    """Every video and audio file under ``root`` (recursive), probed from headers: duration,
    has_audio, has_video, fps, width, height. Unlabeled (label null, corpus "videos"); speaker from
    RAVDESS / CREMA-D names when they parse (so test speakers can be excluded), else "unknown".
    Ids are paths relative to ``root`` (unique); unreadable or empty files are skipped."""
    root = Path(root)
    skipped: list = []
    files = list_media(root, errors=skipped)
    base = root.absolute() if root.is_dir() else root.absolute().parent
    rows = []
    for path in progress(files, "Probing media"):
        try:
            info = probe_media(path)
        except ValueError as error:
            skipped.append((path, f"unreadable: {error}"))
            continue
        speaker = "unknown"
        for parse in (parse_ravdess_name, parse_cremad_name):
            try:
                speaker = parse(path.name)["speaker"]
                break
            except ValueError:
                pass
        row = dict(id=path.relative_to(base).as_posix(), path=str(path), start=0.0, duration=info["duration"],
                   speaker=speaker, label=None, corpus="videos")  # fmt: skip
        rows.append(row | {k: info[k] for k in VIDEO_FIELDS})
    df = _finish(rows, skipped, VIDEO_FIELDS, root)
    for column in ("has_audio", "has_video"):
        df[column] = df[column].astype(bool)
    for column in ("width", "height"):
        df[column] = df[column].astype(np.int64)
    return df
