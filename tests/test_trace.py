"""The trace API: stepping, keeping, stopping, resuming, folding, counting and comparing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import CORAL_CLASSIFIER, FLOAT32_RTOL, tiny_config
from torch_peer import build_pair

import npmnv2
from npmnv2 import MobileNetV2Config
from npmnv2 import MobileNetV2ForImageClassification as Cls
from npmnv2 import MobileNetV2ForSemanticSegmentation as Seg
from npmnv2.verify import tflite_activations, tflite_input, torch_activations

RNG = np.random.default_rng(5)
X224 = RNG.uniform(-1, 1, size=(1, 3, 224, 224)).astype(np.float32)


@pytest.fixture(scope="module")
def pair():
    return build_pair(Cls, dict(num_labels=10))


@pytest.mark.parametrize(
    "cls,kwargs,size",
    [
        (Cls, dict(num_labels=10), 224),
        (Seg, dict(num_labels=5, output_stride=8, depth_multiplier=0.5), 97),
        (npmnv2.MobileNetV2Model, dict(first_layer_is_expansion=False, output_stride=16), 161),
    ],
)
def test_every_step_matches_transformers_hooks_by_name(cls, kwargs, size):
    hf_model, model = build_pair(cls, kwargs)
    x = RNG.uniform(-1, 1, size=(1, 3, size, size)).astype(np.float32)
    result = npmnv2.compare(model.trace(x), torch_activations(hf_model, x))
    assert result.first_divergence is None, repr(result)
    # transformers' segmentation model also runs the final 1x1 conv, whose output nothing uses
    skipped = ["conv_1x1.convolution", "conv_1x1.normalization", "conv_1x1.activation"] if cls is Seg else []
    functional = ["segmentation_head.interpolate", "segmentation_head.concat"] if cls is Seg else []  # no module in HF
    assert result.unmatched_reference == skipped and result.unmatched_ours == functional
    assert [s for s in model.step_names()] == [s.name for s in model.trace(x, layers=[]).steps]


def test_step_knows_its_padding_and_explains_it():
    model = Cls(tiny_config())
    step = model.trace(np.zeros((1, 3, 225, 225), np.float32), stop_at="conv_stem.first_conv.convolution").steps[0]
    assert step.attrs["padding"] == (1, 1, 1, 1) and step.attrs["stride"] == 2 and step.attrs["groups"] == 1
    assert (
        "TF SAME padding for a 225x225 input, k=3, s=2, d=1: pad top 1, bottom 1, left 1, right 1; output 113x113"
        in (step.explain())
    )
    assert step.tf_scope == "MobilenetV2/Conv" and step.params["kernel"].shape == (3, 3, 3, 16)
    depthwise = model.trace(np.zeros((1, 3, 224, 224), np.float32)).step("layer.12.conv_3x3.convolution")
    assert depthwise.attrs["padding"] == (0, 1, 0, 1) and depthwise.attrs["groups"] == depthwise.attrs["c_in"]
    assert depthwise.tf_scope == "MobilenetV2/expanded_conv_13/depthwise"
    assert depthwise.macs == 7 * 7 * depthwise.attrs["c_out"] * 9


def test_layers_keep_only_matching_tensors_and_expansion_outputs_are_reachable(pair):
    _, model = pair
    trace = model.trace(X224, layers=["layer.10.expand_1x1.activation", "layer.13.expand_1x1.activation"])
    assert list(trace) == ["layer.10.expand_1x1.activation", "layer.13.expand_1x1.activation"]
    assert trace["layer.10.expand_1x1.activation"].shape == (1, 576, 14, 14)  # 96 channels x 6
    assert trace["layer.13.expand_1x1.activation"].shape == (1, 960, 7, 7)  # 160 channels x 6
    assert len(trace.steps) == len(model.step_names())  # every step still recorded, with its MACs
    assert all(s.output is None for s in trace.steps if s.name not in trace)
    glob = model.trace(X224, layers="layer.*.expand_1x1.activation")
    assert len(glob) == 16
    with pytest.raises(KeyError, match=r"ran but its tensor was not kept"):
        glob["layer.3"]


def test_stop_at_runs_nothing_later(pair):
    _, model = pair
    full = model.trace(X224, layers=[])
    stopped = model.trace(X224, layers=[], stop_at="layer.3")
    assert stopped.steps[-1].name == "layer.3" and stopped.output is None
    expected = sum(s.macs for s in full.steps[: len(stopped.steps)])
    assert stopped.total_macs == expected < full.total_macs / 2


def test_run_from_matches_transformers_with_the_same_edit(pair):
    hf_model, model = pair
    trace = model.trace(X224)
    name = "layer.10.expand_1x1.activation"
    edited = trace[name].copy()
    edited[:, :7] = 0  # ablate seven channels
    ours = trace.run_from(name, edited).logits
    module = hf_model.mobilenet_v2.layer[10].expand_1x1.activation
    handle = module.register_forward_hook(lambda *_: torch.from_numpy(edited))
    try:
        with torch.no_grad():
            theirs = hf_model(torch.from_numpy(X224)).logits.numpy()
    finally:
        handle.remove()
    assert np.abs(ours - theirs).max() <= FLOAT32_RTOL * max(1, np.abs(theirs).max())
    assert not np.allclose(ours, trace.output.logits)
    np.testing.assert_array_equal(trace.run_from(name, trace[name]).logits, trace.output.logits)
    np.testing.assert_array_equal(model.run_from(name, edited, pixel_values=X224).logits, ours)


def test_run_from_checks_shape_and_needs_an_input():
    model = Cls(tiny_config())
    trace = model.trace(np.zeros((1, 3, 224, 224), np.float32), layers=["layer.2"])
    with pytest.raises(ValueError, match=r"pass pixel_values=, or continue the trace .* keeps no input of its own"):
        model.run_from("layer.3", np.zeros((1, 24, 28, 28), np.float32))  # tracing left nothing on the model
    assert trace["layer.2"].shape == (1, 16, 28, 28)
    with pytest.raises(
        ValueError, match=r"run_from at 'layer.2': expected an NCHW tensor of shape \(1, 16, 28, 28\), got"
    ):
        trace.run_from("layer.2", np.zeros((1, 24, 28, 28), np.float32))


def test_unknown_names_list_close_matches(pair):
    _, model = pair
    trace = model.trace(X224, layers=[])
    with pytest.raises(
        KeyError, match=r"unknown step 'layer.3.expnd_1x1.activation'. Close matches: layer.3.expand_1x1"
    ):
        trace.step("layer.3.expnd_1x1.activation")
    with pytest.raises(KeyError, match=r"unknown layer 'layer.99'"):
        model.trace(X224, stop_at="layer.99")
    with pytest.raises(KeyError, match=r"unknown layer 'conv_stm.\*'"):
        model.trace(X224, layers=["conv_stm.*"])
    with pytest.raises(KeyError, match=r"Close matches: classifier"):
        model.run_from("clasifier", np.zeros((1, 10)))


def test_full_model_prefix_is_accepted(pair):
    _, model = pair
    trace = model.trace(X224, layers=["mobilenet_v2.layer.3"], stop_at="mobilenet_v2.layer.4")
    assert list(trace) == ["layer.3"]


def test_fold_batchnorm_is_equivalent_and_traces_without_normalization(pair):
    hf_model, model = pair
    folded = model.fold_batchnorm()
    a, b = model(X224).logits, folded(X224).logits
    assert np.abs(a - b).max() <= 1e-5 * max(1, np.abs(a).max())
    trace = folded.trace(X224)
    assert not any(s.kind == "batch_norm" for s in trace.steps)
    assert trace.step("layer.4.conv_3x3.convolution").attrs["folded_bn"] is True
    result = npmnv2.compare(trace, torch_activations(hf_model, X224))
    assert result.first_divergence is None, repr(result)
    assert any(r.reference_name == "layer.4.conv_3x3.normalization" for r in result.rows)
    assert all(n.endswith(".convolution") for n in result.unmatched_reference)
    assert model.params["layer.4.conv_3x3"]["gamma"] is not None  # the original is untouched


@pytest.mark.parametrize(
    "dm,size,macs_m,params_m", [(1.0, 224, 300, 3.47), (1.4, 224, 582, 6.06), (0.35, 96, 11, 1.66)]
)
def test_summary_reproduces_the_published_tf_slim_figures(dm, size, macs_m, params_m):
    model = Cls(MobileNetV2Config(depth_multiplier=dm, num_labels=1001))
    summary = model.summary(image_size=size)
    assert summary.total_macs // 1_000_000 == macs_m
    assert round((summary.total_params - summary.bn_params) / 1e6, 2) == params_m
    hf_model, _ = build_pair(Cls, dict(depth_multiplier=dm, num_labels=1001))
    assert summary.total_params == hf_model.num_parameters()


def test_segmentation_skips_exactly_the_unused_final_conv():
    config = MobileNetV2Config(num_labels=21, output_stride=16)
    seg = Seg(config).summary(image_size=513)
    backbone = npmnv2.MobileNetV2Model(config).summary(image_size=513)
    names = [r["name"] for r in seg.rows]
    assert not any(n.startswith("conv_1x1") for n in names)
    conv_1x1 = sum(r["macs"] for r in backbone.rows if r["name"].startswith("conv_1x1"))
    head = 320 * 256 + 33 * 33 * (320 * 256 + 512 * 256 + 256 * 21)
    assert seg.total_macs == backbone.total_macs - conv_1x1 + head


def test_fixed_7x7_pooling_gives_a_grid_of_logits():
    base = Cls(MobileNetV2Config(num_labels=4, depth_multiplier=0.35), seed=2)
    fixed = Cls.from_state_dict(
        base.state_dict(), MobileNetV2Config(num_labels=4, depth_multiplier=0.35, pooling="fixed_7x7")
    )
    np.testing.assert_allclose(fixed(X224).logits, base(X224).logits, rtol=1e-5, atol=1e-6)
    x320 = RNG.uniform(-1, 1, size=(1, 3, 320, 320)).astype(np.float32)
    grid = fixed(x320).logits
    assert grid.shape == (1, 4, 4, 4)
    last = base.trace(x320, layers=["conv_1x1.activation"])["conv_1x1.activation"]  # (1, C, 10, 10)
    corner = (
        last[:, :, 3:10, 3:10].mean(axis=(2, 3)) @ base.params["classifier"]["kernel"]
        + base.params["classifier"]["bias"]
    )
    np.testing.assert_allclose(grid[:, :, 3, 3], corner, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"pooling='fixed_7x7' needs a final feature map of at least 7x7, got 6x6"):
        fixed(np.zeros((1, 3, 161, 161), np.float32))


def test_table_and_reprs(pair):
    _, model = pair
    trace = model.trace(X224, layers=["layer.1*"])
    rows = trace.table()
    assert len(rows) == len(trace.steps)
    row = next(r for r in rows if r["name"] == "layer.1.conv_3x3.activation")
    assert 0 <= row["zeros"] <= 1 and 0 <= row["at6"] <= 1 and row["min"] >= 0 and row["max"] <= 6
    assert "layer.1.conv_3x3.activation" in repr(trace) and "<table>" in trace._repr_html_()
    steps = list(model.steps(X224))
    assert steps[0].name == "conv_stem.first_conv.convolution" and steps[0].output.shape == (1, 32, 112, 112)
    assert "Step(" in repr(steps[0])


def test_compare_names_the_deliberately_broken_layer(pair):
    """A PyTorch port with symmetric padding in one stride-2 depthwise conv: compare finds exactly it."""
    hf_model, model = pair
    layer = hf_model.mobilenet_v2.layer[5].conv_3x3

    def symmetric(features):
        features = layer.convolution(F.pad(features, (1, 1, 1, 1)))
        return layer.activation(layer.normalization(features))

    original = layer.forward
    layer.forward = symmetric
    try:
        broken = torch_activations(hf_model, X224)
    finally:
        layer.forward = original
    result = npmnv2.compare(model.trace(X224), broken)
    assert result.first_divergence == "layer.5.conv_3x3.convolution"
    assert "DIVERGES" in repr(result)


def test_compare_detects_nhwc_and_lists_unmatched(pair):
    hf_model, model = pair
    reference = {
        k: (v.transpose(0, 2, 3, 1) if v.ndim == 4 else v) for k, v in torch_activations(hf_model, X224).items()
    }
    reference["something.else"] = np.zeros(3)
    result = npmnv2.compare(model.trace(X224), reference)
    assert result.first_divergence is None and result.layouts.get("NHWC", 0) > 100
    assert result.unmatched_reference == ["something.else"]


def test_tflite_interpreter_tensors_line_up_with_the_imported_model(coral_dir):
    path = coral_dir / CORAL_CLASSIFIER
    model = Cls.from_pretrained(path)
    acts = tflite_activations(path, coral_dir / "cat.bmp")
    _, x = tflite_input(path, coral_dir / "cat.bmp")
    result = npmnv2.compare(model.trace(x), acts, tolerance=1.0)
    # 36 CONV_2D (the logits included) + 17 DEPTHWISE_CONV_2D + 10 ADD + the average pool
    assert result.unmatched_reference == [] and len(result.rows) == 36 + 17 + 10 + 1
    assert min(r.cosine for r in result.rows) > 0.99  # integer kernels vs float: close, not equal


def test_kept_steps_show_their_true_inputs_when_neighbours_are_not_kept(pair):
    _, model = pair
    full = model.trace(X224)
    for name in ("layer.4.conv_3x3.normalization", "layer.4.conv_3x3.activation", "layer.4"):
        partial = model.trace(X224, layers=[name])
        for a, b in zip(partial.step(name).inputs, full.step(name).inputs, strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(partial[name], full[name])
