"""Small synthetic builders and paths for tests, benchmarks and examples (no downloads):
``media.py`` (tones, tone corpora, drawn faces, ``shared_dir``), ``models.py`` (tiny teachers,
encoders, checkpoints, stores, configs), ``bad_inputs.py`` (corpora of broken files)."""

from .bad_inputs import BadInput, bad_audio_corpus, bad_video_corpus, long_audio, symlink_loop
from .media import (
    emotion_tone,
    emotion_tones,
    face_photo,
    face_video,
    shared_dir,
    tone,
    two_faces_video,
)
from .models import (
    TinyAudioTeacher,
    TinyVideoTeacher,
    haar_face_detector,
    soft_label_store,
    student_checkpoint,
    tiny_fer_model,
    tiny_hubert,
    tiny_train_config,
    tiny_whisper_ct2,
)

__all__ = [
    "emotion_tone",
    "emotion_tones",
    "face_photo",
    "face_video",
    "two_faces_video",
    "shared_dir",
    "tone",
    "TinyAudioTeacher",
    "TinyVideoTeacher",
    "haar_face_detector",
    "soft_label_store",
    "student_checkpoint",
    "tiny_fer_model",
    "tiny_hubert",
    "tiny_train_config",
    "tiny_whisper_ct2",
    "BadInput",
    "bad_audio_corpus",
    "bad_video_corpus",
    "long_audio",
    "symlink_loop",
]
