"""model.grad against PyTorch autograd on transformers' MobileNetV2 with the same random weights:
the loss, every parameter gradient, the input gradient and traced tensors' gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import CORAL_CLASSIFIER, tiny_config

import npmnv2
from npmnv2.gradients import fast_path_applies
from tests.torch_peer import build_pair, randomize

CLS = npmnv2.MobileNetV2ForImageClassification
SEG = npmnv2.MobileNetV2ForSemanticSegmentation

CONFIGS = [
    # (model class, config kwargs, image size (h, w), batch)
    (CLS, dict(depth_multiplier=0.35, num_labels=7, image_size=64), (64, 64), 1),
    (CLS, dict(depth_multiplier=0.5, num_labels=5), (57, 61), 2),
    (CLS, dict(depth_multiplier=0.75, num_labels=4, tf_padding=False), (48, 52), 1),
    (CLS, dict(depth_multiplier=1.0, num_labels=3), (32, 32), 2),
    (CLS, dict(depth_multiplier=1.4, num_labels=3, finegrained_output=False), (33, 35), 1),
    (CLS, dict(depth_multiplier=0.5, num_labels=6, first_layer_is_expansion=False), (40, 40), 1),
    (CLS, dict(depth_multiplier=0.35, num_labels=4, hidden_act="gelu"), (37, 45), 1),
    (CLS, dict(depth_multiplier=0.5, num_labels=4, output_stride=8), (40, 40), 1),
    (SEG, dict(depth_multiplier=0.35, num_labels=5, output_stride=8), (40, 44), 2),
    (SEG, dict(depth_multiplier=0.5, num_labels=4, output_stride=16), (49, 47), 1),
    (SEG, dict(depth_multiplier=0.35, num_labels=3, output_stride=32, tf_padding=False), (64, 64), 1),
    (SEG, dict(depth_multiplier=0.75, num_labels=4, output_stride=16, semantic_loss_ignore_index=0), (33, 33), 1),
]


def _labels(np_cls, config: dict, batch: int, hw: tuple[int, int], rng) -> np.ndarray:
    if np_cls is CLS:
        return rng.integers(0, config["num_labels"], size=batch)
    labels = rng.integers(0, config["num_labels"], size=(batch, *hw))
    if "semantic_loss_ignore_index" not in config:  # transformers' default ignores 255 ("void" in PASCAL VOC)
        labels[rng.random(labels.shape) < 0.2] = 255
    return labels


def torch_gradients(hf_model, pixel_values, labels=None, score=None):
    """loss and {name: grad} for every parameter and "pixel_values" (None grads -> zeros)."""
    hf_model.zero_grad()
    x = torch.tensor(pixel_values, requires_grad=True)
    if labels is not None:
        loss = hf_model(x, labels=torch.tensor(labels)).loss
    else:
        loss = score(hf_model(x).logits)
    loss.backward()
    grads = {
        name: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().numpy()
        for name, p in hf_model.named_parameters()
    }
    grads["pixel_values"] = x.grad.numpy()
    return float(loss.detach()), grads


def assert_gradients_close(ours: dict, theirs: dict, rtol: float, atol_scale: float) -> None:
    missing = set(theirs) - set(ours)
    assert not missing, f"gradients missing: {sorted(missing)[:5]}"
    for name, expected in theirs.items():
        got = ours[name]
        assert got.shape == expected.shape, name
        atol = atol_scale * max(float(np.abs(expected).max()), 1e-30)
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=name)


@pytest.mark.parametrize("readable", [False, True], ids=["fast path where it applies", "readable path"])
@pytest.mark.parametrize(("np_cls", "config", "hw", "batch"), CONFIGS)
def test_loss_gradients_match_pytorch_autograd_in_float64(np_cls, config, hw, batch, readable):
    hf_model, model = build_pair(np_cls, config, dtype=np.float64, seed=3)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((batch, 3, *hw))
    labels = _labels(np_cls, config, batch, hw, rng)
    result = model.grad(x, labels=labels, keep_steps=readable)
    assert (result.trace is not None) == (readable or not fast_path_applies(model, x.shape))
    loss, expected = torch_gradients(hf_model, x, labels=labels)
    assert result.loss == pytest.approx(loss, rel=1e-12)
    assert_gradients_close(result.gradients, expected, rtol=1e-9, atol_scale=1e-10)


@pytest.mark.parametrize(("np_cls", "config", "hw", "batch"), CONFIGS[::3])
def test_loss_gradients_match_pytorch_autograd_in_float32(np_cls, config, hw, batch):
    hf_model, model = build_pair(np_cls, config, dtype=np.float32, seed=4)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((batch, 3, *hw)).astype(np.float32)
    labels = _labels(np_cls, config, batch, hw, rng)
    result = model.grad(x, labels=labels)
    loss, expected = torch_gradients(hf_model, x, labels=labels)
    assert result.loss == pytest.approx(loss, rel=1e-5)
    assert all(g.dtype == np.float32 for g in result.gradients.values())
    assert_gradients_close(result.gradients, expected, rtol=1e-4, atol_scale=1e-4)


def test_class_score_gradient_matches_pytorch_and_names_traced_tensors():
    config = dict(depth_multiplier=0.5, num_labels=6)
    hf_model, model = build_pair(CLS, config, dtype=np.float64, seed=8)
    x = np.random.default_rng(1).standard_normal((2, 3, 40, 40))
    result = model.grad(x, target=[2, 5], layers=["layer.4", "layer.10.*.activation"])
    loss, expected = torch_gradients(hf_model, x, score=lambda logits: logits[0, 2] + logits[1, 5])
    assert result.loss == pytest.approx(loss, rel=1e-12)
    assert_gradients_close(result.gradients, expected, rtol=1e-9, atol_scale=1e-10)
    assert "layer.4" in result.gradients
    assert "layer.10.conv_3x3.activation" in result.gradients
    # the traced tensor's gradient has the traced tensor's shape
    assert result.gradients["layer.4"].shape == result.trace["layer.4"].shape
    logits = model.grad(x, target=[2, 5], layers="classifier")
    assert logits.gradients["classifier"].shape == logits.trace["classifier"].shape == (2, 6)


def test_traced_tensor_gradient_matches_pytorch_hook():
    config = dict(depth_multiplier=0.35, num_labels=4)
    hf_model, model = build_pair(CLS, config, dtype=np.float64, seed=9)
    x = np.random.default_rng(2).standard_normal((1, 3, 32, 32))
    captured = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        captured["t"] = output

    handle = hf_model.mobilenet_v2.layer[6].register_forward_hook(keep)
    try:
        torch_gradients(hf_model, x, labels=np.array([1]))
    finally:
        handle.remove()
    result = model.grad(x, labels=np.array([1]), layers="layer.6")
    np.testing.assert_allclose(result.gradients["layer.6"], captured["t"].grad.numpy(), rtol=1e-9, atol=1e-14)


def test_segmentation_region_target_matches_pytorch():
    config = dict(depth_multiplier=0.35, num_labels=4, output_stride=16)
    hf_model, model = build_pair(SEG, config, dtype=np.float64, seed=10)
    x = np.random.default_rng(3).standard_normal((1, 3, 48, 48))
    grid = model(x).logits.shape[2:]
    mask = np.zeros(grid, bool)
    mask[: grid[0] // 2, 1:] = True
    result = model.grad(x, target=(2, mask))
    loss, expected = torch_gradients(hf_model, x, score=lambda logits: logits[0, 2][torch.tensor(mask)].sum())
    assert result.loss == pytest.approx(loss, rel=1e-12)
    assert_gradients_close(result.gradients, expected, rtol=1e-9, atol_scale=1e-10)


def test_folded_model_gradients_are_those_of_the_folded_weights():
    config = dict(depth_multiplier=0.35, num_labels=5)
    _, model = build_pair(CLS, config, dtype=np.float64, seed=11)
    folded = model.fold_batchnorm()
    import transformers

    twin = transformers.MobileNetV2ForImageClassification(transformers.MobileNetV2Config(**config)).double().eval()
    randomize(twin, 0)
    twin.load_state_dict({k: torch.tensor(v) for k, v in folded.state_dict().items()}, strict=False)
    x = np.random.default_rng(4).standard_normal((2, 3, 36, 36))
    labels = np.array([0, 3])
    result = folded.grad(x, labels=labels)
    loss, expected = torch_gradients(twin, x, labels=labels)
    assert result.loss == pytest.approx(loss, rel=1e-12)
    assert result.loss == pytest.approx(model.grad(x, labels=labels).loss, rel=1e-10)
    assert_gradients_close(result.gradients, expected, rtol=1e-9, atol_scale=1e-10)


def test_one_sgd_step_on_the_classifier_lowers_the_loss():
    _, model = build_pair(CLS, dict(depth_multiplier=0.35, num_labels=5), dtype=np.float64, seed=12)
    x = np.random.default_rng(5).standard_normal((4, 3, 32, 32))
    labels = np.array([0, 1, 2, 3])
    before = model.grad(x, labels=labels)
    p = model.params["classifier"]
    p["kernel"] = p["kernel"] - 0.01 * before.gradients["classifier.weight"].T
    p["bias"] = p["bias"] - 0.01 * before.gradients["classifier.bias"]
    assert model(x, labels=labels).loss < before.loss


def test_backward_steps_mirror_the_trace():
    _, model = build_pair(CLS, dict(depth_multiplier=0.35, num_labels=3), dtype=np.float64, seed=13)
    result = model.grad(np.zeros((1, 3, 32, 32)), labels=np.array([1]), keep_steps=True)
    assert result.backward_steps[0].name == "classifier.backward"
    assert all(s.kind == "backward" for s in result.backward_steps)
    of = [s.attrs["of"] for s in result.backward_steps]
    forward_order = [s.name for s in result.trace.steps if s.name in of]
    assert of == forward_order[::-1]


def test_grad_rejects_bad_requests_with_clear_messages():
    _, model = build_pair(CLS, dict(depth_multiplier=0.35, num_labels=3), dtype=np.float32, seed=14)
    x = np.zeros((1, 3, 32, 32), np.float32)
    with pytest.raises(ValueError, match="not both"):
        model.grad(x)
    with pytest.raises(ValueError, match="not both"):
        model.grad(x, labels=np.array([0]), target=1)
    with pytest.raises(ValueError, match=r"class id in \[0, 3\)"):
        model.grad(x, target=3)
    with pytest.raises(KeyError, match=r"layer\.99"):
        model.grad(x, target=0, layers=["layer.99.output"])
    with pytest.raises(ValueError, match="labels"):
        model.grad(x, labels=np.array([0, 1, 2]))
    backbone = npmnv2.MobileNetV2Model(tiny_config())
    with pytest.raises(ValueError, match="head"):
        backbone.grad(x, target=0)
    _, seg = build_pair(SEG, dict(depth_multiplier=0.35, num_labels=3), dtype=np.float32, seed=15)
    with pytest.raises(ValueError, match="boolean mask of the logits' grid"):
        seg.grad(np.zeros((1, 3, 32, 32), np.float32), target=(1, np.ones((5, 5), bool)))


@pytest.mark.parametrize("np_cls", [CLS, SEG])
def test_gradient_keys_are_the_trainable_state_dict_keys_plus_pixel_values(np_cls):
    _, model = build_pair(np_cls, dict(depth_multiplier=0.35, num_labels=3), dtype=np.float32, seed=16)
    x = np.zeros((1, 3, 32, 32), np.float32)
    labels = np.array([1]) if np_cls is CLS else np.ones((1, 32, 32), np.int64)
    result = model.grad(x, labels=labels)
    state = model.state_dict()
    trainable = {k for k in state if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    assert set(result.gradients) == trainable | {"pixel_values"}
    for name in trainable:
        assert result.gradients[name].shape == state[name].shape, name


def test_steps_show_the_backward_steps_after_the_forward():
    _, model = build_pair(CLS, dict(depth_multiplier=0.35, num_labels=3), dtype=np.float32, seed=17)
    x = np.zeros((1, 3, 32, 32), np.float32)
    steps = list(model.steps(x, labels=np.array([2])))
    kinds = [s.kind for s in steps]
    first_backward = kinds.index("backward")
    assert "backward" not in kinds[:first_backward] and set(kinds[first_backward:]) == {"backward"}
    assert steps[first_backward].name == "classifier.backward"
    assert steps[-1].name == "conv_stem.first_conv.convolution.backward" and steps[-1].output_shape == (1, 3, 32, 32)
    assert [s.name for s in model.steps(x)] == [s.name for s in steps[:first_backward]]


def test_fast_path_takes_relu6_classifiers_and_leaves_the_rest_to_the_readable_path():
    shape = (1, 3, 32, 32)
    _, model = build_pair(CLS, dict(depth_multiplier=0.35, num_labels=3), dtype=np.float32, seed=18)
    assert fast_path_applies(model, shape)
    assert not fast_path_applies(model.fold_batchnorm(), shape)  # folded: gradients of the folded weights
    _, gelu = build_pair(CLS, dict(depth_multiplier=0.35, num_labels=3, hidden_act="gelu"), seed=18)
    assert not fast_path_applies(gelu, shape)
    _, seg = build_pair(SEG, dict(depth_multiplier=0.35, num_labels=3), seed=18)
    assert not fast_path_applies(seg, shape)
    fixed = CLS(tiny_config(num_labels=3, pooling="fixed_7x7"))
    assert fast_path_applies(fixed, (1, 3, 224, 224)) and not fast_path_applies(fixed, (1, 3, 256, 256))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_path_equals_the_readable_backward_on_the_real_classifier(coral_dir, dtype):
    weights = coral_dir / CORAL_CLASSIFIER
    model = CLS.from_pretrained(weights, dtype=dtype)
    processor = npmnv2.MobileNetV2ImageProcessor.from_pretrained(weights)
    x = np.concatenate([processor(coral_dir / name)["pixel_values"] for name in ("cat.bmp", "bird.bmp")])
    assert fast_path_applies(model, x.shape)
    fast = model.grad(x, labels=np.array([286, 20]))
    readable = model.grad(x, labels=np.array([286, 20]), keep_steps=True)
    tol = 1e-9 if dtype == np.float64 else 1e-4
    assert fast.loss == pytest.approx(readable.loss, rel=tol)
    assert set(fast.gradients) == set(readable.gradients)
    for name, expected in readable.gradients.items():
        scale = max(1.0, float(np.abs(expected).max()))
        assert np.abs(fast.gradients[name] - expected).max() <= tol * scale, name


@pytest.mark.parametrize(
    ("config", "labels"),
    [
        (dict(num_labels=3, problem_type="regression"), np.array([[0.5, -1.0, 2.0], [0.0, 1.0, -0.5]])),
        (dict(num_labels=3), np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])),  # float labels: multi-label BCE
        (dict(num_labels=1), np.array([0.7, -1.2])),  # one label: regression
    ],
)
def test_every_classification_loss_differentiates_like_pytorch(config, labels):
    hf_model, model = build_pair(CLS, dict(depth_multiplier=0.35, **config), dtype=np.float64, seed=19)
    x = np.random.default_rng(7).standard_normal((2, 3, 32, 32))
    result = model.grad(x, labels=labels)
    loss, expected = torch_gradients(hf_model, x, labels=labels)
    assert result.loss == pytest.approx(loss, rel=1e-12, abs=1e-15)
    assert_gradients_close(result.gradients, expected, rtol=1e-9, atol_scale=1e-10)
