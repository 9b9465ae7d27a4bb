"""``liser teacher fit-audio``: fit an audio teacher (LoRA + pooling head, or a head on a frozen
encoder) on one fold of a labeled manifest, early stopping on validation UAR.

Encoder outputs are cached on disk per clip (``config.cache_dir``): pooled layer features for a
frozen encoder (heads for every fold then fit in seconds); for LoRA in the top ``lora_top_layers``
of the layers the head reads, the input of the first adapted layer (each step runs only those).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from liser.config import AudioTeacherConfig, replace, save_config, to_dict
from liser.constants import SAMPLE_RATE
from liser.devices import autocast_dtype, precision_name, resolve_device

from .audio import (
    EncoderTeacher,
    PoolingHead,
    apply_lora,
    load_audio_encoder,
    lora_layers,
    lora_state,
    save_fitted_teacher,
)
from .base import autocast, write_calibration
from .calibration import expected_calibration_error, fit_temperature
from .clips import Clips, encode_clips, lower_layer_cache, uar

log = logging.getLogger(__name__)


def fit_audio_teacher(config: AudioTeacherConfig, progress: bool = True) -> Path:
    """Fit a teacher on ``config.data`` (manifest, fold); returns the saved teacher folder."""
    from liser.manifest import corpus_classes, read_manifest, split_fold

    started = time.time()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.yaml")
    df = read_manifest(config.data.manifest)
    classes = tuple(config.data.classes) or corpus_classes(df)
    splits = split_fold(df, config.data, config.seed)
    if len(splits["val"]) == 0:
        raise ValueError(
            "fit-audio needs validation speakers for early stopping: data.val_fraction > 0"
        )
    device = resolve_device(config.device)
    encoder, fingerprint = load_audio_encoder(config.spec, pad_30s=config.whisper_pad_30s)
    encoder.to(device)
    window = round(config.window_seconds * SAMPLE_RATE)
    hop = round(config.hop_seconds * SAMPLE_RATE)
    cache = _cache_dir(config, fingerprint, "pooled", device) if config.freeze_encoder else None
    data = {
        k: Clips.load(splits[k], classes, window, hop, progress, cache)
        for k in ("train", "val", "test")
    }
    head = PoolingHead(
        encoder.n_hidden, encoder.dim, len(classes), config.layer, config.head_dropout
    ).to(device)
    teacher = EncoderTeacher(encoder, head, classes, fingerprint, config, device)
    if config.freeze_encoder:
        feats = {k: encode_clips(teacher, v, cache, progress) for k, v in data.items()}
        with _one_thread():  # tiny ops: more threads only wait on each other
            metrics = _fit_frozen(teacher, data, feats, config, rng)
    else:
        metrics = _fit_lora(teacher, data, config, fingerprint, progress, out)
    metrics["seconds"] = round(time.time() - started, 1)
    metrics["sizes"] = {k: len(v) for k, v in data.items()}
    metrics["fold"] = config.data.fold
    base = (
        config.spec
        if not Path(config.spec).expanduser().exists()
        else str(Path(config.spec).expanduser().resolve())
    )
    save_fitted_teacher(out, teacher, base, fingerprint, metrics)
    write_calibration(out, metrics["calibration"])
    log.info(
        "fit-audio: %s", json.dumps({k: metrics[k] for k in ("val_uar", "test_uar", "test_war")})
    )
    return out


def fit_audio_teacher_folds(
    config: AudioTeacherConfig, folds: tuple[int, ...], progress: bool = True
) -> dict:
    """``fit_audio_teacher`` for each fold in ``output_dir/fold{k}``; mean and std of test UAR/WAR
    in ``output_dir/summary.json``. Folds already fitted (``teacher.json`` present) are reused."""
    out = Path(config.output_dir)
    results = {}
    for fold in folds:
        folder = out / f"fold{fold}"
        if not (folder / "teacher.json").is_file():
            fit_audio_teacher(
                replace(config, **{"data.fold": fold, "output_dir": str(folder)}), progress
            )
        results[fold] = json.loads((folder / "teacher.json").read_text())["metrics"]
    summary = {
        "folds": {
            str(k): {m: v[m] for m in ("val_uar", "test_uar", "test_war", "seconds")}
            for k, v in results.items()
        }
    }
    for m in ("test_uar", "test_war"):
        values = np.array([v[m] for v in results.values()])
        summary[m] = {"mean": float(values.mean()), "std": float(values.std())}
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(out / "summary.json")
    return summary


def _class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    counts = np.bincount(labels, minlength=n_classes).astype(np.float32)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n_classes, 0.0)
    return torch.from_numpy(weights.astype(np.float32))


def _evaluate(window_logits: torch.Tensor, clips: Clips) -> dict:
    """Clip-level UAR/WAR from window logits (mean of window probabilities per clip)."""
    probs = torch.softmax(window_logits.float(), -1).numpy()
    clip_probs = np.stack([probs[clips.owner == i].mean(0) for i in range(len(clips))])
    pred = clip_probs.argmax(1)
    nll = -np.log(np.clip(clip_probs[np.arange(len(clips)), clips.labels], 1e-12, 1)).mean()
    return {
        "uar": uar(clips.labels, pred, clip_probs.shape[1]),
        "war": float((pred == clips.labels).mean()),
        "nll": float(nll),
    }


def _finish(teacher, best_state, logits, data, history, best_epoch) -> dict:
    """Restore the best head/adapter, score val and test, fit the temperature on validation."""
    teacher.head.load_state_dict(best_state["head"])
    if best_state.get("lora"):
        teacher.encoder.load_state_dict(best_state["lora"], strict=False)
    teacher.eval()
    val_logits, test_logits = logits("val"), logits("test")
    val, test = _evaluate(val_logits, data["val"]), _evaluate(test_logits, data["test"])
    val_labels = torch.from_numpy(data["val"].labels[data["val"].owner])
    temperature = fit_temperature(val_logits, val_labels)
    probs = torch.softmax(val_logits / temperature, -1).numpy()
    calibration = {
        "temperature": temperature,
        "fitted_on": "validation windows",
        "ece_before": expected_calibration_error(
            torch.softmax(val_logits, -1).numpy(), val_labels.numpy()
        ),
        "ece_after": expected_calibration_error(probs, val_labels.numpy()),
    }
    return {
        "val_uar": val["uar"],
        "val_war": val["war"],
        "test_uar": test["uar"],
        "test_war": test["war"],
        "best_epoch": best_epoch,
        "history": history,
        "layer_weights": teacher.head.layer_weights().tolist(),
        "calibration": calibration,
    }


@contextmanager
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _validate(logits, data, epoch: int, loss: torch.Tensor, history: list) -> tuple:
    """Validation metrics after an epoch, appended to ``history``; returns (score, metrics), the
    score ordering epochs by UAR first, validation NLL breaking ties."""
    val = _evaluate(logits("val"), data["val"])
    history.append(
        {"epoch": epoch, "val_uar": val["uar"], "val_nll": val["nll"], "loss": float(loss.detach())}
    )
    return (val["uar"], -val["nll"]), val


def _head_groups(head, config) -> list[dict]:
    """AdamW groups of the pooling head: its linear layer with ``head_weight_decay``, the layer
    weights with ``weight_decay`` (a strong decay would pull them to a plain mean of layers)."""
    layer = [head.layer_logits]
    rest = [p for p in head.parameters() if p is not head.layer_logits]
    return [
        {"params": rest, "lr": config.head_lr, "weight_decay": config.head_weight_decay},
        {"params": layer, "lr": config.head_lr, "weight_decay": config.weight_decay},
    ]


def _fit_frozen(teacher, data, feats, config, rng) -> dict:
    """Head on pooled features (n_windows, L+1, D) of all windows, each labeled with its clip."""
    feats = {k: torch.from_numpy(v) for k, v in feats.items()}
    train = data["train"]
    labels = torch.from_numpy(train.labels[train.owner])
    weights = _class_weights(train.labels, len(teacher.classes))
    head = teacher.head
    optim = torch.optim.AdamW(_head_groups(head, config))
    best, best_state, best_epoch, history, bad = (-1.0, 0.0), None, 0, [], 0

    def logits(split: str) -> torch.Tensor:
        head.eval()
        with torch.no_grad():
            return head(feats[split].to(teacher.device)).cpu()

    for epoch in range(1, config.head_epochs + 1):
        head.train()
        order = torch.from_numpy(rng.permutation(len(labels)))
        for i in range(0, len(order) - 1, config.head_batch_size):
            idx = order[i : i + config.head_batch_size]
            if len(idx) < 2:
                continue
            z = head(feats["train"][idx].to(teacher.device))
            loss = F.cross_entropy(
                z, labels[idx].to(teacher.device), weight=weights.to(teacher.device)
            )
            optim.zero_grad()
            loss.backward()
            optim.step()
        score, val = _validate(logits, data, epoch, loss, history)
        if score > best:
            best, best_epoch, bad = score, epoch, 0
            best_state = {"head": {k: v.clone() for k, v in head.state_dict().items()}}
        else:
            bad += 1
            if config.patience and bad >= 10 * config.patience:
                break
    return _finish(teacher, best_state, logits, data, history, best_epoch)


def _fit_lora(teacher, data, config, fingerprint, progress, out: Path) -> dict:
    """LoRA + head, one random window per training clip per epoch; resumable from ``out``."""
    from rich.progress import track

    encoder, head, device = teacher.encoder, teacher.head, teacher.device
    apply_lora(encoder, config)
    encoder.to(device)
    split_at, end = lora_layers(config, encoder.n_hidden - 1)
    cached = split_at > 0 and hasattr(encoder, "run_layers") and bool(config.cache_dir)
    unused = encoder.n_hidden - 1 - end  # layers above the head's: not run when cached
    if cached:
        cache = _cache_dir(config, fingerprint, f"lower{split_at}", device)
        lower = {
            k: lower_layer_cache(encoder, v, split_at, cache, progress) for k, v in data.items()
        }
    dtype = autocast_dtype(device, config.precision)
    lora_params = [p for p in encoder.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(
        [
            {"params": lora_params, "lr": config.lr},
            *_head_groups(head, config),
        ],
        weight_decay=config.weight_decay,
    )
    weights = _class_weights(data["train"].labels, len(teacher.classes)).to(device)

    def forward(split: str, idx: np.ndarray) -> torch.Tensor:
        """Logits (len(idx), C) of windows ``idx`` of a split."""
        with autocast(device, dtype):
            if cached:
                pooled_low, seq, mask = (t[idx].to(device) for t in lower[split])
                top_hidden = torch.stack(encoder.run_layers(seq.float(), start=split_at, stop=end))
                pooled = torch.cat([pooled_low.float(), head.pool(top_hidden, mask)], dim=1)
                pooled = F.pad(pooled, (0, 0, 0, unused))  # as EncoderTeacher pads them
            else:
                waves, lengths = data[split].windows(idx)
                hidden, mask = encoder(
                    torch.from_numpy(waves).to(device), torch.from_numpy(lengths).to(device)
                )
                pooled = head.pool(hidden, mask)
            return head(pooled)

    def logits(split: str) -> torch.Tensor:
        encoder.eval(), head.eval()
        n = len(data[split].owner)
        with torch.no_grad():
            return torch.cat(
                [
                    forward(split, np.arange(i, min(n, i + config.batch_size))).float().cpu()
                    for i in range(0, n, config.batch_size)
                ]
            )

    same = {k: v for k, v in to_dict(config).items() if k not in ("epochs", "patience")}
    state = _load_resume(out, same, encoder, head, optim)
    best, best_epoch, bad = state["best"], state["best_epoch"], state["bad"]
    history, best_state = state["history"], state["best_state"]
    train = data["train"]
    for epoch in range(state["epoch"] + 1, config.epochs + 1):
        encoder.train(), head.train()
        rng = np.random.default_rng([config.seed, epoch])  # the same picks whether resumed or not
        picks = np.array(
            [rng.choice(np.flatnonzero(train.owner == i)) for i in rng.permutation(len(train))]
        )
        batches = [
            picks[i : i + config.batch_size] for i in range(0, len(picks), config.batch_size)
        ]
        for idx in track(batches, f"epoch {epoch}", disable=not progress, transient=True):
            if len(idx) < 2:
                continue
            loss = F.cross_entropy(
                forward("train", idx).float(),
                torch.from_numpy(train.labels[train.owner[idx]]).to(device),
                weight=weights,
            )
            optim.zero_grad()
            loss.backward()
            optim.step()
        score, val = _validate(logits, data, epoch, loss, history)
        if score > best:
            best, best_epoch, bad = score, epoch, 0
            best_state = {
                "head": {k: v.detach().clone() for k, v in head.state_dict().items()},
                "lora": lora_state(encoder),
            }
        else:
            bad += 1
        info = {"epoch": epoch, "best": best, "best_epoch": best_epoch, "history": history}
        _save_resume(out, info | {"bad": bad, "config": same}, encoder, head, best_state, optim)
        log.info(
            "fit-audio: epoch %d val UAR %.3f (best %.3f at %d)",
            epoch,
            val["uar"],
            best[0],
            best_epoch,
        )
        if config.patience and bad >= config.patience:
            break
    return _finish(teacher, best_state, logits, data, history, best_epoch)


def _save_resume(out: Path, info: dict, encoder, head, best_state: dict, optim) -> None:
    """Adapters, head, best states and optimizer after an epoch; ``resume.json`` written last."""
    from safetensors.torch import save_file

    tensors = {f"lora.{k}": v for k, v in lora_state(encoder).items()}
    tensors |= {f"head.{k}": v for k, v in head.state_dict().items()}
    tensors |= {f"best.{p}.{k}": v for p in ("head", "lora") for k, v in best_state[p].items()}
    tensors = {k: v.contiguous().cpu() for k, v in tensors.items()}
    save_file(tensors, str(out / "resume.safetensors.tmp"))
    torch.save(optim.state_dict(), out / "resume.optim.pt.tmp")
    (out / "resume.safetensors.tmp").replace(out / "resume.safetensors")
    (out / "resume.optim.pt.tmp").replace(out / "resume.optim.pt")
    (out / "resume.json.tmp").write_text(json.dumps(info))
    (out / "resume.json.tmp").replace(out / "resume.json")


def _load_resume(out: Path, same: dict, encoder, head, optim) -> dict:
    """The state ``_save_resume`` left for the same config (loaded into the modules and the
    optimizer), or a fresh state."""
    from safetensors.torch import load_file

    fresh = {"epoch": 0, "best": (-1.0, 0.0), "best_epoch": 0, "history": [], "bad": 0}
    fresh["best_state"] = None
    if not ((out / "resume.json").is_file() and (out / "resume.safetensors").is_file()):
        return fresh
    info = json.loads((out / "resume.json").read_text())
    if info.get("config") != same:
        log.warning("fit-audio: %s holds a run with another config; starting afresh", out)
        return fresh
    tensors = load_file(out / "resume.safetensors")

    def part(prefix: str) -> dict:
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

    encoder.load_state_dict(part("lora."), strict=False)
    head.load_state_dict(part("head."))
    optim.load_state_dict(torch.load(out / "resume.optim.pt", weights_only=True))
    log.info(
        "fit-audio: resumed after epoch %d (best val UAR %.3f)", info["epoch"], info["best"][0]
    )
    best_state = {"head": part("best.head."), "lora": part("best.lora.")}
    return info | {"best": tuple(info["best"]), "best_state": best_state}


def _cache_dir(config: AudioTeacherConfig, fingerprint: str, kind: str, device) -> Path | None:
    """The cache folder of one encoder, window layout, precision (bf16 and fp32 outputs differ)
    and kind of cached output."""
    if not config.cache_dir:
        return None
    precision = precision_name(autocast_dtype(device, config.precision))
    key = f"{fingerprint}|{config.window_seconds}|{config.hop_seconds}|{config.whisper_pad_30s}|{kind}"
    key += "" if precision == "fp32" else f"|{precision}"  # fp32 caches made before stay valid
    return Path(config.cache_dir).expanduser() / hashlib.sha1(key.encode()).hexdigest()[:16]
