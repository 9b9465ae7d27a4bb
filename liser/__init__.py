"""liser: light speech-emotion-recognition students distilled from audio-visual teachers."""

__version__ = "0.1.0"
