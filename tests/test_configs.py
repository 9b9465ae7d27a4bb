"""The YAML configs shipped under configs/ load, and every experiment row is a valid run config."""

from pathlib import Path

import pytest
import yaml

from liser.config import ExperimentConfig, TrainConfig, load_config, to_dict
from liser.experiment import apply_settings, expand_rows

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TRAIN_CONFIGS = sorted(CONFIGS.glob("*.yaml"))
EXPERIMENT_CONFIGS = sorted((CONFIGS / "experiments").glob("*.yaml"))


def flat(data: dict, prefix: str = "") -> dict:
    """{"optim.lr": 0.002, ...} of a nested dict (lists as tuples, as configs hold them)."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return out


def test_the_repository_ships_configs():
    names = {p.name for p in TRAIN_CONFIGS}
    assert "ravdess_supervised.yaml" in names
    assert {"paper_ravdess.yaml", "paper_cremad.yaml"} <= {p.name for p in EXPERIMENT_CONFIGS}


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.name)
def test_every_key_of_a_training_config_is_used_and_overrides_change_only_themselves(path):
    written = flat(yaml.safe_load(path.read_text()))
    config = load_config(TrainConfig, path)
    loaded = flat(to_dict(config))
    for key, value in written.items():  # nothing in the file is ignored or changed on the way
        assert (
            loaded[key] == pytest.approx(value)
            if isinstance(value, float)
            else loaded[key] == value
        ), key
    changed = flat(
        to_dict(load_config(TrainConfig, path, ["data.manifest=x.parquet", "data.fold=2"]))
    )
    assert {k for k in loaded if loaded[k] != changed[k]} <= {"data.manifest", "data.fold"}
    assert changed["data.manifest"] == "x.parquet" and changed["data.fold"] == 2


def test_the_shipped_ravdess_recipe_is_the_measured_one():
    """docs/results.md: 100 epochs at batch 16, global normalisation, attention pooling, all 20
    training actors (no validation split), the one-cycle schedule without early stopping."""
    config = load_config(TrainConfig, CONFIGS / "ravdess_supervised.yaml")
    assert (config.optim.epochs, config.optim.batch_size, config.optim.patience) == (100, 16, 0)
    assert config.frontend.normalize == "global" and config.student.temporal_pooling == "attention"
    assert config.data.val_fraction == 0.0 and config.data.folds == "ravdess"


@pytest.mark.parametrize("path", EXPERIMENT_CONFIGS, ids=lambda p: p.name)
def test_experiment_config_expands_into_distinct_valid_rows(path):
    config = load_config(ExperimentConfig, path)
    rows = expand_rows(config)  # unknown keys in a row or the grid raise here
    assert rows and len({r.slug for r in rows}) == len(rows)
    for row in rows:
        run = flat(to_dict(apply_settings(config.base, row.settings)))
        for key, value in row.settings.items():  # each row's settings reach its run config
            if not key.startswith("teacher."):
                want = tuple(value) if isinstance(value, list) else value
                assert run[key] == want, (row.name, key)
