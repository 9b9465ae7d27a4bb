"""Crash and resume (issue 8): ``kill -9`` a long command once its first output is on disk, run
the same command again: it finishes, loses no finished work, recomputes nothing finished, and its
result equals an uninterrupted run's.

The killed command runs in a subprocess (one thread, like the in-process runs that follow, so
results compare bit for bit); the rerun and the uninterrupted reference run in-process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest
import soundfile as sf
import yaml
from typer.testing import CliRunner

from liser import store as st
from liser.cli import app
from liser.manifest import write_manifest
from liser.testing import emotion_tones, student_checkpoint, tiny_train_config, tone

TIMING = {"seconds", "train_seconds", "created", "checkpoint", "output_dir", "started",
          "machine", "ran", "reused", "train_minutes", "teacher_minutes", "run_dir"}  # fmt: skip


def kill_when(args: list[str], ready, timeout: float = 240.0) -> None:
    """Run ``liser ARGS`` in a subprocess and SIGKILL it as soon as ``ready()`` is true."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    code = "from liser.cli import app; app(prog_name='liser')"
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + timeout
    try:
        while not ready() and process.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        finished = process.poll() is not None
        process.send_signal(signal.SIGKILL)
        _, err = process.communicate()
    finally:
        if process.poll() is None:
            process.kill()
    assert not finished, f"liser {args[0]} ended before the kill:\n{err.decode()[-2000:]}"
    assert ready(), f"liser {args[0]}: no output after {timeout} s"
    assert process.returncode == -signal.SIGKILL


def invoke(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def without_timing(value):
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def mtimes(paths) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in paths}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    df = emotion_tones(root / "wav", n_speakers=4, clips_per_class=3, n_classes=2, seed=11)
    return write_manifest(df, root / "m.csv")


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


# --------------------------------------------------------------------------------------------
# liser label


@pytest.mark.slow
def test_kill_label_then_rerun(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(16):  # 3 windows each (0, 3 and an end-aligned 4 s)
        sf.write(src / f"clip{i:02d}.wav", tone(7.0, 200 + 40 * i, seed=i), 16000)
    teacher = student_checkpoint(tmp_path / "teacher", ("a", "b", "c"))
    store = tmp_path / "store"
    args = ["label", str(src), "-o", str(store), "--audio-teacher", str(teacher),
            "--set", "shard_windows=3", "--set", "batch_size=3", "--quiet"]  # fmt: skip
    kill_when(args, lambda: bool(st.done_clips(store)))
    done = st.done_clips(store)
    assert 0 < len(done) < 16, f"{len(done)} clips done at the kill"
    finished = [
        p
        for p in st.shard_paths(store)
        if set(st.read_shard(p, ["clip"])["clip"].to_pylist()) <= done
    ]
    before = mtimes(finished)  # shards holding only finished clips
    summary = json.loads(invoke(args).strip().splitlines()[-1])
    assert summary["files"] == 16 and summary["windows"] == 48
    assert summary["this_run"]["files"] == 16 - len(done)  # done clips were not labeled again
    assert mtimes(before) == before  # nor their shards rewritten
    reference = tmp_path / "reference"
    invoke(["label", str(src), "-o", str(reference), *args[4:]])
    resumed = ds.dataset(store / "shards").to_table().sort_by("window_id")
    expected = ds.dataset(reference / "shards").to_table().sort_by("window_id")
    assert resumed.num_rows == 48 and resumed.equals(expected)  # no duplicate or corrupt rows
    assert not list((store / "shards").glob(".*")) and not (store / ".lock").exists()


# --------------------------------------------------------------------------------------------
# liser experiment


@pytest.mark.slow
def test_kill_experiment_then_rerun(manifest, tmp_path):
    base = tiny_train_config(manifest, tmp_path / "unused", **{"optim.epochs": 2})
    config = {"name": "resume", "output_dir": str(tmp_path / "exp"), "base": base,
              "grid": {"optim.lr": [0.004]}, "folds": [1, 2], "seeds": [0],
              "plots": False}  # fmt: skip
    path = write_yaml(tmp_path / "exp.yaml", config)
    runs = tmp_path / "exp" / "runs"
    kill_when(["experiment", str(path), "--quiet"], lambda: any(runs.glob("*/*/metrics.json")))
    finished = mtimes(runs.glob("*/*/metrics.json"))
    assert len(finished) == 1
    invoke(["experiment", str(path), "--quiet"])
    assert mtimes(finished) == finished  # finished runs were read back, not run again
    results = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert results["reused"] == 1 and results["ran"] == 1
    assert not results["failed"] and len(results["runs"]) == 2
    invoke(["experiment", str(path), "--quiet", "--set", f"output_dir={tmp_path / 'ref'}"])
    reference = json.loads((tmp_path / "ref" / "results.json").read_text())
    assert without_timing(results["rows"]) == without_timing(reference["rows"])
    assert without_timing(results["runs"]) == without_timing(reference["runs"])


# --------------------------------------------------------------------------------------------
# liser train and liser cv


@pytest.mark.slow
def test_kill_train_then_rerun(manifest, tmp_path):
    out = tmp_path / "run"
    config = write_yaml(
        tmp_path / "train.yaml", tiny_train_config(manifest, out, **{"optim.epochs": 6})
    )
    kill_when(
        ["train", str(config), "--quiet"], lambda: (out / "last" / "train_state.json").is_file()
    )
    state = json.loads((out / "last" / "train_state.json").read_text())
    done = state["epoch"] + 1
    assert 1 <= done < 6 and not (out / "metrics.json").exists()
    invoke(["train", str(config), "--quiet"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 6 and len(metrics["history"]) == 6
    # the epochs finished before the kill were kept, not trained again (same wall-clock record)
    assert metrics["history"][:done] == state["history"][:done]
    invoke(["train", str(config), "--quiet", "--set", f"output_dir={tmp_path / 'ref'}"])
    reference = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    assert without_timing(metrics) == without_timing(reference)
    from safetensors.torch import load_file

    a, b = (load_file(str(p / "best" / "model.safetensors")) for p in (out, tmp_path / "ref"))
    assert all((a[k] == b[k]).all() for k in a)


@pytest.mark.slow
def test_kill_cv_then_rerun(manifest, tmp_path):
    out = tmp_path / "cv"
    config = write_yaml(
        tmp_path / "cv.yaml", tiny_train_config(manifest, out, **{"optim.epochs": 3})
    )
    first = out / "fold-1" / "metrics.json"
    kill_when(["cv", str(config), "--quiet"], first.is_file)
    kept = mtimes([first])
    assert not (out / "cv.json").exists()
    invoke(["cv", str(config), "--quiet"])
    assert mtimes([first]) == kept  # the finished fold was not trained again
    summary = json.loads((out / "cv.json").read_text())
    invoke(["cv", str(config), "--quiet", "--set", f"output_dir={tmp_path / 'ref'}"])
    reference = json.loads((tmp_path / "ref" / "cv.json").read_text())
    assert len(summary["folds"]) == 2 and without_timing(summary) == without_timing(reference)


# --------------------------------------------------------------------------------------------
# A kill in the middle of a checkpoint swap (train._replace_dir: final -> final.old, tmp -> final)


def stopped_mid_swap(manifest, out: Path, name: str) -> tuple:
    """A finished 2-epoch run made to look killed between the two renames of ``out/name``:
    only ``name.old`` and a half-written ``.name.tmp`` are left, and no metrics.json."""
    from liser.config import TrainConfig, from_dict
    from liser.train import train

    config = from_dict(TrainConfig, tiny_train_config(manifest, out, **{"optim.epochs": 2}))
    finished = train(config, progress=False)
    (out / "metrics.json").unlink()
    (out / name).rename(out / f"{name}.old")
    (out / f".{name}.tmp").mkdir()
    (out / f".{name}.tmp" / "model.safetensors").write_bytes(b"half written")
    return config, finished


def test_a_kill_while_swapping_last_resumes_from_the_previous_one(manifest, tmp_path):
    from liser.train import train

    config, finished = stopped_mid_swap(manifest, tmp_path / "run", "last")
    again = train(config, progress=False)
    assert without_timing(again) == without_timing(finished)


def test_a_kill_while_swapping_best_resumes_from_the_previous_one(manifest, tmp_path):
    from liser.train import train

    config, finished = stopped_mid_swap(manifest, tmp_path / "run", "best")
    again = train(config, progress=False)
    assert without_timing(again) == without_timing(finished)
