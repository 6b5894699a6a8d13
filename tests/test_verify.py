"""npmnv2.verify.check on real third-party implementations: faithful ports give no divergence; every
catalogued bug planted in a port is located at its op and named."""

from __future__ import annotations

import json
import os
import warnings

os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras 3 on the torch backend installed with the tests

import numpy as np
import pytest
import torch
from conftest import CORAL_CLASSIFIER
from torchvision_port import Port, randomize

import npmnv2
from npmnv2 import verify

IMAGES = ["cat.bmp", "dragonfly.bmp"]


@pytest.fixture(scope="module")
def cat(coral_dir):
    return coral_dir / "cat.bmp"


# ============================================================================ faithful ports


@pytest.mark.parametrize("image", IMAGES)
@pytest.mark.parametrize("seed", [0, 1])
def test_a_faithful_torchvision_style_port_gives_no_divergence(coral_dir, image, seed):
    report = verify.check(randomize(Port(), seed=seed), coral_dir / image, config="torchvision")
    assert report.faithful and report.cause is None, report.explain()
    assert len(report.rows) > 90 and not report.unmatched_peer


def test_transformers_with_verification_grade_and_with_real_weights_is_faithful(cat):
    coral = npmnv2.MobileNetV2ForImageClassification.from_pretrained("npmnv2/default")
    for model in (verify.random_weights("transformers", seed=3), coral):
        report = verify.check(verify.transformers_twin(model), cat, config="transformers")
        assert report.faithful, report.explain()
        assert len(report.rows) == 151  # every leaf module and block output of transformers' model


def _keras_with(reference):
    import keras

    model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))
    specs = iter(reference.specs)
    for layer in model.layers:  # random weights, set through Keras
        cls = type(layer).__name__
        if cls in ("Conv2D", "DepthwiseConv2D", "Dense"):
            p = reference.params[next(specs).name]
            kernel = p["kernel"][:, :, :, None] if cls == "DepthwiseConv2D" else p["kernel"]
            layer.set_weights([kernel] + ([p["bias"]] if layer.use_bias else []))
            last = p
        elif cls == "BatchNormalization":
            layer.set_weights([last["gamma"], last["beta"], last["mean"], last["var"]])
    return model


def test_keras_applications_mobilenetv2_needs_no_glue_and_is_faithful(cat):
    keras_model = _keras_with(verify.random_weights("keras", seed=0))
    report = verify.check(keras_model, cat, config="keras")  # the whole glue a Keras user writes
    assert report.faithful, report.explain()
    assert report.framework == "keras" and {r.layout for r in report.rows} >= {"NHWC"}
    assert report.rows[-1].name == "classifier" and report.rows[-1].peer_name == "predictions"  # softmax inside


def test_an_onnx_export_run_by_onnx_runtime_is_faithful(cat, tmp_path):
    twin = verify.transformers_twin(verify.random_weights("transformers", seed=1))
    path = tmp_path / "mobilenet_v2.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(twin, (torch.zeros(1, 3, 224, 224),), str(path), dynamo=False)
    report = verify.check(path, cat, config="transformers")
    assert report.faithful, report.explain()
    assert report.framework == "onnx" and len(report.rows) > 90  # batch norm folded by the exporter


@pytest.mark.parametrize(
    "name,image",
    [("mobilenet_v2_1.0_224_quant.tflite", "cat.bmp"), ("tf2_mobilenet_v2_1.0_224_ptq.tflite", "bird.bmp"),
     ("deeplabv3_mnv2_dm05_pascal_quant.tflite", "bird_segmentation.bmp")],
)  # fmt: skip
def test_the_tflite_interpreter_is_faithful_within_quantization_noise(coral_dir, name, image):
    report = verify.check(coral_dir / name, coral_dir / image)
    assert report.faithful, report.explain()
    assert "quantization" in report.verdict()


# ============================================================================ planted bugs


PLANTED = [
    ({"eps": 1e-4}, "conv_stem.first_conv.normalization", "batch_norm.eps"),
    ({"padding": "tf_same"}, "conv_stem.first_conv.convolution", "padding.tf_same"),
    ({"relu": 5}, "layer.4.expand_1x1.activation", "activation.relu"),
    ({"no_activation": 3}, "layer.2.conv_3x3.activation", "activation.missing"),
    ({"activation_on_projection": 2}, "layer.1.reduce_1x1.normalization", "activation.on_projection"),
    ({"no_residual": 4}, "layer.3", "residual.missing"),
    ({"transposed": 6}, "layer.5.conv_3x3.convolution", "kernel.transposed"),
    ({"flipped": 9}, "layer.8.conv_3x3.convolution", "kernel.flipped"),
    ({"stride_on_expand": 6}, "layer.5.conv_3x3.convolution", "stride.misplaced"),
    ({"dilation": (8, 2)}, "layer.7.conv_3x3.convolution", "dilation.wrong"),
    ({"bgr": True}, "pixel_values", "input.channel_order"),
    ({"unit_range": True}, "pixel_values", "input.normalization"),
]


@pytest.mark.parametrize("bugs,where,cause", PLANTED, ids=[c for _, _, c in PLANTED])
def test_a_planted_bug_is_located_at_its_op_and_named(cat, bugs, where, cause):
    report = verify.check(randomize(Port(bugs=bugs), seed=4), cat, config="torchvision")
    assert report.first_local_divergence == where and report.cause == cause, report.explain()
    assert report.causes[0].residual < 0.05 * report.causes[0].original
    assert cause in report.explain() and where in report.explain()


def test_symmetric_padding_in_a_tf_same_spec_is_named(cat):
    port = randomize(Port(), seed=5)  # torchvision's symmetric padding, judged against transformers' spec
    spec = verify.spec_config("torchvision", tf_padding=True)
    report = verify.check(port, cat, config=spec)
    assert report.first_local_divergence == "conv_stem.first_conv.convolution"
    assert report.cause == "padding.symmetric"


# ============================================================================ weights, warnings, report


def test_verification_grade_random_weights_give_realistic_activations():
    model = verify.random_weights("transformers", seed=0)
    trace = model.trace(verify.spec.calibration_image(model.config, np.random.default_rng(7)).astype(np.float32))
    blocks = [s for s in trace.steps if s.kind in ("residual_add", "block_output")]
    assert all(0.1 < np.abs(s.output).max() < 100 for s in blocks)
    acts = [s for s in trace.steps if s.kind == "activation" and s.attrs["function"] == "relu6"]
    assert 0.05 < np.mean([np.mean(s.output == 0) for s in acts]) < 0.8  # ReLU6 clips a fair share


def test_a_reference_whose_activations_vanish_is_flagged(cat):
    tiny = npmnv2.MobileNetV2ForImageClassification(npmnv2.MobileNetV2Config(num_labels=1000, layer_norm_eps=1e-5))
    with pytest.warns(npmnv2.NpMnV2Warning, match="vanish"):
        report = verify.check(verify.transformers_twin(tiny), cat, config="torchvision", model=tiny)
    assert any("vanish" in w for w in report.warnings)


def test_the_report_explains_draws_and_writes_a_model_explorer_overlay(cat, tmp_path):
    report = verify.check(randomize(Port(bugs={"relu": 5}), seed=4), cat, config="torchvision")
    assert "ReLU (no cap at 6)" in report.explain() and "WRONG ON ITS OWN" in repr(report)
    overlay = json.loads(report.to_model_explorer(tmp_path / "overlay.json").read_text())
    assert set(overlay) == {"results", "gradient"} and all("value" in r for r in overlay["results"].values())
    wrong = [k for k, r in overlay["results"].items() if r.get("bgColor")]
    assert wrong and all(isinstance(r["value"], float) for r in overlay["results"].values())
    figure = report.figure()
    assert len(figure.axes) >= 1


def test_a_peer_with_fewer_layers_than_the_spec_is_refused_clearly(cat):
    with pytest.raises(ValueError, match="does not fit"):
        half = verify.spec_config("torchvision", depth_multiplier=0.5)
        verify.check(randomize(Port(num_classes=1000)), cat, config=half)


# ============================================================================ integer implementations


def _integer_setup(coral_dir):
    path = coral_dir / CORAL_CLASSIFIER
    model = npmnv2.QuantizedMobileNetV2.from_pretrained(path)
    pixels, _ = verify.tflite_input(path, coral_dir / "cat.bmp")
    return path, model, pixels


def _planted_integer_port(model, pixels, index, change):
    """The integer model's tensors with op `index` computed the port's way, its effect carried on."""
    tensors = {model.input_index: pixels.astype(np.int64)}
    out = {}
    for i, op in enumerate(model.graph.ops):
        value = change(i, op, tensors) if i == index else model.run_op(i, tensors)
        tensors[op["outputs"][0]] = value
        out[model.step_name(i)] = value.transpose(0, 3, 1, 2) if value.ndim == 4 else value
    return out


def test_the_interpreters_reference_kernels_equal_the_integer_model_exactly(coral_dir):
    path, model, pixels = _integer_setup(coral_dir)
    peer = verify.tflite_integer_tensors(path, pixels, reference_kernels=True)
    report = verify.check_integer(peer, model, pixels.transpose(0, 3, 1, 2))
    assert report.faithful and len(report.rows) == 66, report.explain()


def test_single_rounding_in_a_port_is_located_and_named(coral_dir):
    path, model, pixels = _integer_setup(coral_dir)
    index = model.step_names().index("layer.4.expand_1x1.convolution")
    p = model.op_parameters(index)

    def single_rounding(i, op, tensors):  # the port's requantization, written out with Python ints
        acc = npmnv2.ops.conv.conv2d_int(tensors[op["inputs"][0]], p["input_zero_point"], p["weights"],
                                         p["weight_zero_point"], p["bias"], stride=1, dilation=1,
                                         padding=npmnv2.ops.Pad2D(0, 0, 0, 0))  # fmt: skip
        shift = 31 - p["shift"]
        scaled = np.vectorize(lambda a: (int(a) * p["m0"] + (1 << (shift - 1))) >> shift)(acc)
        return np.clip(scaled + p["output_zero_point"], *p["output_range"])

    peer = _planted_integer_port(model, pixels, index, single_rounding)
    report = verify.check_integer(peer, model, pixels.transpose(0, 3, 1, 2))
    assert report.first_local_divergence == "layer.4.expand_1x1.convolution" and report.cause == "rounding.single"


def test_an_input_zero_point_off_by_one_is_located_and_named(coral_dir):
    path, model, pixels = _integer_setup(coral_dir)
    index = model.step_names().index("layer.6.conv_3x3.convolution")
    p = model.op_parameters(index)
    step = model.trace(pixels.transpose(0, 3, 1, 2), stop_at="layer.6.conv_3x3.convolution").steps[-1]

    def off_by_one(i, op, tensors):
        acc = npmnv2.ops.depthwise.depthwise_conv2d_int(
            tensors[op["inputs"][0]],
            p["input_zero_point"] + 1,
            p["weights"],
            p["weight_zero_point"],
            p["bias"],
            stride=step.attrs["stride"],
            dilation=1,
            padding=npmnv2.ops.Pad2D(*step.attrs["padding"]),
        )
        scaled = npmnv2.ops.quantization.multiply_by_quantized_multiplier(acc, p["m0"], p["shift"])
        return np.clip(scaled + p["output_zero_point"], *p["output_range"])

    peer = _planted_integer_port(model, pixels, index, off_by_one)
    report = verify.check_integer(peer, model, pixels.transpose(0, 3, 1, 2))
    assert report.first_local_divergence == "layer.6.conv_3x3.convolution"
    assert report.cause == "zero_point.off_by_one", report.explain()


def test_an_upsampling_with_the_other_corner_convention_is_named(coral_dir):
    spec = verify.spec_config("transformers", num_labels=21, output_stride=16, image_size=129)
    twin = verify.transformers_twin(verify.random_weights(spec, seed=0, task="segmentation"))

    class WithUpsample(torch.nn.Module):  # a port whose model ends with the resize to the input size
        def __init__(self, align):
            super().__init__()
            self.net, self.up = twin, torch.nn.Upsample(size=(129, 129), mode="bilinear", align_corners=align)

        def forward(self, x):
            return self.up(self.net(x).logits)

    image = coral_dir / "bird_segmentation.bmp"
    assert verify.check(WithUpsample(False), image, config=spec, task="segmentation").faithful
    report = verify.check(WithUpsample(True), image, config=spec, task="segmentation")
    assert report.first_local_divergence == "segmentation_head.upsample" and report.cause == "upsample.align_corners"


def test_saved_tensors_with_the_ports_own_names_are_matched_by_shape_and_value(cat, tmp_path):
    model = verify.random_weights("transformers", seed=2)
    pixels = verify.pixels_for(cat, model.config).astype(np.float32)
    theirs = verify.torch_activations(verify.transformers_twin(model), pixels)
    renamed = {f"t{i:03d}_{name.replace('.', '_')}": value for i, name in enumerate(theirs) for value in [theirs[name]]}
    np.savez(tmp_path / "port.npz", **renamed)
    report = verify.check(tmp_path / "port.npz", pixels, config="transformers", model=model)
    assert report.faithful and len(report.rows) > 140, report.explain()
    broken = dict(renamed)
    key = next(k for k in renamed if k.endswith("layer_6_conv_3x3_activation"))
    broken[key] = np.minimum(renamed[key] * 1.5, 6)  # the port's layer.6 depthwise output scaled
    np.savez(tmp_path / "broken.npz", **broken)
    report = verify.check(tmp_path / "broken.npz", pixels, config="transformers", model=model)
    assert report.first_local_divergence == "layer.6.conv_3x3.activation"


def test_a_peer_without_weights_needs_model(cat):
    with pytest.raises(ValueError, match="exposes no weights; pass model="):
        verify.check({"x": np.zeros((1, 3, 224, 224))}, cat)
