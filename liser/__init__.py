"""liser: light speech-emotion-recognition students distilled from audio-visual teachers."""

__version__ = "0.1.0"


def load(checkpoint, device="auto", **options):
    """Load a trained student for prediction: ``liser.load("runs/run/best").predict_file("a.wav")``.

    Returns a ``liser.predict.Predictor`` with ``.classes``, ``.predict(waveform, sample_rate)``,
    ``.predict_file(path)`` and ``.predict_files(paths)``, all returning plain data. ``device``:
    "auto" | "cpu" | "cuda" | "cuda:1"; ``options``: window_seconds, hop_seconds, batch_size,
    frontend (checked against the checkpoint's).
    """
    from liser.deploy import load as _load

    return _load(checkpoint, device, **options)
