"""Face detectors (OpenCV Haar cascade, MediaPipe BlazeFace short-range) and face crops.

Every detector has ``detect(frame) -> list[Box]``: frame RGB uint8 (H, W, 3) (gray (H, W) and
RGBA are accepted too), boxes ``(x, y, w, h, score)`` in pixels of that frame, best first.
``score`` is the face probability for BlazeFace and the number of merged neighbouring detections
for Haar (a cascade has no probability).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np

Box = tuple[float, float, float, float, float]  # x, y, w, h (pixels), score


class FaceDetectorError(ValueError):
    """A face-detector file that cannot be used; the message names the file and why."""


def as_rgb(frame: np.ndarray) -> np.ndarray:
    """Any frame (H, W), (H, W, 1), (H, W, 3), (H, W, 4), uint8 or float in [0, 1] -> RGB uint8."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        scale = 255.0 if frame.dtype.kind == "f" and frame.max(initial=0) <= 1.0 else 1.0
        frame = np.clip(frame.astype(np.float32) * scale, 0, 255).astype(np.uint8)
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.ndim != 3 or frame.shape[2] not in (1, 3, 4) or min(frame.shape[:2]) < 1:
        raise ValueError(f"a frame must be (H, W), (H, W, 1|3|4), got shape {frame.shape}")
    if frame.shape[2] == 1:
        return np.repeat(frame, 3, axis=2)
    return np.ascontiguousarray(frame[:, :, :3])


def _fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


class HaarDetector:
    """OpenCV's Haar cascade (e.g. haarcascade_frontalface_default.xml) on the gray frame.

    Frames are shrunk to ``max_side`` pixels first (speed); faces smaller than
    ``min_size_fraction`` of the shorter side are ignored.
    """

    def __init__(
        self,
        path: str | Path,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size_fraction: float = 0.08,
        max_side: int = 480,
    ):
        self.path = Path(path)
        try:
            self.cascade = cv2.CascadeClassifier(str(self.path))
        except (cv2.error, SystemError) as error:
            raise FaceDetectorError(f"{self.path}: not an OpenCV Haar cascade XML file") from error
        if self.cascade.empty():
            raise FaceDetectorError(f"{self.path}: not an OpenCV Haar cascade XML file")
        self.scale_factor, self.min_neighbors = scale_factor, min_neighbors
        self.min_size_fraction, self.max_side = min_size_fraction, max_side
        self.fingerprint = _fingerprint(self.path)

    def detect(self, frame: np.ndarray) -> list[Box]:
        rgb = as_rgb(frame)
        scale = min(1.0, self.max_side / max(rgb.shape[:2]))
        if scale < 1.0:
            rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
        smallest = max(12, int(self.min_size_fraction * min(gray.shape)))
        rects, neighbours = self.cascade.detectMultiScale2(
            gray, self.scale_factor, self.min_neighbors, minSize=(smallest, smallest)
        )
        boxes = [
            (float(x / scale), float(y / scale), float(w / scale), float(h / scale), float(n))
            for (x, y, w, h), n in zip(
                np.asarray(rects).reshape(-1, 4), np.ravel(neighbours), strict=True
            )
        ]
        return sorted(boxes, key=lambda b: -b[4])


def blazeface_anchors(
    input_size: int = 128, strides: tuple[int, ...] = (8, 16, 16, 16)
) -> np.ndarray:
    """SSD anchors of BlazeFace short-range: (896, 2) centres (x, y) in [0, 1].

    As MediaPipe's SsdAnchorsCalculator with fixed anchor size: consecutive layers with the same
    stride share one grid, each layer puts 2 anchors (aspect ratio 1 + interpolated scale) on
    every cell: 16x16x2 (stride 8) + 8x8x6 (stride 16) = 896.
    """
    centres = []
    layer = 0
    while layer < len(strides):
        stride, per_cell = strides[layer], 0
        while layer < len(strides) and strides[layer] == stride:
            per_cell += 2
            layer += 1
        cells = int(np.ceil(input_size / stride))
        y, x = np.mgrid[0:cells, 0:cells]
        grid = np.stack([(x + 0.5) / cells, (y + 0.5) / cells], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, per_cell, axis=1).reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32)


def decode_blazeface(
    regressors: np.ndarray, scores: np.ndarray, anchors: np.ndarray, input_size: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """Raw outputs (896, 16), (896,) -> boxes (896, 4) as (x0, y0, x1, y1) in [0, 1], probabilities.

    Box centre = anchor + offset / input_size; width, height = value / input_size (anchor size 1);
    score = sigmoid(clip(logit, -100, 100)).
    """
    centre = anchors + regressors[:, 0:2] / input_size
    half = regressors[:, 2:4] / input_size / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    logits = np.clip(scores.reshape(-1).astype(np.float64), -100.0, 100.0)
    probs = 1.0 / (1.0 + np.exp(-logits))
    return boxes, probs


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3
) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's weighted non-maximum suppression: each kept box is the score-weighted mean of
    the boxes overlapping it by more than ``iou_threshold``. boxes (N, 4) x0 y0 x1 y1."""
    order = np.argsort(-scores)
    kept = []
    while order.size:
        best = boxes[order[0]]
        others = boxes[order]
        x0 = np.maximum(best[0], others[:, 0])
        y0 = np.maximum(best[1], others[:, 1])
        x1 = np.minimum(best[2], others[:, 2])
        y1 = np.minimum(best[3], others[:, 3])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
        best_area = (best[2] - best[0]) * (best[3] - best[1])
        iou = inter / np.maximum(best_area + areas - inter, 1e-9)
        group = iou > iou_threshold
        weights = scores[order[group]]
        kept.append(
            ((others[group] * weights[:, None]).sum(0) / weights.sum(), float(weights.max()))
        )
        order = order[~group]
    return kept


class BlazeFaceDetector:
    """MediaPipe BlazeFace short-range (face_detection_short_range.tflite), run with ai-edge-litert.

    The frame is letterboxed to 128x128 (aspect kept, black borders), scaled to [-1, 1]; the 896
    anchor outputs are decoded here, thresholded at ``score_threshold`` and merged by weighted NMS.
    """

    def __init__(
        self,
        path: str | Path,
        score_threshold: float = 0.5,
        iou_threshold: float = 0.3,
        num_threads: int = min(2, os.cpu_count() or 1),  # 1.1 ms a frame on 1 core, 0.7 on 2
    ):
        self.path = Path(path)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as error:
            raise FaceDetectorError(
                "BlazeFace needs ai-edge-litert: pip install ai-edge-litert "
                "(or use the Haar cascade .xml)"
            ) from error
        try:
            self.interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise FaceDetectorError(f"{self.path}: not a TFLite model ({error})") from error
        inputs = self.interpreter.get_input_details()
        outputs = {o["name"]: o for o in self.interpreter.get_output_details()}
        shape = tuple(inputs[0]["shape"])
        if shape[1:] != (128, 128, 3) or set(outputs) != {"regressors", "classificators"}:
            raise FaceDetectorError(
                f"{self.path}: not BlazeFace short-range (input {shape}, outputs {sorted(outputs)})"
            )
        self.input_index = inputs[0]["index"]
        self.regressors_index = outputs["regressors"]["index"]
        self.scores_index = outputs["classificators"]["index"]
        self.anchors = blazeface_anchors()
        self.score_threshold, self.iou_threshold = score_threshold, iou_threshold
        self.fingerprint = _fingerprint(self.path)

    def detect(self, frame: np.ndarray) -> list[Box]:
        rgb = as_rgb(frame)
        height, width = rgb.shape[:2]
        side = max(height, width)
        scale = 128 / side
        resized = cv2.resize(
            rgb,
            (max(1, round(width * scale)), max(1, round(height * scale))),
            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
        )
        canvas = np.zeros((128, 128, 3), np.float32)
        top, left = (128 - resized.shape[0]) // 2, (128 - resized.shape[1]) // 2
        canvas[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
        self.interpreter.set_tensor(self.input_index, (canvas / 127.5 - 1.0)[None])
        self.interpreter.invoke()
        regressors = self.interpreter.get_tensor(self.regressors_index)[0]
        logits = self.interpreter.get_tensor(self.scores_index)[0]
        boxes, probs = decode_blazeface(regressors, logits, self.anchors)
        keep = probs >= self.score_threshold
        result = []
        for (x0, y0, x1, y1), score in weighted_nms(boxes[keep], probs[keep], self.iou_threshold):
            # from the 128x128 letterbox back to frame pixels, clipped to the frame
            x0, x1 = [np.clip((v * 128 - left) / scale, 0, width) for v in (x0, x1)]
            y0, y1 = [np.clip((v * 128 - top) / scale, 0, height) for v in (y0, y1)]
            if x1 - x0 >= 2 and y1 - y0 >= 2:
                result.append((float(x0), float(y0), float(x1 - x0), float(y1 - y0), score))
        return sorted(result, key=lambda b: -b[4])


def load_face_detector(path: str | Path):
    """A detector from its model file: Haar cascade ``.xml`` or BlazeFace ``.tflite``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FaceDetectorError(f"{path}: no such face-detector file")
    if path.suffix.lower() == ".xml":
        return HaarDetector(path)
    if path.suffix.lower() == ".tflite":
        return BlazeFaceDetector(path)
    raise FaceDetectorError(
        f"{path}: unknown face detector (expected a Haar cascade .xml or BlazeFace .tflite)"
    )


def largest_face(boxes: list[Box]) -> Box | None:
    """The box of largest area, or None for no box."""
    return max(boxes, key=lambda b: b[2] * b[3]) if boxes else None


def crop_face(
    frame: np.ndarray,
    box: Box,
    size: tuple[int, int] = (64, 64),
    margin: float = 0.2,
    gray: bool = True,
) -> np.ndarray:
    """A square crop around ``box``, ``margin`` x its size larger, resized to ``size`` (H, W).

    Parts of the square outside the frame repeat the edge pixels. Returns uint8 (H, W) when
    ``gray`` (ITU-R 601 luma, as OpenCV), else (H, W, 3) RGB.
    """
    rgb = as_rgb(frame)
    x, y, w, h = box[:4]
    side = max(w, h) * (1.0 + margin)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    x1, y1 = x0 + max(1, int(round(side))), y0 + max(1, int(round(side)))
    height, width = rgb.shape[:2]
    inside = rgb[max(y0, 0) : min(y1, height), max(x0, 0) : min(x1, width)]
    if inside.size == 0:
        raise ValueError(f"face box {box[:4]} lies outside the {width}x{height} frame")
    pads = (max(-y0, 0), max(y1 - height, 0), max(-x0, 0), max(x1 - width, 0))
    if any(pads):
        inside = cv2.copyMakeBorder(inside, *pads, cv2.BORDER_REPLICATE)
    interpolation = cv2.INTER_AREA if inside.shape[0] > size[0] else cv2.INTER_LINEAR
    crop = cv2.resize(inside, (size[1], size[0]), interpolation=interpolation)
    return cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if gray else crop
