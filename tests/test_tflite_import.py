"""The real quantized TFLite models from ../shared/data/coral, against the TFLite interpreter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers
from ai_edge_litert.interpreter import Interpreter
from conftest import CORAL_CLASSIFIER, FLOAT32_RTOL
from PIL import Image

import npmnv2
from npmnv2 import MobileNetV2ForImageClassification as Cls
from npmnv2 import MobileNetV2ForSemanticSegmentation as Seg
from npmnv2.ops import nchw_to_nhwc, resize_bilinear, softmax
from npmnv2.ops.quantization import dequantize
from npmnv2.weights import WeightFileError

IMAGES = ["cat", "grace_hopper", "bird", "sunflower", "dragonfly"]


def interpreter_output(path, image_uint8):
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image_uint8[None])
    interpreter.invoke()
    out = interpreter.get_output_details()[0]
    raw = interpreter.get_tensor(out["index"])[0]
    scale, zero = out["quantization"]
    return raw if scale == 0 else scale * (raw.astype(np.float64) - zero)


def image_uint8(path, size):
    return np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.NEAREST), dtype=np.uint8)


def pixel_values(image):
    return (image.astype(np.float32) / 127.5 - 1).transpose(2, 0, 1)[None]  # (1, 3, H, W)


@pytest.fixture(scope="module")
def classifier(coral_dir):
    return Cls.from_pretrained(coral_dir / CORAL_CLASSIFIER)


@pytest.fixture(scope="module")
def deeplab(coral_dir):
    return {
        name: Seg.from_pretrained(coral_dir / f"{name}.tflite")
        for name in ("deeplabv3_mnv2_pascal_quant", "deeplabv3_mnv2_dm05_pascal_quant")
    }


def test_classifier_config_and_labels_come_from_the_file(classifier):
    c = classifier.config
    assert (c.depth_multiplier, c.output_stride, c.num_labels, c.image_size, c.tf_padding) == (1.0, 32, 1001, 224, True)
    assert c.id2label[0] == "background" and c.id2label[286] == "Egyptian cat"
    assert classifier.quantization["pixel_values"] == (0.0078125, 128)
    assert "layer.14" in classifier.quantization and "layer.3.expand_1x1" in classifier.quantization


@pytest.mark.parametrize("name", IMAGES)
def test_dequantized_classifier_agrees_with_the_interpreter(coral_dir, classifier, name):
    image = image_uint8(coral_dir / f"{name}.bmp", 224)
    theirs = interpreter_output(coral_dir / CORAL_CLASSIFIER, image)
    ours = softmax(classifier(pixel_values(image)).logits)[0]
    assert ours.argmax() == theirs.argmax()
    assert abs(ours.max() - theirs.max()) <= 0.05


def test_cat_is_an_egyptian_cat(coral_dir, classifier):
    probs = softmax(classifier(pixel_values(image_uint8(coral_dir / "cat.bmp", 224))).logits)[0]
    assert classifier.config.id2label[int(probs.argmax())] == "Egyptian cat"
    assert probs.max() == pytest.approx(0.762, abs=0.05)


def test_deeplab_configs_are_inferred(deeplab):
    full, half = deeplab["deeplabv3_mnv2_pascal_quant"].config, deeplab["deeplabv3_mnv2_dm05_pascal_quant"].config
    assert (full.depth_multiplier, full.depth_divisible_by, full.output_stride) == (1.0, 8, 16)
    assert (half.depth_multiplier, half.depth_divisible_by, half.output_stride) == (0.5, 1, 16)
    assert half.num_labels == 21 and half.id2label[3] == "bird" and half.image_size == 513


def agreement(a, b):
    count = int((a == b).sum())
    return count / (a.size + b.size - count)


@pytest.mark.parametrize(
    "name,bar", [("deeplabv3_mnv2_pascal_quant", 0.90), ("deeplabv3_mnv2_dm05_pascal_quant", 0.90)]
)
def test_deeplab_segments_the_bird(coral_dir, deeplab, name, bar):
    image = np.asarray(Image.open(coral_dir / "bird_segmentation.bmp").convert("RGB"), dtype=np.uint8)
    mask = np.asarray(Image.open(coral_dir / "bird_segmentation_mask.bmp"))
    logits = deeplab[name](pixel_values(image)).logits
    ours = resize_bilinear(nchw_to_nhwc(logits), mask.shape, align_corners=False)[0].argmax(-1)
    assert agreement(ours, mask) >= bar
    theirs = interpreter_output(coral_dir / f"{name}.tflite", image)
    if name == "deeplabv3_mnv2_pascal_quant":
        assert (ours == theirs).mean() >= 0.97
        assert set(np.unique(ours)) == {0, 3}  # background and bird, like the interpreter


def test_imported_models_saved_load_in_transformers_with_same_logits(tmp_path, classifier, deeplab, coral_dir):
    x = pixel_values(image_uint8(coral_dir / "cat.bmp", 224))
    for model, hf_cls in (
        (classifier, transformers.MobileNetV2ForImageClassification),
        (deeplab["deeplabv3_mnv2_dm05_pascal_quant"], transformers.MobileNetV2ForSemanticSegmentation),
    ):
        folder = tmp_path / type(model).__name__
        model.save_pretrained(folder)
        hf_model, info = hf_cls.from_pretrained(folder, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
        with torch.no_grad():
            theirs = hf_model.eval()(torch.from_numpy(x)).logits.numpy()
        ours = model(x).logits
        assert np.abs(ours - theirs).max() <= FLOAT32_RTOL * max(1.0, np.abs(theirs).max())
        assert type(model).from_pretrained(folder).quantization == model.quantization  # kept in config.json


def test_per_channel_dequantization_broadcasts_along_the_axis():
    q = np.array([[0, 10], [0, 10]], dtype=np.int8)
    out = dequantize(q, np.array([1.0, 0.5]), np.array([0, 2]), axis=0)
    np.testing.assert_array_equal(out, [[0.0, 10.0], [-1.0, 4.0]])


def test_renamed_tensors_still_import_because_layers_are_found_by_structure(tmp_path, coral_dir):
    blob = (coral_dir / CORAL_CLASSIFIER).read_bytes()
    renamed_blob = blob.replace(b"MobilenetV2/expanded_conv_3/", b"ResNetBlock/expanded_conv_3/")
    (tmp_path / "renamed.tflite").write_bytes(renamed_blob)
    renamed = Cls.from_pretrained(tmp_path / "renamed.tflite")
    original = Cls.from_pretrained(coral_dir / CORAL_CLASSIFIER)
    key = "mobilenet_v2.layer.2.conv_3x3.convolution.weight"
    np.testing.assert_array_equal(renamed.state_dict()[key], original.state_dict()[key])


def test_a_graph_that_is_not_mobilenet_v2_is_refused():
    from types import SimpleNamespace

    from npmnv2.tflite.layers import match_layers

    def op(kind: str, inp: int, out: int) -> dict:
        return {"type": kind, "inputs": [inp, 100 + out, -1], "outputs": [out], "activation": 3}

    resnet_like = SimpleNamespace(where="TFLite file 'resnet.tflite'", ops=[op("CONV_2D", i, i + 1) for i in range(20)])
    with pytest.raises(WeightFileError, match=r"resnet.tflite.*not a MobileNetV2 graph.*17 depthwise"):
        match_layers(resnet_like)


PHOTOS = ["cat", "grace_hopper", "bird", "sunflower", "dragonfly"]


def _interpreter_top1(path, image) -> int:
    from ai_edge_litert.interpreter import Interpreter

    from npmnv2.verify import tflite_input

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    pixels, _ = tflite_input(path, image)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], pixels)
    interpreter.invoke()
    return int(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).argmax())


@pytest.mark.parametrize(
    ("name", "labels", "photos"),
    [
        ("tf2_mobilenet_v2_1.0_224_ptq.tflite", 1001, PHOTOS),  # TF2 names, MEAN pooling, int8 per channel
        ("mobilenet_v2_1.0_224_inat_insect_quant.tflite", 1022, ["sunflower", "dragonfly"]),  # FULLY_CONNECTED head
    ],
)
def test_other_exporters_import_by_structure_and_match_the_interpreters_top1(coral_dir, name, labels, photos):
    from npmnv2.verify import tflite_activations, tflite_input

    path = coral_dir / name
    model = Cls.from_pretrained(path)
    assert model.config.num_labels == labels and model.config.id2label[0] != "LABEL_0"  # labels from the metadata
    for photo in photos:
        image = coral_dir / f"{photo}.bmp"
        _, pixel_values = tflite_input(path, image)
        assert int(model(pixel_values).logits.argmax()) == _interpreter_top1(path, image), photo
    result = npmnv2.compare(model.trace(pixel_values), tflite_activations(path, image))
    assert len(result.rows) == 64 and result.first_divergence is None, result.verdict()


def test_layers_are_matched_by_structure_not_by_names(coral_dir):
    from npmnv2.tflite.graph import TFLiteGraph
    from npmnv2.tflite.layers import match_layers, residual_adds

    graph = TFLiteGraph(coral_dir / "tf2_mobilenet_v2_1.0_224_ptq.tflite")
    names = match_layers(graph)
    assert len(names) == 53 and sorted(set(names.values())) == sorted(names.values())
    assert {"conv_stem.first_conv", "layer.15.reduce_1x1", "conv_1x1", "classifier"} <= set(names.values())
    assert sorted(residual_adds(graph, names).values()) == sorted(
        f"layer.{i}" for i in (1, 3, 4, 6, 7, 8, 10, 11, 13, 14)
    )
