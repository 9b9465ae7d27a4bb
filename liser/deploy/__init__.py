"""liser.deploy: the public face of this stage (what other modules use)."""

from .export import export_onnx, onnx_metadata, onnx_session, run_onnx
from .output import format_predictions, predict
from .predictor import (
    FrontEndMismatch,
    ScoringOptions,
    check_windows,
    iter_windows,
    load,
    predict_waveform,
)

__all__ = [
    "ScoringOptions",
    "check_windows",
    "FrontEndMismatch",
    "export_onnx",
    "format_predictions",
    "iter_windows",
    "load",
    "onnx_metadata",
    "onnx_session",
    "predict",
    "predict_waveform",
    "run_onnx",
]
