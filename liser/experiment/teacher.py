"""Per-fold teachers of an experiment: made from one fold's labeled training clips, they label
unlabeled clips into a soft-label store that the fold's distilled runs learn from.

For fold K and seed S, ``prepare_teacher`` (in ``folder``):

1. splits the manifest as the student of that cell does (``split_fold(df, data, S)``) and writes
   ``labeled.parquet``: the labeled training clips, the validation clips and the test clips, with a
   ``fold`` column (K for test clips, 0 for the others). The clips whose labels ``label_fraction``
   hid are not in it, so a teacher trained on it (``data.folds="column"``) never sees their labels;
2. makes the teacher (``ExperimentTeacherConfig.kind``): "student" trains ``members`` liser students
   on ``labeled.parquet`` (``member-i``; their checkpoints joined by commas form an ensemble),
   "fit-audio" fits an encoder with a head or LoRA (``fit-audio/``), "spec" uses a given SPEC;
3. labels the unlabeled clips (the fold's hidden-label clips, or all its training clips, or a given
   folder / manifest) into ``store/``, with the student's front end; with several sources
   (``teacher.unlabeled`` a list) the second goes to ``store-2/`` and so on (``teacher_stores``);
4. scores the teacher on the test clips (``teacher_uar``) and on the student's
   ``data.eval_manifests`` (``teacher_corpora``), and its soft labels on the labeled
   clips they cover (``pseudo_uar``: hidden labels, used for this diagnosis only) and writes
   ``prepared.json``. A folder with ``prepared.json`` is reused as it is; an interrupted one resumes
   (the student runs and the labeling are resumable themselves).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from liser.config import ExperimentTeacherConfig, TrainConfig, replace, to_dict
from liser.files import write_json

KINDS = ("student", "fit-audio", "spec")
PREPARED = "prepared.json"


# Settings that change how fast or where a teacher is made, not what it is.
RUNTIME = ("name", "output_dir", "seed", "device", "num_threads", "data.fold", "data.num_workers",
           "data.cache_dir", "distill.", "cache_dir", "engine", "ray_", "batch_size",
           "shard_windows", "chunk_seconds", "frontend.")  # fmt: skip


def _changed(config, skip=RUNTIME) -> dict:
    """The settings of a config dataclass that differ from its defaults, as dotted keys (so that a
    field added to a config later, with its default, leaves existing teacher folders valid)."""
    default = dotted(to_dict(type(config)()))
    return {
        k: v
        for k, v in dotted(to_dict(config)).items()
        if not k.startswith(skip) and (k not in default or default[k] != v)
    }


def teacher_identity(teacher: ExperimentTeacherConfig, config: TrainConfig) -> dict:
    """What a fold's teacher depends on, for naming the folder it is made in: the teacher section's
    settings for its kind, what it labels and how, and the student cell's data and front end (its
    whole config for student teachers) without fold, seed, distillation and runtime settings."""
    ident = {
        "kind": teacher.kind,
        "unlabeled": teacher.unlabeled[0] if len(teacher.unlabeled) == 1 else teacher.unlabeled,
        "label": _changed(teacher.label),
        "frontend": _changed(config.frontend, ()),
        "data": _changed(config.data, ("fold", "num_workers", "cache_dir")),
    }
    if teacher.kind == "student":
        ident.update(
            student=dotted(teacher.student), members=teacher.members, train=_changed(config)
        )
    elif teacher.kind == "fit-audio":
        runtime = ("output_dir", "seed", "device", "num_threads", "cache_dir", "data.")
        ident["audio"] = _changed(teacher.audio, runtime)  # data: the fold's labeled clips
    else:
        ident["spec"] = teacher.spec
    return ident


def check_teacher(teacher: ExperimentTeacherConfig) -> None:
    if teacher.kind not in KINDS:
        raise ValueError(
            f"teacher.kind must be one of {', '.join(KINDS)} (or ''), got {teacher.kind!r}"
        )
    if teacher.kind == "spec" and not teacher.spec:
        raise ValueError(
            "teacher.kind 'spec' needs teacher.spec (a teacher SPEC; {fold} is filled in)"
        )
    if not teacher.unlabeled or len(set(teacher.unlabeled)) < len(teacher.unlabeled):
        raise ValueError(
            f"teacher.unlabeled must name one or more different sources, got {teacher.unlabeled}"
        )
    if teacher.kind == "student" and teacher.members < 1:
        raise ValueError(f"teacher.members must be at least 1, got {teacher.members}")


def prepare_teacher(
    teacher: ExperimentTeacherConfig,
    config: TrainConfig,
    df: pd.DataFrame,
    folder: Path,
    progress: bool = True,
) -> dict:
    """Make the teacher of fold ``config.data.fold`` and seed ``config.seed`` and label its store
    (see the module docstring); return ``prepared.json``'s content: ``store``, ``spec``,
    ``teacher_uar``, ``pseudo_uar``, ``pseudo_clips``, ``windows``, ``seconds``."""
    from liser.manifest import corpus_classes, split_fold, write_manifest

    done = folder / PREPARED
    if done.is_file():
        return json.loads(done.read_text())
    check_teacher(teacher)
    started = time.perf_counter()
    fold, seed = config.data.fold, config.seed
    classes = tuple(config.data.classes) or corpus_classes(df)
    data = dataclasses.replace(config.data, classes=classes)
    splits = split_fold(df, data, seed)
    folder.mkdir(parents=True, exist_ok=True)
    labeled = pd.concat([splits["train"], splits["val"], splits["test"]], ignore_index=True)
    labeled["fold"] = np.where(labeled["id"].isin(set(splits["test"]["id"])), fold, 0)
    labeled_path = write_manifest(labeled, folder / "labeled.parquet")
    folded = {"data.manifest": str(labeled_path.absolute()), "data.folds": "column",
              "data.fold": fold, "data.label_fraction": 1.0, "data.classes": list(classes)}  # fmt: skip

    info: dict = {"kind": teacher.kind, "fold": fold, "seed": seed}
    if teacher.kind == "student":
        spec, info["members"] = _train_students(teacher, config, folded, folder, progress)
    elif teacher.kind == "fit-audio":
        spec, info["fit"] = _fit_audio(teacher, folded, seed, folder, progress)
    else:
        spec = teacher.spec.format(fold=fold, seed=seed)
    info["spec"] = spec

    from liser.label import label
    from liser.teachers import load_audio_teacher, predict_manifest

    audio = load_audio_teacher(spec, device=teacher.label.device)
    if teacher.kind == "fit-audio":
        info["teacher_uar"] = info["fit"].get("test_uar")
    else:
        probs = predict_manifest(audio, splits["test"], progress=progress)
        info["teacher_uar"] = _uar(probs, splits["test"]["label"], audio.classes, classes)
    if config.data.eval_manifests and "," not in spec and Path(spec).expanduser().exists():
        from liser.train.scores import score_other_corpora  # the teacher on the student's corpora

        info["teacher_corpora"] = score_other_corpora(
            config, Path(spec).expanduser(), folder / "corpora"
        )
    frontend = config.frontend
    label_config = dataclasses.replace(
        teacher.label, frontend=frontend, window_seconds=frontend.window_seconds
    )
    stores = teacher_stores(teacher, folder)
    for i, (source, store) in enumerate(zip(teacher.unlabeled, stores, strict=True)):
        src = _unlabeled_source(source, splits, folder, i)
        labeler, adapted = (
            _adapted(spec, src, teacher, progress) if teacher.adapt else (audio, None)
        )
        summary = label(src, store, label_config, audio_teacher=labeler, progress=progress)
        part = {"store": str(store.absolute()), "windows": _store_windows(store)}
        if adapted:
            part["adapted"] = adapted
        part["label_summary"] = {
            k: v for k, v in summary.items() if isinstance(v, (int, float, str))
        }
        if summary.get("label_agreement"):  # soft labels vs the source's own labels
            part["label_agreement"] = summary["label_agreement"]
        part.update(pseudo_label_scores(store, df, classes))
        if i == 0:
            info.update(part)
        else:
            info.setdefault("more_stores", []).append({"source": source, **part})
    info["seconds"] = round(time.perf_counter() - started, 1)
    write_json(done, info)
    return info


def _train_students(teacher, config: TrainConfig, folded: dict, folder: Path, progress: bool):
    from liser.train import train

    base = dataclasses.replace(config, distill=type(config.distill)())  # supervised
    checkpoints, members = [], []
    for i in range(teacher.members):
        changes = {**dotted(teacher.student), **folded, "seed": config.seed + i,
                   "output_dir": str(folder / f"member-{i}"),
                   "name": f"teacher-fold{config.data.fold}-seed{config.seed}-member{i}"}  # fmt: skip
        metrics = train(replace(base, **changes), progress=progress)
        checkpoints.append(str(Path(metrics["checkpoint"]).absolute()))
        members.append({"test_uar": metrics["test"]["uar"], "best_epoch": metrics["best_epoch"],
                        "train_seconds": metrics["train_seconds"]})  # fmt: skip
    return ",".join(checkpoints), members


def dotted(data: dict, prefix: str = "") -> dict:
    """Nested mappings to dotted keys: ``{"optim": {"epochs": 2}}`` -> ``{"optim.epochs": 2}``."""
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _fit_audio(teacher, folded: dict, seed: int, folder: Path, progress: bool):
    from liser.teachers.fit_audio import fit_audio_teacher

    out = folder / "fit-audio"
    if not (out / "teacher.json").is_file():
        changes = {**folded, "seed": seed, "output_dir": str(out)}
        changes.pop("data.label_fraction")  # the labeled manifest holds only labeled clips
        fit_audio_teacher(replace(teacher.audio, **changes), progress=progress)
    metrics = json.loads((out / "teacher.json").read_text()).get("metrics", {})
    keep = ("val_uar", "test_uar", "test_war", "seconds")
    return str(out.absolute()), {k: metrics[k] for k in keep if k in metrics}


def _adapted(spec: str, src: Path, teacher: ExperimentTeacherConfig, progress: bool):
    """The teacher with its statistics re-estimated on the source's audio (``teacher.adapt``),
    and the adaptation's record."""
    from liser.adapt import adapted_record, adapted_teacher
    from liser.manifest import read_manifest

    if src.is_dir():
        raise ValueError(f"teacher.adapt needs a manifest of the unlabeled clips, not {src}/")
    started = time.perf_counter()
    model, audio = adapted_teacher(spec, read_manifest(src), progress=progress,
                                   device=teacher.label.device)  # fmt: skip
    return model, adapted_record(audio, [str(src)], time.perf_counter() - started)


def teacher_stores(teacher: ExperimentTeacherConfig, folder: Path) -> list[Path]:
    """The soft-label stores a fold's teacher writes in ``folder``, one per unlabeled source."""
    return [
        folder / ("store" if i == 0 else f"store-{i + 1}") for i in range(len(teacher.unlabeled))
    ]


def _unlabeled_source(unlabeled: str, splits: dict, folder: Path, i: int = 0) -> Path:
    """The clips to label: a manifest written from the fold's splits, or the given path."""
    from liser.manifest import write_manifest

    if unlabeled not in ("fold", "train"):
        path = Path(unlabeled).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"teacher.unlabeled: {path} does not exist")
        return path
    clips = splits["unlabeled"]
    if unlabeled == "train":
        clips = pd.concat([splits["train"], splits["unlabeled"]], ignore_index=True)
    if len(clips) == 0:
        raise ValueError(
            "teacher.unlabeled='fold' but no training clip of this fold lost its label "
            "(data.label_fraction is 1): use unlabeled: train, or a folder of unlabeled media"
        )
    clips = clips.assign(label=pd.Series([None] * len(clips), dtype=splits["train"]["label"].dtype))
    name = "unlabeled.parquet" if i == 0 else f"unlabeled-{i + 1}.parquet"
    return write_manifest(clips, folder / name)


def _uar(probs: np.ndarray, labels, teacher_classes, classes) -> float | None:
    """UAR of clip probabilities over ``teacher_classes`` against labels; None when the teacher's
    classes are not the corpus's or nothing could be scored."""
    from liser.evaluate import classification_metrics

    if not set(teacher_classes) <= set(classes):
        return None
    ok = ~np.isnan(probs).any(1)
    if not ok.any():
        return None
    index = {c: i for i, c in enumerate(classes)}
    predicted = [index[teacher_classes[k]] for k in probs[ok].argmax(1)]
    truth = [index[c] for c in np.asarray(labels)[ok]]
    return classification_metrics(truth, predicted, classes)["uar"]


def pseudo_label_scores(store: Path, df: pd.DataFrame, classes) -> dict:
    """How good the store's audio soft labels are on clips whose labels are known to the manifest
    ``df`` (whole files): each clip's windows averaged, argmax against the label. Returns
    ``pseudo_uar`` (None when no clip is known) and ``pseudo_clips``."""
    from liser.label.agreement import clip_probs
    from liser.store import open_store

    audio_classes = open_store(store).audio_classes
    if not audio_classes:
        return {"pseudo_uar": None, "pseudo_clips": 0}
    known = df[df["label"].notna()].drop_duplicates("path").set_index("path")["label"]
    means = clip_probs(store)
    means = means[means["clip"].isin(known.index)]
    if means.empty:
        return {"pseudo_uar": None, "pseudo_clips": 0}
    probs = np.stack(means["probs"].tolist())
    uar = _uar(probs, known.loc[means["clip"]].to_numpy(), audio_classes, classes)
    return {"pseudo_uar": uar, "pseudo_clips": len(means)}


def _store_windows(store: Path) -> int:
    from liser.store import open_store

    return len(open_store(store))
