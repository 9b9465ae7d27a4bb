"""Files of any length -> per-window and per-file class probabilities of a trained student.

A file is decoded in bounded memory (``audio.stream_audio``) and covered by windows of
``window_seconds`` every ``hop_seconds`` (``audio.window_starts``: one more window aligned to the
end covers a tail of at least half a hop; a clip shorter than a window gets one padded window).
Windows are scored in batches; the file's probabilities are the mean of its windows'.

Results are plain data::

    {"path": "a.wav", "duration": 10.0, "label": "happy", "probs": {"angry": 0.01, ...},
     "windows": [{"start": 0.0, "end": 3.0, "label": "happy", "probs": {...}}, ...]}

and ``{"path": ..., "error": "..."}`` for a file that cannot be used.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from liser.audio import SILENT_PEAK, AudioError, stream_audio
from liser.checkpoint import load_checkpoint, logmel_for
from liser.config import FrontEndConfig, to_dict
from liser.constants import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS
from liser.devices import resolve_device
from liser.media import list_media
from liser.student import Student, fuse_for_inference
from liser.windows import WindowCutter, WindowSpec, fit_window

FORMATS = ("json", "jsonl", "csv")
NO_SPEECH = "no speech"  # the label of a window (or file) the VAD found no speech in
MIN_SECONDS = 0.1  # shorter files are reported as too short (as audio.load_audio does)
MIN_HOP_SECONDS = 0.01  # finer hops only multiply the windows of a file
MAX_WINDOW_SECONDS = 60.0  # longer windows are far from what a student was trained on


@dataclass(frozen=True)
class ScoringOptions:
    """How a model is run on files (``liser predict``, ``liser evaluate``)."""

    window_seconds: float | None = None  # None: the front end's window
    hop_seconds: float | None = None  # None: the front end's (constants.WINDOW_HOP_SECONDS)
    batch_size: int = 32  # windows per forward pass
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1"
    vad: str = ""  # "" | "silero" | an ONNX file: windows without speech are marked "no speech"
    min_speech: float = 0.2  # share of a window's 32 ms frames; below: no speech


class FrontEndMismatch(ValueError):
    """The caller's front-end config differs from the one the checkpoint was trained with."""


def check_frontend(meta: dict, frontend: FrontEndConfig | None, where: str = "checkpoint") -> None:
    """Raise FrontEndMismatch naming every field where ``frontend`` differs from the checkpoint's."""
    if frontend is None:
        return
    stored, given = meta["frontend"], to_dict(frontend)
    diff = [
        f"{k}: {stored.get(k)!r} != {given.get(k)!r}" for k in given if stored.get(k) != given[k]
    ]
    if diff:
        raise FrontEndMismatch(
            f"{where} was trained with another front end ({'; '.join(diff)}; checkpoint's value "
            f"first); its features would not match. Use the checkpoint's own front end."
        )


def iter_windows(
    chunks: Iterable[np.ndarray], spec: WindowSpec, rate: int
) -> Iterator[tuple[int, np.ndarray]]:
    """(start sample, samples) of the windows ``spec`` cuts from the concatenation of ``chunks``
    (``windows.WindowCutter``: at most one chunk plus one window in memory). A clip shorter than a
    window yields itself once (unpadded)."""
    cutter = WindowCutter(spec, rate)
    for chunk in chunks:
        for _, start, n_real, wave in cutter.feed(chunk):
            yield start, wave[:n_real]
    for _, start, n_real, wave in cutter.finish():
        yield start, wave[:n_real]


def collect_paths(paths: Iterable[str | os.PathLike], skipped: list | None = None) -> list[Path]:
    """Files as given, and the audio/video files under folders (recursively, sorted, symlinks
    followed, each real folder once over all ``paths``). A file reached twice is kept once.
    Appended to ``skipped`` as (path, reason): unreadable folders, symlink loops, and a folder
    given explicitly that holds no audio or video file."""
    suffixes = tuple(set(AUDIO_EXTENSIONS) | set(VIDEO_EXTENSIONS))
    skipped = [] if skipped is None else skipped
    files: list[Path] = []
    folders: set = set()
    for path in map(Path, paths):
        if path.is_dir():
            found = list_media(path, suffixes, errors=skipped, seen=folders)
            if not found:
                skipped.append((path, "a folder with no audio or video file in it"))
            files.extend(found)
        else:
            files.append(path)
    unique, real = [], set()
    for path in files:
        key = os.path.realpath(path)
        if key not in real:
            real.add(key)
            unique.append(path)
    return unique


def check_windows(
    window_seconds: float | None, hop_seconds: float | None, frontend: FrontEndConfig
) -> None:
    """Refuse window and hop lengths that make no sense (ValueError naming the option); None is
    the front end's default (``frontend.windows()``)."""
    default = frontend.windows()
    window_seconds = default.window_seconds if window_seconds is None else window_seconds
    hop_seconds = default.hop_seconds if hop_seconds is None else hop_seconds
    for name, value in (("window", window_seconds), ("hop", hop_seconds)):
        if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
            raise ValueError(f"--{name} must be a positive number of seconds, got {value}")
    if window_seconds > MAX_WINDOW_SECONDS:
        raise ValueError(
            f"--window {window_seconds:g} s is longer than {MAX_WINDOW_SECONDS:g} s; the student "
            f"was trained on {frontend.window_seconds:g} s windows"
        )
    if window_seconds <= frontend.n_fft / 2 / frontend.sample_rate:
        raise ValueError(f"--window {window_seconds:g} s is too short for the front end")
    if hop_seconds < MIN_HOP_SECONDS:
        raise ValueError(
            f"--hop {hop_seconds:g} s is shorter than {MIN_HOP_SECONDS:g} s (a 2-hour file "
            f"would need {7200 / hop_seconds:.0f} windows)"
        )


class Predictor:
    """A student ready to predict: ``.classes``, ``.predict(wave, rate)``, ``.predict_file(path)``.

    window_seconds / hop_seconds : the windows (default: ``frontend.windows()``, as in training)
    batch_size : windows scored per forward pass
    """

    def __init__(
        self,
        model: Student,
        meta: dict,
        device: str | torch.device = "cpu",
        window_seconds: float | None = None,
        hop_seconds: float | None = None,
        batch_size: int = 32,
        vad: str = "",
        min_speech: float = 0.2,
    ):
        from liser.vad import load_speech_detector

        self.meta = meta
        self.vad = load_speech_detector(vad)
        if not 0.0 <= min_speech <= 1.0:
            raise ValueError(f"min_speech must be in [0, 1], got {min_speech}")
        self.min_speech = float(min_speech)
        self.precision = "fp32"  # students predict in fp32 (recorded in evaluation reports)
        self.classes: tuple[str, ...] = tuple(meta["classes"])
        self.frontend: FrontEndConfig = model.frontend
        self.device = resolve_device(device)
        self.model = fuse_for_inference(model).to(self.device)
        self.logmel = logmel_for(meta, self.device)
        rate = self.frontend.sample_rate
        check_windows(window_seconds, hop_seconds, self.frontend)
        self.spec = self.frontend.windows(hop_seconds, window_seconds)
        self.window_seconds, self.hop_seconds = self.spec.window_seconds, self.spec.hop_seconds
        self.window = self.spec.samples(rate)[0]
        if isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    @torch.inference_mode()
    def window_probs(self, waves: np.ndarray) -> np.ndarray:
        """waves : shape = (B, window) float32 at the front end's rate -> probs (B, n_classes)."""
        x = torch.from_numpy(np.ascontiguousarray(waves, dtype=np.float32)).to(self.device)
        logits = self.model(self.logmel(x))["logits"]
        probs = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        if not np.isfinite(probs).all():
            raise ValueError("the model's outputs are NaN or Inf: this checkpoint is unusable")
        return probs

    def _score(self, chunks: Iterable[np.ndarray]) -> tuple[list, np.ndarray, int, list]:
        """Windows of a stream of chunks -> ([(start, end) samples], probs (W, C), n samples,
        speech fraction per window (empty without a VAD))."""
        spans, probs, batch, speech = [], [], [], []
        n = 0

        def counted():
            nonlocal n
            for chunk in chunks:
                n += len(chunk)
                yield chunk

        for start, samples in iter_windows(counted(), self.spec, self.frontend.sample_rate):
            spans.append((start, start + len(samples)))
            if self.vad is not None:
                speech.append(self.vad.fraction(samples))
            batch.append(fit_window(samples, self.window, self.frontend.pad))
            if len(batch) == self.batch_size:
                probs.append(self.window_probs(np.stack(batch)))
                batch = []
        if batch:
            probs.append(self.window_probs(np.stack(batch)))
        probs = np.concatenate(probs) if probs else np.zeros((0, len(self.classes)))
        return spans, probs, n, speech

    def _result(self, spans, probs: np.ndarray, n: int, speech: list) -> dict:
        """With a VAD, windows under ``min_speech`` are ``"no speech"`` (probs None) and the
        file's probabilities are the mean of its speech windows (``"no speech"`` if none)."""
        rate = self.frontend.sample_rate
        talk = np.array([s >= self.min_speech for s in speech] if speech else [True] * len(spans))
        windows = []
        for i, ((start, end), p) in enumerate(zip(spans, probs, strict=True)):
            item = {"start": start / rate, "end": end / rate, "label": NO_SPEECH, "probs": None}
            if talk[i]:
                item.update(label=self.classes[int(p.argmax())], probs=self._named(p))
            if speech:
                item["speech"] = round(speech[i], 4)
            windows.append(item)
        result = {"duration": n / rate, "label": NO_SPEECH, "probs": None, "windows": windows}
        if talk.any():
            mean = probs[talk].mean(axis=0)
            result.update(label=self.classes[int(mean.argmax())], probs=self._named(mean))
        if speech:
            result.update(speech_windows=int(talk.sum()), no_speech_windows=int((~talk).sum()))
        return result

    def _named(self, probs: np.ndarray) -> dict[str, float]:
        return {name: round(float(p), 6) for name, p in zip(self.classes, probs, strict=True)}

    def predict(self, waveform, sample_rate: int | None = None) -> dict:
        """A waveform (N,) or (N, channels) / (channels, N), float or signed-integer PCM, numpy or torch,
        at ``sample_rate`` (default: the front end's) -> {"duration", "label", "probs", "windows"}."""
        if isinstance(waveform, torch.Tensor):
            waveform = waveform.detach().cpu().numpy()
        wave = np.asarray(waveform)
        if np.issubdtype(wave.dtype, np.signedinteger):  # PCM: scale to [-1, 1)
            wave = wave / -float(np.iinfo(wave.dtype).min)
        elif not np.issubdtype(wave.dtype, np.floating):
            raise ValueError(f"expected float or signed integer samples, got {wave.dtype}")
        wave = wave.astype(np.float32, copy=False)
        if wave.ndim == 2:
            wave = wave.mean(axis=int(np.argmin(wave.shape)))
        if wave.ndim != 1 or wave.size == 0:
            raise ValueError(f"expected a non-empty mono or multi-channel wave, got {wave.shape}")
        if not np.isfinite(wave).all():
            raise ValueError("the waveform contains NaN or Inf samples")
        rate = self.frontend.sample_rate
        if sample_rate is not None and sample_rate != rate:
            import soxr

            wave = soxr.resample(wave, sample_rate, rate, quality="HQ").astype(np.float32)
        return self._result(*self._score([wave]))

    def predict_file(self, path: str | os.PathLike, chunk_seconds: float = 60.0) -> dict:
        """Any audio or video file, any length, in bounded memory -> {"path", ...predict()}.

        Raises audio.AudioError for a file that cannot be used (missing, undecodable, silent,
        shorter than 0.1 s)."""
        peak = 0.0

        def chunks():
            nonlocal peak
            for chunk in stream_audio(path, self.frontend.sample_rate, chunk_seconds):
                peak = max(peak, float(np.abs(chunk).max()))
                yield chunk

        spans, probs, n, speech = self._score(chunks())
        rate = self.frontend.sample_rate
        if n < MIN_SECONDS * rate:
            raise AudioError(path, f"too short: {n / rate:.3f} s < {MIN_SECONDS:.3f} s minimum")
        if peak < SILENT_PEAK:
            raise AudioError(path, "all silent (digital silence: every sample is ~0)")
        return {"path": str(path), **self._result(spans, probs, n, speech)}

    def predict_files(
        self, paths: Iterable[str | os.PathLike], progress: bool = True
    ) -> list[dict]:
        """Files and folders -> one result per file; a file that cannot be used gets
        {"path", "error"} and the others go on. Progress (rich) on stderr."""
        from rich.console import Console
        from rich.progress import Progress

        skipped: list = []
        files = collect_paths(paths, skipped)
        results = [{"path": str(path), "error": reason} for path, reason in skipped]
        with Progress(console=Console(stderr=True), disable=not progress, transient=True) as bar:
            task = bar.add_task("predicting", total=len(files))
            for path in files:
                bar.update(task, description=f"predicting {path.name}")
                try:
                    results.append(self.predict_file(path))
                except AudioError as err:
                    results.append({"path": str(path), "error": err.reason})
                bar.advance(task)
        return results


def load(
    checkpoint: str | os.PathLike,
    device: str | torch.device = "auto",
    window_seconds: float | None = None,
    hop_seconds: float | None = None,
    batch_size: int = 32,
    frontend: FrontEndConfig | None = None,
    vad: str = "",
    min_speech: float = 0.2,
) -> Predictor:
    """Load a student checkpoint for prediction. ``frontend``: the caller's front end, checked
    against the checkpoint's (FrontEndMismatch when they differ). An audio-teacher folder is a
    ValueError: teachers are scored with ``liser evaluate`` (``evaluate.scorers.load_scorer``)."""
    if (Path(checkpoint) / "teacher.json").is_file():
        raise ValueError(
            f"{checkpoint} is an audio-teacher folder (teacher.json), not a student checkpoint: "
            "score it with `liser evaluate`, or load it with liser.teachers.load_audio_teacher"
        )
    model, meta = load_checkpoint(checkpoint)
    check_frontend(meta, frontend, str(checkpoint))
    return Predictor(model, meta, device, window_seconds, hop_seconds, batch_size, vad, min_speech)


def predict_waveform(
    model: Student,
    meta: dict,
    wave,
    sample_rate: int,
    window_seconds: float | None = None,
    hop_seconds: float | None = None,
    batch_size: int = 32,
) -> dict:
    """One waveform through a loaded student (builds a Predictor: for many calls, keep one)."""
    device = next(model.parameters()).device
    return Predictor(model, meta, device, window_seconds, hop_seconds, batch_size).predict(
        wave, sample_rate
    )
