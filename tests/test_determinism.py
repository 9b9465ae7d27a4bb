"""Reproducibility (issue 8): the same seed and config give the same run on CPU, and every run's
output records its seed and the library versions."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from liser import __version__
from liser.config import ExperimentConfig, TrainConfig, from_dict
from liser.manifest import write_manifest
from liser.testing import emotion_tones, tiny_train_config

TIMING = {"seconds", "train_seconds", "created", "checkpoint", "output_dir"}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    df = emotion_tones(root / "wav", n_speakers=4, clips_per_class=3, n_classes=2, seed=3)
    return write_manifest(df, root / "m.csv")


def without_timing(value):
    """A result with wall-clock times and output paths removed (everything else must match)."""
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def run(manifest, out: Path, **changes) -> dict:
    from liser.train import train

    return train(
        from_dict(TrainConfig, tiny_train_config(manifest, out, **changes)), progress=False
    )


def test_same_seed_and_config_give_the_same_run(manifest, tmp_path):
    first = run(manifest, tmp_path / "a")
    second = run(manifest, tmp_path / "b")
    assert len(first["history"]) == 3 and first["history"][0]["loss"] > 0
    assert without_timing(first) == without_timing(second)
    a, b = weights(tmp_path / "a" / "best"), weights(tmp_path / "b" / "best")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "a/test/predictions.csv").read_text() == (
        tmp_path / "b/test/predictions.csv"
    ).read_text()
    # reading clips with two threads changes nothing
    threads = run(manifest, tmp_path / "c", **{"data.num_workers": 2})
    assert without_timing(threads)["history"] == without_timing(first)["history"]
    c = weights(tmp_path / "c" / "best")
    assert all(torch.equal(a[k], c[k]) for k in a)
    # ... while another seed changes the run
    other = run(manifest, tmp_path / "d", seed=1)
    d = weights(tmp_path / "d" / "best")
    assert any(not torch.equal(a[k], d[k]) for k in a)
    assert [h["loss"] for h in other["history"]] != [h["loss"] for h in first["history"]]


def expected_versions() -> dict:
    return {"liser": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}  # fmt: skip


def test_checkpoints_record_seed_config_and_versions(manifest, tmp_path):
    run(manifest, tmp_path / "run", seed=7)
    for name in ("best", "last"):
        meta = json.loads((tmp_path / "run" / name / "checkpoint.json").read_text())
        assert meta["seed"] == 7 and meta["config"]["seed"] == 7, name
        assert expected_versions().items() <= meta["versions"].items(), meta["versions"]
        assert meta["frontend"]["n_mels"] == 32 and meta["classes"] == ["class0", "class1"]


@pytest.fixture(scope="module")
def cv_run(manifest, tmp_path_factory):
    from liser.train import cv

    out = tmp_path_factory.mktemp("cv") / "run"
    cv(
        from_dict(TrainConfig, tiny_train_config(manifest, out, seed=5, **{"optim.epochs": 1})),
        progress=False,
    )
    return out


def test_metrics_json_records_seed_and_versions(cv_run):
    metrics = json.loads((cv_run / "fold-1" / "metrics.json").read_text())
    assert metrics["config"]["seed"] == 5
    assert metrics["seed"] == 5
    assert expected_versions().items() <= metrics["versions"].items()


def test_cv_json_records_seed_and_versions(cv_run):
    summary = json.loads((cv_run / "cv.json").read_text())
    assert summary["config"]["seed"] == 5 and len(summary["folds"]) == 2
    assert summary["seed"] == 5
    assert expected_versions().items() <= summary["versions"].items()


def test_experiment_results_record_seeds_and_versions(manifest, tmp_path):
    from liser.experiment import run_experiment

    base = tiny_train_config(manifest, tmp_path / "unused", **{"optim.epochs": 1})
    config = from_dict(ExperimentConfig, {"name": "det", "output_dir": str(tmp_path / "exp"),
                                          "base": base, "folds": [1], "seeds": [4], "plots": False})  # fmt: skip
    results = run_experiment(config, progress=False)
    saved = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert saved["config"]["seeds"] == [4] and [r["seed"] for r in saved["runs"]] == [4]
    assert expected_versions().items() <= saved["versions"].items(), saved.get("versions")
    assert results["runs"][0]["uar"] == saved["runs"][0]["uar"]
