"""What a run leaves on disk between epochs: checkpoints written atomically as whole folders,
the training state to resume from, the check that a resumed run has the same config, and the
error that stops a diverging run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from liser.config import TrainConfig, from_dict, to_dict

STATE_JSON, STATE_TENSORS = "train_state.json", "train_state.pt"
# may change on resume (eval_*: what is scored after training, not how the student is trained)
RUNTIME_KEYS = ("output_dir", "num_threads", "device", "data.num_workers", "data.eval_manifests",
                "data.eval_classes", "data.eval_map", "data.eval_adapt",
                "data.eval_adapt_on")  # fmt: skip


class TrainingDiverged(ValueError):
    """A run whose loss or weights became NaN or Inf; nothing of the failed epoch is saved."""


def diverged(config: TrainConfig, epoch: int, what: str) -> TrainingDiverged:
    """The error that stops a diverging run (``epoch`` 0-based); the checkpoints of the last
    complete epoch are left as they were."""
    last = Path(config.output_dir).expanduser() / "last"
    kept = f"the last good checkpoint is {last} (epoch {epoch})" if epoch else "nothing was saved"
    return TrainingDiverged(
        f"{config.name}: training diverged in epoch {epoch + 1}, {what}; {kept}. Lower "
        f"optim.lr (now {config.optim.lr:g}) and start again in a new output_dir"
    )


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished folder into place: the old one is renamed away first, then deleted."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def save_state(out: Path, name: str, model, meta: dict, state: dict | None, tensors=None) -> None:
    """Write ``out/name`` (checkpoint + optional training state) atomically as a whole folder."""
    from liser.checkpoint import save_checkpoint

    tmp = out / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(tmp, model, meta)
    if state is not None:
        torch.save(tensors, tmp / STATE_TENSORS)
        (tmp / STATE_JSON).write_text(json.dumps(state, indent=1))
    _replace_dir(tmp, out / name)


def restore_swapped(out: Path) -> None:
    """Undo a crash between the two renames of ``_replace_dir``: a ``name.old`` without its
    ``name`` (``last`` or ``best``) is the last complete copy, so it is put back."""
    for name in ("last", "best"):
        old = out / f"{name}.old"
        if old.is_dir() and not (out / name).exists():
            old.rename(out / name)


def find_state(out: Path) -> Path | None:
    """The folder of the last saved epoch (``last``, after a crash mid-swap its ``last.old``)."""
    restore_swapped(out)
    return out / "last" if (out / "last" / STATE_JSON).is_file() else None


def comparable(config: TrainConfig) -> dict:
    """The config without settings that may change between a run and its resumption."""
    data = to_dict(config)
    for key in RUNTIME_KEYS:
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node.pop(last, None)
    return data


def check_same_run(saved: dict, config: TrainConfig, where: Path) -> None:

    ours, theirs = comparable(config), comparable(from_dict(TrainConfig, saved))
    if ours != theirs:
        diff = [k for k in ours if ours[k] != theirs.get(k)]
        raise ValueError(
            f"{where} holds a run with another config (sections differ: {', '.join(diff)}); "
            "use another output_dir or delete that folder to start over"
        )
