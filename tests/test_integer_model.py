"""The integer model against the TFLite interpreter's reference kernels: every element of every op
output equal, on the five real models, the shipped photos and seeded random images."""

from __future__ import annotations

import inspect
import subprocess
import sys

import numpy as np
import pytest
from conftest import CORAL_CLASSIFIER

import npmnv2
from npmnv2 import QuantizedMobileNetV2
from npmnv2.verify import tflite_input, tflite_integer_tensors
from npmnv2.weights import WeightFileError

MODELS = {
    "mobilenet_v2_1.0_224_quant.tflite": ["cat", "grace_hopper", "bird", "sunflower", "dragonfly"],
    "tf2_mobilenet_v2_1.0_224_ptq.tflite": ["cat", "grace_hopper", "bird", "sunflower", "dragonfly"],
    "mobilenet_v2_1.0_224_inat_insect_quant.tflite": ["sunflower", "dragonfly"],
    "deeplabv3_mnv2_pascal_quant.tflite": ["bird_segmentation"],
    "deeplabv3_mnv2_dm05_pascal_quant.tflite": ["bird_segmentation"],
}


def exact_against_reference_kernels(path, model, pixels):
    result = npmnv2.compare(
        model.trace(pixels.transpose(0, 3, 1, 2)), tflite_integer_tensors(path, pixels), tolerance=0
    )
    assert len(result.rows) == len(model.graph.ops), "every op's output must be compared"
    assert result.first_divergence is None, result.summary_line()
    assert all(r.max_abs_diff == 0 for r in result.rows)
    return result


@pytest.mark.parametrize("name", list(MODELS))
def test_every_tensor_equals_the_reference_kernels_on_the_shipped_photos(coral_dir, name):
    path = coral_dir / name
    model = QuantizedMobileNetV2.from_pretrained(path)
    for photo in MODELS[name]:
        pixels, _ = tflite_input(path, coral_dir / f"{photo}.bmp")
        exact_against_reference_kernels(path, model, pixels)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_tensor_equals_the_reference_kernels_on_random_images(coral_dir, name):
    path = coral_dir / name
    model = QuantizedMobileNetV2.from_pretrained(path)
    n, h, w, c = model.input_shape
    rng = np.random.default_rng(len(name))
    for pixels in (rng.integers(0, 256, (1, h, w, c)), np.full((1, h, w, c), 255), np.zeros((1, h, w, c))):
        exact_against_reference_kernels(path, model, pixels.astype(np.uint8))


def test_outputs_dequantize_and_steps_carry_scale_zero_point_and_names(coral_dir):
    path = coral_dir / CORAL_CLASSIFIER
    model = QuantizedMobileNetV2.from_pretrained(path)
    processor = npmnv2.MobileNetV2ImageProcessor.from_pretrained(path)
    pixels = processor.integer_pixels(coral_dir / "cat.bmp")  # (1, 3, 224, 224) uint8
    output = model(pixels)
    assert output.outputs[0].dtype == np.uint8 and output.outputs[0].shape == (1, 1001)
    assert int(output.logits.argmax()) == 286 and abs(float(output.logits.sum()) - 1) < 0.05
    trace = model.trace(pixels)
    step = trace.step("conv_stem.conv_3x3.convolution")  # the float model's names and kinds
    assert step.kind == "convolution" and step.attrs["tflite_op"] == "DEPTHWISE_CONV_2D"
    assert step.attrs["float_step"] == "conv_stem.conv_3x3.activation"
    assert step.macs == 32 * 112 * 112 * 9 and step.n_params == 32 * 9 + 32  # MACs and integer parameters
    assert step.attrs["tflite_tensor"].startswith("MobilenetV2/expanded_conv/depthwise")
    assert step.attrs["zero_point"] == 0 and step.attrs["range"] == (0, 255) and step.attrs["at_min"] > 0
    assert step.op is npmnv2.ops.depthwise.depthwise_conv2d_int_requantized and step.output.shape == (1, 32, 112, 112)
    assert "requantize_output" in inspect.getsource(step.op)  # the requantization is part of the op it names
    per_channel = QuantizedMobileNetV2.from_pretrained(coral_dir / "tf2_mobilenet_v2_1.0_224_ptq.tflite")
    first_conv = per_channel.trace(pixels, stop_at="conv_stem.first_conv.convolution").step(
        "conv_stem.first_conv.convolution"
    )
    assert first_conv.attrs["float_step"] == "conv_stem.first_conv.activation"
    # compared with the float model layer by layer, in real units
    float_model = npmnv2.MobileNetV2ForImageClassification.from_pretrained(path)
    same_pixels, real = tflite_input(path, coral_dir / "cat.bmp")  # the same image for both models
    float_trace = float_model.trace(real)
    step = model.trace(same_pixels.transpose(0, 3, 1, 2)).step("conv_stem.conv_3x3.convolution")
    ours = npmnv2.ops.quantization.dequantize(step.output, step.attrs["scale"], step.attrs["zero_point"])
    theirs = float_trace[step.attrs["float_step"]]
    assert np.sqrt(np.mean((ours - theirs) ** 2)) < 0.05 * np.sqrt(np.mean(theirs**2))  # rounding noise, in real units


def test_stop_at_layers_and_run_from(coral_dir):
    path = coral_dir / CORAL_CLASSIFIER
    model = QuantizedMobileNetV2.from_pretrained(path)
    pixels = np.random.default_rng(0).integers(0, 256, (1, 3, 224, 224)).astype(np.uint8)
    stopped = model.trace(pixels, layers="layer.[0-9]", stop_at="layer.4")  # the residual ADDs of blocks 0-9
    assert stopped.steps[-1].name == "layer.4" and list(stopped) == ["layer.1", "layer.3", "layer.4"]
    full = model.trace(pixels)
    zeroed = np.zeros_like(full["layer.15.expand_1x1.convolution"])
    changed = full.run_from("layer.15.expand_1x1.convolution", zeroed)
    assert not np.array_equal(changed.outputs[0], full.output.outputs[0])
    name = "layer.15.expand_1x1.convolution"
    same = model.run_from(name, full[name], pixel_values=pixels)
    np.testing.assert_array_equal(same.outputs[0], full.output.outputs[0])


def test_bad_input_and_unsupported_graphs_get_clear_errors(coral_dir, monkeypatch):
    import npmnv2.tflite.integer_model as im

    path = coral_dir / CORAL_CLASSIFIER
    model = QuantizedMobileNetV2.from_pretrained(path)
    with pytest.raises(TypeError, match=r"must be uint8 .*zero point 128\), got float32"):
        model(np.zeros((1, 3, 224, 224), np.float32))
    with pytest.raises(ValueError, match=r"must be \(N, 3, 224, 224\) \(NCHW"):
        model(np.zeros((1, 224, 224, 3), np.uint8))
    monkeypatch.setattr(im, "SUPPORTED_OPS", tuple(op for op in im.SUPPORTED_OPS if op != "SOFTMAX"))
    with pytest.raises(
        WeightFileError, match=r"op 65 SOFTMAX \(tensor 'MobilenetV2/Predictions/Softmax'\) is not implemented"
    ):
        QuantizedMobileNetV2.from_pretrained(path)


def test_cli_runs_the_integer_model_and_compare_reports_exact_equality(coral_dir, tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "npmnv2.cli", *map(str, args)], capture_output=True, text=True,
                              timeout=600)  # fmt: skip

    weights = coral_dir / CORAL_CLASSIFIER
    classify = cli("classify", coral_dir / "cat.bmp", "--weights", weights, "--integer", "--top-k", "1")
    assert classify.returncode == 0 and "286  Egyptian cat" in classify.stdout
    compare = cli("compare", coral_dir / "bird.bmp", "--weights", weights, "--against", "tflite", "--integer")
    assert compare.returncode == 0 and "exact: all 66 op outputs" in compare.stdout
    stop = "layer.0.expand_1x1.convolution"
    trace = cli("trace", coral_dir / "bird.bmp", "--weights", weights, "--integer", "--stop-at", stop)
    assert trace.returncode == 0 and "zero point" in trace.stdout and "at max" in trace.stdout
    assert "layer.0.expand_1x1.activation" in trace.stdout
    deeplab = coral_dir / "deeplabv3_mnv2_dm05_pascal_quant.tflite"
    out, mask = tmp_path / "o.png", tmp_path / "m.png"
    segment = cli(
        "segment", coral_dir / "bird_segmentation.bmp", "--weights", deeplab, "--integer", "-o", out, "--mask", mask
    )
    assert segment.returncode == 0 and "3 bird" in segment.stdout and out.is_file() and mask.is_file()


def test_the_integer_model_uses_the_float_models_trace_machinery_and_errors(coral_dir):
    model = QuantizedMobileNetV2.from_pretrained(coral_dir / CORAL_CLASSIFIER)
    pixels = np.zeros((1, 3, 224, 224), np.uint8)
    with pytest.raises(KeyError, match=r"unknown layer 'layer\.99"):
        model.trace(pixels, layers=["layer.99.*"])  # the float model's KeyError, not an empty trace
    with pytest.raises(KeyError, match="unknown layer 'nope'"):
        model.trace(pixels, stop_at="nope")
    kept = model.trace(pixels, layers=["layer.12.*"])
    assert list(kept) == [n for n in model.step_names() if n.startswith("layer.12.")]
    steps = model.steps(pixels)
    first = next(steps)
    assert first.name == "conv_stem.first_conv.convolution" and len(steps.trace.steps) == 1
    steps.close()
    float_names = set(npmnv2.MobileNetV2ForImageClassification.from_pretrained("npmnv2/default").step_names())
    matched = [n for n in model.step_names() if n in float_names]
    assert len(matched) == 64  # every op but the reshape and the softmax carries a float step's name
