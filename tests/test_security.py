"""Safe loading and safe writing (issue 8).

- Only safe weight formats are loaded: safetensors, ``torch.load(weights_only=True)``, HDF5 read
  as arrays, TorchScript for FER models. A pickle whose unpickling would create a marker file is
  given to every loader; each refuses it and the marker never appears.
- Ids, paths and names in manifests are data: nothing is ever written outside the output folder.
"""

from __future__ import annotations

import ast
import json
import pickle
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from liser.cli import app
from liser.config import ConfigError, TrainConfig, from_dict, load_config
from liser.testing import emotion_tones, student_checkpoint, tiny_train_config, tone

LISER = Path(__file__).resolve().parents[1] / "liser"
CLASSES = ("angry", "happy", "neutral", "sad")


class Payload:
    """Unpickling this opens (creates) ``marker``: stands for arbitrary code execution."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def evil_pickle(path: Path, marker: Path) -> Path:
    """A torch.save file (zip + data.pkl) holding a state dict with a payload in it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"weight": torch.zeros(2), "extra": Payload(marker)}, path)
    return path


@pytest.fixture
def tmp_path(tmp_path_factory):
    """A folder whose path never contains 'pickle' (so messages are matched, not paths)."""
    return tmp_path_factory.mktemp("case")


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a pickle payload ran"


def test_the_payload_is_live(tmp_path):
    """The test payload really runs when unpickled unsafely (so its absence elsewhere means)."""
    live = tmp_path / "live"
    torch.load(evil_pickle(tmp_path / "x.pt", live), weights_only=False)
    assert live.exists()
    live.unlink()
    pickle.loads(pickle.dumps(Payload(live)))
    assert live.exists()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return student_checkpoint(tmp_path_factory.mktemp("ckpt"), CLASSES)


# --------------------------------------------------------------------------------------------
# Checkpoints


def test_unsafe_checkpoint_files_are_refused(tmp_path, marker, checkpoint):
    from liser.checkpoint import CheckpointError, load_checkpoint, read_meta

    for suffix in (".pt", ".pth", ".ckpt", ".bin"):
        evil = evil_pickle(tmp_path / f"model{suffix}", marker)
        with pytest.raises(CheckpointError, match=f"model{suffix}.*pickle.*refused"):
            load_checkpoint(evil)
        with pytest.raises(CheckpointError, match="pickle"):
            read_meta(evil)
    folder = tmp_path / "folder"
    evil_pickle(folder / "model.pt", marker)
    with pytest.raises(CheckpointError, match=r"no model.safetensors .*found model.pt: pickle"):
        load_checkpoint(folder)
    disguised = tmp_path / "disguised"  # a pickle named model.safetensors
    disguised.mkdir()
    evil_pickle(disguised / "model.safetensors", marker)
    (disguised / "checkpoint.json").write_text((checkpoint / "checkpoint.json").read_text())
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_checkpoint(disguised)


@pytest.mark.parametrize("command", ["predict", "evaluate", "export"])
def test_cli_refuses_unsafe_checkpoint_files(tmp_path, marker, command):
    import soundfile as sf

    evil = evil_pickle(tmp_path / "model.pt", marker)
    sf.write(tmp_path / "a.wav", tone(1.0), 16000)
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        f"id,path,start,duration,speaker,label,corpus\na,{tmp_path / 'a.wav'},0,1,s,happy,x\n"
    )
    args = {
        "predict": ["predict", str(evil), str(tmp_path / "a.wav")],
        "evaluate": ["evaluate", str(evil), str(manifest)],
        "export": ["export", str(evil), "-o", str(tmp_path / "m.onnx")],
    }[command]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "model.pt" in result.output and "pickle" in result.output
    assert not (tmp_path / "m.onnx").exists()


def test_training_resume_state_is_loaded_weights_only(tmp_path, marker):
    """A tampered ``last/train_state.pt`` is refused (torch.load(weights_only=True))."""
    from liser.manifest import write_manifest
    from liser.train import train

    df = emotion_tones(tmp_path / "wav", n_speakers=4, clips_per_class=2, n_classes=2)
    manifest = write_manifest(df, tmp_path / "m.csv")
    config = from_dict(
        TrainConfig, tiny_train_config(manifest, tmp_path / "run", **{"optim.epochs": 1})
    )
    train(config, progress=False)
    (tmp_path / "run" / "metrics.json").unlink()  # as if killed after the last epoch
    evil_pickle(tmp_path / "run" / "last" / "train_state.pt", marker)
    with pytest.raises(pickle.UnpicklingError, match="[Ww]eights only load failed"):
        train(config, progress=False)


# --------------------------------------------------------------------------------------------
# Teachers


def test_unsafe_audio_teacher_files_are_refused(tmp_path, marker):
    from liser.teachers import TeacherError, load_audio_teacher

    evil = evil_pickle(tmp_path / "teacher.pt", marker)
    with pytest.raises(TeacherError, match="teacher.pt"):
        load_audio_teacher(str(evil))


def test_unsafe_audio_teacher_message_says_why(tmp_path, marker):
    from liser.teachers import TeacherError, load_audio_teacher

    evil = evil_pickle(tmp_path / "teacher.pth", marker)
    with pytest.raises(TeacherError, match="teacher.pth.*pickle"):
        load_audio_teacher(str(evil))


def test_hf_teacher_with_an_unsafe_bin_is_refused(tmp_path, marker):
    """A transformers classifier folder whose pytorch_model.bin is a pickle with a payload:
    transformers loads .bin files with weights_only=True, so the payload never runs."""
    from transformers import HubertConfig

    from liser.teachers import load_audio_teacher

    config = HubertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=16, conv_dim=(8,), conv_stride=(5,), conv_kernel=(10,),
                          num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2,
                          id2label={0: "a", 1: "b"}, label2id={"a": 0, "b": 1})  # fmt: skip
    folder = tmp_path / "hf"
    config.architectures = ["HubertForSequenceClassification"]
    config.save_pretrained(folder)
    evil_pickle(folder / "pytorch_model.bin", marker)
    with pytest.raises(Exception, match="(?i)weights.only|unpickl|pickle"):
        load_audio_teacher(str(folder))


def test_whisper_folder_with_an_unsafe_bin_is_refused(tmp_path, marker):
    from transformers import WhisperConfig

    from liser.teachers.whisper import load_whisper_encoder

    folder = tmp_path / "whisper"
    WhisperConfig(d_model=16, encoder_layers=1, encoder_attention_heads=2, decoder_layers=1,
                  decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16).save_pretrained(folder)  # fmt: skip
    evil_pickle(folder / "pytorch_model.bin", marker)
    with pytest.raises(Exception, match="(?i)weights.only|unpickl|pickle"):
        load_whisper_encoder(folder)


def test_unsafe_video_teacher_files_are_refused(tmp_path, marker):
    from liser.teachers.fer import FERModelError, load_fer_model

    folder = tmp_path / "fer"
    evil_pickle(folder / "model.pt", marker)  # a torch.save pickle, not a TorchScript archive
    (folder / "classes.json").write_text(json.dumps({"classes": ["a", "b"]}))
    with pytest.raises(FERModelError, match="model.pt: not a TorchScript model"):
        load_fer_model(folder)
    pickle_file = tmp_path / "fer.pth"
    pickle_file.write_bytes(pickle.dumps(Payload(marker)))  # a bare pickle
    (tmp_path / "fer.json").write_text(json.dumps({"classes": ["a", "b"]}))
    with pytest.raises(FERModelError, match="fer.pth"):
        load_fer_model(pickle_file)


def test_keras_lambda_layers_are_not_executed(tmp_path):
    """A Keras HDF5 Lambda layer holds marshalled Python bytecode: refused, never run."""
    import h5py

    from liser.teachers.fer import FERModelError, load_fer_model

    code = "KGMAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="  # what Keras writes: base64 of marshal.dumps
    layers = [
        {"class_name": "InputLayer", "name": "in", "inbound_nodes": [],
         "config": {"name": "in", "batch_input_shape": [None, 8, 8, 1]}},
        {"class_name": "Lambda", "name": "evil", "inbound_nodes": [[["in", 0, 0, {}]]],
         "config": {"name": "evil", "function": [code, None, None], "function_type": "lambda"}},
    ]  # fmt: skip
    config = {
        "class_name": "Model",
        "config": {"layers": layers, "output_layers": [["evil", 0, 0]]},
    }
    path = tmp_path / "evil.hdf5"
    with h5py.File(path, "w") as file:
        file.attrs["model_config"] = json.dumps(config)
        file.create_group("model_weights")
    with pytest.raises(FERModelError, match="Lambda"):
        load_fer_model(path)


# --------------------------------------------------------------------------------------------
# Caches and configs


def test_feature_cache_never_loads_objects(tmp_path, marker):
    import soundfile as sf

    from liser.config import FrontEndConfig
    from liser.features import FeatureCache, LogMel, cached_features

    sf.write(tmp_path / "a.wav", tone(1.0), 16000)
    cache = FeatureCache(tmp_path / "cache", FrontEndConfig())
    file = cache.file_for(cache.key(tmp_path / "a.wav"))
    file.parent.mkdir(parents=True)
    np.save(file, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    x = cached_features(tmp_path / "a.wav", 0.0, None, cache, LogMel(cache.frontend))
    assert x.dtype == np.float32 and x.shape[0] == 64  # recomputed, and the entry replaced
    assert np.load(file, allow_pickle=False).shape == x.shape


def test_yaml_configs_cannot_construct_python_objects(tmp_path, marker):
    path = tmp_path / "evil.yaml"
    path.write_text(f"name: !!python/object/apply:builtins.open ['{marker}', 'w']\n")
    with pytest.raises(ConfigError, match="evil.yaml"):
        load_config(TrainConfig, path)
    result = CliRunner().invoke(app, ["label", str(tmp_path), "-o", str(tmp_path / "s"),
                                      "--config", str(path)])  # fmt: skip
    assert result.exit_code == 2 and "evil.yaml" in result.output


# --------------------------------------------------------------------------------------------
# Static guard: no unsafe deserialisation anywhere in the package


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = ast.unparse(func)
            keywords = {k.arg: k.value for k in node.keywords}
            yield node, name, keywords


def test_package_source_has_no_unsafe_loading():
    problems = []
    for path in sorted(LISER.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        where = path.relative_to(LISER.parent)
        for node, name, keywords in _calls(tree):
            at = f"{where}:{node.lineno}: {name}"
            if name.endswith("torch.load") or name == "load" and "weights_only" in keywords:
                value = keywords.get("weights_only")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    problems.append(f"{at} without weights_only=True")
            if name in ("pickle.load", "pickle.loads", "marshal.loads", "dill.load", "joblib.load",
                        "yaml.unsafe_load", "yaml.full_load", "eval", "exec", "cloudpickle.load"):  # fmt: skip
                problems.append(at)
            if name.endswith("np.load") or name.endswith("numpy.load"):
                value = keywords.get("allow_pickle")
                if value is not None and not (
                    isinstance(value, ast.Constant) and value.value is False
                ):
                    problems.append(f"{at} with allow_pickle")
            if name == "yaml.load" and "SafeLoader" not in ast.unparse(node):
                problems.append(f"{at} without SafeLoader")
            if name.endswith("jit.load") and where.as_posix() != "liser/teachers/fer.py":
                problems.append(f"{at}: TorchScript only for FER models")
            value = keywords.get("trust_remote_code")
            if isinstance(value, ast.Constant) and value.value is True:
                problems.append(f"{at} with trust_remote_code=True")
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------------------------
# Ids and paths in manifests never become paths to write to


TRAVERSAL_IDS = ["../../../pwned-a", "..\\..\\pwned-b", "x/../../../../pwned-c", "/tmp/pwned-d",
                 "~/pwned-e", "pwned-f/../../../.."]  # fmt: skip


def _tree(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


def test_manifest_ids_never_escape_the_output_folder(tmp_path, checkpoint):
    """Train (feature cache, test predictions), evaluate, label and predict on a manifest whose
    ids try to climb out: every file written lies in the folder given for it, and nothing named
    after an id appears anywhere."""
    from liser.manifest import write_manifest
    from liser.train import train

    tag = uuid.uuid4().hex[:8]
    ids = [i.replace("pwned", f"pwned{tag}") for i in TRAVERSAL_IDS]
    data = tmp_path / "data"
    df = emotion_tones(data, n_speakers=4, clips_per_class=2, n_classes=2)
    df.loc[: len(ids) - 1, "id"] = ids
    work = tmp_path / "a" / "b" / "c"  # deep enough for ../../.. to stay inside tmp_path
    manifest = write_manifest(df, work / "m.csv")
    classes_ckpt = student_checkpoint(tmp_path / "ckpt2", ("class0", "class1"))
    before = _tree(tmp_path)
    allowed = [work / "run", work / "cache", work / "eval", work / "store", work / "pred.csv"]
    config = tiny_train_config(manifest, work / "run", **{"optim.epochs": 1, "data.cache_dir": str(work / "cache"), "data.val_fraction": 0.0})  # fmt: skip
    train(from_dict(TrainConfig, config), progress=False)
    runner = CliRunner()
    result = runner.invoke(
        app, ["evaluate", str(checkpoint), str(manifest), "-o", str(work / "eval")]
    )
    assert result.exit_code == 2 and "not among the checkpoint's classes" in result.output
    result = runner.invoke(
        app, ["evaluate", str(classes_ckpt), str(manifest), "-o", str(work / "eval")]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["label", str(manifest), "-o", str(work / "store"), "--quiet"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["predict", str(classes_ckpt), str(data), "-o", str(work / "pred.csv"), "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    new = _tree(tmp_path) - before
    outside = [p for p in new if not any(p == a or a in p.parents for a in allowed)]
    assert not outside, outside
    for root in (tmp_path, Path("/tmp"), Path.home()):
        assert not list(root.glob(f"**/*pwned{tag}*" if root == tmp_path else f"*pwned{tag}*"))
    predictions = (work / "run" / "test" / "predictions.csv").read_text()
    eval_predictions = (work / "eval" / "predictions.csv").read_text()
    assert any(i in predictions or i in eval_predictions for i in ids)  # ids stay data
