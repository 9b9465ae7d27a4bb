"""Predictions of many files written as json, jsonl or csv: what ``liser predict`` does."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from liser.config import FrontEndConfig
from liser.files import atomic_write

from .predictor import FORMATS, ScoringOptions, load


def format_predictions(results: list[dict], format: str, classes: Iterable[str]) -> str:
    """Results as text: "json" (a list), "jsonl" (a file a line) or "csv" (a row per window and
    per file, ``level`` = file | window | error)."""
    if format == "json":
        return json.dumps(results, indent=2) + "\n"
    if format == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in results)
    if format != "csv":
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    classes = list(classes)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["path", "level", "start", "end", "label", *classes, "error"])
    for r in results:
        if "error" in r:
            writer.writerow([r["path"], "error", "", "", "", *[""] * len(classes), r["error"]])
            continue
        rows = [("file", 0.0, r["duration"], r)] + [
            ("window", w["start"], w["end"], w) for w in r["windows"]
        ]
        for level, start, end, item in rows:
            probs = [f"{item['probs'][c]:.6f}" if item["probs"] else "" for c in classes]
            writer.writerow(
                [r["path"], level, f"{start:.3f}", f"{end:.3f}", item["label"], *probs, ""]
            )
    return out.getvalue()


def predict(
    checkpoint: str | os.PathLike,
    paths: Iterable[str | os.PathLike],
    output: str | os.PathLike | None = None,
    format: str | None = None,
    options: ScoringOptions = ScoringOptions(),
    frontend: FrontEndConfig | None = None,
    progress: bool = True,
) -> list[dict]:
    """``liser predict``: predict files and folders, write them to ``output`` (atomically) or
    stdout as json/jsonl/csv (default: from the output's extension, else json), and report the
    files that could not be used on stderr. Returns the results."""
    from rich.console import Console
    from rich.markup import escape

    format = format or (Path(output).suffix.lstrip(".").lower() if output else "") or "json"
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    paths = list(paths)
    o = options
    predictor = load(checkpoint, o.device, o.window_seconds, o.hop_seconds, o.batch_size, frontend,
                     o.vad, o.min_speech)  # fmt: skip
    results = predictor.predict_files(paths, progress=progress)
    text = format_predictions(results, format, predictor.classes)
    if output is None:
        sys.stdout.write(text)
    else:
        atomic_write(output, text)
    errors = [r for r in results if "error" in r]
    console = Console(stderr=True)
    for r in errors:
        console.print(f"[yellow]skipped[/] {escape(r['path'])}: {escape(r['error'])}")
    console.print(f"{len(results) - len(errors)} file(s) predicted, {len(errors)} skipped")
    for r in results:
        if r.get("no_speech_windows"):
            shown = (
                "no speech at all"
                if r["label"] == "no speech"
                else (f"{r['no_speech_windows']} of {len(r['windows'])} window(s) without speech")
            )
            console.print(f"[cyan]speech[/] {escape(r['path'])}: {shown}")  # fmt: skip
    if not results:
        raise ValueError(
            f"nothing to predict: no audio or video file in {', '.join(map(str, paths))}"
        )
    return results
