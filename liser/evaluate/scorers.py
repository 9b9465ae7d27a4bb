"""What ``liser evaluate`` runs on the audio: a student checkpoint or an audio teacher (or an
ensemble), as it is or with its normalisation statistics re-estimated on the audio being scored
(``--adapt``, ``liser.adapt``; labels never read): on each corpus's own audio ("corpus"), or on
each speaker's ("speaker": per-speaker standardisation, which needs a speaker's clips together
and removes a speaker's mean state; see docs/results.md)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from liser.deploy import ScoringOptions

MODES = ("corpus", "speaker")


def is_teacher(checkpoint) -> bool:
    """An audio-teacher folder, or several teachers / checkpoints joined by commas (an ensemble)."""
    return "," in str(checkpoint) or (Path(checkpoint) / "teacher.json").is_file()


def load_scorer(checkpoint, options: ScoringOptions = ScoringOptions()):
    """What ``liser evaluate`` scores: a student checkpoint (``deploy.Predictor``) or an
    audio-teacher folder (``teachers.TeacherPredictor``), both with ``classes``, ``frontend``,
    ``window_seconds``, ``hop_seconds``, ``precision`` and ``predict(wave)``."""
    from liser.config import FrontEndConfig
    from liser.deploy import check_windows, load

    o = options
    if is_teacher(checkpoint):
        from liser.teachers import load_teacher_predictor

        check_windows(o.window_seconds, o.hop_seconds, FrontEndConfig())
        return load_teacher_predictor(str(checkpoint), str(o.device), o.window_seconds,
                                      o.hop_seconds, o.batch_size)  # fmt: skip
    return load(checkpoint, o.device, o.window_seconds, o.hop_seconds, o.batch_size)


def adapted_scorer(checkpoint, df: pd.DataFrame, options: ScoringOptions = ScoringOptions(),
                   progress: bool = True, scorer=None) -> tuple[object, dict]:  # fmt: skip
    """``load_scorer`` with the model's statistics re-estimated on the clips of ``df`` first:
    (scorer, the adaptation's record). ``scorer``: a teacher scorer made before, adapted again
    (its statistics are overwritten whole), instead of loading the model once more."""
    from liser.adapt import adapted_record, adapted_student, adapted_teacher
    from liser.deploy.predictor import Predictor

    o, started = options, time.time()
    if is_teacher(checkpoint):
        scorer = scorer or load_scorer(checkpoint, options)
        _, audio = adapted_teacher(checkpoint, df, o.batch_size, progress, teacher=scorer.teacher)
    else:
        model, meta, audio = adapted_student(checkpoint, df, o.batch_size, progress,
                                             o.window_seconds, o.hop_seconds)  # fmt: skip
        scorer = Predictor(model, meta, o.device, o.window_seconds, o.hop_seconds, o.batch_size)
    return scorer, adapted_record(audio, ["the corpus scored"], time.time() - started)


class SpeakerAdapted:
    """A scorer adapted to one speaker at a time: ``select(speaker)`` re-estimates the statistics
    on that speaker's clips when the speaker changes (score clips grouped by speaker)."""

    def __init__(self, checkpoint, df: pd.DataFrame, options: ScoringOptions, progress: bool):
        self.checkpoint, self.options, self.progress = checkpoint, options, progress
        self.groups = {str(s): part for s, part in df.groupby("speaker", sort=True)}
        self.speaker, self.current, self.records = None, None, []
        self.select(next(iter(self.groups)))
        first = self.current
        self.classes, self.frontend = first.classes, first.frontend
        self.window_seconds, self.hop_seconds = first.window_seconds, first.hop_seconds
        self.precision = first.precision

    def select(self, speaker) -> None:
        speaker = str(speaker)
        if speaker == self.speaker:
            return
        reuse = self.current if hasattr(self.current, "teacher") else None  # teachers: in place
        self.current, record = adapted_scorer(self.checkpoint, self.groups[speaker], self.options,
                                              progress=False, scorer=reuse)  # fmt: skip
        self.speaker = speaker
        self.records.append(record)

    def predict(self, wave, sample_rate: int | None = None) -> dict:
        return self.current.predict(wave, sample_rate)

    def record(self) -> dict:
        """The adaptations made, summed over the speakers."""
        r = self.records
        return {"on": ["each speaker's own audio"], "speakers": len(self.groups),
                **{k: sum(x[k] for x in r) for k in ("clips", "windows", "skipped")},
                "seconds": round(sum(x["seconds"] for x in r), 1), "what": r[0]["what"]}  # fmt: skip


def scorer_for(checkpoint, df, options, adapt, progress: bool) -> tuple[object, dict | None]:
    """The scorer of ``df`` for an ``adapt`` mode ("", "corpus" or True, "speaker"), and the record
    of its adaptation (or the one stored with an adapted checkpoint)."""
    mode = "corpus" if adapt is True else (adapt or "")
    if mode and mode not in MODES:
        raise ValueError(f"adapt must be one of {MODES} (or none), not {adapt!r}")
    labeled = df[df["label"].notna()]
    if mode == "speaker":
        if "speaker" not in labeled.columns:
            raise ValueError("adapt='speaker' needs a speaker column in the manifest")
        return SpeakerAdapted(checkpoint, labeled, options, progress), None
    if mode == "corpus":
        return adapted_scorer(checkpoint, labeled, options, progress)
    return load_scorer(checkpoint, options), stored_adaptation(checkpoint)


def stored_adaptation(checkpoint) -> dict | None:
    """The ``adapted`` record of a checkpoint or teacher made by ``liser adapt``, if any."""
    for name in ("checkpoint.json", "teacher.json"):
        path = Path(checkpoint) / name
        if path.is_file():
            return json.loads(path.read_text()).get("adapted")
    return None


def mark_adapted(metrics: dict, scorer, record: dict | None) -> None:
    """State an adaptation (``record``, or a per-speaker scorer's own) in the metrics and in the
    rules every report prints."""
    record = scorer.record() if isinstance(scorer, SpeakerAdapted) else record
    if record:
        metrics["adapted"] = record
        on = record["on"]
        where = {
            ("the corpus scored",): "this corpus's own audio",
            ("each speaker's own audio",): "each speaker's own audio",
        }.get(tuple(on))
        where = where or ", ".join(Path(p).name for p in on)
        metrics["rules"] += f"; statistics re-estimated on {where} (labels unused)"
