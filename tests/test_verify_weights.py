"""Are the port's weights the ones it should have? (issue 27, point 3): with a reference checkpoint,
weight-conversion bugs, invisible to the op-by-op check, are located and named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CORAL_CLASSIFIER
from torchvision_port import Port

from npmnv2 import verify

NPMNV2 = Path(sys.executable).with_name("npmnv2")


@pytest.fixture(scope="module")
def reference():
    return verify.random_weights("torchvision", seed=3, dtype=np.float64)


def _port(reference):
    port = Port()
    verify.set_weights(port, reference)
    return port.eval()


def _transpose(port):
    conv = port.features[6].conv[1].conv
    conv.weight.data = conv.weight.data.transpose(2, 3).contiguous()


def _flip(port):
    conv = port.features[3].conv[1].conv
    conv.weight.data = conv.weight.data.flip(2, 3).contiguous()


def _bgr(port):
    conv = port.features[0].conv
    conv.weight.data = conv.weight.data.flip(1).contiguous()


def _copied(port):
    port.features[5].conv[0].conv.weight.data = port.features[6].conv[0].conv.weight.data.clone()


def _stats_swapped(port):
    bn = port.features[4].conv[0].bn
    mean, var = bn.running_mean.clone(), bn.running_var.clone()
    bn.running_mean.data, bn.running_var.data = var, mean.abs()


def _stats_missing(port):
    bn = port.features[4].conv[1].bn
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0)


def _permuted(port):
    conv, bn = port.features[7].conv[0].conv, port.features[7].conv[0].bn
    order = torch.randperm(conv.weight.shape[0], generator=torch.Generator().manual_seed(0))
    conv.weight.data = conv.weight.data[order]
    for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
        t.data = t.data[order]


PLANTED = [
    (_transpose, "layer.4.conv_3x3", "weights.kernel_transposed"),
    (_flip, "layer.1.conv_3x3", "weights.kernel_flipped"),
    (_bgr, "conv_stem.first_conv", "weights.input_channels_reversed"),
    (_copied, "layer.3.expand_1x1", "weights.from_another_layer"),
    (_stats_swapped, "layer.2.expand_1x1", "weights.batch_norm_stats_swapped"),
    (_stats_missing, "layer.2.conv_3x3", "weights.batch_norm_stats_missing"),
    (_permuted, "layer.5.expand_1x1", "weights.output_channels_permuted"),
]


def test_a_port_with_the_references_weights_is_faithful_and_says_so(cat, reference):
    report = verify.check(_port(reference), cat, config="torchvision", reference=reference)
    assert report.faithful, report.explain()
    assert "all 53 weight layers equal the reference's" in report.explain()


@pytest.mark.parametrize("plant,where,cause", PLANTED, ids=[c for *_, c in PLANTED])
def test_a_weight_conversion_bug_is_located_and_named_against_the_reference(cat, reference, plant, where, cause):
    port = _port(reference)
    plant(port)
    without = verify.check(port, cat, config="torchvision")
    assert without.weight_divergence is None  # invisible to the op-by-op check: it computes its own weights
    report = verify.check(port, cat, config="torchvision", reference=reference)
    assert report.status == "diverges" and report.weight_divergence == where, report.explain()
    assert report.weight_causes[0].cause == cause, report.explain()
    assert "your features." in report.verdict()


def test_a_classifier_without_the_background_class_is_named(cat, tmp_path):
    """transformers' checkpoints have 1001 classes (0 = background); a port with 1000 that dropped it."""
    reference = verify.random_weights("transformers", seed=4, dtype=np.float64)
    port = verify.random_weights("transformers", seed=4, dtype=np.float64)
    spec = verify.spec_config("transformers", num_labels=1000)
    dropped = type(port)(spec, dtype=np.float64)
    dropped.params = {k: dict(v) for k, v in port.params.items()}
    dropped.params["classifier"] = {
        "kernel": port.params["classifier"]["kernel"][:, 1:],
        "bias": port.params["classifier"]["bias"][1:],
    }
    twin = verify.transformers_twin(dropped)
    report = verify.check(twin, cat, config=spec, reference=reference)
    assert report.weight_divergence == "classifier", report.explain()
    assert report.weight_causes[0].cause == "weights.background_class_dropped"


def test_a_quantized_file_against_its_float_reference_is_within_eight_bit_rounding(cat, coral_dir, tmp_path):
    """The Coral .tflite against its own dequantized weights saved as a checkpoint: equal within 8 bits."""
    folder = tmp_path / "coral"
    assert subprocess.run([str(NPMNV2), "convert", "npmnv2/default", str(folder)], capture_output=True).returncode == 0
    report = verify.check(coral_dir / CORAL_CLASSIFIER, cat, reference=folder)
    assert report.weight_divergence is None and report.weight_rows, report.explain()


def test_the_command_line_takes_a_reference(cat, tmp_path):
    folder = tmp_path / "coral"
    subprocess.run([str(NPMNV2), "convert", "npmnv2/default", str(folder)], capture_output=True, check=True)
    run = subprocess.run(
        [str(NPMNV2), "verify", "npmnv2/data/mobilenet_v2_1.0_224_quant.tflite", str(cat), "--reference", str(folder)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert run.returncode == 0, run.stderr
    assert "weight layers equal the reference's" in run.stdout
