"""The video teacher's class prior and mirrored crops, and the two video-distillation targets."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from liser.config import DistillConfig, VideoTeacherConfig
from liser.constants import FER_CLASSES, RAVDESS_CLASSES
from liser.teachers.video import FER2013_TRAIN_COUNTS, VideoTeacher, class_prior
from liser.train.distill import DistillTerms, class_map
from liser.train.losses import DistillationLoss


class LeftBrightFER:
    """A fake 2-class FER model: p(left) grows with the brightness of the crop's left half."""

    classes = ("left", "right")
    fingerprint = "fake"
    spec = SimpleNamespace(color="gray", size=(4, 4))

    def predict(self, crops, temperature=1.0):
        left = crops[:, :, :2].mean((1, 2)) / 255
        p = np.clip(0.5 + 0.4 * (left - crops[:, :, 2:].mean((1, 2)) / 255), 0, 1)
        return np.stack([p, 1 - p], 1).astype(np.float32)


def test_mirrored_crops_cancel_a_left_right_asymmetry():
    crops = np.zeros((3, 4, 4), np.uint8)
    crops[:, :, :2] = 255  # bright on the left
    plain = VideoTeacher(LeftBrightFER(), None, VideoTeacherConfig()).classify(crops)
    mirrored = VideoTeacher(LeftBrightFER(), None, VideoTeacherConfig(mirror=True, batch_size=2))
    np.testing.assert_allclose(plain, [[0.9, 0.1]] * 3, atol=1e-6)
    np.testing.assert_allclose(mirrored.classify(crops), [[0.5, 0.5]] * 3, atol=1e-6)


def test_class_prior_divides_out_the_training_frequencies():
    prior = class_prior("fer2013", FER_CLASSES)
    counts = np.array([FER2013_TRAIN_COUNTS[c] for c in FER_CLASSES], float)
    np.testing.assert_allclose(prior, counts / counts.sum(), rtol=1e-6)
    assert class_prior("", FER_CLASSES) is None
    np.testing.assert_allclose(class_prior("1,3", ("a", "b")), [0.25, 0.75])
    teacher = VideoTeacher(LeftBrightFER(), None, VideoTeacherConfig(prior="0.8,0.2"))
    crops = np.zeros((1, 4, 4), np.uint8)
    crops[:, :, :2] = 255  # p = (0.9, 0.1) before; / (0.8, 0.2) = (1.125, 0.5) -> (0.692, 0.308)
    np.testing.assert_allclose(teacher.classify(crops), [[1.125 / 1.625, 0.5 / 1.625]], atol=1e-6)
    for bad in ("1,2,3", "0,1", "a,b"):
        with pytest.raises(ValueError, match="prior"):
            class_prior(bad, ("a", "b"))
    with pytest.raises(ValueError, match="fer2013"):
        class_prior("fer2013", ("left", "right"))


def test_class_map_matches_fer_and_corpus_words():
    matrix = class_map(FER_CLASSES, RAVDESS_CLASSES)
    pairs = {
        (FER_CLASSES[i], RAVDESS_CLASSES[j])
        for i, j in zip(*np.nonzero(matrix.numpy()), strict=True)
    }
    assert pairs == {("angry", "angry"), ("disgust", "disgust"), ("fear", "fearful"),
                     ("happy", "happy"), ("sad", "sad"), ("surprise", "surprised"),
                     ("neutral", "neutral")}  # fmt: skip
    four = class_map(FER_CLASSES, ("neutral", "happy", "sad", "angry"), ["surprise=happy", "fear="])
    assert (
        four[FER_CLASSES.index("surprise"), 1] == 1 and four[FER_CLASSES.index("fear")].sum() == 0
    )
    assert four[FER_CLASSES.index("disgust")].sum() == 0  # the student has no such class
    with pytest.raises(ValueError, match="maps onto"):
        class_map(("left", "right"), ("up", "down"))


def test_mapped_video_target_trains_the_supervised_head():
    classes = ("neutral", "happy", "sad", "angry")
    video = ("angry", "disgust", "happy", "neutral")
    torch.manual_seed(0)
    out = {"logits": torch.randn(5, 4), "audio": torch.randn(5, 3), "video": torch.randn(5, 4)}
    probs = torch.tensor([[0.1, 0.0, 0.7, 0.2], [0.0, 1.0, 0.0, 0.0], [0.5, 0.1, 0.2, 0.2]])
    batch = {"video_probs": probs, "video_mask": torch.ones(3, dtype=torch.bool),
             "video_temperature": 1.0}  # fmt: skip
    use = {"audio": False, "video": True}
    config = DistillConfig(video_target="classes")
    teachers = {"audio": (), "video": video}
    mapped = DistillTerms(config, use, classes, teachers)(out, batch, labeled=2)["video"]
    # row 1 has all its mass on disgust, which the student lacks: masked; the others renormalised
    target = torch.tensor(
        [[0.2, 0.7, 0.0, 0.1], [0.0, 0.0, 0.0, 1.0], [0.2 / 0.9, 0.2 / 0.9, 0, 0.5 / 0.9]]
    )
    want = DistillationLoss("mae", "confidence")(
        out["logits"][2:], target, torch.tensor([True, False, True])
    )
    assert mapped.item() == pytest.approx(want.item(), rel=1e-5)
    head = DistillTerms(DistillConfig(), use, classes, teachers)(out, batch, labeled=2)["video"]
    want_head = DistillationLoss("mae", "confidence")(out["video"][2:], probs, batch["video_mask"])
    assert head.item() == pytest.approx(want_head.item(), rel=1e-5)
    with pytest.raises(ValueError, match="video_target"):
        DistillTerms(DistillConfig(video_target="both"), use, classes, teachers)
    # the audio teacher's classes onto the supervised head: same names, another order
    audio = {"audio": ("angry", "sad", "happy"), "video": ()}
    batch = {"audio_probs": torch.tensor([[0.6, 0.3, 0.1]]), "audio_mask": torch.ones(1, dtype=torch.bool),
             "audio_temperature": 1.0}  # fmt: skip
    on = {"audio": True, "video": False}
    term = DistillTerms(DistillConfig(audio_target="classes"), on, classes, audio)(out, batch, 4)
    want = DistillationLoss("mae", "confidence")(
        out["logits"][4:], torch.tensor([[0.0, 0.1, 0.3, 0.6]]), torch.ones(1, dtype=torch.bool)
    )
    assert term["audio"].item() == pytest.approx(want.item(), rel=1e-5)
    # audio_map drops the teacher's classes a domain lacks: the rest renormalised
    drop = DistillConfig(audio_target="classes", audio_map=("sad=",))
    term = DistillTerms(drop, on, classes, audio)(out, batch, 4)
    want = DistillationLoss("mae", "confidence")(
        out["logits"][4:],
        torch.tensor([[0.0, 0.1 / 0.7, 0.0, 0.6 / 0.7]]),
        torch.ones(1, dtype=torch.bool),
    )
    assert term["audio"].item() == pytest.approx(want.item(), rel=1e-5)
