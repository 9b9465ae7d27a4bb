"""Read (and write) CTranslate2 ``model.bin`` files without ctranslate2; map a Whisper encoder.

The format (binary version 4-6, little endian)::

    uint32 version
    string spec_name, uint32 spec_revision          (string = uint16 byte length + bytes + NUL)
    uint32 n_variables, then per variable:
        string name, uint8 rank, uint32 dims[rank], uint8 dtype, uint32 n_bytes, bytes
    uint32 n_aliases, then (string alias, string target) pairs

dtype: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16. Quantized weights (int8/int16)
come with a ``<name>_scale`` variable; the float weight is ``q / scale`` per output row.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SUPPORTED_VERSIONS = (4, 5, 6)
WRITE_VERSION = 6
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: np.uint16}
_DTYPE_IDS = {torch.float32: 0, torch.int8: 1, torch.int16: 2, torch.int32: 3, torch.float16: 4}
_DTYPE_IDS[torch.bfloat16] = 5


class CT2FormatError(ValueError):
    """A file that is not a CTranslate2 model.bin this reader understands."""


@dataclass(frozen=True)
class CT2Model:
    """The content of a model.bin: spec name and revision, variables (aliases resolved)."""

    spec: str
    revision: int
    variables: dict[str, torch.Tensor]
    aliases: dict[str, str]


def is_ct2_folder(path: str | Path) -> bool:
    """True for a folder holding a CTranslate2 ``model.bin`` (and ``config.json``)."""
    path = Path(path)
    return path.is_dir() and (path / "model.bin").is_file()


def read_ct2(path: str | Path, prefix: str = "") -> CT2Model:
    """Read ``model.bin`` (or a folder holding one). Only variables starting with ``prefix`` are
    kept (``"encoder/"`` skips the decoder). Tensors keep the file's dtype (bf16 as torch.bfloat16)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    if not path.is_file():
        raise CT2FormatError(f"{path}: no such file")
    data = np.memmap(path, dtype=np.uint8, mode="r")
    pos = 0

    def take(n: int) -> memoryview:
        nonlocal pos
        if pos + n > len(data):
            raise CT2FormatError(f"{path}: truncated at byte {pos} (wanted {n} more bytes)")
        out = data[pos : pos + n]
        pos += n
        return out

    def u8() -> int:
        return int(take(1)[0])

    def u16() -> int:
        return struct.unpack("<H", take(2).tobytes())[0]

    def u32() -> int:
        return struct.unpack("<I", take(4).tobytes())[0]

    def string() -> str:
        return take(u16()).tobytes().rstrip(b"\0").decode("utf-8")

    version = u32()
    if version not in SUPPORTED_VERSIONS:
        raise CT2FormatError(
            f"{path}: CTranslate2 binary version {version} is not supported "
            f"(supported: {', '.join(map(str, SUPPORTED_VERSIONS))}); is this a model.bin?"
        )
    spec, revision = string(), u32()
    variables: dict[str, torch.Tensor] = {}
    for _ in range(u32()):
        name = string()
        dims = [u32() for _ in range(u8())]
        dtype_id, n_bytes = u8(), u32()
        if dtype_id not in _DTYPES:
            raise CT2FormatError(f"{path}: variable {name} has unknown dtype id {dtype_id}")
        raw = take(n_bytes)
        if not name.startswith(prefix):
            continue
        array = np.frombuffer(raw, dtype=_DTYPES[dtype_id])
        if array.size != int(np.prod(dims, dtype=np.int64)):
            raise CT2FormatError(f"{path}: variable {name} has {array.size} items, dims {dims}")
        tensor = torch.from_numpy(array.reshape(dims).copy())
        variables[name] = tensor.view(torch.bfloat16) if dtype_id == 5 else tensor
    aliases = {}
    if pos < len(data):
        for _ in range(u32()):
            alias, target = string(), string()
            aliases[alias] = target
            if alias.startswith(prefix) and target in variables:
                variables[alias] = variables[target]
    return CT2Model(spec=spec, revision=revision, variables=variables, aliases=aliases)


def write_ct2(
    path: str | Path,
    variables: dict[str, torch.Tensor],
    spec: str = "WhisperSpec",
    revision: int = 3,
    aliases: dict[str, str] | None = None,
) -> None:
    """Write variables as a version-6 ``model.bin`` (atomically): for tests and tools."""

    def string(text: str) -> bytes:
        raw = text.encode("utf-8") + b"\0"
        return struct.pack("<H", len(raw)) + raw

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<I", WRITE_VERSION) + string(spec) + struct.pack("<I", revision))
        f.write(struct.pack("<I", len(variables)))
        for name, tensor in variables.items():
            tensor = torch.as_tensor(tensor).contiguous()
            dtype_id = _DTYPE_IDS[tensor.dtype]
            raw = (tensor.view(torch.int16) if dtype_id == 5 else tensor).numpy().tobytes()
            f.write(string(name) + struct.pack("<B", tensor.dim()))
            f.write(struct.pack(f"<{tensor.dim()}I", *tensor.shape))
            f.write(struct.pack("<BI", dtype_id, len(raw)) + raw)
        aliases = aliases or {}
        f.write(struct.pack("<I", len(aliases)))
        for alias, target in aliases.items():
            f.write(string(alias) + string(target))
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def dequantize(variables: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Float32 copies of all float variables; int8/int16 weights divided by their ``_scale``."""
    out = {}
    for name, tensor in variables.items():
        if name.endswith("_scale"):
            continue
        scale = variables.get(name + "_scale")
        if scale is not None and tensor.dtype in (torch.int8, torch.int16):
            scale = scale.float()
            tensor = tensor.float() / (scale[:, None] if scale.dim() == 1 else scale)
        out[name] = tensor if tensor.dtype in (torch.int32, torch.int16) else tensor.float()
    return out


@dataclass(frozen=True)
class WhisperEncoderDims:
    """Shape of a Whisper encoder, read from its weights."""

    n_mels: int  # 80, or 128 for large-v3
    n_ctx: int  # 1500 encoder positions (30 s)
    d_model: int
    n_heads: int
    n_layers: int
    ffn_dim: int


def whisper_encoder_from_ct2(model: CT2Model) -> tuple[WhisperEncoderDims, dict[str, torch.Tensor]]:
    """Dimensions and a float32 state dict in transformers' ``WhisperEncoder`` naming."""
    if not model.spec.startswith("Whisper"):
        raise CT2FormatError(f"model.bin holds a {model.spec!r}, not a Whisper model")
    v = dequantize({k: t for k, t in model.variables.items() if k.startswith("encoder/")})
    try:
        n_layers = 1 + max(int(m[1]) for k in v if (m := re.match(r"encoder/layer_(\d+)/", k)))
        d_model, n_mels, _ = v["encoder/conv1/weight"].shape
        n_ctx = v["encoder/position_encodings/encodings"].shape[0]
        ffn_dim = v["encoder/layer_0/ffn/linear_0/weight"].shape[0]
    except (KeyError, ValueError) as e:
        raise CT2FormatError(f"model.bin has no complete Whisper encoder ({e})") from e
    heads = v.get("encoder/num_heads")
    n_heads = int(heads.item()) if heads is not None else d_model // 64
    state = {
        "conv1.weight": v["encoder/conv1/weight"],
        "conv1.bias": v["encoder/conv1/bias"],
        "conv2.weight": v["encoder/conv2/weight"],
        "conv2.bias": v["encoder/conv2/bias"],
        "embed_positions.weight": v["encoder/position_encodings/encodings"],
        "layer_norm.weight": v["encoder/layer_norm/gamma"],
        "layer_norm.bias": v["encoder/layer_norm/beta"],
    }
    for i in range(n_layers):
        src, dst = f"encoder/layer_{i}/", f"layers.{i}."
        q, k, val = v[src + "self_attention/linear_0/weight"].split(d_model)
        qb, _kb, vb = v[src + "self_attention/linear_0/bias"].split(d_model)  # k has no bias
        state.update(
            {
                dst + "self_attn.q_proj.weight": q,
                dst + "self_attn.q_proj.bias": qb,
                dst + "self_attn.k_proj.weight": k,
                dst + "self_attn.v_proj.weight": val,
                dst + "self_attn.v_proj.bias": vb,
                dst + "self_attn.out_proj.weight": v[src + "self_attention/linear_1/weight"],
                dst + "self_attn.out_proj.bias": v[src + "self_attention/linear_1/bias"],
                dst + "self_attn_layer_norm.weight": v[src + "self_attention/layer_norm/gamma"],
                dst + "self_attn_layer_norm.bias": v[src + "self_attention/layer_norm/beta"],
                dst + "fc1.weight": v[src + "ffn/linear_0/weight"],
                dst + "fc1.bias": v[src + "ffn/linear_0/bias"],
                dst + "fc2.weight": v[src + "ffn/linear_1/weight"],
                dst + "fc2.bias": v[src + "ffn/linear_1/bias"],
                dst + "final_layer_norm.weight": v[src + "ffn/layer_norm/gamma"],
                dst + "final_layer_norm.bias": v[src + "ffn/layer_norm/beta"],
            }
        )
    dims = WhisperEncoderDims(n_mels, n_ctx, d_model, n_heads, n_layers, ffn_dim)
    return dims, {k: t.contiguous() for k, t in state.items()}


def whisper_encoder_to_ct2(state: dict[str, torch.Tensor], n_heads: int) -> dict[str, torch.Tensor]:
    """The inverse of :func:`whisper_encoder_from_ct2` (encoder variables only), for tests."""
    v = {
        "encoder/conv1/weight": state["conv1.weight"],
        "encoder/conv1/bias": state["conv1.bias"],
        "encoder/conv2/weight": state["conv2.weight"],
        "encoder/conv2/bias": state["conv2.bias"],
        "encoder/position_encodings/encodings": state["embed_positions.weight"],
        "encoder/layer_norm/gamma": state["layer_norm.weight"],
        "encoder/layer_norm/beta": state["layer_norm.bias"],
        "encoder/num_heads": torch.tensor(n_heads, dtype=torch.int16),
    }
    n_layers = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("layers."))
    for i in range(n_layers):
        s, d = f"layers.{i}.", f"encoder/layer_{i}/"
        qb = state[s + "self_attn.q_proj.bias"]
        v[d + "self_attention/linear_0/weight"] = torch.cat(
            [state[s + f"self_attn.{p}_proj.weight"] for p in "qkv"]
        )
        v[d + "self_attention/linear_0/bias"] = torch.cat(
            [qb, torch.zeros_like(qb), state[s + "self_attn.v_proj.bias"]]
        )
        for ct2_name, hf_name in [
            ("self_attention/linear_1", "self_attn.out_proj"),
            ("ffn/linear_0", "fc1"),
            ("ffn/linear_1", "fc2"),
        ]:
            v[d + ct2_name + "/weight"] = state[s + hf_name + ".weight"]
            v[d + ct2_name + "/bias"] = state[s + hf_name + ".bias"]
        for ct2_name, hf_name in [
            ("self_attention/layer_norm", "self_attn_layer_norm"),
            ("ffn/layer_norm", "final_layer_norm"),
        ]:
            v[d + ct2_name + "/gamma"] = state[s + hf_name + ".weight"]
            v[d + ct2_name + "/beta"] = state[s + hf_name + ".bias"]
    return v
