"""The results files of an experiment: Markdown, CSV and JSON tables, a rich table, PNG plots.

``results`` is ``experiment.summarize``'s dict: ``rows`` (per row: ``n_runs``, ``uar`` / ``war`` /
``macro_f1`` / ``teacher_uar`` / ``pseudo_uar`` as {"mean", "std"} in [0, 1] or None, ``paper_uar``),
``runs`` (one record per run), ``failed``, ``folds``, ``seeds``, ``versions``, ``config``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from liser.files import atomic_write

PAPER_SETTING = {
    "supervised": "supervised, 100 % labels",
    "distilled": "LiSER: 100 % labels + MSP-Face distillation, HuBERT + S2D teachers, MAE, "
    "confidence, joint",
}


def value_label(value) -> str:
    return "+".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _pct(stats: dict | None) -> str:
    return "" if stats is None else f"{100 * stats['mean']:.2f} ± {100 * stats['std']:.2f}"


def results_markdown(results: dict) -> str:
    """The results as a Markdown table (percent), a per-fold UAR table and notes."""
    corpus = results["corpus"] or "?"
    lines = [f"# {results['name']}: {corpus}, folds {', '.join(map(str, results['folds']))}, "
             f"seeds {', '.join(map(str, results['seeds']))}", "",
             "| row | runs | UAR % | WAR % | macro-F1 % | paper UAR % | teacher UAR % | soft-label UAR % | train min |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results["rows"]:
        paper = "" if r["paper_uar"] is None else f"{100 * r['paper_uar']:.2f}"
        lines.append(f"| {r['name']} | {r['n_runs']} | {_pct(r['uar'])} | {_pct(r['war'])} | "
                     f"{_pct(r['macro_f1'])} | {paper} | {_pct(r['teacher_uar'])} | "
                     f"{_pct(r['pseudo_uar'])} | {r['train_minutes']:.1f} |")  # fmt: skip
    names = sorted({n for r in results["rows"] for n in r.get("corpora", {})})
    if names:  # data.eval_manifests: other corpora scored with each run's best checkpoint
        lines += ["", "Other corpora (`data.eval_manifests`), UAR %:", "",
                  "| row | " + " | ".join(names) + " | mean |", "|---" * (len(names) + 2) + "|"]  # fmt: skip
        scored = [(r["name"], r["corpora"]) for r in results["rows"]]
        scored += [(f"its teacher: {r['name']}", r["teacher_corpora"])
                   for r in results["rows"] if r.get("teacher_corpora")]  # fmt: skip
        for name, corpora in scored:
            cells = [_pct(corpora.get(n)) for n in names]
            means = [corpora[n]["mean"] for n in names if corpora.get(n)]
            mean = f"{100 * np.mean(means):.2f}" if len(means) == len(names) else ""
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean} |")
    folds = results["folds"]
    lines += ["", "Test UAR % per fold (mean over seeds):", "",
              "| row | " + " | ".join(f"fold {f}" for f in folds) + " |", "|---" * (len(folds) + 1) + "|"]  # fmt: skip
    for r in results["rows"]:
        cells = []
        for f in folds:
            values = [
                x["uar"] for x in results["runs"] if x["slug"] == r["slug"] and x["fold"] == f
            ]
            cells.append(f"{100 * np.mean(values):.2f}" if values else "")
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    lines += ["", "Mean ± sample standard deviation over folds x seeds of the test-fold scores. "
              "Teacher UAR: the per-fold teacher on the test fold; soft-label UAR: its soft labels "
              "(windows averaged per clip) against the true labels of the clips it labeled (with "
              "`teacher.unlabeled: fold`, labels that no model saw).", "", "Rows:"]  # fmt: skip
    for r in results["rows"]:
        settings = (
            ", ".join(f"`{k}={value_label(v)}`" for k, v in r["settings"].items())
            or "the base config"
        )
        lines.append(f"- {r['name']}: {settings}")
    used = sorted({r["paper_setting"] for r in results["rows"] if r["paper_uar"] is not None})
    for key in used:
        lines.append(f"- paper ({key}): {PAPER_SETTING[key]} (LiSER, arXiv 2507.00055)")
    if results["failed"]:
        lines += ["", f"Failed runs ({len(results['failed'])}):"]
        lines += [
            f"- {f['row']} fold {f['fold']} seed {f['seed']}: {f['error']}"
            for f in results["failed"]
        ]
    return "\n".join(lines) + "\n"


def results_csv(results: dict, per_run: bool = False) -> str:
    """One line per row (scores in percent), or per run with ``per_run``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if per_run:
        keys = ["row", "slug", "fold", "seed", "uar", "war", "macro_f1", "best_epoch", "epochs",
                "train_seconds", "teacher_uar", "pseudo_uar", "ran", "run_dir"]  # fmt: skip
        writer.writerow(keys)
        writer.writerows([[r[k] for k in keys] for r in results["runs"]])
        return buffer.getvalue()
    metrics = ("uar", "war", "macro_f1", "teacher_uar", "pseudo_uar")
    writer.writerow(["row", "slug", "runs", *(f"{m}_{s}_pct" for m in metrics for s in ("mean", "std")),
                     "paper_uar_pct", "train_minutes", "settings"])  # fmt: skip
    for r in results["rows"]:
        cells = []
        for m in metrics:
            cells += (
                ["", ""]
                if r[m] is None
                else [round(100 * r[m]["mean"], 4), round(100 * r[m]["std"], 4)]
            )
        paper = "" if r["paper_uar"] is None else round(100 * r["paper_uar"], 2)
        writer.writerow([r["name"], r["slug"], r["n_runs"], *cells, paper, r["train_minutes"],
                         json.dumps(r["settings"], default=str)])  # fmt: skip
    return buffer.getvalue()


def _write(path: Path, data: str | bytes) -> None:
    atomic_write(path, data)


def write_results(out: Path, results: dict, plots: bool = True) -> None:
    """results.md / .csv / .json, runs.csv and (``plots``) uar.png, uar_folds.png, atomically."""
    _write(out / "results.json", json.dumps(results, indent=1, default=str))
    _write(out / "results.csv", results_csv(results))
    _write(out / "runs.csv", results_csv(results, per_run=True))
    _write(out / "results.md", results_markdown(results))
    if plots and results["runs"]:
        from liser.plots import fold_uar_png, row_uar_png

        _write(out / "uar.png", row_uar_png(results["rows"], results["name"]))
        _write(
            out / "uar_folds.png",
            fold_uar_png(results["rows"], results["runs"], results["folds"], results["name"]),
        )


def results_table(results: dict):
    """A rich Table of the results rows (for the terminal)."""
    from rich.table import Table

    table = Table(
        title=f"{results['name']} ({results['ran']} runs made, {results['reused']} reused)"
    )
    for column in ("row", "runs", "UAR %", "WAR %", "paper UAR %", "teacher UAR %"):
        table.add_column(column, justify="left" if column == "row" else "right")
    for r in results["rows"]:
        paper = "" if r["paper_uar"] is None else f"{100 * r['paper_uar']:.2f}"
        table.add_row(
            r["name"],
            str(r["n_runs"]),
            _pct(r["uar"]),
            _pct(r["war"]),
            paper,
            _pct(r["teacher_uar"]),
        )
    return table
