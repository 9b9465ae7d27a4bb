"""The procedural audio-visual emotion corpus of ``liser demo``: speakers, splits, real files.

Three disjoint groups of synthetic speakers:

- ``labeled``: a few speakers, every emotion, audio-visual mp4 clips with labels;
- ``unlabeled``: many other speakers, mp4 videos (3-6 s) whose labels are hidden
  (kept in ``true_label`` for analysis only; training never reads it);
- ``test``: unseen speakers, audio-only wav clips with labels.

Speakers differ in pitch, formants, rate, voice quality and loudness by as much as emotions
change them, so a student fitted on a few speakers generalises poorly; faces show the emotion
the same way for everyone, so a face model fitted on the labeled speakers labels the unlabeled
videos well. Everything is deterministic given the seed: each clip has its own seed, so clips
can be rendered in any order, in parallel, and skipped when their file already exists.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from liser.constants import SAMPLE_RATE
from liser.files import atomic_write

from .face import FaceStyle, expression, face_intensity, random_face, render_face
from .voice import Utterance, Voice, random_voice, synthesize

CLASSES = ("neutral", "happy", "sad", "angry")  # also FER class names: the video teacher's list
CORPUS_NAME = "liser-demo"
SPLITS = ("labeled", "unlabeled", "test")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class CorpusSize:
    """How many speakers and clips each split has, and how clips look."""

    labeled_speakers: int
    labeled_clips: int  # per speaker and emotion
    unlabeled_speakers: int
    unlabeled_clips: int  # per speaker (emotions drawn uniformly)
    test_speakers: int
    test_clips: int  # per speaker and emotion
    seconds: tuple[float, float] = (2.5, 3.5)  # labeled and test clip lengths
    unlabeled_seconds: tuple[float, float] = (3.0, 6.0)
    intensity: tuple[float, float] = (0.5, 1.0)  # emotional intensity of non-neutral clips
    snr_db: tuple[float, float] = (15.0, 35.0)  # background noise
    fps: float = 10.0  # video frame rate (the video teacher samples 5 frames/s)
    frame_size: int = 80  # pixels, square frames (Haar finds ~95 % of the faces)


SIZES = {
    "small": CorpusSize(3, 4, 24, 6, 8, 3),
    "full": CorpusSize(4, 6, 48, 8, 12, 4),
}


@dataclass(frozen=True)
class Speaker:
    id: str
    voice: Voice
    face: FaceStyle


@dataclass(frozen=True)
class ClipPlan:
    """Everything needed to render one clip (deterministic from ``seed``)."""

    id: str
    split: str
    speaker: Speaker
    emotion: str
    intensity: float
    seconds: float
    snr_db: float
    seed: int
    path: str  # relative to the corpus folder


def make_speakers(n: int, prefix: str, rng: np.random.Generator) -> list[Speaker]:
    """``n`` speakers with random voices and faces, ids ``{prefix}{i:03d}``."""
    return [Speaker(f"{prefix}{i:03d}", random_voice(rng), random_face(rng)) for i in range(n)]


def plan_corpus(size: CorpusSize, seed: int = 0, classes=CLASSES) -> list[ClipPlan]:
    """Every clip of the corpus, in a fixed order, as render plans."""
    rng = np.random.default_rng([seed, 7919])
    groups = {
        "labeled": make_speakers(size.labeled_speakers, "L", rng),
        "unlabeled": make_speakers(size.unlabeled_speakers, "U", rng),
        "test": make_speakers(size.test_speakers, "T", rng),
    }
    plans: list[ClipPlan] = []
    for split, speakers in groups.items():
        for speaker in speakers:
            if split == "unlabeled":
                emotions = [
                    classes[i] for i in rng.integers(len(classes), size=size.unlabeled_clips)
                ]
                lengths = size.unlabeled_seconds
            else:
                per = size.labeled_clips if split == "labeled" else size.test_clips
                emotions = [e for e in classes for _ in range(per)]
                lengths = size.seconds
            for k, emotion in enumerate(emotions):
                intensity = 1.0 if emotion == "neutral" else float(rng.uniform(*size.intensity))
                clip_id = (
                    f"{speaker.id}_{k:02d}_{emotion}"
                    if split != "unlabeled"
                    else f"{speaker.id}_{k:02d}"
                )
                ext = "wav" if split == "test" else "mp4"
                plans.append(
                    ClipPlan(
                        id=clip_id,
                        split=split,
                        speaker=speaker,
                        emotion=emotion,
                        intensity=round(intensity, 3),
                        seconds=round(float(rng.uniform(*lengths)), 2),
                        snr_db=round(float(rng.uniform(*size.snr_db)), 1),
                        seed=int(rng.integers(2**31)),
                        path=f"{split}/{clip_id}.{ext}",
                    )
                )
    return plans


def render_clip(plan: ClipPlan, size: CorpusSize) -> tuple[np.ndarray, np.ndarray | None]:
    """The clip's audio (N,) float32 at 16 kHz and, for mp4 clips, frames (T, H, W, 3) uint8."""
    rng = np.random.default_rng(plan.seed)
    speech = synthesize(
        plan.speaker.voice, plan.emotion, plan.seconds, rng, plan.intensity, plan.snr_db
    )
    if plan.path.endswith(".wav"):
        return speech.wave, None
    openness = mouth_openness(speech, size.fps)
    face = expression(plan.emotion, face_intensity(plan.intensity))
    frames = render_face(plan.speaker.face, face, openness, size.fps, size.frame_size, rng)
    return speech.wave, frames


def mouth_openness(speech: Utterance, fps: float) -> np.ndarray:
    """Mouth opening 0..1 per video frame: the voice envelope times the vowel's jaw opening."""
    n_frames = max(int(len(speech.wave) / SAMPLE_RATE * fps), 1)
    edges = np.round(np.arange(n_frames + 1) * SAMPLE_RATE / fps).astype(int)
    jaw = np.add.reduceat(speech.jaw, np.minimum(edges[:-1], len(speech.jaw) - 1))
    counts = np.maximum(np.diff(np.minimum(edges, len(speech.jaw))), 1)
    return np.clip(jaw / counts, 0.0, 1.0)


def _write_clip(args: tuple[ClipPlan, CorpusSize, str]) -> str:
    from liser.video_io import write_video

    plan, size, root = args
    path = Path(root) / plan.path
    if not path.exists():
        wave, frames = render_clip(plan, size)
        write_video(path, frames, fps=size.fps, audio=wave, sample_rate=SAMPLE_RATE)
    return plan.id


def manifest_of(plans: list[ClipPlan], root: Path) -> pd.DataFrame:
    """The manifest (liser's clip table) of rendered clips; unlabeled clips have a null label."""
    rows = []
    for p in plans:
        rows.append(
            dict(
                id=p.id,
                path=str((root / p.path).resolve()),
                start=0.0,
                duration=p.seconds,
                speaker=p.speaker.id,
                label=None if p.split == "unlabeled" else p.emotion,
                corpus=CORPUS_NAME,
                split=p.split,
                true_label=p.emotion,
                intensity=p.intensity,
            )
        )
    return pd.DataFrame(rows)


def write_corpus(
    out_dir: str | Path,
    size: str | CorpusSize = "full",
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, pd.DataFrame]:
    """Render the corpus into ``out_dir`` (resumable) and return its manifests per split.

    Writes ``{split}/*.mp4|wav``, ``{split}.csv`` manifests and ``corpus.json``. Clips whose
    file exists are not rendered again; a folder holding a corpus of another size or seed is
    refused rather than mixed.
    """
    spec = SIZES[size] if isinstance(size, str) else size
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    info = {"format": FORMAT_VERSION, "seed": seed, "size": asdict(spec), "classes": list(CLASSES)}
    info_path = root / "corpus.json"
    if info_path.exists():
        old = json.loads(info_path.read_text())
        if old != json.loads(json.dumps(info)):
            raise FileExistsError(
                f"{root} holds a demo corpus made with other settings (seed {old.get('seed')}); "
                "choose another folder or delete it"
            )
    else:
        atomic_write(info_path, json.dumps(info, indent=2))
    plans = plan_corpus(spec, seed)
    todo = [(p, spec, str(root)) for p in plans]
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    _run(todo, workers, progress)
    from liser.manifest import normalize_manifest, write_manifest

    manifests = {}
    table = normalize_manifest(manifest_of(plans, root))
    for split in SPLITS:
        df = table[table.split == split].reset_index(drop=True)
        relative = df.assign(path=[str(Path(p).relative_to(root.resolve())) for p in df.path])
        write_manifest(relative, root / f"{split}.csv")  # relative paths: the folder can move
        manifests[split] = df
    return manifests


def _run(todo: list, workers: int, progress: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task("rendering corpus", total=len(todo))
        if workers <= 1:
            for item in todo:
                _write_clip(item)
                bar.advance(task)
            return
        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(_write_clip, todo, chunksize=4):
                bar.advance(task)
