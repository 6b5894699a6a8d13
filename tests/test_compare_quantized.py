"""compare against the TFLite interpreter: quantization noise passes, a broken layer is named."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import npmnv2
from npmnv2.verify import tflite_activations, tflite_input

PHOTOS = ["cat", "grace_hopper", "bird", "sunflower", "dragonfly"]
WEIGHTS = "mobilenet_v2_1.0_224_quant.tflite"


@pytest.fixture(scope="module")
def peer(coral_dir):
    weights = coral_dir / WEIGHTS
    model = npmnv2.MobileNetV2ForImageClassification.from_pretrained(weights)
    references = {name: tflite_activations(weights, coral_dir / f"{name}.bmp") for name in PHOTOS}
    pixels = {name: tflite_input(weights, coral_dir / f"{name}.bmp")[1] for name in PHOTOS}
    return model, references, pixels


def test_the_float_import_is_within_quantization_noise_on_every_photo(peer):
    model, references, pixels = peer
    for name in PHOTOS:
        result = npmnv2.compare(model.trace(pixels[name]), references[name])
        assert result.quantized and result.first_divergence is None, (name, result.verdict())
        assert len(result.rows) == 64 and all(r.max_steps is not None for r in result.rows[:-1])
        assert "within the quantization noise" in result.verdict()


@pytest.mark.parametrize("layer", ["layer.2.conv_3x3", "layer.8.conv_3x3", "layer.12.conv_3x3"])
@pytest.mark.parametrize("how", ["scaled by 1.3", "taps shifted one pixel"])
def test_a_broken_layer_is_named_not_hidden_by_the_noise_criterion(peer, coral_dir, layer, how):
    model, references, pixels = peer
    broken = npmnv2.MobileNetV2ForImageClassification.from_pretrained(coral_dir / WEIGHTS)
    kernel = broken.params[layer]["kernel"]
    broken.params[layer]["kernel"] = kernel * 1.3 if how.startswith("scaled") else np.roll(kernel, 1, axis=1)
    for name in ("cat", "sunflower"):
        result = npmnv2.compare(broken.trace(pixels[name]), references[name])
        names = [r.name for r in result.rows]
        own = [n for n in names if n.startswith(layer + ".")]
        allowed = {*own, names[names.index(own[-1]) + 1]}  # the layer, or the step right after it
        assert result.first_divergence in allowed, (name, result.verdict())
        assert "beyond quantization noise" in result.verdict()


def test_cli_compare_against_tflite_exits_0_and_speaks_of_quantization_steps(coral_dir):
    result = subprocess.run(
        [sys.executable, "-m", "npmnv2.cli", "compare", str(coral_dir / "cat.bmp"), "--weights",
         str(coral_dir / WEIGHTS), "--against", "tflite"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "within the quantization noise of the integer model" in result.stdout
    assert "quantization steps at layer." in result.stdout and "max steps" in result.stdout
