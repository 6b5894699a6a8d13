"""Draw the documentation's figures with npmnv2.viz on the real weights: python docs/make_figures.py [OUT]

Writes PNGs to docs/figures/ (or OUT). They are committed, so `mkdocs build` works on a fresh
clone; run this after a change that alters a figure (tests/test_docs.py checks the set of names).
Needs the public data: `npmnv2 data fetch`, or $NPMNV2_DATA.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

import npmnv2
from npmnv2 import viz
from npmnv2.verify import tflite_activations, tflite_input

HERE = Path(__file__).resolve().parent


def main(out: Path = HERE / "figures") -> None:
    try:
        DATA = npmnv2.data_files.data_dir()
    except npmnv2.data_files.DataError as err:
        sys.exit(str(err))
    out.mkdir(exist_ok=True)
    weights = DATA / "mobilenet_v2_1.0_224_quant.tflite"
    model = npmnv2.MobileNetV2ForImageClassification.from_pretrained(weights)
    processor = npmnv2.MobileNetV2ImageProcessor.from_pretrained(weights)
    trace = model.trace(processor(DATA / "cat.bmp")["pixel_values"])
    figures = {
        "inverted_residual_layer3.png": viz.inverted_residual_diagram(model, "layer.3"),
        "inverted_residual_layer5.png": viz.inverted_residual_diagram(model, "layer.5"),
        "feature_maps_layer10_expand.png": viz.feature_map_grid(trace, "layer.10.expand_1x1.activation", count=16),
        "activation_statistics.png": viz.activation_statistics(trace),
        "receptive_fields.png": viz.receptive_fields(model),
    }
    _, x = tflite_input(weights, DATA / "cat.bmp")
    reference = tflite_activations(weights, DATA / "cat.bmp")
    figures["compare_tflite.png"] = viz.comparison_plot(npmnv2.compare(model.trace(x), reference))
    broken = npmnv2.MobileNetV2ForImageClassification.from_pretrained(weights)
    broken.params["layer.8.conv_3x3"]["kernel"] = broken.params["layer.8.conv_3x3"]["kernel"] * 1.3
    figures["compare_tflite_broken.png"] = viz.comparison_plot(npmnv2.compare(broken.trace(x), reference))

    seg_weights = DATA / "deeplabv3_mnv2_pascal_quant.tflite"
    seg = npmnv2.MobileNetV2ForSemanticSegmentation.from_pretrained(seg_weights)
    seg_processor = npmnv2.MobileNetV2ImageProcessor.from_pretrained(seg_weights)
    image = np.asarray(Image.open(DATA / "bird_segmentation.bmp").convert("RGB"))
    mask = np.asarray(Image.open(DATA / "bird_segmentation_mask.bmp"))
    outputs = seg(seg_processor(image)["pixel_values"])
    class_map = seg_processor.post_process_semantic_segmentation(outputs, target_sizes=[image.shape[:2]])[0]
    figures["segmentation_overlay.png"] = viz.segmentation_overlay(image, class_map, seg.config.id2label)
    figures["segmentation_side_by_side.png"] = viz.segmentation_side_by_side(
        image, class_map, mask, seg.config.id2label
    )
    for name, fig in figures.items():
        fig.savefig(out / name, dpi=80)
    print(f"wrote {len(figures)} figures to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "figures")
