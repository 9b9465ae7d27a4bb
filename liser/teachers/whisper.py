"""Whisper encoders as audio teachers: CTranslate2 (faster-whisper) folders or Hugging Face ones.

The encoder is transformers' ``WhisperEncoder`` (so peft's LoRA finds ``q_proj``/``v_proj``), run
by our own loop over its layers on the window's own frames with the positional table sliced: a
3 s window is 300 mel frames -> 150 encoder frames, a tenth of Whisper's padded 30 s input.
``pad_30s=True`` pads every window to 30 s as the original model does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .ct2 import WhisperEncoderDims, is_ct2_folder, read_ct2, whisper_encoder_from_ct2

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms window
HOP_LENGTH = 160  # 10 ms hop
SAMPLES_PER_TOKEN = 2 * HOP_LENGTH  # conv2 has stride 2: one encoder frame per 20 ms
N_SAMPLES_30S = 30 * SAMPLE_RATE


def whisper_mel_filters(n_mels: int) -> torch.Tensor:
    """Whisper's Slaney-scale, Slaney-normalised filterbank, shape = (n_mels, N_FFT // 2 + 1)."""
    from transformers.audio_utils import mel_filter_bank

    filters = mel_filter_bank(
        num_frequency_bins=N_FFT // 2 + 1,
        num_mel_filters=n_mels,
        min_frequency=0.0,
        max_frequency=SAMPLE_RATE / 2,
        sampling_rate=SAMPLE_RATE,
        norm="slaney",
        mel_scale="slaney",
    )
    return torch.from_numpy(np.ascontiguousarray(filters.T)).float()


class WhisperLogMel(nn.Module):
    """Whisper's front end: power STFT (25 ms Hann, 10 ms hop), mel, log10, floor at max - 8,
    then (x + 4) / 4. ``forward(waves (B, N)) -> (B, n_mels, N // 160)``, in float32."""

    def __init__(self, n_mels: int = 80):
        super().__init__()
        self.register_buffer("filters", whisper_mel_filters(n_mels), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        with torch.autocast(waves.device.type, enabled=False):
            stft = torch.stft(
                waves.float(), N_FFT, HOP_LENGTH, window=self.window, return_complex=True
            )
            power = stft[..., :-1].abs() ** 2
            log_mel = torch.clamp(self.filters @ power, min=1e-10).log10()
            floor = log_mel.amax(dim=(1, 2), keepdim=True) - 8.0
            return (torch.maximum(log_mel, floor) + 4.0) / 4.0


class WhisperAudioEncoder(nn.Module):
    """Whisper encoder -> all layers' hidden states, on the window's own frames.

    ``forward(waves (B, N), lengths (B,) valid samples) -> (hidden (L+1, B, T, D), mask (B, T))``
    with T = N / 320 (1500 with ``pad_30s``); ``mask`` marks the frames that hold audio.
    """

    def __init__(self, dims: WhisperEncoderDims, pad_30s: bool = False):
        super().__init__()
        from transformers import WhisperConfig
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        config = WhisperConfig(
            num_mel_bins=dims.n_mels,
            d_model=dims.d_model,
            encoder_layers=dims.n_layers,
            encoder_attention_heads=dims.n_heads,
            encoder_ffn_dim=dims.ffn_dim,
            max_source_positions=dims.n_ctx,
            decoder_layers=1,
            dropout=0.0,
            attention_dropout=0.0,
            activation_dropout=0.0,
        )
        config._attn_implementation = "sdpa"
        self.dims = dims
        self.pad_30s = pad_30s
        self.frontend = WhisperLogMel(dims.n_mels)
        with torch.device("meta"):  # no random init: the weights come from load_state_dict
            self.encoder = WhisperEncoder(config)
        self.n_hidden = dims.n_layers + 1
        self.dim = dims.d_model
        self.stops_early = True  # forward(depth=k) runs only the first k layers

    @property
    def layers(self) -> nn.ModuleList:
        return self.encoder.layers

    def embed(self, waves: torch.Tensor, lengths: torch.Tensor | None = None):
        """Waves (B, N) -> input of layer 0 (B, T, D) and the audio mask (B, T)."""
        n = waves.shape[-1]
        if lengths is None:
            lengths = torch.full((waves.shape[0],), n, device=waves.device)
        if self.pad_30s:
            if n > N_SAMPLES_30S:
                raise ValueError(f"a window of {n / SAMPLE_RATE:.1f} s is longer than 30 s")
            waves = F.pad(waves, (0, N_SAMPLES_30S - n))
        mel = self.frontend(waves)
        enc = self.encoder
        x = F.gelu(enc.conv1(mel.to(enc.conv1.weight.dtype)))
        x = F.gelu(enc.conv2(x)).permute(0, 2, 1)
        if x.shape[1] > self.dims.n_ctx:
            raise ValueError(
                f"a window of {n / SAMPLE_RATE:.1f} s gives {x.shape[1]} encoder frames; "
                f"this Whisper model takes at most {self.dims.n_ctx} (30 s)"
            )
        x = x + enc.embed_positions.weight[: x.shape[1]]
        valid = torch.div(lengths + SAMPLES_PER_TOKEN - 1, SAMPLES_PER_TOKEN, rounding_mode="floor")
        mask = torch.arange(x.shape[1], device=x.device)[None, :] < valid[:, None]
        return x, mask

    def run_layers(
        self, x: torch.Tensor, start: int = 0, stop: int | None = None
    ) -> list[torch.Tensor]:
        """Layers ``start..stop-1`` (default: to the last) on their input (B, T, D) -> each one's
        output; the last layer's after the final layer norm (as transformers' ``hidden_states``)."""
        n_layers = len(self.encoder.layers)
        stop = n_layers if stop is None else min(stop, n_layers)
        out = []
        for layer in self.encoder.layers[start:stop]:
            x = layer(x, None)
            out.append(x)
        if stop == n_layers:
            out[-1] = self.encoder.layer_norm(out[-1])
        return out

    def forward(
        self, waves: torch.Tensor, lengths: torch.Tensor | None = None, depth: int | None = None
    ):
        """``depth``: run only the first ``depth`` layers (a head that reads layer ``depth``
        needs no more); ``hidden`` then has ``depth + 1`` entries."""
        x, mask = self.embed(waves, lengths)
        return torch.stack([x, *self.run_layers(x, stop=depth)]), mask


def load_whisper_encoder(folder: str | Path, pad_30s: bool = False) -> WhisperAudioEncoder:
    """A Whisper encoder from a CTranslate2 folder (model.bin) or a transformers Whisper folder."""
    folder = Path(folder)
    if is_ct2_folder(folder):
        dims, state = whisper_encoder_from_ct2(read_ct2(folder, prefix="encoder/"))
    else:
        dims, state = _hf_whisper_encoder(folder)
    encoder = WhisperAudioEncoder(dims, pad_30s=pad_30s)
    encoder.encoder.load_state_dict(state, strict=True, assign=True)
    return encoder.eval()


def is_hf_whisper_folder(folder: Path) -> bool:
    config = folder / "config.json"
    if not config.is_file() or is_ct2_folder(folder):
        return False
    return json.loads(config.read_text()).get("model_type") == "whisper"


def _hf_whisper_encoder(folder: Path) -> tuple[WhisperEncoderDims, dict[str, torch.Tensor]]:
    """Encoder weights of a transformers Whisper checkpoint (safetensors or a safe torch.load)."""
    from safetensors import safe_open
    from transformers import WhisperConfig

    config = WhisperConfig.from_pretrained(folder)
    dims = WhisperEncoderDims(
        n_mels=config.num_mel_bins,
        n_ctx=config.max_source_positions,
        d_model=config.d_model,
        n_heads=config.encoder_attention_heads,
        n_layers=config.encoder_layers,
        ffn_dim=config.encoder_ffn_dim,
    )
    files = sorted(folder.glob("*.safetensors"))
    if files:  # read only the encoder's tensors
        weights = {}
        for file in files:
            with safe_open(file, framework="pt") as f:
                weights |= {k: f.get_tensor(k) for k in f.keys() if "encoder." in k}
    elif (folder / "pytorch_model.bin").is_file():
        import pickle

        try:  # weights_only: plain tensors only; anything else is refused, never run
            weights = torch.load(
                folder / "pytorch_model.bin", map_location="cpu", weights_only=True
            )
        except (pickle.UnpicklingError, RuntimeError) as error:
            raise ValueError(
                f"{folder / 'pytorch_model.bin'}: not a plain tensor file, so it is not loaded "
                f"(unpickling can run arbitrary code): {str(error).splitlines()[0]}"
            ) from None
    else:
        raise FileNotFoundError(f"{folder}: no *.safetensors or pytorch_model.bin weights")
    state = {}  # WhisperModel keys "encoder.*", WhisperForConditionalGeneration "model.encoder.*"
    for key, value in weights.items():
        for prefix in ("model.encoder.", "encoder."):
            if key.startswith(prefix):
                state[key[len(prefix) :]] = value.float()
                break
    return dims, state
