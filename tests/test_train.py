"""Training runs on a toy corpus (liser.testing.emotion_tones): outputs, reproducibility, resume,
feature cache, skipped files, distillation from a perfect teacher, stores, schedules, DDP, cv."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from liser.config import (
    AugmentConfig,
    DataConfig,
    DistillConfig,
    FrontEndConfig,
    OptimConfig,
    StudentConfig,
    TrainConfig,
    replace,
    to_dict,
)
from liser.manifest import write_manifest
from liser.testing import emotion_tone, emotion_tones, soft_label_store
from liser.train import cv, lr_factor, train
from liser.train import data as D
from liser.train import loop as train_loop
from liser.train.distill import UnlabeledStream

FRONTEND = FrontEndConfig(window_seconds=0.5, n_mels=16)
CLASSES = ("class0", "class1")


def config(manifest, out, **changes) -> TrainConfig:
    """A tiny, fast run: 0.5 s windows, 16 mels, a two-block student, 3 epochs."""
    base = TrainConfig(
        output_dir=str(out),
        frontend=FRONTEND,
        student=StudentConfig(conv_channels=(4, 8), lstm_hidden=8, dropout=0.1),
        data=DataConfig(
            manifest=str(manifest), folds="speaker", n_folds=2, val_fraction=0.5, cache_dir=""
        ),  # fmt: skip
        optim=OptimConfig(batch_size=4, epochs=3, patience=0, lr=5e-3),
        augment=AugmentConfig(time_masks=1, time_mask_frames=5, freq_masks=1, freq_mask_bins=2),
    )
    return replace(base, **changes)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """4 speakers x 2 classes x 2 clips: a 2-fold split leaves 1 train, 1 val, 2 test speakers."""
    root = tmp_path_factory.mktemp("tones")
    df = emotion_tones(root / "wav", n_speakers=4, clips_per_class=2, n_classes=2, distractors=0)
    return write_manifest(df, root / "tones.csv")


def store_of(path, n=32, frontend=FRONTEND, seed=0, **kwargs):
    """A store of n toy windows whose audio teacher is perfect (one-hot on the true class)."""
    rng = np.random.default_rng(seed)
    labels = [i % 2 for i in range(n)]
    waves = [
        emotion_tone(c, 0.6, rng.uniform(-0.1, 0.1), 1, seed=seed * 1000 + i)
        for i, c in enumerate(labels)
    ]
    kwargs.setdefault("audio_probs", [np.eye(2)[c] for c in labels])
    kwargs.setdefault("audio_classes", CLASSES)
    return soft_label_store(path, frontend, waves, **kwargs)


def crash_after_epoch(monkeypatch, run_config: TrainConfig, crash_epoch: int) -> None:
    """Train ``run_config`` and stop it like a crash once epoch ``crash_epoch`` (0-based) is saved."""
    real_end = train_loop.Run.end_epoch

    def end_then_crash(self, epoch, *args):
        real_end(self, epoch, *args)
        if epoch == crash_epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_loop.Run, "end_epoch", end_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(run_config, progress=False)
    monkeypatch.undo()


def test_lr_factor_schedules():
    total = 100
    one = [lr_factor(s, total, "onecycle", 0.1) for s in range(total)]
    assert one[0] == pytest.approx(1 / 25) and max(one) == pytest.approx(1.0)
    assert int(np.argmax(one)) == 10 and one[-1] < 1e-3
    cos = [lr_factor(s, total, "cosine", 0.1) for s in range(total)]
    assert cos[0] < 0.1 and cos[10] == pytest.approx(1.0) and cos[-1] < 1e-3
    assert lr_factor(50, total, "constant", 0.1) == 1.0
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor(0, total, "step", 0.1)


def test_run_outputs_reproducibility_and_resume(corpus, tmp_path, monkeypatch):
    from liser.checkpoint import load_checkpoint

    first = train(config(corpus, tmp_path / "a"), progress=False)
    out = tmp_path / "a"
    for name in ("metrics.json", "best/model.safetensors", "last/train_state.json",
                 "test/confusion.csv", "test/confusion.png", "test/predictions.csv"):  # fmt: skip
        assert (out / name).is_file(), name
    model, meta = load_checkpoint(out / "best")
    assert tuple(meta["classes"]) == CLASSES and model.sizes["logits"] == 2
    assert len(first["history"]) == 3 and first["test"]["n"] == 8
    assert sum(map(sum, first["test"]["confusion"])) == 8

    # A finished run is not trained again.
    monkeypatch.setattr(train_loop.Run, "fit", lambda self: pytest.fail("trained again"))
    assert train(config(corpus, out), progress=False)["test"] == first["test"]
    monkeypatch.undo()

    # Interrupted after its second epoch, then resumed: the same result as the run above.
    crash_after_epoch(monkeypatch, config(corpus, tmp_path / "b"), 1)
    assert not (tmp_path / "b" / "metrics.json").exists()
    with pytest.raises(ValueError, match="another config"):
        train(config(corpus, tmp_path / "b", **{"optim.lr": 1e-3}), progress=False)
    resumed = train(config(corpus, tmp_path / "b"), progress=False)
    drop = ("seconds",)
    strip = [{k: v for k, v in h.items() if k not in drop} for h in resumed["history"]]
    assert strip == [{k: v for k, v in h.items() if k not in drop} for h in first["history"]]
    assert resumed["test"] == first["test"]

    other = train(config(corpus, tmp_path / "c", seed=1), progress=False)
    assert other["history"][0]["loss"] != first["history"][0]["loss"]


def test_weight_average_is_validated_kept_and_resumed(corpus, tmp_path, monkeypatch):
    from liser.checkpoint import load_checkpoint

    ema = {"optim.ema_decay": 0.9, "optim.epochs": 2, "data.val_fraction": 0.0}  # keeps the last
    plain = train(config(corpus, tmp_path / "plain", **{**ema, "optim.ema_decay": 0.0}), False)
    first = train(config(corpus, tmp_path / "a", **ema), progress=False)
    # Training is the same; what is kept and tested is the average, not the last step's weights.
    assert [h["loss"] for h in first["history"]] == [h["loss"] for h in plain["history"]]
    best, _ = load_checkpoint(tmp_path / "a" / "best")
    last, _ = load_checkpoint(tmp_path / "a" / "last")
    state = torch.load(tmp_path / "a" / "last" / "train_state.pt", weights_only=True)
    average = {k.removeprefix("module."): v for k, v in state["ema"].items()}
    for name, value in best.state_dict().items():
        assert torch.equal(value, average[name]), name
    raw = last.state_dict()
    assert any(not torch.equal(value, raw[name]) for name, value in best.state_dict().items())
    # Interrupted after epoch 1 and resumed: the average is restored with the optimizer.
    crash_after_epoch(monkeypatch, config(corpus, tmp_path / "b", **ema), 0)
    resumed = train(config(corpus, tmp_path / "b", **ema), progress=False)
    assert resumed["test"] == first["test"] and resumed["val_uar"] == first["val_uar"]
    with pytest.raises(ValueError, match="ema_decay"):
        train(config(corpus, tmp_path / "c", **{"optim.ema_decay": 1.0}), progress=False)


def test_feature_cache_mode_reads_cached_features(corpus, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cfg = config(corpus, tmp_path / "a", **{"data.cache_dir": str(cache), "optim.epochs": 2})
    first = train(cfg, progress=False)
    assert first["mode"] == "features"
    assert len(list(cache.rglob("*.npy"))) == 16  # one whole-clip log-Mel per clip

    import liser.features

    def no_compute(*args, **kwargs):
        raise AssertionError("features computed again despite the cache")

    monkeypatch.setattr(liser.features, "clip_features", no_compute)
    again = train(replace(cfg, output_dir=str(tmp_path / "b")), progress=False)
    assert again["test"] == first["test"]


def test_unusable_clips_are_skipped_and_reported(corpus, tmp_path):
    from liser.manifest import read_manifest

    df = read_manifest(corpus)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    bad = df[df.speaker == "spk0"].iloc[:2].copy()  # clips of any split are read and reported
    bad["id"] = ["missing", "empty"]
    bad["path"] = [str(tmp_path / "missing.wav"), str(empty)]
    manifest = write_manifest(__import__("pandas").concat([df, bad]), tmp_path / "m.csv")
    metrics = train(config(manifest, tmp_path / "run", **{"optim.epochs": 1}), progress=False)
    reasons = {os.path.basename(s["path"]): s["reason"] for s in metrics["skipped"]}
    assert set(reasons) <= {"missing.wav", "empty.wav"} and reasons
    assert all("not found" in r or "empty" in r for r in reasons.values())


@pytest.mark.parametrize("normalize", ["utterance", "global"])
def test_perfect_teacher_lifts_student_trained_on_few_labels(tmp_path, normalize):
    """Two classes, each made of two kinds of events; 3 labeled clips per class cannot show both
    kinds of every class, 256 windows labeled by a perfect audio teacher can. With a global
    front end the store keeps raw log-Mel and the student normalises it with its own statistics."""
    frontend = FrontEndConfig(window_seconds=0.5, n_mels=32, normalize=normalize)
    df = emotion_tones(tmp_path / "wav", n_speakers=10, clips_per_class=4, n_classes=2,
                       distractors=1, variants=2)  # fmt: skip
    df["fold"] = [1 if int(s[3:]) < 4 else 2 for s in df.speaker]  # 4 test speakers
    manifest = write_manifest(df, tmp_path / "m.csv")
    rng = np.random.default_rng(5)
    labels = [i % 2 for i in range(256)]
    waves = [emotion_tone(c, 0.6, rng.uniform(-0.125, 0.125), 1, seed=1000 + i, variants=2)
             for i, c in enumerate(labels)]  # fmt: skip
    store = soft_label_store(tmp_path / "store", frontend, waves, [np.eye(2)[c] for c in labels],
                             audio_classes=CLASSES)  # fmt: skip
    base = config(
        manifest,
        tmp_path / "supervised",
        frontend=frontend,
        student=StudentConfig(conv_channels=(8, 16, 32), lstm_hidden=16, dropout=0.1),
        data=DataConfig(
            manifest=str(manifest),
            folds="column",
            val_fraction=0.0,  # the last epoch is tested: 4 val clips cannot pick one
            label_fraction=0.19,
            cache_dir=str(tmp_path / "cache"),
        ),  # fmt: skip
        optim=OptimConfig(batch_size=2, epochs=15, patience=0, lr=5e-3),
        augment=AugmentConfig(time_masks=1, time_mask_frames=8, freq_masks=1, freq_mask_bins=4),
    )
    supervised = train(base, progress=False)
    distilled = train(
        replace(base, output_dir=str(tmp_path / "distilled"),
                distill=DistillConfig(stores=(str(store),), loss="ce", unlabeled_ratio=8)),
        progress=False,
    )  # fmt: skip
    assert supervised["test"]["n"] == 32
    assert distilled["history"][0]["audio"] > 0  # the teacher term was used
    assert distilled["test"]["uar"] >= supervised["test"]["uar"] + 0.15, (supervised, distilled)
    assert distilled["test"]["uar"] >= 0.8


def test_stores_are_checked_and_mixed(tmp_path):
    from liser.store import StoreError

    audio_store = store_of(tmp_path / "audio", n=8)
    video = [np.full(7, 1 / 7) if i % 2 else None for i in range(8)]  # no face in half the windows
    video_store = store_of(tmp_path / "video", n=8, audio_probs=[None] * 8, audio_classes=(),
                           video_probs=video, video_classes=tuple(f"f{i}" for i in range(7)),
                           temperature=2.0)  # fmt: skip
    stream = UnlabeledStream([audio_store, video_store], FRONTEND, seed=0)
    assert stream.audio_classes == CLASSES and len(stream.video_classes) == 7
    seen = {"audio": 0, "video": 0}
    batches = stream.epoch(0, 4)
    for _ in range(8):
        batch = next(batches)
        assert batch["features"].shape == (4, 16, FRONTEND.n_frames)
        assert batch["audio_probs"].shape == (4, 2) and batch["video_probs"].shape == (4, 7)
        if batch["video_temperature"] == 2.0:  # from the video store: no audio labels
            assert not batch["audio_mask"].any()
            seen["video"] += int(batch["video_mask"].sum())
        else:
            assert batch["audio_mask"].all() and not batch["video_mask"].any()
            seen["audio"] += 4
    batches.close()
    assert seen["audio"] > 0 and seen["video"] > 0
    # Same epoch, same stream; another epoch, another order.
    first = [b["features"] for _, b in zip(range(3), stream.epoch(1, 4), strict=False)]
    again = [b["features"] for _, b in zip(range(3), stream.epoch(1, 4), strict=False)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))

    other = store_of(tmp_path / "other", n=4, frontend=replace(FRONTEND, n_mels=20))
    with pytest.raises(StoreError, match="front-end"):
        UnlabeledStream([other], FRONTEND)
    three = store_of(tmp_path / "three", n=4, audio_probs=[np.ones(3) / 3] * 4,
                     audio_classes=("a", "b", "c"))  # fmt: skip
    with pytest.raises(StoreError, match="disagree"):
        UnlabeledStream([audio_store, three], FRONTEND)


def test_two_stage_schedule_and_teacher_choice(corpus, tmp_path):
    store = store_of(tmp_path / "store")
    two = config(corpus, tmp_path / "two", **{"distill.stores": (str(store),),
                 "distill.schedule": "two-stage", "distill.stage1_epochs": 2, "optim.epochs": 2})  # fmt: skip
    metrics = train(two, progress=False)
    assert [h["stage"] for h in metrics["history"]] == ["distill"] * 2 + ["supervised"] * 2
    assert "ce" not in metrics["history"][0] and "audio" in metrics["history"][0]
    assert "audio" not in metrics["history"][2] and metrics["best_epoch"] > 2
    with pytest.raises(ValueError, match="no store has a video teacher"):
        train(replace(two, output_dir=str(tmp_path / "v"), **{"distill.teachers": "video"}),
              progress=False)  # fmt: skip


def test_global_batch_draws_split_across_processes(corpus):
    from liser.features import LogMel
    from liser.manifest import read_manifest

    df = read_manifest(corpus)
    clips = D.load_clips(df, CLASSES, FRONTEND, DataConfig(cache_dir=""), "waves")
    augment = AugmentConfig(time_masks=2, time_mask_frames=5, freq_masks=1, freq_mask_bins=3)
    draws = D.draw_augment(np.random.default_rng(0), 6, augment)
    index = np.arange(6)
    logmel = LogMel(FRONTEND)
    whole = D.train_batch(clips, index, draws, logmel, augment)
    halves = [D.train_batch(clips, index[r], D.take(draws, r), logmel, augment)
              for r in (slice(0, 3), slice(3, 6))]  # fmt: skip
    assert torch.allclose(whole, torch.cat(halves), atol=1e-5)
    # Masked bands hold one value (the example's mean): at most 2 x 5 frames per example.
    masked = (whole.amax(dim=1) == whole.amin(dim=1)).sum(dim=1)
    assert (masked <= 10).all() and (masked > 0).any()
    assert ((whole.amax(dim=2) == whole.amin(dim=2)).sum(dim=1) <= 3).all()
    mixed = whole.clone()
    lam, perm = D.mixup(mixed, 0.4, np.random.default_rng(0))
    assert 0 < lam < 1 and torch.allclose(mixed, lam * whole + (1 - lam) * whole[perm])
    assert D.mixup(whole.clone(), 0.0, np.random.default_rng(0)) is None
    windows, clip_of = D.eval_windows(clips, logmel, FRONTEND.windows(0.25))
    assert windows.shape[1:] == (16, FRONTEND.n_frames)
    assert torch.equal(torch.unique(clip_of), torch.arange(len(clips)))


DDP_SCRIPT = """
import json, sys
import torch
from liser.config import TrainConfig, from_dict
from liser.train import train
config = from_dict(TrainConfig, json.load(open(sys.argv[1])))
metrics = train(config, progress=False)
json.dump(metrics, open(sys.argv[2], "w"))
"""


def test_ddp_two_processes_match_one(corpus, tmp_path):
    store = store_of(tmp_path / "store")
    cfg = config(corpus, tmp_path / "one", **{"distill.stores": (str(store),), "student.dropout": 0.0,
                 "optim.batch_size": 4, "optim.epochs": 2})  # fmt: skip
    single = train(cfg, progress=False)
    (tmp_path / "cfg.json").write_text(
        json.dumps(to_dict(replace(cfg, output_dir=str(tmp_path / "two"))))
    )
    (tmp_path / "ddp.py").write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(tmp_path / "ddp.py"), str(tmp_path / "cfg.json"), str(tmp_path / "ddp.json")]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    double = json.loads((tmp_path / "ddp.json").read_text())
    assert [h["stage"] for h in double["history"]] == [h["stage"] for h in single["history"]]
    # Same global batches and initial weights; only BatchNorm statistics (per process) differ
    # (losses agree to ~2 % here).
    for a, b in zip(single["history"], double["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=0.06)
    assert double["test"]["n"] == single["test"]["n"]
    assert abs(double["test"]["uar"] - single["test"]["uar"]) <= 0.25


def test_cv_summarises_all_folds_and_resumes(corpus, tmp_path, monkeypatch):
    cfg = config(corpus, tmp_path / "cv", **{"optim.epochs": 1, "augment.mixup": 0.2})
    summary = cv(cfg, progress=False)
    assert [r["fold"] for r in summary["folds"]] == [1, 2] and summary["n_folds"] == 2
    uars = [r["uar"] for r in summary["folds"]]
    assert summary["uar"]["mean"] == pytest.approx(np.mean(uars))
    assert summary["uar"]["std"] == pytest.approx(np.std(uars, ddof=1))
    assert "mean ± std" in (tmp_path / "cv" / "cv.md").read_text()
    assert json.loads((tmp_path / "cv" / "cv.json").read_text())["n_folds"] == 2
    folds = [json.loads((tmp_path / "cv" / f"fold-{k}" / "metrics.json").read_text())["test"]
             for k in (1, 2)]  # fmt: skip
    pooled = np.add(folds[0]["confusion"], folds[1]["confusion"])
    assert summary["confusion"] == pooled.tolist() and pooled.sum() == folds[0]["n"] + folds[1]["n"]
    rows = (tmp_path / "cv" / "confusion.csv").read_text().splitlines()
    assert [int(v) for v in rows[1].split(",")[1:]] == pooled[0].tolist()
    assert (tmp_path / "cv" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    monkeypatch.setattr(train_loop.Run, "fit", lambda self: pytest.fail("fold trained again"))
    assert cv(cfg, progress=False)["uar"] == summary["uar"]


def test_cli_train_and_cv_commands(corpus, tmp_path):
    from typer.testing import CliRunner

    from liser.cli import app
    from liser.config import save_config

    path = tmp_path / "run.yaml"
    save_config(config(corpus, tmp_path / "unused"), path)
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(app, ["train", str(path), "--set", f"output_dir={out}",
                                 "--set", "optim.epochs=1", "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "test UAR" in result.output and (out / "metrics.json").is_file()
    assert json.loads((out / "metrics.json").read_text())["config"]["optim"]["epochs"] == 1
    bad = runner.invoke(app, ["train", str(path), "--set", "optim.epoch=1"])
    assert bad.exit_code == 2 and "did you mean 'epochs'" in bad.output
    result = runner.invoke(app, ["cv", str(path), "--set", f"output_dir={tmp_path / 'cv'}",
                                 "--set", "optim.epochs=1", "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cv" / "cv.md").is_file()


def test_mel_warp_moves_a_tone_along_the_mel_axis_and_keeps_other_draws():
    from liser.features import LogMel

    frontend = FrontEndConfig(n_mels=40)
    logmel = LogMel(frontend)
    x = logmel.log_mel(torch.sin(2 * torch.pi * 1000.0 * torch.arange(16000) / 16000)[None])
    peak = lambda y: int(y.mean(dim=-1).argmax(dim=-1)[0])  # noqa: E731
    up, down, same = (D.warp_mels(x, np.array([f]), frontend) for f in (1.15, 0.85, 1.0))
    assert torch.equal(same, x)
    assert peak(up) > peak(x) > peak(down)  # a 1 kHz tone read as ~1.15 kHz / ~0.85 kHz
    assert up.shape == x.shape == (1, 40, 101)
    off, on = (AugmentConfig(mel_warp=w) for w in (0.0, 0.1))
    a, b = (D.draw_augment(np.random.default_rng(3), 8, aug) for aug in (off, on))
    assert "warp" not in a and set(b) - set(a) == {"warp"}
    assert all(np.array_equal(a[k], b[k]) for k in a)  # switching it on changes no other draw
    assert ((b["warp"] >= 0.9) & (b["warp"] <= 1.1)).all() and b["warp"].std() > 0.02
