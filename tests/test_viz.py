"""Every figure renders to PNG with the real weights and images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import CORAL_CLASSIFIER
from PIL import Image

import npmnv2
from npmnv2 import viz
from npmnv2.verify import tflite_activations, tflite_input


@pytest.fixture(scope="module")
def real(coral_dir):
    path = coral_dir / CORAL_CLASSIFIER
    model = npmnv2.MobileNetV2ForImageClassification.from_pretrained(path)
    processor = npmnv2.MobileNetV2ImageProcessor.from_pretrained(path)
    return model, model.trace(processor(coral_dir / "cat.bmp")["pixel_values"])


def png(fig) -> Image.Image:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=50)
    buffer.seek(0)
    image = Image.open(buffer)
    assert image.size[0] > 100 and image.size[1] > 100
    assert np.asarray(image.convert("L")).std() > 5  # not blank
    return image


@pytest.mark.parametrize("rank_by", ["mean", "energy"])
def test_feature_map_grid_from_trace_step_or_array(real, rank_by):
    _, trace = real
    fig = viz.feature_map_grid(trace, "layer.10.expand_1x1.activation", count=12, rank_by=rank_by)
    assert (
        "layer.10.expand_1x1.activation" in fig._suptitle.get_text() and "(1, 576, 14, 14)" in fig._suptitle.get_text()
    )
    png(fig)
    png(viz.feature_map_grid(trace.step("conv_stem.first_conv.activation")))
    png(viz.feature_map_grid(trace["layer.3"], "layer.3", count=4))


def test_feature_map_grid_explains_a_step_that_was_not_kept(real):
    model, _ = real
    trace = model.trace(np.zeros((1, 3, 224, 224), np.float32), layers=[])
    with pytest.raises(ValueError, match="was not kept"):
        viz.feature_map_grid(trace.step("layer.3"))


def test_activation_statistics_marks_relu6_and_linear_bottlenecks(real):
    _, trace = real
    fig = viz.activation_statistics(trace)
    top, middle, bottom = fig.axes
    assert any(line.get_ydata()[0] == 6 for line in top.get_lines())
    assert "linear bottleneck" in bottom.get_ylabel()
    zeros_bars = middle.containers[0]  # % clipped to 0 per block, exact (not sampled)
    layer0 = [s for s in trace.steps if s.name.startswith("layer.0.") and s.kind == "activation"]
    exact = float(np.mean(np.concatenate([s.output.ravel() for s in layer0]) == 0))
    assert abs(zeros_bars[1].get_height() - 100 * exact) < 1e-6
    png(fig)


def test_figures_display_inline_in_jupyter_without_magic(real):
    model, trace = real
    for fig in (viz.activation_statistics(trace), viz.inverted_residual_diagram(model, "layer.3"),
                viz.figure(figsize=(2, 2))):  # fmt: skip
        assert isinstance(fig, viz.Figure) and fig._repr_png_().startswith(b"\x89PNG")


def test_padding_picture_shows_the_stride_2_padding(real):
    model, trace = real
    step = trace.step("layer.12.conv_3x3.convolution")
    fig = viz.padding_picture(step)
    assert "padding top 0, bottom 1, left 0, right 1" in fig.axes[0].get_title()
    assert "14x14 input" in fig.axes[0].get_title() and "7x7 outputs" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="needs a convolution step"):
        viz.padding_picture(trace.step("layer.12"))
    png(fig)


@pytest.mark.parametrize("block", ["conv_stem", "layer.0", "layer.3", "layer.12", "layer.13"])
def test_inverted_residual_diagram_uses_the_models_shapes(real, block):
    model, _ = real
    fig = viz.inverted_residual_diagram(model, block)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert sum("depthwise 3x3" in t for t in texts) == 1  # one label per box
    if block == "layer.3":
        assert "32 x 28 x 28" in texts and "192 x 28 x 28" in texts and any("residual: the input" in t for t in texts)
        assert "+" in texts and any("pad top,bottom,left,right = 1,1,1,1" in t for t in texts)  # the add node
    if block == "layer.12":
        assert any("pad top,bottom,left,right = 0,1,0,1" in t for t in texts)
    if block == "layer.0":
        assert "96 x 56 x 56" in texts and any("no residual" in t for t in texts)
    png(fig)


def test_receptive_fields_for_each_output_stride(real):
    model, _ = real
    fig = viz.receptive_fields(model)
    assert len(fig.axes[2].get_lines()) == 3
    sizes = {line.get_label(): line.get_ydata()[-1] for line in fig.axes[2].get_lines()}
    assert sizes == {"output stride 8": 28, "output stride 16": 14, "output stride 32": 7}
    strides = {line.get_label(): line.get_ydata()[-1] for line in fig.axes[1].get_lines()}
    assert strides == {"output stride 8": 8, "output stride 16": 16, "output stride 32": 32}
    png(fig)


def test_segmentation_overlay_and_side_by_side(coral_dir):
    path = coral_dir / "deeplabv3_mnv2_pascal_quant.tflite"
    model = npmnv2.MobileNetV2ForSemanticSegmentation.from_pretrained(path)
    processor = npmnv2.MobileNetV2ImageProcessor.from_pretrained(path)
    image = np.asarray(Image.open(coral_dir / "bird_segmentation.bmp").convert("RGB"))
    mask = np.asarray(Image.open(coral_dir / "bird_segmentation_mask.bmp"))
    outputs = model(processor(image)["pixel_values"])
    class_map = processor.post_process_semantic_segmentation(outputs, target_sizes=[image.shape[:2]])[0]
    fig = viz.segmentation_overlay(image, class_map, model.config.id2label)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["0 background", "3 bird"]
    png(fig)
    side = viz.segmentation_side_by_side(image, class_map, mask, model.config.id2label)
    assert "agreement with the reference: 0.9" in side._suptitle.get_text()
    png(side)
    with pytest.raises(ValueError, match="differ in size"):
        viz.segmentation_overlay(image, class_map[:10])


def test_pascal_palette_matches_the_voc_colours():
    palette = viz.pascal_voc_palette()
    assert palette[3].tolist() == [128, 128, 0] and palette[15].tolist() == [192, 128, 128]


def test_comparison_plot_marks_the_first_divergence(coral_dir, real):
    model, _ = real
    path = coral_dir / CORAL_CLASSIFIER
    acts = tflite_activations(path, coral_dir / "cat.bmp")
    _, x = tflite_input(path, coral_dir / "cat.bmp")
    result = npmnv2.compare(model.trace(x), acts, tolerance=0.05)
    assert result.first_divergence is not None
    fig = viz.comparison_plot(result)
    assert any("first divergence" in t.get_text() for t in fig.axes[0].texts)
    png(fig)
