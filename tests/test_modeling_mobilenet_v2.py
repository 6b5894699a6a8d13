"""npmnv2 against transformers' PyTorch MobileNetV2, tensor by tensor, over many configurations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tolerance
from torch_peer import Collect, build_pair, torch_activations

import npmnv2
from npmnv2 import MobileNetV2ForImageClassification as Cls
from npmnv2 import MobileNetV2ForSemanticSegmentation as Seg
from npmnv2 import MobileNetV2Model as Bare

# (id, class, config kwargs, (N, H, W), labels kind)
CASES = [
    ("cls-dm1.0-224", Cls, dict(num_labels=10), (1, 224, 224), None),
    ("cls-dm0.35-96", Cls, dict(depth_multiplier=0.35, num_labels=7), (1, 96, 96), None),
    ("cls-dm0.5-32-minimum", Cls, dict(depth_multiplier=0.5), (1, 32, 32), None),
    ("cls-dm0.75-225-odd", Cls, dict(depth_multiplier=0.75, num_labels=5), (1, 225, 225), None),
    ("cls-dm1.4-161x193", Cls, dict(depth_multiplier=1.4, num_labels=3), (1, 161, 193), None),
    ("cls-torch-padding-225", Cls, dict(tf_padding=False), (1, 225, 225), None),
    ("cls-first-layer-not-expansion", Cls, dict(first_layer_is_expansion=False), (1, 96, 96), None),
    ("cls-finegrained-off-dm0.5", Cls, dict(finegrained_output=False, depth_multiplier=0.5), (1, 96, 96), None),
    ("cls-relu", Cls, dict(hidden_act="relu"), (1, 97, 65), None),
    ("cls-silu", Cls, dict(hidden_act="silu"), (1, 64, 64), None),
    ("cls-expand-ratio-4", Cls, dict(expand_ratio=4.0), (1, 96, 96), None),
    ("cls-divisible-by-1-dm0.35", Cls, dict(depth_divisible_by=1, depth_multiplier=0.35), (1, 96, 96), None),
    ("cls-grayscale", Cls, dict(num_channels=1), (1, 96, 96), None),
    ("cls-batch3-labels", Cls, dict(num_labels=6), (3, 96, 112), "single"),
    ("cls-regression", Cls, dict(num_labels=1), (2, 64, 64), "regression"),
    ("cls-multi-label", Cls, dict(num_labels=4, problem_type="multi_label_classification"), (2, 64, 64), "multi"),
    ("bare-os16-161x193", Bare, dict(output_stride=16), (1, 161, 193), None),
    ("bare-os8-dm0.5", Bare, dict(output_stride=8, depth_multiplier=0.5), (1, 65, 81), None),
    ("seg-os16-labels", Seg, dict(output_stride=16, num_labels=21), (1, 129, 129), "segmentation"),
    (
        "seg-os8-dm0.5-labels",
        Seg,
        dict(output_stride=8, depth_multiplier=0.5, num_labels=5),
        (2, 97, 81),
        "segmentation",
    ),
    (
        "seg-os32-torch-padding",
        Seg,
        dict(output_stride=32, tf_padding=False, num_labels=3),
        (1, 96, 96),
        "segmentation",
    ),
    ("seg-os16-dm1.0-513", Seg, dict(output_stride=16, num_labels=21), (1, 513, 513), None),
]


def make_labels(kind, n, h, w, num_labels, rng):
    if kind == "single":
        return rng.integers(0, num_labels, size=n)
    if kind == "regression":
        return rng.normal(size=n).astype(np.float32)
    if kind == "multi":
        return rng.integers(0, 2, size=(n, num_labels)).astype(np.float32)
    if kind == "segmentation":
        labels = rng.integers(0, num_labels, size=(n, h, w))
        labels[:, :5, :5] = 255  # ignored pixels
        return labels
    return None


def assert_close(name, ours, theirs, dtype):
    theirs = np.asarray(theirs)
    ours = np.asarray(ours).reshape(theirs.shape)
    bound = tolerance(dtype) * max(1.0, float(np.abs(theirs).max()))
    err = float(np.abs(ours - theirs).max())
    assert err <= bound, f"first divergent tensor {name!r}: max |diff| {err:.3g} > {bound:.3g}"


def run_case(cls, config_kwargs, shape, label_kind, dtype, seed=0):
    n, h, w = shape
    hf_model, model = build_pair(cls, config_kwargs, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed)
    pixel_values = rng.uniform(-1, 1, size=(n, model.config.num_channels, h, w)).astype(dtype)
    labels = make_labels(label_kind, n, h, w, model.config.num_labels, rng)

    kwargs = {"output_hidden_states": True}
    if labels is not None:
        kwargs["labels"] = torch.from_numpy(labels)
    theirs, hf_out = torch_activations(hf_model, pixel_values, **kwargs)
    rec = Collect()
    ours = (
        model(pixel_values, output_hidden_states=True, labels=labels, rec=rec)
        if cls is not Bare
        else model(pixel_values, output_hidden_states=True, rec=rec)
    )

    # Every recorded step that transformers has a module for, in execution order.
    compared = []
    for name, value in rec.outputs.items():
        if name in theirs:
            assert_close(name, value, theirs[name], dtype)
            compared.append(name)
    # Container modules (a whole conv layer) end with their last recorded step.
    for name in theirs:
        if name and name not in rec.outputs:
            inner = [k for k in rec.outputs if k.startswith(name + ".")]
            if inner:
                assert_close(name, rec.outputs[inner[-1]], theirs[name], dtype)
                compared.append(name)
    # Nothing transformers computes may be left unchecked (dropout is the identity at inference;
    # the segmentation model's unused conv_1x1 is not computed by npmnv2 by design).
    skipped = {k for k in theirs if k not in compared}
    allowed = {"", "dropout", "segmentation_head.dropout"}
    if cls is Seg:
        allowed |= {k for k in theirs if k.startswith("conv_1x1")}
    assert skipped <= allowed, f"transformers tensors left unchecked: {sorted(skipped - allowed)}"

    # The plain forward (no recorder: batch norm folded on the fly, in-place epilogues) agrees too.
    plain = (
        model(pixel_values, output_hidden_states=True)
        if cls is Bare
        else model(pixel_values, output_hidden_states=True, labels=labels)
    )
    field = "last_hidden_state" if cls is Bare else "logits"
    assert_close(f"plain {field}", getattr(plain, field), getattr(hf_out, field).numpy(), dtype)
    for i, (a, b) in enumerate(zip(plain.hidden_states, hf_out.hidden_states, strict=True)):
        assert_close(f"plain hidden_states[{i}]", a, b.numpy(), dtype)

    # The public outputs too.
    assert len(ours.hidden_states) == len(hf_out.hidden_states) == 16
    for i, (a, b) in enumerate(zip(ours.hidden_states, hf_out.hidden_states, strict=True)):
        assert_close(f"hidden_states[{i}]", a, b.numpy(), dtype)
    if cls is Bare:
        assert_close("last_hidden_state", ours.last_hidden_state, hf_out.last_hidden_state.numpy(), dtype)
        assert_close("pooler_output", ours.pooler_output, hf_out.pooler_output.numpy(), dtype)
    else:
        assert ours.logits.shape == tuple(hf_out.logits.shape)
        assert_close("logits", ours.logits, hf_out.logits.numpy(), dtype)
    if labels is not None:
        assert ours.loss.shape == ()
        assert_close("loss", ours.loss, hf_out.loss.numpy(), dtype)
    return compared


@pytest.mark.parametrize("cls,config_kwargs,shape,label_kind", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_traced_tensor_matches_transformers_float32(cls, config_kwargs, shape, label_kind):
    compared = run_case(cls, config_kwargs, shape, label_kind, np.float32)
    assert len(compared) > 100


FLOAT64_CASES = [
    "cls-dm1.0-224",
    "cls-dm0.75-225-odd",
    "seg-os8-dm0.5-labels",
    "cls-torch-padding-225",
    "bare-os16-161x193",
    "cls-batch3-labels",
]


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in FLOAT64_CASES], ids=FLOAT64_CASES)
def test_float64_matches_transformers_to_1e_10(case):
    _, cls, config_kwargs, shape, label_kind = case
    run_case(cls, config_kwargs, shape, label_kind, np.float64)


def test_outputs_are_nchw_and_keep_model_dtype():
    model = Cls(npmnv2.MobileNetV2Config(num_labels=4, depth_multiplier=0.35), dtype=np.float64)
    out = model(np.zeros((2, 3, 64, 96)), output_hidden_states=True)
    assert out.logits.shape == (2, 4) and out.logits.dtype == np.float64
    assert out.hidden_states[-1].shape == (2, 112, 2, 3)
    assert out.loss is None


def test_segmentation_output_stride_sets_logit_resolution():
    for os_, size in ((8, 17), (16, 9), (32, 5)):
        model = Seg(npmnv2.MobileNetV2Config(output_stride=os_, depth_multiplier=0.35, num_labels=3))
        assert model(np.zeros((1, 3, 129, 129), np.float32)).logits.shape == (1, 3, size, size)
