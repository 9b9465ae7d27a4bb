"""The YAML configs shipped under configs/ load, and every experiment row is a valid run config."""

from pathlib import Path

import pytest

from liser.config import ExperimentConfig, TrainConfig, load_config
from liser.experiment import apply_settings, expand_rows

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TRAIN_CONFIGS = sorted(CONFIGS.glob("*.yaml"))
EXPERIMENT_CONFIGS = sorted((CONFIGS / "experiments").glob("*.yaml"))


def test_the_repository_ships_configs():
    assert TRAIN_CONFIGS and EXPERIMENT_CONFIGS


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.name)
def test_training_config_loads_and_takes_overrides(path):
    config = load_config(TrainConfig, path, ["data.manifest=x.parquet", "data.fold=2"])
    assert config.data.manifest == "x.parquet" and config.data.fold == 2
    assert config.optim.epochs > 0 and config.name


@pytest.mark.parametrize("path", EXPERIMENT_CONFIGS, ids=lambda p: p.name)
def test_experiment_config_expands_into_distinct_valid_rows(path):
    config = load_config(ExperimentConfig, path)
    rows = expand_rows(config)  # unknown keys in a row or the grid raise here
    assert rows and len({r.slug for r in rows}) == len(rows)
    for row in rows:
        run = apply_settings(config.base, row.settings)
        assert 0 < run.data.label_fraction <= 1
