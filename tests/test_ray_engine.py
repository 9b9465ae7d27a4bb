import numpy as np
import pyarrow.dataset as ds
import pytest
import soundfile as sf

from liser.config import LabelConfig
from liser.label import label
from liser.testing import TinyAudioTeacher, TinyVideoTeacher, face_video, tone

ray = pytest.importorskip("ray", reason="the Ray engine is optional: pip install 'liser[ray]'")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    face_video(root / "talk.mp4", seconds=7.5, fps=10, face_until=4.0, audio=tone(7.5, 220))
    face_video(root / "face.mkv", seconds=4.0, fps=10, audio=tone(4.0, 440, seed=1))
    sf.write(root / "long.wav", tone(31.0, 200, seed=2), 16000)  # several chunks and shards
    sf.write(root / "short.wav", tone(0.5, 300, seed=3), 16000)  # no window
    face_video(root / "mute.mp4", seconds=3.0, fps=10)  # no audio
    (root / "empty.mkv").write_bytes(b"")
    return root


def table(store):
    return ds.dataset(store / "shards").to_table().sort_by("window_id")


@pytest.mark.slow
def test_ray_store_matches_local_row_for_row(media, tmp_path, local_ray):
    config = LabelConfig(shard_windows=5, batch_size=4, chunk_seconds=7.0, hop_seconds=2.0)
    teachers = (TinyAudioTeacher(), TinyVideoTeacher())
    local = label(media, tmp_path / "local", config, *teachers, progress=False)
    config_ray = LabelConfig(**{**config.__dict__, "engine": "ray"})
    distributed = label(media, tmp_path / "ray", config_ray, *teachers, progress=False)
    a, b = table(tmp_path / "local"), table(tmp_path / "ray")
    assert a.num_rows == 3 + 2 + 15
    # bit for bit, except the audio teacher's float rounding, which depends on how windows are
    # batched (by arrival order in Ray)
    exact = [c for c in a.column_names if c not in ("audio_probs", "audio_confidence")]
    assert b.select(exact).equals(a.select(exact))
    probs = [np.array(t["audio_probs"].to_pylist()) for t in (a, b)]
    assert np.allclose(probs[0], probs[1], rtol=0, atol=1e-6)
    for key in ("files", "windows", "hours", "windows_with_face", "skipped_reasons"):
        assert distributed[key] == local[key]
    assert distributed["skipped_files"] == 3
    # a store started by the local engine is finished by the Ray engine without recomputing
    label(media / "long.wav", tmp_path / "mixed", config, *teachers, progress=False)
    label(media, tmp_path / "mixed", config_ray, *teachers, progress=False)
    mixed = table(tmp_path / "mixed")
    assert mixed.select(exact).equals(a.select(exact))
    confidences = [np.sort(t["audio_confidence"].to_numpy()) for t in (mixed, a)]
    assert np.allclose(confidences[0], confidences[1], rtol=0, atol=1e-6)
