"""A verdict states what it checked and is never falsely reassuring (issue 27, point 2; issue 29):
"faithful" only when every op and weight was checked; "inconclusive: ..." when part of the port
could not be; "DIVERGES" with the port's own name for the op."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision_port import Port, randomize

import npmnv2
from npmnv2 import verify

NPMNV2 = Path(sys.executable).with_name("npmnv2")


@pytest.fixture(scope="module")
def reference():
    return verify.random_weights("transformers", seed=2)


@pytest.fixture(scope="module")
def dump(cat, reference):
    """transformers' tensors for the reference weights, under the port's own names, in order."""
    pixels = verify.pixels_for(cat, reference.config).astype(np.float32)
    theirs = verify.torch_activations(verify.transformers_twin(reference), pixels)
    return pixels, {f"t{i:03d}_{name.replace('.', '_')}": theirs[name] for i, name in enumerate(theirs)}


# ============================================================================ nothing or too little matched


@pytest.mark.parametrize(
    "junk",
    [
        {},
        {"all_nan": np.full((1, 32, 112, 112), np.nan, np.float32)},
        {"unrelated": np.ones((3, 5), np.float32)},
        {"strings": np.array(["a", "b"])},
        {"ints": np.arange(10)},
        {"noise": np.random.default_rng(0).standard_normal((1, 1001)).astype(np.float32)},
    ],
    ids=["empty", "all-nan", "unrelated-shape", "strings", "ints", "noise-logits"],
)
def test_junk_is_never_faithful(junk, reference, cat):
    report = verify.check(junk, cat, model=reference)
    assert not report.faithful and report.status in ("inconclusive", "diverges"), report.verdict()
    assert "faithful" not in report.verdict().split(":")[0]


def test_nothing_matched_says_so_and_what_to_give(reference, cat):
    report = verify.check({"x": np.full((1, 32, 112, 112), np.nan, np.float32)}, cat, model=reference)
    assert report.status == "inconclusive" and report.ops_judged == 0
    assert "nothing was checked" in report.verdict()


def test_a_dump_that_stops_before_the_logits_is_inconclusive(dump, reference):
    pixels, tensors = dump
    first_half = dict(list(tensors.items())[: len(tensors) // 2])
    report = verify.check(first_half, pixels, model=reference)
    assert report.status == "inconclusive" and "output was not checked" in report.verdict(), report.explain()
    assert report.first_local_divergence is None


@pytest.mark.parametrize(
    "change,how",
    [
        (lambda x: -x, "negated"),
        (np.zeros_like, "zeroed"),
        (lambda x: np.full_like(x, np.nan), "non-finite"),
        (lambda x: x[:, ::-1].copy(), "permuted"),
        (lambda x: 3 * x, "scaled by 3"),
    ],
    ids=["negated", "zeroed", "nan", "permuted", "scaled"],
)
def test_an_op_after_the_logits_is_found_not_dropped(dump, reference, change, how):
    """Round 3: unmatched tensors after the last match were dropped, so negated, zeroed, NaN or
    permuted logits (an extra Neg after an ONNX classifier) were "faithful"."""
    pixels, tensors = dump
    logits = list(tensors.values())[-1]
    report = verify.check({**tensors, "final_output": change(logits)}, pixels, model=reference)
    assert report.status == "diverges", report.explain()
    if how.startswith("scaled"):  # a scaled copy correlates perfectly: it may be matched as the classifier itself
        assert report.first_local_divergence in ("classifier", "after classifier"), report.explain()
        return
    assert report.first_local_divergence == "after classifier" and report.cause == "output.changed_after_last_op"
    assert how in report.explain() and "your final_output" in report.verdict()


def test_a_softmax_or_argmax_after_the_logits_is_checked_and_faithful(dump, reference):
    pixels, tensors = dump
    logits = list(tensors.values())[-1].astype(np.float64)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    extra = {"probs": (e / e.sum(-1, keepdims=True)).astype(np.float32), "top1": logits.argmax(-1)}
    report = verify.check({**tensors, **extra}, pixels, model=reference)
    assert report.faithful, report.explain()


# ============================================================================ weights and vanishing activations


def test_vanishing_activations_are_inconclusive_never_faithful(cat):
    """The README's old example: transformers' own random init, where no bug can show."""
    tiny = npmnv2.MobileNetV2ForImageClassification(npmnv2.MobileNetV2Config(num_labels=1000, layer_norm_eps=1e-5))
    with pytest.warns(npmnv2.NpMnV2Warning, match="vanish"):
        report = verify.check(verify.transformers_twin(tiny), cat, config="torchvision", model=tiny)
    assert report.status == "inconclusive" and "vanish" in report.verdict()


class _OwnBatchNorm(torch.nn.Module):
    """A hand-written batch norm that is not a torch batch norm: its statistics cannot be read."""

    def __init__(self, bn: torch.nn.BatchNorm2d) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(bn.weight.detach().clone())
        self.shift = torch.nn.Parameter(bn.bias.detach().clone())
        self.register_buffer("mu", bn.running_mean.clone())
        self.register_buffer("sigma2", bn.running_var.clone())
        self.eps = bn.eps

    def forward(self, x):
        inv = (self.scale / torch.sqrt(self.sigma2 + self.eps))[None, :, None, None]
        return (x - self.mu[None, :, None, None]) * inv + self.shift[None, :, None, None]


def test_batch_norms_that_cannot_be_read_make_the_verdict_inconclusive(cat):
    port = randomize(Port(), seed=1)
    port.features[0].bn = _OwnBatchNorm(port.features[0].bn)
    report = verify.check(port, cat, config="torchvision")
    assert report.status != "faithful", report.explain()
    assert any("batch norms were not read" in gap for gap in report.gaps)
    assert any("NOT READ" in what for *_, what in report.weights_read)


def test_the_report_lists_the_weights_read_and_the_ops_judged(cat):
    report = verify.check(randomize(Port(), seed=1), cat, config="torchvision")
    assert report.faithful and len(report.weights_read) == 53
    assert report.weights_read[0] == ("conv_stem.first_conv", "features.0.conv", "kernel, batch norm")
    text = report.coverage()
    assert "ops judged" in text and "features.0.conv" in text and "not checked:\n  (nothing)" in text


def test_set_weights_gives_a_port_realistic_weights_by_structure(cat):
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    port = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3))
    verify.set_weights(port, verify.random_weights("keras", seed=0))
    report = verify.check(port, cat, config="keras")
    assert report.faithful, report.explain()
    port.get_layer("block_9_expand_relu").max_value = None  # ReLU for ReLU6, as in the README
    report = verify.check(port, cat, config="keras")
    assert report.cause == "activation.relu" and "your block_9_expand_relu" in report.verdict(), report.verdict()


def test_a_relu_the_port_declares_is_a_divergence_even_where_this_image_never_reaches_6(cat):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    spec = {"depth_multiplier": 0.35, "image_size": 96, "num_labels": 10, "tf_padding": True, "layer_norm_eps": 1e-3}
    port = keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), classes=10, weights=None)
    verify.set_weights(port, verify.random_weights(spec, seed=0))
    port.get_layer("block_9_expand_relu").max_value = None
    report = verify.check(port, cat, config=spec)
    row = next(r for r in report.rows if r.name == "layer.8.expand_1x1.activation")
    assert row.local_ok  # on this photo no value there reaches 6: the tensors agree
    assert report.status == "diverges" and report.cause == "activation.relu", report.explain()
    assert "declared" in report.verdict() and "never reached 6" in report.explain()


# ============================================================================ the command line


def test_verify_exits_4_when_inconclusive(tmp_path, cat):
    np.savez(tmp_path / "junk.npz", x=np.ones((3, 5), np.float32))
    run = subprocess.run(
        [str(NPMNV2), "verify", str(tmp_path / "junk.npz"), str(cat), "--model", "npmnv2/default"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 4, run.stderr
    assert "inconclusive" in run.stdout


# ============================================================================ a dump's own input


def test_a_dump_made_with_transformers_preprocessing_uses_its_own_input(cat, reference):
    """Issue 27: the dump's input tensor was ignored, so a faithful dump made from transformers'
    preprocessing (resize 256, crop 224) was called wrong at the first convolution."""
    from PIL import Image
    from transformers import MobileNetV2ImageProcessor as TheirProcessor

    pixels = TheirProcessor()(Image.open(cat).convert("RGB"), return_tensors="np")["pixel_values"].astype(np.float32)
    theirs = verify.torch_activations(verify.transformers_twin(reference), pixels)
    dump = {"input": pixels, **{f"t{i:03d}": theirs[n] for i, n in enumerate(theirs)}}
    report = verify.check(dump, cat, model=reference)
    assert report.faithful, report.explain()
    assert any("own input tensor 'input'" in w for w in report.warnings)


@pytest.mark.parametrize(
    "change,cause", [(lambda x: x[:, ::-1], "input.channel_order"), (lambda x: (x + 1) / 2, "input.normalization")]
)
def test_a_dump_with_bgr_or_unit_range_input_names_the_cause(cat, reference, change, cause):
    pixels = verify.pixels_for(cat, reference.config).astype(np.float32)
    bad = np.ascontiguousarray(change(pixels)).astype(np.float32)
    theirs = verify.torch_activations(verify.transformers_twin(reference), bad)
    dump = {"pixel_values": bad.transpose(0, 2, 3, 1), **{f"t{i:03d}": theirs[n] for i, n in enumerate(theirs)}}
    report = verify.check(dump, cat, model=reference)
    assert report.first_local_divergence == "pixel_values" and report.cause == cause, report.explain()


def test_a_folder_of_npy_is_read_in_execution_order_not_file_name_order(cat, reference, tmp_path):
    """Issue 29: a folder of .npy was read in file-name order (layer.10 before layer.2), so npmnv2's
    own trace saved that way was called DIVERGES."""
    pixels = verify.pixels_for(cat, reference.config).astype(np.float32)
    for step in reference.trace(pixels).steps:
        np.save(tmp_path / f"{step.name}.npy", step.output)
    report = verify.check(tmp_path, pixels, model=reference)
    assert report.faithful and report.ops_judged > 140, report.explain()
    broken = np.load(tmp_path / "layer.10.conv_3x3.activation.npy")
    np.save(tmp_path / "layer.10.conv_3x3.activation.npy", np.minimum(broken * 1.5, 6))
    report = verify.check(tmp_path, pixels, model=reference)
    assert report.first_local_divergence == "layer.10.conv_3x3.activation", report.explain()
