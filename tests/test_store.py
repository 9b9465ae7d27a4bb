import json

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import torch

from liser import store as st
from liser.config import FrontEndConfig
from liser.store import shards

FRONTEND = FrontEndConfig(n_mels=8, window_seconds=0.1)  # 8 mels x 11 frames per window
AUDIO = {"spec": "a", "classes": ["x", "y", "z"], "fingerprint": "fa", "temperature": None}
VIDEO = {"spec": "v", "classes": ["p", "q"], "fingerprint": "fv", "temperature": 1.0}


def rows(clip: str, first: int, n: int, video=True, audio_fp="fa", video_fp="fv") -> dict:
    """n windows whose features are all equal to their global index (exact in float16)."""
    shape = (FRONTEND.n_mels, FRONTEND.n_frames)
    index = range(first, first + n)
    return {
        "window_id": [f"{clip}-{i}" for i in index],
        "clip": [clip] * n,
        "source": [f"/data/{clip}.mp4"] * n,
        "start": [float(i) for i in index],
        "end": [i + 3.0 for i in index],
        "features": [np.full(shape, i, np.float16).tobytes() for i in index],
        "audio_probs": [[0.5, 0.25, 0.25]] * n,
        "audio_confidence": [0.5] * n,
        "audio_teacher": [audio_fp] * n,
        "video_probs": [[0.9, 0.1] if video and i % 2 == 0 else None for i in index],
        "video_confidence": [0.9 if video and i % 2 == 0 else None for i in index],
        "video_teacher": [video_fp] * n,
        "face_coverage": [1.0 if i % 2 == 0 else 0.0 for i in index] if video else [None] * n,
    }


def make_store(path, clips: int = 5, per_clip: int = 7, shard_windows: int = 10):
    header = st.new_header(FRONTEND, 0.1, 0.1, 0.05)
    header["teachers"] = {"audio": AUDIO, "video": VIDEO}
    st.write_header(path, header)
    writer = shards.ShardWriter(path, shard_windows)
    for c in range(clips):
        writer.add(rows(f"c{c}", c * per_clip, per_clip))
        writer.complete(f"c{c}")
        if writer.full():
            writer.flush()
    writer.close()
    return st.open_store(path)


def ids(batch) -> list[int]:
    return batch["features"][:, 0, 0].long().tolist()


def test_store_layout_and_batches(tmp_path):
    store = make_store(tmp_path / "s")
    assert len(store) == 35 and len(store.shards) == 3  # flushed at 14 (>= 10), 14, then 7
    assert store.audio_classes == ("x", "y", "z") and store.video_classes == ("p", "q")
    assert store.frontend == FRONTEND
    table = ds.dataset(tmp_path / "s" / "shards").to_table()  # readable as one table
    assert table.num_rows == 35 and sorted(set(table["clip"].to_pylist())) == [
        f"c{i}" for i in range(5)
    ]
    batches = list(store.iter_batches(8, shuffle=False))
    assert [len(b["audio_mask"]) for b in batches] == [8, 8, 8, 8, 3]
    b = batches[0]
    assert b["features"].shape == (8, 8, 11) and b["features"].dtype == torch.float32
    assert ids(b) == list(range(8))
    assert torch.equal(b["features"][3], torch.full((8, 11), 3.0))
    assert b["audio_probs"].shape == (8, 3) and b["audio_mask"].all()
    assert torch.allclose(b["audio_probs"][0], torch.tensor([0.5, 0.25, 0.25]))
    assert b["video_probs"].shape == (8, 2)
    assert b["video_mask"].tolist() == [i % 2 == 0 for i in range(8)]
    assert (b["video_probs"][~b["video_mask"]] == 0).all()


def test_shuffle_is_seeded_and_covers_every_window_once(tmp_path):
    store = make_store(tmp_path / "s")

    def order(seed, epoch):
        return [
            i
            for b in store.iter_batches(4, seed=seed, epoch=epoch, buffer_windows=12)
            for i in ids(b)
        ]

    first = order(0, 0)
    assert sorted(first) == list(range(35))
    assert order(0, 0) == first
    assert order(0, 1) != first and sorted(order(0, 1)) == list(range(35))
    dropped = [len(b["audio_mask"]) for b in store.iter_batches(4, drop_last=True)]
    assert set(dropped) == {4} and sum(dropped) == 32


def test_reading_holds_one_buffer_not_the_store(tmp_path, monkeypatch):
    store = make_store(tmp_path / "s", clips=20, per_clip=10, shard_windows=20)
    decoded = []
    original = st.SoftLabelStore._decode
    monkeypatch.setattr(
        st.SoftLabelStore,
        "_decode",
        lambda self, b: decoded.append(b.num_rows) or original(self, b),
    )
    batches = store.iter_batches(4, buffer_windows=30)
    next(batches)
    assert len(store) == 200 and sum(decoded) <= 30 + 20  # one buffer + at most one shard's batch
    assert sum(1 for _ in batches) == 49


def test_rows_of_another_teacher_are_masked(tmp_path):
    path = tmp_path / "s"
    make_store(path, clips=1, per_clip=4)
    writer = shards.ShardWriter(path, 10)
    writer.add(rows("old", 100, 4, audio_fp="stale", video_fp=None))
    writer.complete("old")
    writer.close()
    batch = next(st.open_store(path).iter_batches(16, shuffle=False))
    assert batch["audio_mask"].tolist() == [True] * 4 + [False] * 4
    assert batch["video_mask"].tolist() == [True, False, True, False] + [False] * 4
    assert (batch["audio_probs"][4:] == 0).all()


def test_no_teacher_gives_empty_probs(tmp_path):
    header = st.new_header(FRONTEND, 0.1, 0.1, 0.05)
    st.write_header(tmp_path, header)
    writer = shards.ShardWriter(tmp_path, 10)
    r = rows("a", 0, 3, video=False, audio_fp=None, video_fp=None)
    r["audio_probs"] = r["audio_confidence"] = [None] * 3
    writer.add(r)
    writer.complete("a")
    writer.close()
    batch = next(st.open_store(tmp_path).iter_batches(3))
    assert batch["audio_probs"].shape == (3, 0) and not batch["audio_mask"].any()
    assert batch["video_probs"].shape == (3, 0) and torch.isnan(batch["face_coverage"]).all()


def test_repair_drops_incomplete_clips_and_temporary_files(tmp_path):
    path = tmp_path / "s"
    make_store(path, clips=2, per_clip=3)
    writer = shards.ShardWriter(path, 2)
    writer.add(rows("half", 50, 3))  # a clip cut by a crash: rows in a shard, never completed
    writer.add(rows("whole", 60, 2))
    writer.complete("whole")
    writer.flush()
    writer.add(rows("lost", 70, 2))  # only its rows, no completion anywhere
    writer.flush()
    (path / "shards" / ".part-000009.parquet.123.tmp").write_bytes(b"half a shard")
    assert shards.done_clips(path) == {"c0", "c1", "whole"}
    assert shards.repair_store(path) == ["half", "lost"]
    table = ds.dataset(path / "shards").to_table()
    assert sorted(set(table["clip"].to_pylist())) == ["c0", "c1", "whole"]
    assert table.num_rows == 8 and len(set(table["window_id"].to_pylist())) == 8
    assert not list((path / "shards").glob(".*")) and len(st.shard_paths(path)) == 2
    assert shards.repair_store(path) == []


def test_shard_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "s"
    make_store(path, clips=1, per_clip=3)
    before = st.shard_paths(path)
    writer = shards.ShardWriter(path, 2)
    writer.add(rows("new", 10, 3))

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(shards.pq.ParquetWriter, "add_key_value_metadata", crash)
    with pytest.raises(KeyboardInterrupt):
        writer.flush()
    assert st.shard_paths(path) == before  # nothing half-written under a readable name
    assert len(list((path / "shards").glob(".part-*.tmp"))) == 1
    assert len(st.open_store(path)) == 3 and ds.dataset(path / "shards").count_rows() == 3


def test_writer_streams_row_groups(tmp_path):
    header = st.new_header(FRONTEND, 0.1, 0.1, 0.05)
    st.write_header(tmp_path, header)
    writer = shards.ShardWriter(tmp_path, shard_windows=1000)
    for c in range(2):
        writer.add(rows(f"c{c}", c * 200, 200))
        writer.complete(f"c{c}")
    writer.add(rows("c2", 400, 100))  # a clip that will fail
    assert writer.buffered == 100 and writer.written == {"c0", "c1"}  # 400 rows on disk
    assert not writer.discard("c2") and writer.buffered == 0 and writer.rows == 400
    assert writer.discard("c1")  # its rows are in the file already: repair_store's job
    writer.close()
    store = st.open_store(tmp_path)
    assert len(store) == 400 and shards.done_clips(tmp_path) == {"c0", "c1"}
    assert pq.read_metadata(store.shards[0]).num_row_groups == 2  # 256 + 144 rows


def test_frontend_mismatch_is_refused(tmp_path):
    store = make_store(tmp_path / "s", clips=1)
    st.check_frontend(store, FRONTEND)
    other = FrontEndConfig(n_mels=8, window_seconds=0.1, hop_seconds=0.02)
    with pytest.raises(st.StoreError, match=r"hop_seconds: 0.01 != 0.02"):
        st.check_frontend(tmp_path / "s", other)


def test_not_a_store_and_other_schema(tmp_path):
    with pytest.raises(st.StoreError, match="not a soft-label store"):
        st.open_store(tmp_path)
    make_store(tmp_path / "s", clips=1)
    header = json.loads((tmp_path / "s" / "store.json").read_text())
    header["schema_version"] = 99
    (tmp_path / "s" / "store.json").write_text(json.dumps(header))
    with pytest.raises(st.StoreError, match="schema 99"):
        st.open_store(tmp_path / "s")
