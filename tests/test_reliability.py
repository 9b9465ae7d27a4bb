"""Regression tests of the second reliability pass (issue 19): each test names its item."""

import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from typer.testing import CliRunner

from liser import checkpoint as ckpt
from liser import store as st
from liser.cli import app
from liser.config import ConfigError, TrainConfig, from_dict, load_config
from liser.devices import native_bf16, resolve_precision
from liser.label import StoreLock, label
from liser.manifest import folder_manifest, read_manifest, write_manifest
from liser.testing import (
    emotion_tones,
    soft_label_store,
    student_checkpoint,
    tiny_train_config,
    tone,
)
from liser.train import TrainingDiverged, train

RATE = 16000


def run_cli(*args) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, " ".join(result.output.split())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones")
    df = emotion_tones(root / "wav", n_speakers=4, clips_per_class=2, n_classes=2, distractors=0)
    return write_manifest(df, root / "tones.csv")


@pytest.fixture(scope="module")
def tiny_yaml(corpus, tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_train_config(corpus, path.parent / "run")))
    return path


@pytest.fixture
def checkpoint(tmp_path):
    return student_checkpoint(tmp_path / "ckpt", ("angry", "happy", "neutral", "sad"))


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, tone(3.5, 220.0), RATE)
    return path


# 1 --------------------------------------------------------------------------------------------


def test_1_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(corpus, tmp_path, monkeypatch):
    from liser.train import losses

    calls = {"n": 0}
    real = losses.SupervisedLoss.forward

    def nan_in_epoch_2(self, logits, targets):
        calls["n"] += 1
        loss = real(self, logits, targets)
        return loss * float("nan") if calls["n"] > steps else loss

    config = from_dict(TrainConfig, tiny_train_config(corpus, tmp_path / "run"))
    n_train = len(read_manifest(corpus)) // 2  # 2 of 4 speakers are in the training folds
    steps = max(1, round(n_train * 0.7) // 8)  # at least one epoch of steps goes through
    monkeypatch.setattr(losses.SupervisedLoss, "forward", nan_in_epoch_2)
    with pytest.raises(TrainingDiverged, match=r"diverged in epoch \d+, step \d+: the loss is nan"):
        train(config, progress=False)
    assert not (tmp_path / "run" / "metrics.json").exists()
    model, meta = ckpt.load_checkpoint(tmp_path / "run" / "last")  # the last complete epoch
    assert all(torch.isfinite(p).all() for p in model.state_dict().values())
    assert meta["epoch"] == 0


def test_1_a_huge_learning_rate_is_an_error_not_a_nan_checkpoint(tiny_yaml, tmp_path):
    out = tmp_path / "run"
    code, output = run_cli("train", tiny_yaml, "--quiet", "--set", "optim.lr=1000000.0",
                           "--set", f"output_dir={out}")  # fmt: skip
    if code == 0:  # it did not diverge: then every saved weight must be finite
        model, _ = ckpt.load_checkpoint(out / "best")
        assert all(torch.isfinite(p).all() for p in model.state_dict().values())
    else:
        assert code == 2 and "diverged" in output and not (out / "metrics.json").exists()
    assert run_cli("train", tiny_yaml, "--set", "optim.lr=.inf")[1].startswith(
        "error: 'optim.lr' must be a finite number"
    )


def test_1_non_finite_weights_are_never_saved_or_loaded(checkpoint, tmp_path):
    model, meta = ckpt.load_checkpoint(checkpoint)
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    with pytest.raises(ckpt.CheckpointError, match="not saved: the weights hold NaN"):
        ckpt.save_checkpoint(tmp_path / "nan", model, meta)
    assert not (tmp_path / "nan" / "model.safetensors").exists()


# 2 --------------------------------------------------------------------------------------------


def corrupt(weights: Path, n: int = 400) -> None:
    blob = bytearray(weights.read_bytes())
    header = int.from_bytes(blob[:8], "little")
    start = 8 + header + 1000
    blob[start : start + n] = b"\xff" * n
    weights.write_bytes(bytes(blob))


@pytest.mark.parametrize("with_json", [True, False])
def test_2_corrupted_weights_are_refused(checkpoint, wav, tmp_path, with_json):
    corrupt(checkpoint / "model.safetensors")
    if not with_json:
        (checkpoint / "checkpoint.json").unlink()
    with pytest.raises(ckpt.CheckpointError, match="model.safetensors: corrupt"):
        ckpt.load_checkpoint(checkpoint)
    code, output = run_cli("predict", checkpoint, wav, "--quiet")
    assert code == 2 and "corrupt" in output and "model.safetensors" in output
    code, output = run_cli("export", checkpoint, "-o", tmp_path / "m.onnx")
    assert code == 2 and not (tmp_path / "m.onnx").exists()


def test_2_a_stale_checkpoint_json_after_a_crash_still_loads(checkpoint, tmp_path, caplog):
    record = json.loads((checkpoint / "checkpoint.json").read_text())
    student_checkpoint(tmp_path / "other", seed=5)  # other weights, as a newer save would write
    (checkpoint / "model.safetensors").write_bytes(
        (tmp_path / "other" / "model.safetensors").read_bytes()
    )
    (checkpoint / "checkpoint.json").write_text(json.dumps(record))  # the old record
    model, meta = ckpt.load_checkpoint(checkpoint)
    assert meta["seed"] == 5 and "stale" in caplog.text


# 3 and 13 (folders) ---------------------------------------------------------------------------


def test_3_predict_and_label_follow_symlinked_folders(tmp_path, checkpoint):
    real = tmp_path / "real"
    for actor in ("Actor_01", "Actor_02"):
        (real / actor).mkdir(parents=True)
        sf.write(real / actor / "a.wav", tone(1.5, 300.0), RATE)
    linked = tmp_path / "linked"
    linked.mkdir()
    for actor in ("Actor_01", "Actor_02"):
        os.symlink(real / actor, linked / actor)
    os.symlink(linked, linked / "loop")  # a loop: followed once
    out = tmp_path / "p.json"
    code, output = run_cli("predict", checkpoint, linked, "-o", out, "--quiet")
    assert code == 0 and "2 file(s) predicted, 0 skipped" in output
    assert sorted(Path(r["path"]).parent.name for r in json.loads(out.read_text())) == [
        "Actor_01",
        "Actor_02",
    ]
    summary = label(linked, tmp_path / "store", audio_teacher=None, progress=False)
    assert summary["files"] == 2


def test_13_empty_explicit_or_unreadable_folders_are_reported(tmp_path, checkpoint, monkeypatch):
    (tmp_path / "x.wav").mkdir()  # a folder named like a file
    code, output = run_cli("predict", checkpoint, tmp_path / "x.wav", "--quiet")
    assert code == 1 and "skipped" in output and "no audio or video file" in output
    assert "0 file(s) predicted, 1 skipped" in output
    with pytest.raises(FileNotFoundError, match="no audio or video file in this folder"):
        label(tmp_path / "x.wav", tmp_path / "s", progress=False)
    # an unreadable sub-folder (simulated: tests run as root, for whom chmod 000 is readable)
    root = tmp_path / "media"
    (root / "locked").mkdir(parents=True)
    sf.write(root / "ok.wav", tone(1.5, 300.0), RATE)
    real_scandir = os.scandir

    def scandir(path="."):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    out = tmp_path / "p.json"
    code, output = run_cli("predict", checkpoint, root, "-o", out, "--quiet")
    assert code == 0 and "1 file(s) predicted, 1 skipped" in output
    [skip] = [r for r in json.loads(out.read_text()) if "error" in r]
    assert skip["path"].endswith("locked") and skip["error"].startswith("unreadable folder")
    summary = label(root, tmp_path / "store", progress=False)
    header = st.read_header(tmp_path / "store")
    assert summary["files"] == 1
    assert any("unreadable folder" in s["reason"] for s in header["skipped"].values())


# 4 --------------------------------------------------------------------------------------------


def test_4_folder_manifest_never_files_a_clip_under_another_class(tmp_path):
    root = tmp_path / "r"
    (root / "happy").mkdir(parents=True)
    (root / "sad").mkdir()
    sf.write(root / "happy" / "a.wav", tone(1.0, 300.0), RATE)
    sf.write(root / "sad" / "b.wav", tone(1.0, 200.0), RATE)
    os.symlink(root, root / "sad" / "loop")  # r/sad/loop/happy/a.wav
    os.symlink(root / "happy" / "a.wav", root / "sad" / "c.wav")  # a file link into happy
    df = folder_manifest(root)
    assert sorted(zip(df["id"], df["label"], strict=True)) == [("a", "happy"), ("b", "sad")]
    reasons = {Path(path).name: reason for path, reason in df.attrs["skipped"]}
    assert set(reasons) == {"loop", "c.wav"}
    assert all(r.startswith(f"outside its folder {root / 'sad'}") for r in reasons.values())


# 5 --------------------------------------------------------------------------------------------


def _hold_lock(folder, barrier, queue):
    barrier.wait()
    try:
        with StoreLock(folder):
            start = time.monotonic()
            time.sleep(0.05)
            queue.put((start, time.monotonic()))
    except st.StoreError:
        queue.put(None)


def test_5_a_stale_lock_is_taken_by_one_process_at_a_time(tmp_path):
    ctx = multiprocessing.get_context("fork")
    for trial in range(6):
        folder = tmp_path / f"store{trial}"
        folder.mkdir()
        (folder / ".lock").write_text("999999999")  # left by a killed process
        barrier, queue = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_hold_lock, args=(folder, barrier, queue)) for _ in range(6)]
        for p in procs:
            p.start()
        held = [queue.get(timeout=30) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        spans = sorted(h for h in held if h is not None)
        assert spans, "nobody took the lock"
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert start >= end, f"two processes held the lock at once (trial {trial})"


# 6, 10, 13 (config values) --------------------------------------------------------------------


def test_6_10_13_config_values_are_checked_when_loaded(tiny_yaml, tmp_path):
    code, output = run_cli("train", tiny_yaml, "--set", "optim.batch_size=0")
    assert code == 2 and "'optim.batch_size' must be >= 1, got 0" in output
    for bad, message in (("true", "must be a number (int), got True"), ("0", "must be >= 1")):
        code, output = run_cli("train", tiny_yaml, "--set", f"optim.epochs={bad}")
        assert code == 2 and f"'optim.epochs' {message}" in output
    path = tmp_path / "c.yaml"
    for text, value in (("1e-3", 1e-3), ("1E-3", 1e-3), ("2.5e-4", 2.5e-4), ("1_000", 1000.0)):
        path.write_text(f"optim:\n  lr: {text}\n")
        assert load_config(TrainConfig, path).optim.lr == value
    path.write_text("optim:\n  epochs: 1e2\n")
    assert load_config(TrainConfig, path).optim.epochs == 100
    for override, key in (("frontend.normalize=perutt", "frontend.normalize"),
                          ("augment.mel_warp=1.5", "augment.mel_warp"),
                          ("data.label_fraction=0", "data.label_fraction"),
                          ("distill.loss=l1", "distill.loss"), ("device=gpu", "device"),
                          ("student.pool=[2]", "student.pool")):  # fmt: skip
        with pytest.raises(ConfigError, match=f"'{key}'"):
            load_config(TrainConfig, None, [override])


# 7 --------------------------------------------------------------------------------------------


def test_7_predict_refuses_absurd_windows_and_missing_devices(checkpoint, wav):
    for args, message in ((["--hop", "-1"], "--hop must be a positive number"),
                          (["--hop", "0.0001"], "--hop 0.0001 s is shorter than 0.01 s"),
                          (["--window", "1e9"], "longer than 60 s"),
                          (["--window", "0.001"], "too short for the front end"),
                          (["--batch-size", "0"], "batch_size must be >= 1")):  # fmt: skip
        code, output = run_cli("predict", checkpoint, wav, "--quiet", *args)
        assert code == 2 and message in output, output
    if not torch.cuda.is_available():
        code, output = run_cli("predict", checkpoint, wav, "--quiet", "--device", "cuda")
        assert code == 2 and "no usable CUDA device" in output


# 8, 9 -----------------------------------------------------------------------------------------


def test_8_a_checkpoint_json_that_is_not_an_object(checkpoint, wav):
    (checkpoint / "checkpoint.json").write_text("[1, 2, 3]")
    for target in (checkpoint, checkpoint / "checkpoint.json"):
        with pytest.raises(ckpt.CheckpointError, match="a JSON list, not an object"):
            ckpt.load_checkpoint(target)
    code, output = run_cli("predict", checkpoint, wav, "--quiet")
    assert code == 2 and "not a liser checkpoint.json" in output


@pytest.mark.parametrize("edit", ["reversed", "six"])
def test_9_a_hand_edited_checkpoint_json_is_refused(checkpoint, wav, tmp_path, edit):
    record = json.loads((checkpoint / "checkpoint.json").read_text())
    classes = record["classes"]
    record["classes"] = classes[::-1] if edit == "reversed" else classes + ["x", "y"]
    (checkpoint / "checkpoint.json").write_text(json.dumps(record))
    with pytest.raises(ckpt.CheckpointError, match="disagrees with the meta embedded .* classes"):
        ckpt.load_checkpoint(checkpoint)
    assert run_cli("predict", checkpoint, wav, "--quiet")[0] == 2
    assert run_cli("export", checkpoint, "-o", tmp_path / "m.onnx")[0] == 2
    assert not (tmp_path / "m.onnx").exists()


def test_9_embedded_meta_is_checked_against_the_weights(checkpoint):
    from safetensors import safe_open
    from safetensors.torch import save_file

    weights = checkpoint / "model.safetensors"
    with safe_open(str(weights), framework="pt") as handle:
        header = handle.metadata()
        state = {k: handle.get_tensor(k) for k in handle.keys()}
    meta = json.loads(header["meta"])
    meta["classes"] = meta["classes"] + ["x", "y"]
    header = {k: v for k, v in header.items() if k != ckpt.CONTENT_KEY} | {"meta": json.dumps(meta)}
    save_file(state, str(weights), metadata=header)  # an old-style file with no content hash
    (checkpoint / "checkpoint.json").unlink()
    with pytest.raises(ckpt.CheckpointError, match="has 6 names but the 'logits' head has 4"):
        ckpt.load_checkpoint(checkpoint)


# 11 -------------------------------------------------------------------------------------------


def test_11_a_transformers_folder_with_pickled_weights_is_refused(tmp_path, wav):
    from safetensors.torch import load_file

    from liser.teachers import TeacherError, load_audio_teacher
    from liser.teachers.audio import load_audio_encoder
    from liser.testing import tiny_hubert

    folder = tiny_hubert(tmp_path / "hubert")
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    for load in (load_audio_encoder, load_audio_teacher):
        with pytest.raises(TeacherError, match=r"only as pickle files \(pytorch_model.bin\)"):
            load(str(folder))
    code, output = run_cli("label", wav, "-o", tmp_path / "s", "--audio-teacher", folder, "--quiet")
    assert code == 2 and "does not load" in output


# 12 -------------------------------------------------------------------------------------------


def test_12_the_onnx_example_reports_bad_files_like_liser(checkpoint, wav, tmp_path):
    import av

    from liser.deploy import export_onnx

    model = tmp_path / "m.onnx"
    export_onnx(checkpoint, model)
    short = tmp_path / "short.wav"
    sf.write(short, tone(0.01, 300.0), RATE)
    mkv = tmp_path / "talk.mkv"
    with av.open(str(mkv), "w") as container:
        stream = container.add_stream("aac", rate=RATE)
        samples = (tone(2.0, 250.0) * 0.5).astype(np.float32)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
        frame.sample_rate = RATE
        for packet in list(stream.encode(frame)) + list(stream.encode(None)):
            container.mux(packet)
    bad_model = tmp_path / "bad.onnx"
    bad_model.write_bytes(b"not onnx")

    def example(*args):
        return subprocess.run([sys.executable, "examples/onnx_predict.py", *map(str, args)],
                              capture_output=True, text=True)  # fmt: skip

    run = example(model, wav, short, mkv, tmp_path / "missing.wav")
    assert "Traceback" not in run.stderr and run.returncode == 0, run.stderr
    assert f"skipped {short}: too short" in run.stderr
    assert f"skipped {tmp_path / 'missing.wav'}: not found" in run.stderr
    assert "2 file(s) predicted, 2 skipped" in run.stderr and str(mkv) in run.stdout
    run = example(bad_model, wav)
    assert run.returncode == 2 and run.stderr.startswith("error:") and "Traceback" not in run.stderr
    run = example(model, short)
    assert run.returncode == 1 and "0 file(s) predicted, 1 skipped" in run.stderr


# 13 (stores), 14 ------------------------------------------------------------------------------


def small_store(folder: Path) -> Path:
    from liser.config import FrontEndConfig

    waves = [tone(3.0, 200.0 + 50 * i) for i in range(4)]
    probs = [np.eye(2)[i % 2] for i in range(4)]
    return soft_label_store(folder, FrontEndConfig(), waves, audio_probs=probs,
                            audio_classes=("a", "b"), shard_windows=2)  # fmt: skip


def test_13_a_stray_copy_of_a_shard_is_detected(tmp_path, corpus, tiny_yaml):
    store = small_store(tmp_path / "store")
    shards = sorted((store / "shards").glob("part-*.parquet"))
    (store / "shards" / "part-000099.parquet").write_bytes(shards[0].read_bytes())
    with pytest.raises(st.StoreError, match=f"in two shards, {shards[0].name} and part-000099"):
        st.open_store(store)
    code, output = run_cli("train", tiny_yaml, "--set", f"distill.stores=[{store}]",
                           "--set", f"output_dir={tmp_path / 'run'}")  # fmt: skip
    assert code == 2 and "a copy of a shard?" in output


def test_14_a_corrupt_shard_is_named(tmp_path):
    store = small_store(tmp_path / "store")
    shard = sorted((store / "shards").glob("part-*.parquet"))[1]
    blob = bytearray(shard.read_bytes())
    blob[-40:] = b"\x00" * 40  # the footer
    shard.write_bytes(bytes(blob))
    with pytest.raises(st.StoreError, match=f"{shard}: corrupt shard"):
        st.open_store(store)
    sf.write(tmp_path / "new.wav", tone(3.0, 300.0), RATE)
    from liser.config import LabelConfig

    header = st.read_header(store)
    same = LabelConfig(hop_seconds=header["hop_seconds"], min_seconds=header["min_seconds"])
    with pytest.raises(st.StoreError, match=f"{shard}: corrupt shard"):
        label(tmp_path / "new.wav", store, same, progress=False)


# 15 -------------------------------------------------------------------------------------------


def test_15_precision_is_resolved_by_one_rule_and_recorded(tmp_path, wav):
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if native_bf16(cpu) else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(ValueError, match="precision must be"):
        resolve_precision("fp16", cpu)  # training has no fp16
    teacher = student_checkpoint(tmp_path / "t", ("class0", "class1", "class2", "class3"))
    for precision in ("fp32", "bf16"):
        from liser.teachers import load_audio_teacher

        loaded = load_audio_teacher(str(teacher), precision=precision)
        label(wav, tmp_path / f"s-{precision}", audio_teacher=loaded, progress=False)
        info = st.read_header(tmp_path / f"s-{precision}")["teachers"]["audio"]
        assert info["precision"] == precision
    manifest = write_manifest(
        emotion_tones(
            tmp_path / "wav", n_speakers=1, clips_per_class=1, n_classes=4, distractors=0
        ),
        tmp_path / "m.csv",
    )
    from liser.evaluate import evaluate_checkpoint

    metrics = evaluate_checkpoint(teacher, manifest, tmp_path / "eval", progress=False)
    assert metrics["precision"] == "fp32"
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["precision"] == "fp32"


# no traceback, whatever goes wrong ------------------------------------------------------------


def test_an_unexpected_error_is_one_line_not_a_traceback(checkpoint, wav, monkeypatch):
    import liser.deploy.predictor

    def boom(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(liser.deploy, "predict", boom)
    code, output = run_cli("predict", checkpoint, wav)
    assert code == 1 and output.startswith("error: unexpected ZeroDivisionError: division by zero")
    monkeypatch.setenv("LISER_DEBUG", "1")
    result = CliRunner().invoke(app, ["predict", str(checkpoint), str(wav)])
    assert isinstance(result.exception, ZeroDivisionError)


def test_the_cli_runs_as_a_module_as_torchrun_starts_it():
    from liser import __version__

    for module in ("liser.cli", "liser"):
        run = subprocess.run([sys.executable, "-m", module, "version"], capture_output=True,
                             text=True, timeout=120)  # fmt: skip
        assert run.returncode == 0 and run.stdout.strip() == __version__, run.stderr


def test_outputs_that_cannot_be_written_and_a_missing_engine_are_clear_errors(
    checkpoint, wav, tmp_path
):
    (tmp_path / "out").mkdir()
    for args in (
        ["export", checkpoint, "-o", tmp_path / "out"],
        ["predict", checkpoint, wav, "-o", tmp_path / "out"],
    ):
        code, output = run_cli(*args)
        assert code == 2 and f"{tmp_path / 'out'} is a folder; give the path of a file" in output
    (tmp_path / "file").write_text("x")
    code, output = run_cli(
        "predict", checkpoint, wav, "--quiet", "-o", tmp_path / "file" / "p.json"
    )
    assert (
        code == 2
        and f"cannot write {tmp_path / 'file' / 'p.json'}" in output
        and ".tmp" not in output
    )
    try:
        import ray  # noqa: F401
    except ImportError:
        code, output = run_cli("label", wav, "-o", tmp_path / "s", "--engine", "ray", "--quiet")
        assert code == 2 and "pip install 'liser[ray]'" in output


def test_mapping_fields_must_be_mappings():
    from liser.config import ExperimentConfig

    for data, key in (({"grid": 5}, "'grid'"), ({"rows": [5]}, r"'rows\[0\]'"),
                      ({"teacher": {"student": [1]}}, "'teacher.student'")):  # fmt: skip
        with pytest.raises(ConfigError, match=f"{key} must be a mapping"):
            from_dict(ExperimentConfig, data)
