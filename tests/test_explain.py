"""Grad-CAM and saliency: the numbers against a PyTorch Grad-CAM, the pictures on real photos, the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import CORAL_CLASSIFIER
from PIL import Image

import npmnv2
from npmnv2 import gradients, viz
from tests.test_cli import npmnv2 as run_cli
from tests.torch_peer import build_pair

CLS = npmnv2.MobileNetV2ForImageClassification


def test_grad_cam_equals_a_pytorch_grad_cam_of_the_same_weights():
    hf_model, model = build_pair(CLS, dict(depth_multiplier=0.5, num_labels=6), dtype=np.float64, seed=21)
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64))
    kept = {}

    def keep(_module, _inputs, output):
        output.retain_grad()
        kept["a"] = output

    handle = hf_model.mobilenet_v2.conv_1x1.register_forward_hook(keep)
    try:
        logits = hf_model(torch.tensor(x)).logits
        (logits[0, 4] + logits[1, 1]).backward()
    finally:
        handle.remove()
    a, g = kept["a"].detach(), kept["a"].grad
    cam = torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1, keepdim=True))
    cam = torch.nn.functional.interpolate(cam, size=(64, 64), mode="bilinear", align_corners=False)[:, 0].numpy()
    expected = cam / cam.reshape(2, -1).max(axis=1)[:, None, None]

    explanation = gradients.grad_cam(model, x, target=[4, 1])
    assert explanation.layer == "conv_1x1.activation" and explanation.targets == [4, 1]
    np.testing.assert_allclose(explanation.heatmap, expected, rtol=1e-9, atol=1e-12)


def test_saliency_is_the_largest_input_gradient_over_colours():
    _, model = build_pair(CLS, dict(depth_multiplier=0.35, num_labels=4), dtype=np.float64, seed=22)
    x = np.random.default_rng(1).standard_normal((1, 3, 40, 40))
    explanation = gradients.saliency(model, x)
    predicted = int(np.argmax(model(x).logits))
    raw = np.abs(model.grad(x, target=predicted).gradients["pixel_values"]).max(axis=1)
    expected = np.minimum(raw / np.percentile(raw, 99), 1)
    assert explanation.targets == [predicted]
    np.testing.assert_allclose(explanation.heatmap, expected, rtol=1e-12)


@pytest.fixture(scope="module")
def bird(coral_dir):
    image = np.asarray(Image.open(coral_dir / "bird_segmentation.bmp").convert("RGB"))
    mask = np.asarray(Image.open(coral_dir / "bird_segmentation_mask.bmp"))
    return image, (mask if mask.ndim == 2 else mask[..., 0]) > 0


@pytest.mark.parametrize("weights", ["mobilenet_v2_1.0_224_quant.tflite", "deeplabv3_mnv2_dm05_pascal_quant.tflite"])
def test_grad_cam_of_the_predicted_class_lights_up_the_bird(coral_dir, bird, weights):
    """On a real photo, the heat lies on the object: the mean heat over the bird's reference mask is
    well above the mean over the background (1.5x; the classifier's 7x7 map blurs the border, DeepLab
    measures about 4x)."""
    image, mask = bird
    cls = CLS if "deeplab" not in weights else npmnv2.MobileNetV2ForSemanticSegmentation
    model = cls.from_pretrained(coral_dir / weights)
    processor = npmnv2.MobileNetV2ImageProcessor.from_pretrained(coral_dir / weights)
    # square photo, resized (not cropped) to the model's input, so the mask can be resized alike
    size = model.config.image_size
    pixel_values = processor(image, size={"height": size, "width": size}, do_center_crop=False)["pixel_values"]
    explanation = gradients.grad_cam(model, pixel_values)
    heat = explanation.heatmap[0]
    small_mask = np.asarray(Image.fromarray(mask).resize(heat.shape[::-1], Image.Resampling.NEAREST))
    if cls is not CLS:
        assert explanation.targets == [3]  # PASCAL VOC "bird"
    assert heat[small_mask].mean() > 1.5 * heat[~small_mask].mean()


def test_explanation_figures_show_input_overlay_and_heat(coral_dir):
    weights = coral_dir / CORAL_CLASSIFIER
    model = CLS.from_pretrained(weights)
    processor = npmnv2.MobileNetV2ImageProcessor.from_pretrained(weights)
    fig = viz.grad_cam(model, coral_dir / "cat.bmp", processor=processor)
    assert isinstance(fig, viz.Figure) and len(fig.axes) == 4  # three pictures and a colour bar
    assert "286 (Egyptian cat)" in fig.get_suptitle()
    assert fig._repr_png_().startswith(b"\x89PNG")
    fig = viz.saliency(model, coral_dir / "cat.bmp", 282, processor=processor)
    assert "282 (tabby" in fig.get_suptitle()


def test_grad_cam_refuses_a_layer_without_a_feature_map():
    _, model = build_pair(CLS, dict(depth_multiplier=0.35, num_labels=4), dtype=np.float32, seed=23)
    with pytest.raises(ValueError, match="feature map"):
        gradients.grad_cam(model, np.zeros((1, 3, 32, 32), np.float32), layer="pooler")


def test_cli_explain_writes_the_figure(tmp_path, coral_dir):
    out = tmp_path / "cam.png"
    weights = coral_dir / CORAL_CLASSIFIER
    run = run_cli("explain", coral_dir / "cat.bmp", "--weights", weights, "-o", out)
    assert run.returncode == 0, run.stderr
    assert "Egyptian cat" in run.stdout and Image.open(out).size[0] > 500
    run = run_cli("explain", coral_dir / "cat.bmp", "--weights", weights, "-o", out, "--target", "1001")
    assert run.returncode == 1 and "[0, 1001)" in run.stderr
    run = run_cli("explain", coral_dir / "cat.bmp", "--weights", weights, "-o", out, "--method", "saliency",
                  "--layer", "layer.3")  # fmt: skip
    assert run.returncode == 1 and "saliency" in run.stderr
    run = run_cli("explain", coral_dir / "cat.bmp", "--weights", weights, "-o", coral_dir / "cat.bmp")
    assert run.returncode == 1 and "file types" in run.stderr
