"""The plain forward (folded batch norm, in-place epilogues, pre-padded expansions, split head
projection) equals the step-by-step forward that traces record, layer by layer."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FLOAT32_RTOL, tolerance

from npmnv2 import (
    MobileNetV2Config,
    MobileNetV2ForImageClassification,
    MobileNetV2ForSemanticSegmentation,
    MobileNetV2Model,
)
from npmnv2.modeling_mobilenet_v2 import FoldedConv, fold_conv
from npmnv2.ops import Pad2D, pad2d, pad2d_homogeneous, pointwise_conv2d


def randomised(model, seed: int = 0):
    """Random kernels and batch-norm statistics, so that folding is not the identity."""
    rng = np.random.default_rng(seed)
    for p in model.params.values():
        fan_in = np.prod(p["kernel"].shape[:-1])
        p["kernel"] = (rng.normal(size=p["kernel"].shape) / np.sqrt(fan_in)).astype(model.dtype)
        if "bias" in p:
            p["bias"] = rng.normal(0, 0.1, p["bias"].shape).astype(model.dtype)
        if "gamma" in p:
            c = p["gamma"].shape[0]
            p.update(
                gamma=rng.uniform(0.5, 1.5, c).astype(model.dtype),
                beta=rng.normal(0, 0.2, c).astype(model.dtype),
                mean=rng.normal(0, 0.2, c).astype(model.dtype),
                var=rng.uniform(0.5, 1.5, c).astype(model.dtype),
            )
    return model


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
    slow_hidden = model(x, output_hidden_states=True, rec=_NoRecord())
    for i, (a, b) in enumerate(zip(fast.hidden_states, slow_hidden.hidden_states, strict=True)):
        assert_close(a, b, dtype, f"hidden_states[{i}]")
    for field in ("logits", "last_hidden_state", "pooler_output"):
        if hasattr(fast, field):
            assert_close(getattr(fast, field), getattr(slow, field), dtype, field)


class _NoRecord:
    """A recorder that keeps nothing: runs the step-by-step path with no trace overhead."""

    def add(self, name, kind, output, **info):
        return output

    def keeps(self, name):
        return False


def test_homogeneous_padding_puts_the_bias_inside_and_zero_outside() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 6, 3))
    kernel, bias = rng.normal(size=(3, 4)), rng.normal(size=4)
    pad = Pad2D(0, 1, 2, 1)
    homogeneous = np.concatenate([kernel, bias[None]])[None, None]  # (1, 1, 4, 4)
    got = pointwise_conv2d(pad2d_homogeneous(x, pad), homogeneous)
    np.testing.assert_allclose(got, pad2d(x @ kernel + bias, pad), rtol=1e-12, atol=1e-12)


def test_fold_conv_matches_conv_then_batch_norm() -> None:
    model = randomised(MobileNetV2ForImageClassification(MobileNetV2Config(depth_multiplier=0.35), dtype=np.float64))
    spec = model.arch.layers[3].convs[0]  # an expansion 1x1
    p = model.params[spec.name]
    f = fold_conv(spec, p, model.dtype)
    assert isinstance(f, FoldedConv) and f.homogeneous.shape == (1, 1, spec.c_in + 1, spec.c_out)
    x = np.random.default_rng(2).normal(size=(7, spec.c_in))
    scale = p["gamma"] / np.sqrt(p["var"] + spec.eps)
    expected = (x @ p["kernel"][0, 0] - p["mean"]) * scale + p["beta"]
    np.testing.assert_allclose(x @ f.kernel[0, 0] + f.bias, expected, rtol=1e-12, atol=1e-12)


def test_replacing_a_weight_refolds_and_editing_one_in_place_fails_loudly() -> None:
    model = randomised(MobileNetV2ForImageClassification(MobileNetV2Config(depth_multiplier=0.35)))
    x = np.random.default_rng(3).normal(size=(1, 3, 64, 64)).astype(np.float32)
    before = model(x).logits
    p = model.params["layer.4.conv_3x3"]
    with pytest.raises(ValueError, match="read-only"):
        p["kernel"][..., 0] = 0
    edited = p["kernel"].copy()
    edited[..., :5] = 0
    p["kernel"] = edited  # a new array: the cache sees it and refolds
    after = model(x).logits
    traced = model.trace(x).output.logits
    assert not np.allclose(before, after)
    assert_close(after, traced, np.float32, "logits after the edit")


def test_a_folded_copy_keeps_its_own_cache() -> None:
    model = randomised(MobileNetV2ForImageClassification(MobileNetV2Config(depth_multiplier=0.35)))
    x = np.random.default_rng(4).normal(size=(1, 3, 64, 64)).astype(np.float32)
    expected = model(x).logits
    folded = model.fold_batchnorm()
    assert folded.folded_params() is not model.folded_params()
    assert float(np.abs(folded(x).logits - expected).max()) <= FLOAT32_RTOL * max(1.0, float(np.abs(expected).max()))
    assert float(np.abs(model(x).logits - expected).max()) == 0.0
