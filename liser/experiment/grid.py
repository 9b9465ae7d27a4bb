"""Grids of training runs over folds and seeds -> one results table (Markdown, CSV, JSON) and plots.

An experiment (``ExperimentConfig``) is a base ``TrainConfig`` and table rows: the explicit
``rows`` (each a dict of dotted keys, e.g. ``data.label_fraction: 0.5``, plus an optional ``name``)
crossed with the full product of ``grid`` (dotted key -> values). Every row runs on every fold and
seed; each such cell is one ``train()`` run in ``output_dir/runs/<row>/fold-K-seed-S``, the row's
folder named after its settings.

Resumable: a cell whose ``metrics.json`` exists is read back (after checking that its config is
the one asked for), never run again; an interrupted one continues through ``train``'s own resume.
A row that sets ``teacher.kind`` gets, per fold and seed, a teacher made from that fold's labeled
clips and a store of its soft labels (``experiment_teacher.py``, in ``output_dir/teachers``),
appended to its ``distill.stores``. A failing cell is reported (its traceback in
``output_dir/errors``) and the others still run.

Results (tables rewritten after every run, plots at the end): ``results.md``, ``results.csv`` (a
line per row: UAR, WAR and macro-F1 mean ± sample std over folds x seeds, in percent, the paper's
UAR where it reports the same setting), ``runs.csv`` (a line per run), ``results.json``
(everything, fractions in [0, 1], seeds and library versions), ``uar.png`` and ``uar_folds.png``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import platform
import re
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console

from liser.config import (
    ExperimentConfig,
    ExperimentTeacherConfig,
    TrainConfig,
    replace,
    save_config,
    to_dict,
)
from liser.constants import PAPER_UAR

from .results import value_label, write_results

ROW_KEYS = ("name", "paper")  # row entries that are not settings
DICT_KEYS = ("teacher.student",)  # settings whose value is itself a mapping


@dataclass(frozen=True)
class Row:
    """One row of the results table: its settings applied to the base config."""

    name: str
    slug: str  # folder name
    settings: dict  # dotted key -> value ("teacher.*" keys set the teacher section)
    teacher: ExperimentTeacherConfig
    paper: str | None  # key into PAPER_UAR's second element, or None


def _flatten(data: dict, prefix: str = "") -> dict:
    """Nested mappings to dotted keys (``{"data": {"fold": 1}}`` -> ``{"data.fold": 1}``)."""
    flat = {}
    for key, value in data.items():
        key = f"{prefix}{key}"
        if isinstance(value, dict) and key not in DICT_KEYS:
            flat.update(_flatten(value, key + "."))
        else:
            flat[key] = value
    return flat


def _slug(settings: dict) -> str:
    """A folder name from settings: ``label_fraction-0.5_kind-student`` (the last part of each
    key, the whole key where two share it); long names end with a hash instead."""
    if not settings:
        return "base"
    last = [k.rsplit(".", 1)[-1] for k in settings]
    parts = []
    for key, short in zip(settings, last, strict=True):
        value = settings[key]
        if isinstance(value, (list, tuple)):
            value = "+".join(map(str, value)) or "none"
        elif isinstance(value, str) and "/" in value:  # a path: its last part
            value = Path(value.rstrip("/")).name
        elif isinstance(value, dict):
            value = hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:6]
        parts.append(f"{key if last.count(short) > 1 else short}-{value}")
    slug = re.sub(r"[^A-Za-z0-9.+=-]+", "_", "_".join(parts)).strip("_") or "base"
    if len(slug) > 80:
        slug = slug[:60] + "-" + hashlib.sha1(slug.encode()).hexdigest()[:8]
    return slug


def expand_rows(config: ExperimentConfig) -> list[Row]:
    """The table's rows: each of ``config.rows`` (or one empty row) x the product of ``grid``."""
    grid = _flatten(dict(config.grid))
    for key, values in grid.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ValueError(f"grid.{key} must be a non-empty list of values, got {values!r}")
    combos = [dict(zip(grid, c, strict=True)) for c in itertools.product(*grid.values())]
    rows, slugs = [], set()
    for explicit in config.rows or ({},):
        explicit = _flatten(dict(explicit))
        for combo in combos:
            settings = {k: v for k, v in explicit.items() if k not in ROW_KEYS} | combo
            try:  # unknown keys fail here, before any run
                teacher = _teacher(config.teacher, settings)
                apply_settings(config.base, settings)
            except ValueError as error:
                where = explicit.get("name") or json.dumps(settings, default=str)
                raise type(error)(f"row '{where}': {error}") from error
            grid_label = ", ".join(
                f"{k.rsplit('.', 1)[-1]}={value_label(v)}" for k, v in combo.items()
            )
            name = ", ".join(filter(None, [str(explicit.get("name", "")), grid_label])) or "base"
            slug = _slug(settings)
            if slug in slugs:
                raise ValueError(
                    f"two rows have the same settings ({slug}); give them different settings"
                )
            slugs.add(slug)
            if "paper" in explicit:  # "" = no paper number for this row
                paper = explicit["paper"] or None
            else:
                paper = paper_setting(apply_settings(config.base, settings), bool(teacher.kind))
            rows.append(Row(name, slug, settings, teacher, paper))
    return rows


def _teacher(base: ExperimentTeacherConfig, settings: dict) -> ExperimentTeacherConfig:
    changes = {
        k.removeprefix("teacher."): v for k, v in settings.items() if k.startswith("teacher.")
    }
    try:
        return replace(base, **changes)
    except KeyError as error:
        raise ValueError(f"unknown setting teacher.{error.args[0]} in a row or the grid") from error


def apply_settings(base: TrainConfig, settings: dict, **more) -> TrainConfig:
    """``base`` with a row's settings (not its ``teacher.*`` ones) and ``more`` applied."""
    changes = {k: v for k, v in settings.items() if not k.startswith("teacher.")} | more
    try:
        return replace(base, **changes)
    except KeyError as error:
        raise ValueError(f"unknown setting '{error.args[0]}' in a row or the grid") from error


def paper_setting(config: TrainConfig, has_teacher: bool) -> str | None:
    """ "supervised" or "distilled" where a run's settings are those of the paper's number, else None:
    all labels, and either no distillation or MAE with confidence weights, joint, both teachers."""
    if config.data.label_fraction != 1.0:
        return None
    if not (config.distill.stores or has_teacher):
        return "supervised"
    d = config.distill
    if (d.loss, d.weighting, d.schedule, d.teachers) == ("mae", "confidence", "joint", "both"):
        return "distilled"
    return None


# --------------------------------------------------------------------------------------------
# Running


def run_experiment(
    config: ExperimentConfig,
    progress: bool = True,
    only: tuple[str, ...] = (),
    teachers_only: bool = False,
) -> dict:
    """Run (or resume) every cell of the experiment and write its tables and plots; return the
    results (``results.json``'s content: ``rows``, ``runs``, ``failed``, ``ran``, ``reused``, ...).

    ``only``: run just the rows whose name contains one of these strings (the others' finished runs
    are still read into the tables). ``teachers_only``: make those rows' per-fold teachers and
    stores, train no student and write no table (e.g. next to a run of the other rows)."""
    from liser.manifest import read_manifest
    from liser.train import check_same_run, train

    from .teacher import PREPARED, prepare_teacher

    started, clock = time.strftime("%Y-%m-%dT%H:%M:%S"), time.perf_counter()
    out = Path(config.output_dir).expanduser()
    rows = expand_rows(config)
    chosen = {r.slug for r in rows if not only or any(word in r.name for word in only)}
    if not chosen:
        raise ValueError(f"no row name contains {' or '.join(only)}: {[r.name for r in rows]}")
    for row in rows:
        if row.slug in chosen:
            check_inputs(row, config.base)
    if not config.base.data.manifest:
        raise ValueError("base.data.manifest is empty: give the labeled manifest of the experiment")
    df = read_manifest(config.base.data.manifest)
    corpus = config.corpus or _corpus(df)
    out.mkdir(parents=True, exist_ok=True)
    if not teachers_only:
        save_config(config, out / "experiment.yaml")
    console = Console(stderr=True, quiet=not progress)
    # fold by fold: every row's score on the first folds is there before the last fold starts
    cells = [(r, f, s) for f in config.folds for s in config.seeds for r in rows]
    cells = [(*c, *_cell(config, *c, out)) for c in cells]
    cells.sort(key=lambda c: not (c[4] / "metrics.json").is_file())  # finished ones read first
    runs, failed, teacher_failed, durations, teachers = [], [], {}, [], []
    for i, (row, fold, seed, cell, run_dir, prep) in enumerate(cells, 1):
        finished = (run_dir / "metrics.json").is_file()
        if (row.slug not in chosen and not finished) or (teachers_only and prep is None):
            continue
        where = f"[{i}/{len(cells)}] {row.name} · fold {fold} · seed {seed}"
        tick = time.perf_counter()
        try:
            if teachers_only:
                teachers.append(prepare_teacher(row.teacher, cell, df, prep, progress))
                continue
            if finished:
                metrics = json.loads((run_dir / "metrics.json").read_text())
                check_same_run(metrics["config"], cell, run_dir)
            else:
                console.rule(where + _eta(durations, cells[i - 1 :], chosen))
                if prep is not None:
                    if prep in teacher_failed:
                        raise RuntimeError(f"its teacher failed: {teacher_failed[prep]}")
                    try:
                        prepare_teacher(row.teacher, cell, df, prep, progress)
                    except Exception as error:
                        teacher_failed[prep] = f"{type(error).__name__}: {error}"
                        raise
                metrics = train(cell, progress=progress)
                durations.append(time.perf_counter() - tick)
        except KeyboardInterrupt:
            raise
        except Exception as error:  # noqa: BLE001 - one failing cell must not stop the grid
            message = f"{type(error).__name__}: {error}"
            console.print(f"[red]failed[/] {where}: {message}")
            report = out / "errors" / f"{row.slug}__fold-{fold}-seed-{seed}.txt"
            report.parent.mkdir(exist_ok=True)
            report.write_text(traceback.format_exc())
            failed.append({"row": row.name, "fold": fold, "seed": seed, "error": message,
                           "traceback": str(report)})  # fmt: skip
            continue
        done = prep is not None and (prep / PREPARED).is_file()
        info = json.loads((prep / PREPARED).read_text()) if done else {}
        runs.append(_run_record(row, fold, seed, metrics, info, ran=not finished, run_dir=run_dir))
        if not finished:
            test = metrics["test"]
            console.print(f"{where}: UAR {100 * test['uar']:.2f} %  WAR {100 * test['war']:.2f} %")
        results = summarize(
            config, rows, runs, failed, corpus, started, time.perf_counter() - clock
        )
        write_results(out, results, plots=False)  # tables after every run, plots at the end
    if teachers_only:
        return {"teachers": teachers, "failed": failed}
    results = summarize(config, rows, runs, failed, corpus, started, time.perf_counter() - clock)
    write_results(out, results, config.plots)
    return results


def _cell(config: ExperimentConfig, row: Row, fold: int, seed: int, out: Path):
    """The TrainConfig of one run, its folder, and the folder of its per-fold teacher (or None)."""
    from .teacher import teacher_identity, teacher_stores

    run_dir = out / "runs" / row.slug / f"fold-{fold}-seed-{seed}"
    cell = apply_settings(config.base, row.settings, **{"data.fold": fold, "seed": seed})
    prep = None
    if row.teacher.kind:
        ident = json.dumps(teacher_identity(row.teacher, cell), sort_keys=True, default=str)
        key = hashlib.sha1(ident.encode()).hexdigest()[:10]
        prep = out / "teachers" / f"{row.teacher.kind}-{key}" / f"fold-{fold}-seed-{seed}"
        stores = [
            *cell.distill.stores,
            *(str(p.absolute()) for p in teacher_stores(row.teacher, prep)),
        ]
        cell = replace(cell, **{"distill.stores": stores})
    name = f"{row.slug}/fold-{fold}-seed-{seed}"  # not the experiment's: configs may share runs
    return replace(cell, output_dir=str(run_dir), name=name), run_dir, prep


def check_inputs(row: Row, base: TrainConfig) -> None:
    """Fail before any run when a row names a store or unlabeled clips that do not exist."""
    from .teacher import check_teacher

    if row.teacher.kind:
        check_teacher(row.teacher)
        for unlabeled in row.teacher.unlabeled:
            if unlabeled not in ("fold", "train") and not Path(unlabeled).expanduser().exists():
                raise FileNotFoundError(
                    f"row '{row.name}': teacher.unlabeled {unlabeled} does not exist"
                )
    for store in apply_settings(base, row.settings).distill.stores:
        if not (Path(store).expanduser() / "store.json").is_file():
            raise FileNotFoundError(
                f"row '{row.name}': distill.stores: {store} is not a soft-label store (no "
                "store.json); make it with `liser label` or fix the path"
            )


def _corpus(df) -> str:
    corpora = set(df["corpus"].dropna().tolist())
    return next(iter(corpora)) if len(corpora) == 1 else ""


def _eta(durations: list[float], todo: list, chosen: set) -> str:
    left = sum(c[0].slug in chosen and not (c[4] / "metrics.json").is_file() for c in todo)
    if not durations:
        return f" ({left} runs to go)"
    return f" ({left} runs to go, about {np.mean(durations) * left / 60:.0f} min)"


def _run_record(
    row: Row, fold: int, seed: int, metrics: dict, info: dict, ran: bool, run_dir: Path
) -> dict:
    test = metrics["test"]
    return {"row": row.name, "slug": row.slug, "fold": fold, "seed": seed, "uar": test["uar"],
            "war": test["war"], "macro_f1": test["macro_f1"], "best_epoch": metrics.get("best_epoch"),
            "epochs": metrics.get("epochs"), "train_seconds": metrics.get("train_seconds"),
            "teacher_uar": info.get("teacher_uar"), "pseudo_uar": info.get("pseudo_uar"),
            "teacher_seconds": info.get("seconds"), "ran": ran, "run_dir": str(run_dir),
            "corpora": _corpus_uars(metrics.get("corpora")),
            "teacher_corpora": _corpus_uars(info.get("teacher_corpora"))}  # fmt: skip


def _corpus_uars(scored: dict | None) -> dict:
    """{corpus: UAR} of a ``score_other_corpora`` result (or {})."""
    return {name: c["uar"] for name, c in ((scored or {}).get("corpora") or {}).items()}


# --------------------------------------------------------------------------------------------
# Tables


def _stats(values) -> dict | None:
    values = np.array([v for v in values if v is not None], dtype=np.float64)
    if values.size == 0:
        return None
    return {
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
    }


def summarize(config: ExperimentConfig, rows: list[Row], runs: list[dict], failed: list[dict],
              corpus: str, started: str, seconds: float) -> dict:  # fmt: skip
    """Per row: number of runs and mean ± sample std (ddof 1) over folds x seeds of the test
    scores, the teachers' scores, and the paper's UAR (in [0, 1]) where it has the same setting."""
    from liser.checkpoint import library_versions

    table = []
    for row in rows:
        mine = [r for r in runs if r["slug"] == row.slug]
        paper = PAPER_UAR.get((corpus, row.paper)) if row.paper else None
        table.append({
            "name": row.name, "slug": row.slug, "settings": row.settings, "n_runs": len(mine),
            **{k: _stats(r[k] for r in mine) for k in ("uar", "war", "macro_f1", "teacher_uar", "pseudo_uar")},
            "paper_uar": None if paper is None else paper / 100, "paper_setting": row.paper,
            "train_minutes": round(sum(r["train_seconds"] or 0 for r in mine) / 60, 2),
            "teacher_minutes": round(sum(r["teacher_seconds"] or 0 for r in mine) / 60, 2),
            **{key: {name: _stats(r.get(key, {}).get(name) for r in mine)
                     for name in sorted({n for r in mine for n in r.get(key, {})})}
               for key in ("corpora", "teacher_corpora")},
        })  # fmt: skip
    versions = library_versions()
    for module in ("pandas", "pyarrow", "matplotlib", "transformers"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            pass
    return {"name": config.name, "corpus": corpus, "folds": list(config.folds), "seeds": list(config.seeds),
            "rows": table, "runs": runs, "failed": failed, "ran": sum(r["ran"] for r in runs),
            "reused": sum(not r["ran"] for r in runs), "started": started, "seconds": round(seconds, 1),
            "versions": versions, "machine": platform.platform(), "config": to_dict(config)}  # fmt: skip
