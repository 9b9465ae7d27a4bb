"""Audio encoders (HuBERT, wav2vec 2.0, WavLM, Whisper) with LoRA and a pooling head as teachers.

An encoder maps ``waves (B, N), lengths (B,) -> (hidden (L+1, B, T, D), mask (B, T))``: every
layer's hidden states and the frames that hold audio. :class:`PoolingHead` averages each layer
over those frames, combines the layers (a learned softmax-weighted sum, the last one, or one by
index) and classifies. A fitted teacher is a folder: ``teacher.json`` (base encoder, config,
classes, metrics), ``head.safetensors``, ``adapter.safetensors`` (LoRA, absent when frozen),
``calibration.json`` (temperature). A frozen teacher caches its encoder's pooled outputs per
window (``window_cache``), so relabeling with another head of the same encoder is cheap.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from liser.config import AudioTeacherConfig, from_dict, to_dict
from liser.devices import autocast_dtype, precision_name
from liser.files import atomic_write, write_json

from .base import Teacher, TeacherError, quick_hash, read_calibration
from .ct2 import is_ct2_folder
from .whisper import is_hf_whisper_folder, load_whisper_encoder
from .window_cache import WindowCache

TEACHER_FILE = "teacher.json"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_HUB_FILES = ["*.json", "*.safetensors", "*.txt", "model.bin", "pytorch_model.bin"]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def resolve_spec(spec: str) -> tuple[Path, str]:
    """A teacher spec -> (local folder, fingerprint of its weights). A hub id is looked up in the
    local Hugging Face cache; it is downloaded only when HF_HUB_OFFLINE is not set."""
    path = Path(spec).expanduser()
    if path.exists():
        path = path.resolve()
        weights = (
            [p for p in path.iterdir() if p.suffix in (".bin", ".safetensors")]
            if path.is_dir()
            else [path]
        )
        return path, f"file:{quick_hash(weights or [path / 'config.json'])}"
    if not _HUB_ID.match(spec) or spec.startswith((".", "~")):
        raise TeacherError(f"audio teacher '{spec}': no such file or folder")
    from huggingface_hub import snapshot_download

    hint = (
        f"audio teacher '{spec}' is not a local path and not in the Hugging Face cache; pass a "
        "local path instead: a transformers model folder, a CTranslate2 Whisper folder "
        "(../shared/bin/get-whisper base ~/.cache/liser/whisper-base), a folder saved by "
        "`liser teacher fit-audio`, or a liser checkpoint"
    )
    try:
        folder = snapshot_download(spec, local_files_only=True, allow_patterns=_HUB_FILES)
    except Exception:
        if _offline():
            raise TeacherError(
                hint + " (HF_HUB_OFFLINE is set, so nothing is downloaded)"
            ) from None
        try:
            folder = snapshot_download(spec, etag_timeout=10, allow_patterns=_HUB_FILES)
        except Exception as e:
            raise TeacherError(f"{hint} (download failed: {type(e).__name__}: {e})") from None
    return Path(folder), f"hub:{spec}@{Path(folder).name}"


class HFAudioEncoder(nn.Module):
    """A transformers speech encoder (HuBERT, wav2vec 2.0, WavLM, ...) -> all hidden states."""

    def __init__(self, model: nn.Module, normalize: bool, attention_mask: bool):
        super().__init__()
        self.model = model
        self.normalize = normalize
        self.use_attention_mask = attention_mask
        self.n_hidden = model.config.num_hidden_layers + 1
        self.dim = model.config.hidden_size

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor | None = None):
        n = waves.shape[-1]
        if lengths is None:
            lengths = torch.full((waves.shape[0],), n, device=waves.device)
        valid = torch.arange(n, device=waves.device)[None, :] < lengths[:, None]
        waves = waves.float()
        if self.normalize:  # as Wav2Vec2FeatureExtractor(do_normalize=True), over valid samples
            count = lengths[:, None].float()
            mean = (waves * valid).sum(1, keepdim=True) / count
            var = (((waves - mean) * valid) ** 2).sum(1, keepdim=True) / count
            waves = (waves - mean) / torch.sqrt(var + 1e-7) * valid
        mask = valid.long() if self.use_attention_mask else None
        out = self.model(waves, attention_mask=mask, output_hidden_states=True)
        hidden = torch.stack(out.hidden_states)
        frames = self.model._get_feat_extract_output_lengths(lengths)
        return hidden, torch.arange(hidden.shape[2], device=waves.device)[None, :] < frames[:, None]


PICKLE_WEIGHTS = ("pytorch_model.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


def require_safetensors(folder: Path, spec: str) -> None:
    """A TeacherError for a transformers folder whose weights exist only as pickle files:
    liser loads safetensors only (unpickling can run arbitrary code)."""
    if not folder.is_dir() or any(folder.glob("*.safetensors")):
        return
    pickles = sorted({p.name for pattern in PICKLE_WEIGHTS for p in folder.glob(pattern)})
    if pickles:
        raise TeacherError(
            f"audio teacher '{spec}': {folder} holds its weights only as pickle files "
            f"({', '.join(pickles)}), which liser does not load (unpickling can run arbitrary "
            "code); convert them to safetensors where you trust them (transformers: "
            "model.save_pretrained(folder, safe_serialization=True))"
        )


def load_audio_encoder(spec: str, pad_30s: bool = False) -> tuple[nn.Module, str]:
    """An encoder (eval mode, fp32, CPU) and its fingerprint from a hub id or local folder."""
    folder, fingerprint = resolve_spec(spec)
    if not is_ct2_folder(folder):
        require_safetensors(folder, spec)
    if is_ct2_folder(folder) or is_hf_whisper_folder(folder):
        return load_whisper_encoder(folder, pad_30s=pad_30s), fingerprint + (
            ":pad30" if pad_30s else ""
        )
    if not (folder / "config.json").is_file():
        raise TeacherError(
            f"audio teacher '{spec}': {folder} has no config.json (not a model folder)"
        )
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

    config = AutoConfig.from_pretrained(folder)
    normalize, attention_mask = False, False
    if (folder / "preprocessor_config.json").is_file():
        extractor = AutoFeatureExtractor.from_pretrained(folder)
        normalize = bool(getattr(extractor, "do_normalize", False))
        attention_mask = bool(getattr(extractor, "return_attention_mask", False))
    model = AutoModel.from_pretrained(folder, config=config, use_safetensors=True)
    if not hasattr(model, "_get_feat_extract_output_lengths"):
        raise TeacherError(
            f"audio teacher '{spec}': {type(model).__name__} is not a speech encoder"
        )
    return HFAudioEncoder(model, normalize, attention_mask).eval(), fingerprint


def lora_layers(config: AudioTeacherConfig, n_layers: int) -> tuple[int, int]:
    """Encoder layers ``start..end-1`` that get LoRA adapters: the top ``lora_top_layers`` of
    those the head reads (a head on layer k reads layers 0..k-1; "weighted"/"last": all)."""
    end = n_layers
    if str(config.layer).lstrip("-").isdigit() and 0 <= int(config.layer) < n_layers:
        end = int(config.layer)
    if end == 0:
        raise TeacherError("layer 0 (the embeddings) has no encoder layer to adapt: freeze_encoder")
    top = config.lora_top_layers
    return (end - top if 0 < top < end else 0), end


def apply_lora(encoder: nn.Module, config: AudioTeacherConfig) -> nn.Module:
    """Insert LoRA adapters (peft) in ``config.target_modules`` of the layers ``lora_layers``
    gives; only the adapters stay trainable."""
    from peft import LoraConfig, inject_adapter_in_model

    n_layers = encoder.n_hidden - 1
    start, end = lora_layers(config, n_layers)
    layers = list(range(start, end)) if (start, end) != (0, n_layers) else None
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        layers_to_transform=layers,
        layers_pattern="layers" if layers else None,
        bias="none",
    )
    try:
        inject_adapter_in_model(lora, encoder)
    except ValueError as e:
        raise TeacherError(f"LoRA target modules {config.target_modules} not found: {e}") from e
    for name, param in encoder.named_parameters():
        param.requires_grad = "lora_" in name
    return encoder


def lora_state(encoder: nn.Module) -> dict[str, torch.Tensor]:
    """A copy (on the CPU) of the adapters' weights."""
    return {k: v.detach().cpu().clone() for k, v in encoder.state_dict().items() if "lora_" in k}


class PoolingHead(nn.Module):
    """Mean over audio frames of each layer, standardised, layers combined, then a linear layer.

    ``pool(hidden (L+1, B, T, D), mask (B, T)) -> (B, L+1, D)``;
    ``forward(pooled (B, L+1, D)) -> logits (B, C)``."""

    def __init__(
        self, n_hidden: int, dim: int, n_classes: int, layer: str = "weighted", dropout: float = 0.1
    ):
        super().__init__()
        if layer not in ("weighted", "last") and not str(layer).lstrip("-").isdigit():
            raise ValueError(f"layer must be 'weighted', 'last' or an integer, not {layer!r}")
        self.layer = str(layer)
        self.layer_logits = nn.Parameter(torch.zeros(n_hidden))
        self.norm = nn.BatchNorm1d(n_hidden * dim, affine=False)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(dim, n_classes)

    @staticmethod
    def pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(torch.float32)[None, :, :, None]
        pooled = (hidden.float() * m).sum(2) / m.sum(2).clamp_min(1.0)
        return pooled.transpose(0, 1)

    @property
    def depth(self) -> int | None:
        """Encoder layers this head reads (one integer layer below the last), else None: all."""
        k = int(self.layer) if self.layer.lstrip("-").isdigit() else -1
        return k if 0 <= k < self.layer_logits.numel() - 1 else None

    def layer_weights(self) -> torch.Tensor:
        return torch.softmax(self.layer_logits.float(), 0)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        x = self.norm(pooled.float().flatten(1)).view(pooled.shape)
        if self.layer == "weighted":
            x = (self.layer_weights()[None, :, None] * x).sum(1)
        else:
            x = x[:, -1 if self.layer == "last" else int(self.layer)]
        return self.linear(self.dropout(x))


class EncoderTeacher(Teacher):
    """An encoder (+ LoRA) with a pooling head: the audio teacher ``fit-audio`` trains."""

    def __init__(
        self, encoder, head, classes, fingerprint, config: AudioTeacherConfig, device="cpu"
    ):
        self.encoder, self.head = encoder, head
        self.classes = tuple(classes)
        self.fingerprint = fingerprint
        self.config = config
        self.window_seconds = config.window_seconds
        self.hop_seconds = config.hop_seconds
        self.batch_size = config.batch_size
        self.window_cache: WindowCache | None = None  # frozen encoders: see use_window_cache
        self._cache_at: tuple[Path, str] | None = None
        self.to(device)

    def to(self, device) -> EncoderTeacher:
        self.device = torch.device(device)
        self.dtype = autocast_dtype(self.device, self.config.precision)
        self.encoder.to(self.device)
        self.head.to(self.device)
        if self._cache_at:  # the precision is part of the key
            self.use_window_cache(*self._cache_at)
        return self

    def eval(self) -> EncoderTeacher:
        self.encoder.eval()
        self.head.eval()
        return self

    def use_window_cache(self, folder: Path, encoder_fingerprint: str) -> None:
        """Cache the frozen encoder's pooled outputs per window under ``folder`` (see
        ``window_cache``): teachers that share the encoder then run it once per window."""
        self._cache_at = (Path(folder), encoder_fingerprint)
        precision = precision_name(self.dtype)
        salt = f"{encoder_fingerprint}|{precision}|{self.config.whisper_pad_30s}"
        if self._depth() is not None:  # entries hold only the layers run (the rest are zeros)
            salt += f"|depth={self._depth()}"
        self.window_cache = WindowCache(folder, salt)

    def _depth(self) -> int | None:
        """Layers to run: all, unless the head reads one layer and the encoder can stop there."""
        return self.head.depth if getattr(self.encoder, "stops_early", False) else None

    def _pooled(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        depth = self._depth()
        if depth is None:
            hidden, mask = self.encoder(waves, lengths)
            return self.head.pool(hidden, mask)
        pooled = self.head.pool(*self.encoder(waves, lengths, depth=depth))
        unused = self.head.layer_logits.numel() - pooled.shape[1]  # layers the head never reads
        return F.pad(pooled, (0, 0, 0, unused))

    def logits(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.window_cache is None:
            return self.head(self._pooled(waves, lengths))
        return self.head(self.window_cache.pooled(waves, lengths, self._pooled))


class HFClassifierTeacher(Teacher):
    """A transformers audio-classification model (with ``id2label``) used as it is."""

    def __init__(self, folder: Path, fingerprint: str, device: torch.device, precision: str):
        from transformers import AutoModelForAudioClassification

        require_safetensors(folder, str(folder))
        model = AutoModelForAudioClassification.from_pretrained(folder, use_safetensors=True)
        self.model = model.to(device).eval()
        labels = self.model.config.id2label
        self.classes = tuple(str(labels[i]).lower() for i in range(len(labels)))
        self.fingerprint = fingerprint
        self.encoder = HFAudioEncoder(self.model, True, False)
        self.device, self.dtype = device, autocast_dtype(device, precision)
        self.temperature = read_calibration(folder)

    def logits(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        valid = torch.arange(waves.shape[-1], device=waves.device)[None, :] < lengths[:, None]
        return self.model(waves.float() * valid).logits


def save_fitted_teacher(
    folder, teacher: EncoderTeacher, base: str, base_fingerprint: str, metrics: dict
) -> Path:
    """Write a fitted teacher folder (files first, ``teacher.json`` last: its presence marks a
    complete folder)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def save(tensors: dict, name: str) -> None:
        state = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        atomic_write(folder / name, lambda tmp: save_file(state, tmp))

    save(teacher.head.state_dict(), "head.safetensors")
    adapter = lora_state(teacher.encoder)
    if adapter:
        save(adapter, "adapter.safetensors")
    meta = {
        "format": "liser-audio-teacher",
        "version": 1,
        "base": base,
        "base_fingerprint": base_fingerprint,
        "classes": list(teacher.classes),
        "lora": bool(adapter),
        "n_hidden": teacher.head.layer_logits.numel(),
        "layer_weights": teacher.head.layer_weights().tolist(),
        "config": to_dict(teacher.config),
        "metrics": metrics,
    }
    write_json(folder / TEACHER_FILE, meta, indent=2)
    return folder


def load_fitted_teacher(
    folder: Path, device: torch.device, precision: str | None = None
) -> EncoderTeacher:
    """Rebuild a teacher saved by ``fit_audio_teacher``: base encoder, LoRA, head, temperature."""
    from safetensors.torch import load_file

    folder = Path(folder)
    meta = json.loads((folder / TEACHER_FILE).read_text())
    config = from_dict(AudioTeacherConfig, meta["config"])
    if precision is not None:
        config = from_dict(AudioTeacherConfig, {**to_dict(config), "precision": precision})
    encoder, fingerprint = load_audio_encoder(meta["base"], pad_30s=config.whisper_pad_30s)
    if fingerprint != meta["base_fingerprint"]:
        raise TeacherError(
            f"{folder}: base encoder '{meta['base']}' has changed since the teacher was fitted "
            f"(fingerprint {fingerprint}, expected {meta['base_fingerprint']})"
        )
    if meta["lora"]:
        apply_lora(encoder, config)
        missing = encoder.load_state_dict(load_file(folder / "adapter.safetensors"), strict=False)
        lost = [k for k in missing.missing_keys if "lora_" in k]
        if lost or missing.unexpected_keys:
            raise TeacherError(
                f"{folder}: adapter does not fit the encoder ({(lost + missing.unexpected_keys)[:3]})"
            )
    head = PoolingHead(
        encoder.n_hidden, encoder.dim, len(meta["classes"]), config.layer, config.head_dropout
    )
    head.load_state_dict(load_file(folder / "head.safetensors"))
    files = [folder / "head.safetensors"] + (
        [folder / "adapter.safetensors"] if meta["lora"] else []
    )
    teacher = EncoderTeacher(
        encoder, head, meta["classes"], f"{fingerprint}+{quick_hash(files)}", config, device
    )
    teacher.temperature = read_calibration(folder)
    if not meta["lora"] and config.cache_dir:
        teacher.use_window_cache(Path(config.cache_dir) / "windows", fingerprint)
    return teacher.eval()
