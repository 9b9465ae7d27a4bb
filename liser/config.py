"""Every setting of liser, with its default, in one place.

Configs are frozen dataclasses. YAML is how they are saved and loaded; unknown keys are rejected
with the nearest valid name. ``--set a.b=value`` overrides work on any of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config_io import apply_overrides, from_dict, load_config, replace, save_config, to_dict
from .config_rules import Checked as _Checked
from .config_rules import ConfigError

# --------------------------------------------------------------------------------------------
# Front end and student


@dataclass(frozen=True)
class FrontEndConfig(_Checked):
    """Waveform -> log-Mel settings. Saved in every feature cache, store and checkpoint."""

    sample_rate: int = 16000  # Hz
    window_seconds: float = 3.0  # length of one student input window
    n_mels: int = 64
    win_seconds: float = 0.025  # STFT window (400 samples at 16 kHz), Hann
    hop_seconds: float = 0.010  # STFT hop (160 samples)
    n_fft: int = 512  # FFT size (window zero-padded to it)
    f_min: float = 0.0  # Hz
    f_max: float = 8000.0  # Hz
    log_floor: float = 1e-6  # log(max(mel_power, log_floor))
    normalize: str = "utterance"  # "utterance" (per window mean/std per mel) | "global" | "none"
    pad: str = "repeat"  # short clips: "repeat" (tile the clip) | "zero" (zeros after the end)

    @property
    def window_samples(self) -> int:
        return round(self.window_seconds * self.sample_rate)

    @property
    def hop_samples(self) -> int:
        return round(self.hop_seconds * self.sample_rate)

    @property
    def win_samples(self) -> int:
        return round(self.win_seconds * self.sample_rate)

    @property
    def n_frames(self) -> int:
        """Frames per window (centred STFT): 301 for 3 s at a 10 ms hop."""
        return self.window_samples // self.hop_samples + 1

    def windows(self, hop_seconds: float | None = None, window_seconds: float | None = None):
        """The ``windows.WindowSpec`` of evaluation and prediction: this front end's window and
        padding; a hop of ``constants.WINDOW_HOP_SECONDS`` unless given."""
        from .constants import WINDOW_HOP_SECONDS
        from .windows import WindowSpec

        window = self.window_seconds if window_seconds is None else window_seconds
        return WindowSpec(
            window, WINDOW_HOP_SECONDS if hop_seconds is None else hop_seconds, pad=self.pad
        )


@dataclass(frozen=True)
class StudentConfig(_Checked):
    """CNN-LSTM student. Class counts are filled in from the data at training time."""

    # Defaults: ~94 k parameters, ~19 M MACs and ~2-3 ms per 3 s window on 1 CPU thread; (16, 32,
    # 64, 128) with lstm_hidden=128: ~370 k / 74 M / ~6 ms (benchmarks/bench_student.py).
    conv_channels: tuple[int, ...] = (8, 16, 32, 64)  # one conv block (3x3, BN, ReLU, pool) each
    pool: tuple[int, int] = (2, 2)  # (freq, time) max-pool after each block
    lstm_hidden: int = 64
    lstm_layers: int = 1
    bidirectional: bool = True
    temporal_pooling: str = "mean"  # "mean" | "attention" (softmax-weighted mean) over LSTM steps
    dropout: float = 0.3
    n_classes: int = 0  # supervised head (target classes); 0 = from the data
    n_audio_classes: int = 0  # speech-distillation head; 0 = from the audio teacher / n_classes
    n_video_classes: int = 7  # video-distillation head (FER's 7 classes)


# --------------------------------------------------------------------------------------------
# Training


@dataclass(frozen=True)
class DataConfig(_Checked):
    manifest: str = ""  # labeled manifest (.parquet, .csv or .jsonl)
    classes: tuple[str, ...] = ()  # target classes in order; () = the corpus's own list
    folds: str = (
        "auto"  # "auto" | "ravdess" (EmoBox 6 folds) | "speaker" (k speaker folds) | "column"
    )
    n_folds: int = 6  # for folds="speaker"
    fold: int = 1  # 1-based test fold
    val_fraction: float = 0.15  # share of training *speakers* held out for validation
    label_fraction: float = 1.0  # stratified, seeded share of training clips whose labels are kept
    cache_dir: str = "~/.cache/liser/features"  # on-disk feature cache; "" disables it
    num_workers: int = 0  # threads reading clips at start-up (0 = 1)
    eval_hop_seconds: float = 0.0  # hop of the windows covering a clip; 0 = the front end's (1 s)
    # Other corpora scored with the best checkpoint after training (liser evaluate's table, in
    # metrics.json "corpora" and cv.json), e.g. the cross-corpus dev sets:
    eval_manifests: tuple[str, ...] = ()
    eval_classes: tuple[str, ...] = ()  # classes scored there; () = each corpus's own
    eval_map: tuple[str, ...] = ()  # class mapping there, e.g. ["calm=neutral", "boredom="]
    # score them with statistics re-estimated on each one's own audio ("corpus") or each
    # speaker's ("speaker"; liser adapt), or ("eval_adapt_on") on these manifests' audio
    eval_adapt: str = ""
    eval_adapt_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class OptimConfig(_Checked):
    lr: float = 2e-3  # AdamW peak learning rate
    weight_decay: float = 1e-2
    batch_size: int = 32
    epochs: int = 60
    schedule: str = "onecycle"  # "onecycle" | "cosine" | "constant"
    warmup_fraction: float = 0.1
    patience: int = 15  # early stopping on validation UAR, in epochs; 0 = off
    class_weighting: bool = True  # inverse-frequency weights in the supervised CE
    label_smoothing: float = 0.0
    grad_clip: float = 5.0
    ema_decay: float = 0.0  # > 0: validate, keep and test an EMA of the weights, per step


@dataclass(frozen=True)
class AugmentConfig(_Checked):
    random_crop: bool = True  # random 3 s crop of longer clips in training
    time_masks: int = 2  # SpecAugment time masks per example
    time_mask_frames: int = 25
    freq_masks: int = 2
    freq_mask_bins: int = 8
    gain_db: float = 6.0  # random gain in +-gain_db (before the log)
    noise_snr_db: float = 0.0  # additive white noise at this SNR with p=0.5; 0 = off
    mixup: float = 0.0  # mixup alpha on labeled batches; 0 = off
    mel_warp: float = 0.0  # vocal-tract-length perturbation: frequencies x U(1-w, 1+w); 0 = off
    # Channel robustness (train/augment.py), each in waveform mode (no feature cache):
    noise_dir: str = ""  # real background recordings (folder or clip table); "" = off
    noise_prob: float = 0.5  # share of examples that get background noise
    noise_snr_range: tuple[float, float] = (5.0, 20.0)  # dB, uniform
    codec_prob: float = 0.0  # share of examples heard through a codec round trip; 0 = off
    codecs: tuple[str, ...] = ("opus", "aac", "mp3")  # one drawn per example
    codec_bitrate: int = 16000  # bit/s (online video speech: 16-32 kbit/s)
    band_limit_prob: float = 0.0  # share of examples band-limited to telephone (8 kHz rate)
    speed: float = 0.0  # speed perturbation: factor U(1-s, 1+s) per example; 0 = off
    short_prob: float = 0.0  # share of windows cut to a short utterance, padded as short clips are
    short_seconds: tuple[float, float] = (0.5, 2.0)  # its length, uniform


@dataclass(frozen=True)
class DistillConfig(_Checked):
    """LiSER's distillation from teacher soft labels on unlabeled windows."""

    stores: tuple[str, ...] = ()  # soft-label stores (folders of Parquet shards); () = supervised
    audio_weight: float = 1.0  # lambda_a
    video_weight: float = 1.0  # lambda_v
    loss: str = "mae"  # "mae" (paper) | "ce" | "kl" | "mse"
    temperature: float = 1.0  # for "kl"
    weighting: str = "confidence"  # "none" | "confidence" (paper) | "entropy" | "calibrated"
    schedule: str = "joint"  # "joint" (paper) | "two-stage"
    stage1_epochs: int = 20  # two-stage: epochs of distillation before fine-tuning on labels
    unlabeled_ratio: float = 1.0  # unlabeled windows per labeled clip in each step
    teachers: str = "both"  # "both" | "audio" | "video"
    # "head": each distillation head learns its teacher's classes (paper); "classes": the
    # teacher's probabilities mapped by class name onto the target classes and distilled into
    # the supervised head (FER's disgust -> disgust, fear -> fearful, ...; others dropped)
    audio_target: str = "head"
    video_target: str = "head"
    video_map: tuple[str, ...] = ()  # extra "fer_class=target" pairs for "classes" ("fear=" drops)
    # the same for the audio teacher: "fearful=", "disgust=", ... keep only a domain's classes
    audio_map: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrainConfig(_Checked):
    """One training run: a student on one fold, supervised or with distillation."""

    name: str = "run"
    output_dir: str = "runs/run"
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1"
    precision: str = "auto"  # "auto" | "fp32" | "bf16"
    num_threads: int = 0  # torch threads; 0 = torch's default
    frontend: FrontEndConfig = field(default_factory=FrontEndConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)


@dataclass(frozen=True)
class ExperimentConfig(_Checked):
    """A grid of training runs over folds and seeds, summarised in one results table."""

    name: str = "experiment"
    output_dir: str = "runs/experiment"
    base: TrainConfig = field(default_factory=TrainConfig)
    grid: dict[str, list] = field(default_factory=dict)  # dotted key -> values, full product
    folds: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    seeds: tuple[int, ...] = (0,)
    corpus: str = ""  # "ravdess" | "cremad": the paper's numbers beside ours; "" = the manifest's
    # Explicit table rows, each crossed with the grid: dotted keys -> value, plus "name" (its label
    # in the table) and "paper" ("supervised" | "distilled" | "": the paper's number shown beside it;
    # by default found from the settings). Keys "teacher.*" set the teacher section below.
    rows: tuple[dict, ...] = ()
    teacher: ExperimentTeacherConfig = field(default_factory=lambda: ExperimentTeacherConfig())
    plots: bool = True  # PNG plots next to the tables


# --------------------------------------------------------------------------------------------
# Teachers and labeling


@dataclass(frozen=True)
class AudioTeacherConfig(_Checked):
    """An audio encoder (HuBERT, wav2vec 2.0, WavLM, Whisper) with LoRA and a pooling head."""

    spec: str = "facebook/hubert-base-ls960"  # hub id, local folder, CTranslate2 Whisper folder
    layer: str = "weighted"  # "weighted" (learned sum of all layers) | "last" | an integer
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    lora_top_layers: int = (
        0  # LoRA only in the top k layers (0 = all); lower layers' outputs cached
    )
    freeze_encoder: bool = False  # True: no LoRA, train the head on frozen features only
    whisper_pad_30s: bool = False  # Whisper: pad each window to 30 s as in the original model
    window_seconds: float = 3.0  # teacher input windows (the student's window)
    hop_seconds: float = 1.0  # hop between windows of a longer clip (training windows, clip mean)
    head_dropout: float = 0.1
    lr: float = 1e-4  # LoRA adapters (AdamW)
    head_lr: float = 1e-3  # pooling head and layer weights
    weight_decay: float = 1e-2  # LoRA adapters
    # the head (AdamW, decoupled): 10 held RAVDESS and lifted URDU/TurEV by 4 points over 0.01
    head_weight_decay: float = 10.0
    batch_size: int = 8  # windows per LoRA step and per inference batch
    head_batch_size: int = 64  # windows per step when training the head on cached features
    epochs: int = 10  # LoRA epochs (frozen: head_epochs)
    head_epochs: int = 100  # epochs of head-only training on cached features (fast)
    patience: int = 3  # early stopping on validation UAR, in epochs (frozen: 10 x patience)
    cache_dir: str = "~/.cache/liser/teacher-features"  # cached encoder outputs; "" = off
    precision: str = "auto"  # "auto" | "fp32" | "bf16" | "fp16"
    device: str = "auto"
    num_threads: int = 0  # torch threads for the encoder; 0 = torch's default (heads: always 1)
    seed: int = 0
    output_dir: str = "runs/audio-teacher"
    data: DataConfig = field(default_factory=DataConfig)


@dataclass(frozen=True)
class VideoTeacherConfig(_Checked):
    """Face detector + facial-expression model, pooled over time as in the paper."""

    spec: str = ""  # .hdf5, .onnx, TorchScript .pt, or a folder with model + classes JSON
    face_detector: str = ""  # Haar .xml or BlazeFace .tflite
    frame_rate: float = 5.0  # frames sampled per second of video
    clip_seconds: float = 0.5  # per-frame probabilities averaged over 0.5 s clips
    min_face_coverage: float = 0.5  # share of sampled frames with a face; below -> masked
    face_margin: float = 0.1  # margin around the detected box, relative to its size; < 0: tighter
    min_face_pixels: int = 24  # faces with a shorter side are dropped ("face too small")
    pooling: str = "mean"  # of a window's frames: "mean" | "max_confidence" | "confidence_weighted"
    detect_every: int = 2  # run the detector on every k-th sampled frame; boxes held in between
    # the FER model's training class frequencies, divided out: "" | "fer2013" | "p1,p2,..."
    prior: str = ""
    mirror: bool = False  # also classify each crop mirrored left-right; mean of both
    fast_decode: bool = True  # skip deblocking and unreferenced B-frames (video_io.iter_frames)
    batch_size: int = 64
    temperature: float = 1.0  # fitted by calibration; 1.0 = uncalibrated


@dataclass(frozen=True)
class LabelConfig(_Checked):
    """Unlabeled files -> 3 s windows -> teacher soft labels in a Parquet store."""

    window_seconds: float = 3.0
    hop_seconds: float = 3.0  # window hop; < window_seconds for overlapping windows
    min_seconds: float = 1.0  # an uncovered tail (or a whole clip) shorter than this gets no window
    audio_teacher: str = ""  # SPEC; "" = no audio teacher (or the one recorded in the store)
    video_teacher: str = ""  # SPEC; "" = no video teacher (or the one recorded in the store)
    face_detector: str = ""  # Haar .xml or BlazeFace .tflite, for the video teacher
    batch_size: int = 32  # windows per audio-teacher call
    shard_windows: int = 2048  # rows per Parquet shard (~80 MB of float16 features at 64 mels)
    chunk_seconds: float = 60.0  # decode long files in chunks of this length
    device: str = "auto"  # audio teacher device: "auto" | "cpu" | "cuda" | "cuda:1"
    # Speech gating ("" = off, "silero" = the silero-vad package's model, or its ONNX file): a
    # window under min_speech gets no audio soft label ("no speech"; the teacher does not run).
    vad: str = ""
    vad_threshold: float = 0.5  # a frame is speech when its Silero probability reaches this
    min_speech: float = 0.2  # share of a window's frames; 0 = record the fraction, gate nothing
    engine: str = "local"  # "local" | "ray"
    ray_address: str = ""  # Ray cluster to join; "" = the running or a new local Ray
    ray_workers: int = 1  # clip workers: decode, features, video teacher
    ray_cpus_per_worker: float = 1.0
    ray_actors: int = 1  # audio-teacher actors
    ray_cpus_per_actor: float = 1.0
    ray_gpus_per_actor: float = 0.0  # GPUs per audio-teacher actor (e.g. 0.5: two per GPU)
    frontend: FrontEndConfig = field(default_factory=FrontEndConfig)
    video: VideoTeacherConfig = field(default_factory=VideoTeacherConfig)


@dataclass(frozen=True)
class ExperimentTeacherConfig(_Checked):
    """A teacher made for each fold and seed of an experiment from that fold's labeled training
    clips alone (never its test clips or the labels that ``data.label_fraction`` hid), which labels
    unlabeled clips into a per-fold soft-label store added to the fold's ``distill.stores``. Only
    grid rows that set ``teacher.kind`` use it."""

    kind: str = ""  # "" = none | "student" | "fit-audio" | "spec" (see below)
    # "student": liser students trained on the labeled clips; dotted TrainConfig overrides make them
    # stronger than the student (e.g. {"student.conv_channels": [16, 32, 64, 128]}).
    student: dict = field(default_factory=dict)
    members: int = 1  # "student": an ensemble of this many (seeds seed, seed + 1, ...), averaged
    # "fit-audio": an encoder with a head (or LoRA) as `liser teacher fit-audio`; its data section
    # is set per fold (the labeled clips), the rest is used as given.
    audio: AudioTeacherConfig = field(default_factory=AudioTeacherConfig)
    spec: str = ""  # "spec": a ready teacher SPEC; "{fold}" and "{seed}" in it are filled in
    # What gets labeled: "fold" (training clips whose labels label_fraction hid), "train" (every
    # training clip of the fold, labels unused), or a folder / manifest of unlabeled media (its
    # labels unused); a list labels each source into its own store, all of them distilled from.
    unlabeled: tuple[str, ...] = ("fold",)
    adapt: bool = False  # re-estimate the teacher's statistics on each source before labeling it
    label: LabelConfig = field(default_factory=LabelConfig)  # front end: the student's


__all__ = [
    "AudioTeacherConfig", "AugmentConfig", "ConfigError", "DataConfig", "DistillConfig",
    "ExperimentConfig", "ExperimentTeacherConfig", "FrontEndConfig", "LabelConfig", "OptimConfig",
    "StudentConfig", "TrainConfig", "VideoTeacherConfig", "apply_overrides", "from_dict",
    "load_config", "replace", "save_config", "to_dict",
]  # fmt: skip
