"""The epoch loop of one training run (see ``liser.train`` for what a run does and guarantees)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from liser.checkpoint import non_finite
from liser.config import TrainConfig, to_dict
from liser.devices import resolve_precision
from liser.files import write_json

from . import data as D
from .distill import DistillTerms, unlabeled_stream
from .distributed import broadcast_floats, mean_over_processes, resolve_device, share
from .losses import SupervisedLoss, class_weights
from .optim import build_optimizer, weight_average
from .scores import score_other_corpora
from .state import STATE_JSON, STATE_TENSORS, check_same_run, diverged, find_state, save_state


class Run:
    """Everything one process needs for one run: data, model, optimizer, counters."""

    def __init__(self, config: TrainConfig, rank: int, world: int, progress: bool):
        self.config, self.rank, self.world = config, rank, world
        self.out = Path(config.output_dir).expanduser()
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        self.device = resolve_device(config.device)
        self.precision = resolve_precision(config.precision, self.device)
        self.console = Console(stderr=True, quiet=not (progress and rank == 0))
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not (progress and rank == 0),
        )

    # ----------------------------------------------------------------------------------------
    # Set-up

    def prepare(self) -> None:
        from liser.features import LogMel
        from liser.manifest import corpus_classes, read_manifest, split_fold

        config, data = self.config, self.config.data
        if not data.manifest:
            raise ValueError(
                "data.manifest is empty: give a labeled manifest (--set data.manifest=FILE)"
            )
        df = read_manifest(data.manifest)
        self.classes = tuple(data.classes) or corpus_classes(df)
        splits = split_fold(df, dataclasses.replace(data, classes=self.classes), config.seed)
        self.mode = D.clip_mode(data, config.augment)
        self.logmel = LogMel(config.frontend)
        with self.progress:
            self.sets = {
                name: D.load_clips(
                    splits[name], self.classes, config.frontend, data, self.mode, self.progress
                )
                for name in ("train", "val", "test")
            }
        for name in ("train", "test"):
            if len(self.sets[name]) == 0:
                raise ValueError(f"{data.manifest}: no usable {name} clip in fold {data.fold}")
        self.noise = D.channel_setup(self.sets["train"], config, self.progress)
        if config.frontend.normalize == "global":
            train = self.sets["train"]
            raw = (
                torch.from_numpy(x.astype(np.float32)) if self.mode == "features"
                else self.logmel.log_mel(torch.from_numpy(x)[None])
                for x in train.items
            )  # fmt: skip
            self.logmel.fit_global_stats(raw)
        self.spec = config.frontend.windows(data.eval_hop_seconds or None)  # as liser evaluate
        self.windows = {
            name: D.eval_windows(self.sets[name], self.logmel, self.spec)
            for name in ("val", "test")
            if len(self.sets[name])
        }
        self.stream, self.use = unlabeled_stream(config, self.logmel.normalise)
        self.skipped = [s for part in self.sets.values() for s in part.skipped]

    def build(self) -> None:
        from liser.student import Student

        config, stream = self.config, self.stream
        student = dataclasses.replace(
            config.student,
            n_classes=len(self.classes),
            n_audio_classes=len(stream.audio_classes) if stream and stream.audio_classes else config.student.n_audio_classes,
            n_video_classes=len(stream.video_classes) if stream and stream.video_classes else config.student.n_video_classes,
        )  # fmt: skip
        self.resolved = dataclasses.replace(config, student=student)
        torch.manual_seed(config.seed)
        self.model = Student(student, config.frontend).to(self.device)
        self.net = self.model
        self.ema = weight_average(self.model, config.optim.ema_decay)
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=ids, find_unused_parameters=True
            )
        labels = torch.from_numpy(self.sets["train"].labels)
        weights = class_weights(labels, len(self.classes)) if config.optim.class_weighting else None
        self.ce = SupervisedLoss(weights, config.optim.label_smoothing)
        teacher_classes = {k: getattr(stream, f"{k}_classes", ()) for k in ("audio", "video")}
        self.terms = DistillTerms(config.distill, self.use, self.classes, teacher_classes)
        self.batch = config.optim.batch_size
        n_train = len(self.sets["train"])
        self.global_batch = min(self.batch, n_train)
        self.steps = max(1, n_train // self.global_batch)
        self.unlabeled_batch = max(1, round(self.batch * config.distill.unlabeled_ratio))
        two = config.distill.schedule == "two-stage" and self.stream is not None
        self.stage1 = config.distill.stage1_epochs if two else 0
        self.total_epochs = self.stage1 + config.optim.epochs

    def stage(self, epoch: int) -> str:
        if epoch < self.stage1:
            return "distill"
        if self.stream is not None and self.config.distill.schedule == "joint":
            return "joint"
        return "supervised"

    def new_optimizer(self, epoch: int) -> None:
        epochs = self.stage1 if epoch < self.stage1 else self.config.optim.epochs
        self.optimizer, self.scheduler = build_optimizer(
            self.model, self.config, epochs * self.steps
        )

    def meta(self, epoch: int, metrics: dict) -> dict:
        from liser import __version__

        meta = {
            "config": to_dict(self.resolved),
            "classes": list(self.classes),
            "audio_classes": list(self.stream.audio_classes) if self.stream else [],
            "video_classes": list(self.stream.video_classes) if self.stream else [],
            "frontend": to_dict(self.config.frontend),
            "metrics": metrics,
            "seed": self.config.seed,
            "epoch": epoch,
            "precision": self.precision,
            "windows": dataclasses.asdict(self.spec),  # how validation and test cut clips
            "versions": {"liser": __version__, "torch": torch.__version__},
        }
        if self.config.frontend.normalize == "global":
            meta["frontend_stats"] = self.logmel.global_stats()
        return meta

    # ----------------------------------------------------------------------------------------
    # Training

    def fit(self) -> dict:
        started = time.perf_counter()
        self.prepare()
        self.build()
        self.new_optimizer(0)
        state = {"epoch": -1, "best_uar": -1.0, "best_epoch": -1, "bad_epochs": 0, "history": [],
                 "stopped": False, "seconds": 0.0}  # fmt: skip
        saved = find_state(self.out)
        if saved is not None:
            state = self.resume(saved)
        self.console.print(
            f"[bold]{self.config.name}[/]: {len(self.sets['train'])} train / {len(self.sets['val'])} val / "
            f"{len(self.sets['test'])} test clips, {len(self.classes)} classes, {self.mode} mode, "
            f"{self.precision}, {self.device}, {self.world} process(es)"
            + (f", {len(self.stream)} unlabeled windows" if self.stream else "")
            + (f"; resuming after epoch {state['epoch'] + 1}" if saved else "")
        )
        with self.progress:
            for epoch in range(state["epoch"] + 1, self.total_epochs):
                if state["stopped"]:
                    break
                if epoch == self.stage1 and epoch > 0:
                    self.new_optimizer(epoch)  # two-stage: fine-tuning starts afresh
                tick = time.perf_counter()
                losses = self.epoch(epoch)
                self.end_epoch(epoch, state, losses, time.perf_counter() - tick)
        return self.finish(state, time.perf_counter() - started)

    def epoch(self, epoch: int) -> dict:
        config, stage = self.config, self.stage(epoch)
        rng = np.random.default_rng([config.seed, epoch])
        torch.manual_seed(config.seed * 1_000_003 + epoch * 7919 + self.rank)
        train = self.sets["train"]
        order = rng.permutation(len(train))
        draws = D.draw_augment(rng, self.steps * self.global_batch, config.augment)
        unlabeled = (
            self.stream.epoch(epoch, self.unlabeled_batch) if stage != "supervised" else None
        )
        sums: dict[str, float] = defaultdict(float)
        self.net.train()
        title = f"epoch {epoch + 1}/{self.total_epochs}"
        task = self.progress.add_task(title, total=self.steps)
        try:
            for step in range(self.steps):
                span = slice(step * self.global_batch, (step + 1) * self.global_batch)
                rows = share(self.global_batch, self.rank, self.world)
                inputs, labeled = [], 0
                if stage != "distill":
                    index = order[span][rows]
                    x = D.train_batch(train, index, D.take(D.take(draws, span), rows),
                                      self.logmel, config.augment, self.noise)  # fmt: skip
                    inputs.append(x)
                    labeled = len(index)
                    targets = torch.from_numpy(train.labels[index])
                    seed = [config.seed, epoch, step, self.rank]
                    mix = D.mixup(x, config.augment.mixup, np.random.default_rng(seed))
                batch = next(unlabeled) if unlabeled is not None else None
                if batch is not None:
                    urows = share(batch["features"].shape[0], self.rank, self.world)
                    batch = {k: v[urows] if torch.is_tensor(v) else v for k, v in batch.items()}
                    inputs.append(batch["features"])
                x = torch.cat(inputs).to(self.device, non_blocking=True)
                with torch.autocast(
                    self.device.type, torch.bfloat16, enabled=self.precision == "bf16"
                ):
                    out = self.net(x)
                loss = torch.zeros((), device=self.device)
                if labeled:
                    targets = targets.to(self.device)
                    logits = out["logits"][:labeled]
                    if mix is None:
                        ce = self.ce(logits, targets)
                    else:
                        ce = self.ce.mixed(logits, targets, targets[mix[1]].to(self.device), mix[0])
                    loss = loss + ce
                    sums["ce"] += ce.item()
                if batch is not None:
                    for kind, term in self.terms(out, batch, labeled).items():
                        loss = loss + getattr(config.distill, f"{kind}_weight") * term
                        sums[kind] += term.item()
                if not torch.isfinite(loss):
                    raise diverged(config, epoch, f"step {step + 1}: the loss is {loss.item()}")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.optim.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.optim.grad_clip)
                self.optimizer.step()
                self.scheduler.step()
                if self.ema is not None:
                    self.ema.update_parameters(self.model)
                sums["loss"] += loss.item()
                self.progress.update(
                    task, advance=1, description=f"{title} loss {sums['loss'] / (step + 1):.3f}"
                )
        finally:
            if unlabeled is not None:
                unlabeled.close()
            self.progress.remove_task(task)
        keys = sorted(sums)
        means = mean_over_processes([sums[k] / self.steps for k in keys], self.device, self.world)
        result = dict(zip(keys, means, strict=True))
        result["lr"] = self.scheduler.get_last_lr()[0]
        return result

    def evaluate(self, name: str) -> dict:
        """Scores (``evaluate.classification_metrics`` + "probs", the clip probabilities) of split
        ``name``: each clip's windows' softmax averaged, in fp32, with process 0's model."""
        from liser.evaluate import evaluate_model

        windows, clip_of = self.windows[name]
        labels = self.sets[name].labels
        return evaluate_model(self.scored, windows, labels, self.classes, clip_of)

    @property
    def scored(self) -> torch.nn.Module:
        """The weights that are validated, kept as ``best`` and tested: the EMA's, if any."""
        return self.model if self.ema is None else self.ema.module

    def end_epoch(self, epoch: int, state: dict, losses: dict, seconds: float) -> None:
        stage = self.stage(epoch)
        if broken := non_finite(self.model.state_dict()):
            raise diverged(self.config, epoch, f"the weights hold NaN or Inf ({broken})")
        val = {"uar": None, "war": None}  # no validation in stage 1 or without val clips
        has_val = "val" in self.windows and stage != "distill"
        if has_val:
            val = self.evaluate("val") if self.rank == 0 else {"uar": 0.0, "war": 0.0}
            val["uar"], val["war"] = broadcast_floats(
                [val["uar"], val["war"]], self.device, self.world
            )
        improved = stage != "distill" and (not has_val or val["uar"] > state["best_uar"] + 1e-9)
        if improved:
            state.update(best_uar=val["uar"] if has_val else -1.0, best_epoch=epoch, bad_epochs=0)
        elif stage != "distill":
            state["bad_epochs"] += 1
        patience = self.config.optim.patience
        state["stopped"] = bool(has_val and patience and state["bad_epochs"] >= patience)
        record = {"epoch": epoch + 1, "stage": stage, **losses, "val_uar": val["uar"], "val_war": val["war"],
                  "seconds": seconds}  # fmt: skip
        state["history"].append(record)
        state["epoch"] = epoch
        state["seconds"] = state.get("seconds", 0.0) + seconds
        self.console.print(
            f"epoch {epoch + 1}/{self.total_epochs} {stage}: loss {losses.get('loss', 0):.4f}"
            + (
                f", val UAR {100 * val['uar']:.2f} % WAR {100 * val['war']:.2f} %"
                if has_val
                else ""
            )
            + (" [green]best[/]" if improved and has_val else "")
            + f" ({seconds:.1f} s)"
        )
        if self.rank == 0:
            metrics = {"val_uar": val["uar"], "val_war": val["war"], "epoch": epoch + 1}
            if improved:
                save_state(self.out, "best", self.scored, self.meta(epoch, metrics), None)
            tensors = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
            }
            if self.ema is not None:
                tensors["ema"] = self.ema.state_dict()
            payload = {**state, "config": to_dict(self.config)}
            save_state(self.out, "last", self.model, self.meta(epoch, metrics), payload, tensors)
        if self.world > 1:
            dist.barrier()

    def resume(self, folder: Path) -> dict:
        from liser.checkpoint import load_checkpoint

        state = json.loads((folder / STATE_JSON).read_text())
        check_same_run(state.pop("config"), self.config, self.out)
        loaded, _ = load_checkpoint(folder)
        self.model.load_state_dict(loaded.state_dict())
        self.new_optimizer(state["epoch"])
        tensors = torch.load(folder / STATE_TENSORS, map_location=self.device, weights_only=True)
        self.optimizer.load_state_dict(tensors["optimizer"])
        self.scheduler.load_state_dict(tensors["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(tensors["ema"])
        return state

    def finish(self, state: dict, seconds: float) -> dict:
        """Test the best checkpoint, write metrics.json on process 0, return the metrics."""
        from liser.checkpoint import library_versions, load_checkpoint
        from liser.evaluate import write_report

        path = self.out / "best"
        if self.rank == 0:
            best, _ = load_checkpoint(path)
            self.scored.load_state_dict(best.state_dict())
            test = self.evaluate("test")
            probs = test.pop("probs")
            rows = list(self.sets["test"].df.itertuples(index=False))
            write_report(test, self.out / "test", rows=rows, probs=probs)
            metrics = {
                "name": self.config.name,
                "fold": self.config.data.fold,
                "test": test,
                "val_uar": state["best_uar"],
                "best_epoch": state["best_epoch"] + 1,
                "epochs": state["epoch"] + 1,
                "stopped_early": state["stopped"],
                "checkpoint": str(path),
                "precision": self.precision,
                "windows": dataclasses.asdict(self.spec),
                "mode": self.mode,
                "train_seconds": state.get("seconds", 0.0),
                "seconds": seconds,
                "unlabeled_windows": len(self.stream) if self.stream else 0,
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
                "history": state["history"],
                "corpora": score_other_corpora(self.config, path, self.out / "corpora"),
                "config": to_dict(self.config),
                "seed": self.config.seed,
                "versions": library_versions(),
            }
            write_json(self.out / "metrics.json", metrics)
            test = metrics["test"]
            self.console.print(
                f"[bold]test[/] (best epoch {state['best_epoch'] + 1}): UAR {100 * test['uar']:.2f} % "
                f"WAR {100 * test['war']:.2f} %  -> {self.out / 'metrics.json'}"
            )
        if self.world > 1:
            dist.barrier()
        return json.loads((self.out / "metrics.json").read_text())
