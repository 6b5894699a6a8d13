"""The plain forward (`npmnv2.fast`: folded batch norm, in-place epilogues, pre-padded
expansions, split head projection) equals the readable step-by-step forward that traces record."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FLOAT32_RTOL, randomised, tiny_config, tolerance

from npmnv2 import (
    MobileNetV2Config,
    MobileNetV2ForImageClassification,
    MobileNetV2ForSemanticSegmentation,
    MobileNetV2Model,
)
from npmnv2.fast.forward import fold_conv
from npmnv2.fast.kernels import (
    FoldedConv,
    bias_activation,
    depthwise_rows,
    depthwise_windows,
    pad2d_homogeneous,
)
from npmnv2.ops import Pad2D, depthwise_conv2d, pad2d, pointwise_conv2d
from npmnv2.trace import NO_TRACE


def assert_close(fast: np.ndarray, slow: np.ndarray, dtype, what: str) -> None:
    assert fast.shape == slow.shape, what
    bound = tolerance(dtype) * max(1.0, float(np.abs(slow).max()))
    err = float(np.abs(fast - slow).max())
    assert err <= bound, f"{what}: max|fast - step by step| = {err:.3g} > {bound:.3g}"


CASES = [
    ("classification", dict(), (1, 224, 224), np.float32),
    ("classification", dict(depth_multiplier=0.35, tf_padding=False), (2, 97, 131), np.float32),
    ("classification", dict(first_layer_is_expansion=False, depth_multiplier=0.5), (1, 64, 80), np.float32),
    ("classification", dict(hidden_act="sigmoid"), (1, 67, 67), np.float32),  # act(0) != 0: pads after
    ("classification", dict(hidden_act="gelu", output_stride=16, depth_multiplier=0.75), (1, 96, 96), np.float64),
    ("bare", dict(depth_multiplier=1.4), (2, 64, 64), np.float32),
    ("segmentation", dict(output_stride=16, num_labels=21), (1, 129, 129), np.float32),
    ("segmentation", dict(output_stride=8, num_labels=5, tf_padding=False), (2, 65, 97), np.float32),
    ("segmentation", dict(output_stride=8, depth_multiplier=0.5, depth_divisible_by=1), (1, 64, 64), np.float64),
]
CLASSES = {
    "classification": MobileNetV2ForImageClassification,
    "bare": MobileNetV2Model,
    "segmentation": MobileNetV2ForSemanticSegmentation,
}


@pytest.mark.parametrize(("task", "fields", "shape", "dtype"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_plain_forward_equals_the_traced_forward(task, fields, shape, dtype) -> None:
    model = randomised(CLASSES[task](MobileNetV2Config(**fields), dtype=dtype))
    x = np.random.default_rng(1).normal(size=(shape[0], 3, *shape[1:])).astype(dtype)
    fast = model(x, output_hidden_states=True)
    slow = model.trace(x).output
    slow_hidden = model(x, output_hidden_states=True, rec=NO_TRACE)  # the readable layers, nothing recorded
    for i, (a, b) in enumerate(zip(fast.hidden_states, slow_hidden.hidden_states, strict=True)):
        assert_close(a, b, dtype, f"hidden_states[{i}]")
    for field in ("logits", "last_hidden_state", "pooler_output"):
        if hasattr(fast, field):
            assert_close(getattr(fast, field), getattr(slow, field), dtype, field)


def test_homogeneous_padding_puts_the_bias_inside_and_zero_outside() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 6, 3))
    kernel, bias = rng.normal(size=(3, 4)), rng.normal(size=4)
    pad = Pad2D(0, 1, 2, 1)
    homogeneous = np.concatenate([kernel, bias[None]])[None, None]  # (1, 1, 4, 4)
    got = pointwise_conv2d(pad2d_homogeneous(x, pad), homogeneous)  # the textbook op on the fast input
    np.testing.assert_allclose(got, pad2d(x @ kernel + bias, pad), rtol=1e-12, atol=1e-12)


def test_fold_conv_matches_conv_then_batch_norm() -> None:
    model = randomised(MobileNetV2ForImageClassification(tiny_config(), dtype=np.float64))
    spec = model.arch.layers[3].convs[0]  # an expansion 1x1
    p = model.params[spec.name]
    f = fold_conv(spec, p, model.dtype)
    assert isinstance(f, FoldedConv) and f.homogeneous.shape == (1, 1, spec.c_in + 1, spec.c_out)
    x = np.random.default_rng(2).normal(size=(7, spec.c_in))
    scale = p["gamma"] / np.sqrt(p["var"] + spec.eps)
    expected = (x @ p["kernel"][0, 0] - p["mean"]) * scale + p["beta"]
    np.testing.assert_allclose(x @ f.kernel[0, 0] + f.bias, expected, rtol=1e-12, atol=1e-12)


def test_replacing_a_weight_refolds_and_the_callers_array_stays_its_own() -> None:
    model = randomised(MobileNetV2ForImageClassification(tiny_config()))
    x = np.random.default_rng(3).normal(size=(1, 3, 64, 64)).astype(np.float32)
    before = model(x).logits
    p = model.params["layer.4.conv_3x3"]
    edited = p["kernel"].copy()
    edited[..., :5] = 0
    p["kernel"] = edited  # a new array: the cache sees it and refolds
    after = model(x).logits
    assert not np.allclose(before, after)
    assert_close(after, model.trace(x).output.logits, np.float32, "logits after the edit")
    assert edited.flags.writeable  # the model stored a copy: the caller's array keeps its flags
    edited[..., 5:9] = 0  # editing the caller's array afterwards changes nothing of the model's
    assert_close(model(x).logits, after, np.float32, "logits after an edit of the caller's array")


def test_an_edit_in_place_of_a_models_array_raises_and_a_replaced_one_shows_in_both_paths() -> None:
    """Issue 30: the fold cache went stale after an in-place edit (model(x) kept the old logits)."""
    model = randomised(MobileNetV2ForImageClassification(tiny_config(num_labels=10)))
    x = np.random.default_rng(4).normal(size=(1, 3, 64, 64)).astype(np.float32)
    before = model(x).logits
    kernel = model.params["layer.4.conv_3x3"]["kernel"]
    with pytest.raises(ValueError, match="read-only"):
        kernel[..., :8] = 0  # would leave the folded copy stale: refused
    for name in ("kernel", "gamma", "mean"):
        with pytest.raises(ValueError, match="read-only"):
            model.params["layer.4.conv_3x3"][name] *= 2
    np.testing.assert_array_equal(model(x).logits, before)
    edited = kernel.copy()
    edited[..., :8] = 0
    model.params["layer.4.conv_3x3"]["kernel"] = edited
    assert_close(model(x).logits, model.trace(x).output.logits, np.float32, "logits after a replacement")
    assert not np.allclose(model(x).logits, before)
    model.params["layer.4.conv_3x3"] = {**model.params["layer.4.conv_3x3"], "gamma": np.zeros(96, np.float32)}
    assert_close(model(x).logits, model.trace(x).output.logits, np.float32, "logits after a whole layer")
    assert not any(name.startswith("last_") for name in vars(model))  # no traced input kept on the model


def test_the_caller_arrays_stay_writeable_and_unchanged() -> None:
    rng = np.random.default_rng(7)
    config = tiny_config(num_labels=5)
    shapes = MobileNetV2ForImageClassification(config).expected_state_dict_shapes()
    state = {k: rng.normal(0, 0.1, s).astype(np.float32) for k, s in shapes.items()}
    for k, v in state.items():
        if k.endswith("running_var"):
            state[k] = np.abs(v) + 0.5
    copies = {k: v.copy() for k, v in state.items()}
    model = MobileNetV2ForImageClassification.from_state_dict(state, config)
    assigned = model.params["layer.2.expand_1x1"]["kernel"].copy()
    model.params["layer.2.expand_1x1"]["kernel"] = assigned
    assigned_copy = assigned.copy()
    x = rng.normal(size=(1, 3, 64, 64)).astype(np.float32)
    model(x)
    model.trace(x)
    model.fold_batchnorm()(x)
    for k, v in state.items():
        assert v.flags.writeable, k
        np.testing.assert_array_equal(v, copies[k], err_msg=k)
    assert assigned.flags.writeable
    np.testing.assert_array_equal(assigned, assigned_copy)
    assert not any(a.flags.writeable for p in model.params.values() for a in p.values())  # the model's own: frozen


@pytest.mark.parametrize(("stride", "dilation"), [(1, 1), (1, 2), (2, 1), (3, 1)])
def test_fast_depthwise_einsums_equal_the_textbook_depthwise_conv(stride, dilation) -> None:
    rng = np.random.default_rng(stride * 10 + dilation)
    x, kernel = rng.normal(size=(2, 11, 9, 5)), rng.normal(size=(3, 3, 5))
    expected = depthwise_conv2d(x, kernel, stride=stride, dilation=dilation)
    fast = (
        depthwise_rows(x, kernel, dilation=dilation)
        if stride == 1
        else depthwise_windows(x, kernel, stride=stride, dilation=dilation)
    )
    np.testing.assert_allclose(fast, expected, rtol=1e-12, atol=1e-12)


def test_a_folded_copy_keeps_its_own_cache() -> None:
    model = randomised(MobileNetV2ForImageClassification(tiny_config()))
    x = np.random.default_rng(4).normal(size=(1, 3, 64, 64)).astype(np.float32)
    expected = model(x).logits
    folded = model.fold_batchnorm()
    assert folded.folded_params() is not model.folded_params()
    assert float(np.abs(folded(x).logits - expected).max()) <= FLOAT32_RTOL * max(1.0, float(np.abs(expected).max()))
    assert float(np.abs(model(x).logits - expected).max()) == 0.0


@pytest.mark.parametrize("contiguous", [True, False])
def test_bias_activation_adds_the_bias_per_channel_in_place(contiguous):
    x = np.random.default_rng(8).normal(size=(2, 3, 5, 4)).astype(np.float32)
    if not contiguous:
        x = x.transpose(0, 2, 1, 3)  # (2, 5, 3, 4), a strided view
    bias = np.random.default_rng(8).normal(size=4).astype(np.float32)
    expected = np.clip(x + bias, 0, 6)
    out = bias_activation(x, bias, "relu6")
    assert out is x
    np.testing.assert_array_equal(out, expected)
