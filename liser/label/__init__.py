"""liser.label: the public face of this stage (what other modules use)."""

from .clips import FrameWindows, audio_chunks, features_bytes, list_clips
from .run import StoreLock, label

__all__ = [
    "FrameWindows",
    "StoreLock",
    "audio_chunks",
    "features_bytes",
    "label",
    "list_clips",
]
