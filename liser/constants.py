"""Constants shared by every stage: audio rate, class lists of the corpora, fixed folds."""

SAMPLE_RATE = 16000  # Hz; every waveform inside liser is 16 kHz mono float32

# RAVDESS emotion codes 01..08 in file names, in this order.
RAVDESS_CLASSES = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
)

# CREMA-D codes in file names, and the class names liser uses for them (same words as RAVDESS).
CREMAD_CODES = {
    "ANG": "angry",
    "DIS": "disgust",
    "FEA": "fearful",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
CREMAD_CLASSES = ("angry", "disgust", "fearful", "happy", "neutral", "sad")

# FER2013 order, the output order of the mini-/big-Xception models in ../shared/models/fer.
FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# Corpus words for FER2013's classes (MEAD, RAVDESS, CREMA-D, ...).
FER_ALIASES = {"disgusted": "disgust", "fearful": "fear", "surprised": "surprise",
               "happiness": "happy", "sadness": "sad", "anger": "angry"}  # fmt: skip

# FER class -> target-corpus class, for analysis and for scoring a video teacher on a labeled set.
# RAVDESS "calm" has no FER counterpart; FER "neutral" maps to RAVDESS "neutral".
FER_TO_RAVDESS = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fearful",
    "happy": "happy",
    "sad": "sad",
    "surprise": "surprised",
    "neutral": "neutral",
}
# CREMA-D has no "surprise": a FER "surprise" maps to None (no opinion).
FER_TO_CREMAD = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fearful",
    "happy": "happy",
    "sad": "sad",
    "surprise": None,
    "neutral": "neutral",
}

# The speaker-independent RAVDESS protocol of the EmoBox benchmark: test actors of folds 1..6.
RAVDESS_FOLDS = (
    (1, 11, 20, 21),
    (4, 10, 12, 14),
    (8, 9, 19, 23),
    (3, 5, 7, 24),
    (2, 15, 16, 18),
    (6, 13, 17, 22),
)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif", ".m4a", ".aac")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".mpg", ".mpeg", ".flv", ".m4v")

# Results of the LiSER paper (UAR %), shown beside ours in experiment tables.
PAPER_UAR = {
    ("ravdess", "supervised"): 57.81,
    ("ravdess", "distilled"): 66.47,
    ("cremad", "supervised"): 55.81,
    ("cremad", "distilled"): 58.42,
}

# Hop between the windows that cover a clip at evaluation and prediction (training's validation and
# test, liser evaluate, liser predict): FrontEndConfig.windows(); labeling states its own hop.
WINDOW_HOP_SECONDS = 1.0
