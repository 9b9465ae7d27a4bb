import json
import platform

import pytest
import torch
from safetensors import safe_open

from liser import checkpoint as ckpt
from liser.checkpoint import CheckpointError, load_checkpoint, read_meta, save_checkpoint
from liser.config import FrontEndConfig, StudentConfig, to_dict
from liser.student import Student
from liser.testing import student_checkpoint

CLASSES = ("angry", "happy", "neutral", "sad")


def outputs(model, seed=1):
    torch.manual_seed(seed)
    x = torch.randn(2, 64, 301)
    with torch.no_grad():
        return model.eval()(x)


def test_checkpoint_json_describes_the_model(tmp_path):
    folder = student_checkpoint(tmp_path / "run", CLASSES, seed=3)
    model, meta = load_checkpoint(folder)
    assert not model.training
    assert json.loads((folder / "checkpoint.json").read_text())["classes"] == list(CLASSES)
    assert meta["classes"] == list(CLASSES)
    assert meta["frontend"] == to_dict(FrontEndConfig())
    assert meta["student"]["n_classes"] == 4
    assert meta["seed"] == 3
    assert meta["versions"]["python"] == platform.python_version()
    assert meta["versions"]["torch"] == torch.__version__
    assert {"liser", "torch", "python"} <= set(meta["versions"])
    assert meta["parameters"] == sum(p.numel() for p in model.parameters())


def test_saved_model_reloads_bit_exact(tmp_path):
    torch.manual_seed(0)
    model = Student(StudentConfig(n_classes=3, temporal_pooling="attention"), FrontEndConfig())
    model.train()
    model(torch.randn(4, 64, 301))  # updates BatchNorm running statistics
    save_checkpoint(tmp_path, model, {"classes": ["a", "b", "c"], "metrics": {"uar": 0.5}})
    loaded, meta = load_checkpoint(tmp_path)
    for name, value in outputs(model).items():
        assert torch.equal(outputs(loaded)[name], value)
    assert meta["metrics"] == {"uar": 0.5}
    assert loaded.config == model.config
    # a loaded meta saved again (as training does on resume) gives a consistent checkpoint
    save_checkpoint(tmp_path / "again", loaded, {**meta, "versions": {"torch": "0.0"}})
    with safe_open(str(tmp_path / "again" / "model.safetensors"), "pt") as handle:
        embedded = json.loads(handle.metadata()["meta"])
    assert "weights_sha256" not in embedded
    assert embedded["versions"]["torch"] == torch.__version__
    record = json.loads((tmp_path / "again" / "checkpoint.json").read_text())
    assert record["weights_sha256"] == ckpt._sha256(tmp_path / "again" / "model.safetensors")


@pytest.mark.parametrize("name", ["", "checkpoint.json", "model.safetensors"])
def test_folder_json_or_weights_path_all_load(tmp_path, name):
    folder = student_checkpoint(tmp_path, CLASSES)
    model, meta = load_checkpoint(folder / name if name else folder)
    assert meta["classes"] == list(CLASSES)
    assert read_meta(folder / name if name else folder)["classes"] == list(CLASSES)


def test_pickle_files_are_refused(tmp_path):
    folder = student_checkpoint(tmp_path / "good", CLASSES)
    model, _ = load_checkpoint(folder)
    pickled = tmp_path / "bad" / "model.pt"
    pickled.parent.mkdir()
    torch.save(model.state_dict(), pickled)
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(pickled)
    with pytest.raises(CheckpointError, match="model.pt: pickle files are not loaded"):
        load_checkpoint(pickled.parent)
    disguised = tmp_path / "disguised" / "model.safetensors"
    disguised.parent.mkdir()
    disguised.write_bytes(pickled.read_bytes())
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_checkpoint(disguised)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nowhere")


def test_foreign_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="not a liser student checkpoint"):
        load_checkpoint(tmp_path)


def test_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    folder = student_checkpoint(tmp_path, CLASSES, seed=0)
    before = outputs(load_checkpoint(folder)[0])

    def crash(state, path, metadata=None):
        with open(path, "wb") as handle:
            handle.write(b"half a file")
        raise KeyboardInterrupt

    torch.manual_seed(1)
    other = Student(StudentConfig(n_classes=4), FrontEndConfig())
    monkeypatch.setattr(ckpt, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(folder, other, {"classes": list(CLASSES)})
    model, meta = load_checkpoint(folder)
    assert torch.equal(outputs(model)["logits"], before["logits"])
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.json", "model.safetensors"]


def test_weights_newer_than_json_use_the_meta_inside_the_weights(tmp_path):
    # a crash between renaming the weights and the json leaves an old checkpoint.json
    student_checkpoint(tmp_path / "old", CLASSES)
    student_checkpoint(tmp_path / "new", ("x", "y", "z", "w"))
    (tmp_path / "old" / "model.safetensors").replace(tmp_path / "old2")
    (tmp_path / "new" / "model.safetensors").replace(tmp_path / "old" / "model.safetensors")
    _, meta = load_checkpoint(tmp_path / "old")
    assert meta["classes"] == ["x", "y", "z", "w"]


def test_meta_must_fit_the_model(tmp_path):
    model = Student(StudentConfig(n_classes=4), FrontEndConfig())
    with pytest.raises(CheckpointError, match="classes"):
        save_checkpoint(tmp_path, model, {})
    with pytest.raises(CheckpointError, match="3 names but the 'logits' head has 4"):
        save_checkpoint(tmp_path, model, {"classes": ["a", "b", "c"]})
    with pytest.raises(CheckpointError, match="video_classes"):
        save_checkpoint(tmp_path, model, {"classes": list(CLASSES), "video_classes": ["a"]})
    with pytest.raises(CheckpointError, match="front end"):
        save_checkpoint(tmp_path, model, {"classes": list(CLASSES), "frontend": {"n_mels": 40}})
    global_model = Student(StudentConfig(n_classes=4), FrontEndConfig(normalize="global"))
    with pytest.raises(CheckpointError, match="frontend_stats"):
        save_checkpoint(tmp_path, global_model, {"classes": list(CLASSES)})
    assert not (tmp_path / "model.safetensors").exists()


def test_global_statistics_travel_with_the_checkpoint(tmp_path):
    frontend = FrontEndConfig(normalize="global")
    model = Student(StudentConfig(n_classes=2), frontend)
    stats = {"mean": [float(i) for i in range(64)], "std": [2.0] * 64, "count": 10}
    save_checkpoint(tmp_path, model, {"classes": ["a", "b"], "frontend_stats": stats})
    meta = json.loads((tmp_path / "checkpoint.json").read_text())
    logmel = ckpt.logmel_for(meta)
    assert logmel.mean.tolist() == stats["mean"]
    assert logmel.std.tolist() == stats["std"]
