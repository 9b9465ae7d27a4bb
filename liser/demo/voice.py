"""Speech-like synthesis: a glottal source through moving formant filters, with emotional prosody.

A speaker (``Voice``) says a sequence of consonant-vowel syllables. The source is a Rosenberg
glottal pulse train (its open quotient sets the voice quality) with per-cycle jitter and shimmer
plus aspiration noise; the filter is a cascade of formant resonances whose targets move from vowel
to vowel, applied frame by frame in the STFT domain. The emotion (``Prosody``) moves pitch level,
pitch range, contour shape, loudness, tempo, spectral tilt, voice quality, jitter and shimmer.
Speakers differ on the same dimensions, by amounts that overlap the emotional changes.

Everything is numpy and deterministic given a ``numpy.random.Generator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from liser.constants import SAMPLE_RATE

# Vowel formant targets F1..F3 in Hz for a reference adult vocal tract, and jaw opening 0..1.
VOWELS = {
    "a": ((730.0, 1090.0, 2440.0), 1.0),
    "e": ((530.0, 1840.0, 2480.0), 0.7),
    "i": ((270.0, 2290.0, 3010.0), 0.35),
    "o": ((570.0, 840.0, 2410.0), 0.75),
    "u": ((300.0, 870.0, 2240.0), 0.4),
}
HIGHER_FORMANTS = (3300.0, 3750.0)  # F4, F5 in Hz
BANDWIDTHS = (70.0, 100.0, 130.0, 180.0, 220.0)  # Hz, F1..F5
CONSONANTS = ("s", "sh", "f", "t", "k", "p", "m", "n", "")  # "" = vowel-initial syllable

N_FFT = 512  # synthesis STFT size (32 ms)
HOP = 128  # synthesis STFT hop (8 ms)


@dataclass(frozen=True)
class Voice:
    """The voice of one synthetic speaker (its neutral speaking style)."""

    f0: float  # Hz, mean pitch
    formant_scale: float  # vocal-tract factor on all formant frequencies (~0.85 .. 1.25)
    rate: float  # syllables per second
    pitch_range: float  # semitones of pitch movement around f0
    tilt: float  # dB per octave of the source spectrum above 500 Hz (negative)
    open_quotient: float  # glottal open quotient 0.3 (pressed) .. 0.8 (breathy)
    breathiness: float  # aspiration noise relative to the voiced source
    jitter: float  # relative standard deviation of the glottal period
    shimmer: float  # relative standard deviation of the pulse amplitude
    loudness_db: float  # level offset in dB
    expressiveness: tuple[float, ...] = (1.0,) * 9  # per-cue factors on emotional changes


# The cues of ``Prosody`` that a speaker's ``expressiveness`` scales, in its order.
CUES = (
    "pitch_shift",
    "range_factor",
    "energy_db",
    "tempo",
    "tilt_shift",
    "open_quotient_shift",
    "jitter_factor",
    "shimmer_factor",
    "breath_shift",
)
# Individual differences: the factor on each cue's emotional change is drawn per speaker from
# these ranges (1 = the average speaker). Level cues (pitch, loudness, tempo, brightness) differ
# more between people than the shape of the pitch movement and the voice quality.
EXPRESSIVENESS = {
    "pitch_shift": (0.0, 2.0),
    "range_factor": (0.6, 1.4),
    "energy_db": (0.0, 2.0),
    "tempo": (0.0, 2.0),
    "tilt_shift": (0.0, 2.0),
    "open_quotient_shift": (0.6, 1.4),
    "jitter_factor": (0.6, 1.4),
    "shimmer_factor": (0.6, 1.4),
    "breath_shift": (0.6, 1.4),
}
MULTIPLICATIVE = ("range_factor", "tempo", "jitter_factor", "shimmer_factor", "formant_shift")


@dataclass(frozen=True)
class Prosody:
    """How one emotion changes a voice (values at full intensity)."""

    pitch_shift: float  # semitones added to the speaker's f0
    range_factor: float  # multiplies the speaker's pitch range
    contour: str  # "declining" | "bouncy" | "falling" | "sharp"
    energy_db: float  # dB added to the speaker's level
    tempo: float  # multiplies the speaking rate
    tilt_shift: float  # dB/octave added to the source tilt (> 0: brighter)
    open_quotient_shift: float  # added to the open quotient
    jitter_factor: float
    shimmer_factor: float
    breath_shift: float  # added to the breathiness
    formant_shift: float  # factor on F1..F3 (smiling raises them)


PROSODY = {
    "neutral": Prosody(0.0, 1.0, "declining", 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0),
    "happy": Prosody(3.5, 2.0, "bouncy", 4.0, 1.12, 2.0, -0.1, 1.0, 1.0, 0.0, 1.05),
    "sad": Prosody(-2.5, 0.45, "falling", -6.0, 0.78, -4.0, 0.15, 1.6, 1.5, 0.2, 0.97),
    "angry": Prosody(2.0, 1.5, "sharp", 7.0, 1.12, 5.0, -0.25, 2.0, 2.0, -0.05, 1.03),
}


@dataclass(frozen=True)
class Utterance:
    """One synthesized clip: the waveform and the syllable plan behind it."""

    wave: np.ndarray  # float32, shape = (N,), 16 kHz, in [-1, 1]
    f0: np.ndarray  # Hz per sample, shape = (N,); 0 where unvoiced
    envelope: np.ndarray  # planned loudness 0..1 per sample, shape = (N,)
    jaw: np.ndarray  # planned jaw opening 0..1 per sample (vowel openness), shape = (N,)


def random_voice(rng: np.random.Generator) -> Voice:
    """A speaker drawn from wide ranges, so that speaker differences overlap emotional ones."""
    f0 = math.exp(rng.uniform(math.log(80.0), math.log(280.0)))
    return Voice(
        f0=f0,
        formant_scale=(f0 / 140.0) ** 0.25 * math.exp(rng.normal(0.0, 0.05)),
        rate=math.exp(rng.uniform(math.log(3.0), math.log(6.5))),
        pitch_range=rng.uniform(2.0, 6.0),
        tilt=rng.uniform(-14.0, -8.0),
        open_quotient=rng.uniform(0.45, 0.7),
        breathiness=rng.uniform(0.02, 0.3),
        jitter=rng.uniform(0.003, 0.015),
        shimmer=rng.uniform(0.02, 0.08),
        loudness_db=rng.uniform(-6.0, 6.0),
        expressiveness=tuple(float(rng.uniform(*EXPRESSIVENESS[cue])) for cue in CUES),
    )


def blend(prosody: Prosody, intensity: float, expressiveness=(1.0,) * len(CUES)) -> Prosody:
    """The prosody at ``intensity`` in [0, 1] of the way from neutral speech.

    ``expressiveness`` scales each cue of ``CUES`` for one speaker (how much this speaker's
    pitch, loudness, tempo, ... change with emotion).
    """
    values = {}
    for name in Prosody.__dataclass_fields__:
        value = getattr(prosody, name)
        if name == "contour":
            values[name] = value
            continue
        u = float(intensity) * (expressiveness[CUES.index(name)] if name in CUES else 1.0)
        values[name] = value**u if name in MULTIPLICATIVE else value * u
    return Prosody(**values)


def _syllables(seconds: float, rate: float, rng: np.random.Generator) -> list[dict]:
    """Plan consonant + vowel syllables (and short pauses) filling ``seconds``."""
    plan, t = [], rng.uniform(0.05, 0.2)
    while t < seconds - 0.15:
        length = (1.0 / rate) * rng.uniform(0.75, 1.3)
        consonant = CONSONANTS[rng.integers(len(CONSONANTS))]
        c_len = 0.0 if not consonant else min(0.35 * length, rng.uniform(0.04, 0.09))
        vowel = "aeiou"[rng.integers(5)]
        plan.append(dict(start=t, consonant=consonant, c_len=c_len, vowel=vowel, end=t + length))
        t += length
        if rng.random() < 0.12:  # a short phrase break
            t += rng.uniform(0.1, 0.25)
    return plan


def _contour(kind: str, n: int, plan: list[dict], seconds: float, rng) -> np.ndarray:
    """Pitch movement in units of the pitch range (roughly -1 .. 1), one value per sample."""
    t = np.arange(n) / SAMPLE_RATE
    x = t / max(seconds, 1e-3)
    movement = np.zeros(n)
    if kind == "declining":
        movement += 0.5 - 1.0 * x
    elif kind == "falling":
        movement += 0.7 - 1.6 * x
    elif kind == "bouncy":
        movement += 0.6 * np.sin(2 * np.pi * (1.2 + 0.6 * rng.random()) * t + rng.uniform(0, 6))
        movement += np.where(x > 0.8, (x - 0.8) * 4.0, 0.0)  # final rise
    for i, syl in enumerate(plan):
        v0, v1 = syl["start"] + syl["c_len"], syl["end"]
        inside = slice(min(round(v0 * SAMPLE_RATE), n), min(round(v1 * SAMPLE_RATE), n))
        phase = (t[inside] - v0) / max(v1 - v0, 1e-3)
        stressed = i % 2 == 0 or rng.random() < 0.3
        if kind == "sharp":  # fast high-falling accents
            movement[inside] += (1.2 if stressed else 0.4) * np.exp(-4.0 * phase) - 0.2
        elif kind == "bouncy":  # rise-fall accent on every syllable
            movement[inside] += (0.9 if stressed else 0.5) * np.sin(np.pi * phase)
        else:
            movement[inside] += (0.35 if stressed else 0.1) * np.sin(np.pi * phase)
    return movement


def _glottal_source(f0: np.ndarray, oq: float, jitter: float, shimmer: float, rng) -> np.ndarray:
    """Derivative of a Rosenberg glottal flow with per-cycle jitter and shimmer, shape = f0.shape."""
    nominal = np.cumsum(f0) / SAMPLE_RATE
    n_cycles = int(nominal[-1]) + 2
    period_noise = rng.standard_normal(n_cycles) * jitter
    amp_noise = np.clip(1.0 + rng.standard_normal(n_cycles) * shimmer, 0.2, 2.0)
    cycle = np.minimum(nominal.astype(np.int64), n_cycles - 1)
    phase = np.cumsum(f0 / (1.0 + period_noise[cycle])) / SAMPLE_RATE
    cycle = np.minimum(phase.astype(np.int64), n_cycles - 1)
    frac = phase - np.floor(phase)
    oq = float(np.clip(oq, 0.25, 0.9))
    rise = 0.6 * oq  # opening part of the open phase
    flow = np.where(
        frac < rise,
        0.5 * (1.0 - np.cos(np.pi * frac / rise)),
        np.where(frac < oq, np.cos(0.5 * np.pi * (frac - rise) / (oq - rise)), 0.0),
    )
    flow = flow * amp_noise[cycle]
    return np.diff(flow, prepend=flow[:1]) * (f0 > 0)


def _stft(x: np.ndarray) -> np.ndarray:
    """Hann-windowed frames every HOP samples -> spectra, shape = (frames, N_FFT // 2 + 1)."""
    pad = np.pad(x, (N_FFT // 2, N_FFT // 2 + HOP))
    frames = np.lib.stride_tricks.sliding_window_view(pad, N_FFT)[::HOP]
    return np.fft.rfft(frames * np.hanning(N_FFT), axis=1)


def _istft(spec: np.ndarray, n: int) -> np.ndarray:
    """Weighted overlap-add inverse of ``_stft``, cut to ``n`` samples."""
    window = np.hanning(N_FFT)
    frames = np.fft.irfft(spec, n=N_FFT, axis=1) * window
    parts = N_FFT // HOP  # each frame spans this many hops
    out = np.zeros((spec.shape[0] + parts - 1, HOP))
    norm = np.zeros_like(out)
    for k in range(parts):  # add the k-th hop of every frame at once
        out[k : k + spec.shape[0]] += frames[:, k * HOP : (k + 1) * HOP]
        norm[k : k + spec.shape[0]] += window[k * HOP : (k + 1) * HOP] ** 2
    out = out.reshape(-1) / np.maximum(norm.reshape(-1), 1e-3)
    return out[N_FFT // 2 : N_FFT // 2 + n]


def _formant_gain(formants: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Magnitude of a cascade of resonances, shape = (frames, bins); formants (frames, 5) Hz."""
    gain = np.ones((formants.shape[0], freqs.size))
    for k in range(formants.shape[1]):
        fk = formants[:, k : k + 1]
        bk = BANDWIDTHS[k] * (1.0 + fk / 4000.0)
        gain *= fk**2 / np.sqrt((fk**2 - freqs**2) ** 2 + (bk * freqs) ** 2)
    return gain


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Triangular moving average of ``width`` samples (two boxcars), same length as ``x``."""
    half = max(int(width) // 2, 1)
    for _ in range(2):
        c = np.cumsum(np.pad(x, (half, half), mode="edge"))
        x = (c[2 * half :] - np.concatenate([[0.0], c[: -2 * half - 1]])) / (2 * half + 1)
    return x


def synthesize(
    voice: Voice,
    emotion: str,
    seconds: float,
    rng: np.random.Generator,
    intensity: float = 1.0,
    snr_db: float = 30.0,
) -> Utterance:
    """Speech-like audio of ``voice`` speaking with ``emotion`` for ``seconds`` (16 kHz)."""
    if emotion not in PROSODY:
        raise ValueError(f"unknown emotion '{emotion}'; known: {', '.join(PROSODY)}")
    p = blend(PROSODY[emotion], intensity, voice.expressiveness)
    n = round(seconds * SAMPLE_RATE)
    plan = _syllables(seconds, voice.rate * p.tempo * rng.uniform(0.92, 1.08), rng)

    # Per-sample plan: voicing, frication, loudness envelope, jaw opening, formant targets.
    voiced = np.zeros(n)
    frication = np.zeros(n)
    jaw = np.zeros(n)
    targets = np.zeros((n, 3))
    for syl in plan:
        s0, s1 = (round(syl[k] * SAMPLE_RATE) for k in ("start", "end"))
        s1 = min(s1, n)
        v0 = min(s0 + round(syl["c_len"] * SAMPLE_RATE), s1)
        formants, opening = VOWELS[syl["vowel"]]
        targets[s0:s1] = formants
        c = syl["consonant"]
        if c in ("s", "sh", "f"):
            frication[s0:v0] = {"s": 1.0, "sh": 0.8, "f": 0.35}[c]
        elif c in ("t", "k", "p"):
            burst = s0 + round(0.7 * (v0 - s0))
            frication[burst:v0] = 0.6
        elif c in ("m", "n"):
            voiced[s0:v0] = 0.35
            targets[s0:v0] = (250.0, 1200.0 if c == "m" else 1700.0, 2500.0)
        vowel_len = s1 - v0
        ramp = np.sin(np.pi * np.linspace(0.0, 1.0, vowel_len)) ** 0.5 if vowel_len else []
        voiced[v0:s1] = np.maximum(voiced[v0:s1], ramp)
        jaw[v0:s1] = opening * np.asarray(ramp)
    silent = targets.sum(axis=1) == 0
    targets[silent] = VOWELS["e"][0]
    targets = np.stack([_smooth(targets[:, k], 481) for k in range(3)], axis=1)  # 30 ms glides

    # Pitch: speaker f0 + emotional shift + contour in units of the pitch range + slow drift.
    semitones = voice.pitch_range * p.range_factor * _contour(p.contour, n, plan, seconds, rng)
    semitones += p.pitch_shift + rng.normal(0.0, 0.7)
    knots = rng.normal(0.0, 0.6, size=int(seconds * 4) + 2)  # slow random drift, 4 knots/s
    semitones += np.interp(np.arange(n) / SAMPLE_RATE * 4.0, np.arange(knots.size), knots)
    f0 = voice.f0 * 2.0 ** (semitones / 12.0)
    f0 = np.clip(f0, 50.0, 600.0)
    gate = voiced > 0.05
    source = _glottal_source(
        f0,
        voice.open_quotient + p.open_quotient_shift,
        voice.jitter * p.jitter_factor,
        voice.shimmer * p.shimmer_factor,
        rng,
    )
    source = source * voiced
    breath = min(max(voice.breathiness + p.breath_shift, 0.0), 0.8)
    aspiration = rng.standard_normal(n) * voiced * breath * 0.05

    # Filter frame by frame: formant cascade x spectral tilt, in the STFT domain.
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
    n_frames = 1 + (n + N_FFT + HOP - N_FFT) // HOP  # as in _stft
    frame_idx = np.minimum(np.arange(n_frames) * HOP, n - 1)
    scale = voice.formant_scale * np.array([p.formant_shift] * 3 + [1.0, 1.0])
    formants = np.concatenate(
        [targets[frame_idx], np.tile(HIGHER_FORMANTS, (frame_idx.size, 1))], axis=1
    )
    formants = formants * scale
    tilt_db = (voice.tilt + 6.0 + p.tilt_shift) * np.log2(np.maximum(freqs, 500.0) / 500.0)
    shaping = _formant_gain(formants, freqs) * 10.0 ** (tilt_db / 20.0)
    speech = _istft(_stft(source + aspiration) * shaping, n)

    # Frication: noise with a high-frequency spectral peak that depends on the speaker.
    peak = 4500.0 * voice.formant_scale
    fric_shape = np.exp(-0.5 * ((freqs - peak) / 1800.0) ** 2) + 0.1
    noise = _istft(_stft(rng.standard_normal(n)) * fric_shape, n) * _smooth(frication, 161)

    wave = speech / (np.sqrt(np.mean(speech[gate] ** 2)) + 1e-9) if gate.any() else speech
    hiss = frication > 0.05
    if hiss.any():
        wave = wave + 0.3 * noise / (np.sqrt(np.mean(noise[hiss] ** 2)) + 1e-9)
    level = 10.0 ** ((-26.0 + voice.loudness_db + p.energy_db) / 20.0)  # dBFS of the voiced part
    wave = wave * level
    wave = wave + rng.standard_normal(n) * level * 10.0 ** (-snr_db / 20.0)
    wave = np.tanh(wave * 1.5) / 1.5  # soft limit below full scale
    envelope = _smooth(voiced + 0.5 * frication, 321)
    return Utterance(
        wave=wave.astype(np.float32),
        f0=np.where(gate, f0, 0.0).astype(np.float32),
        envelope=np.clip(envelope, 0.0, 1.0).astype(np.float32),
        jaw=np.clip(_smooth(jaw, 321), 0.0, 1.0).astype(np.float32),
    )
