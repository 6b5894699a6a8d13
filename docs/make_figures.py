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
    figures.update(porting_bug_figures(DATA))
    for name, fig in figures.items():
        fig.savefig(out / name, dpi=80)
    print(f"wrote {len(figures)} figures to {out}")


# the planted bugs of docs/concepts/porting_bugs.md: (cause, the port's bug, the spec)
PORTING_BUGS = [
    ("input.channel_order", {"bgr": True}, "torchvision"),
    ("input.normalization", {"unit_range": True}, "torchvision"),
    ("padding.tf_same", {"padding": "tf_same"}, "torchvision"),
    ("padding.symmetric", {}, "tf_same_spec"),
    ("batch_norm.eps", {"eps": 1e-4}, "torchvision"),
    ("activation.relu", {"relu": 5}, "torchvision"),
    ("activation.missing", {"no_activation": 3}, "torchvision"),
    ("activation.on_projection", {"activation_on_projection": 2}, "torchvision"),
    ("residual.missing", {"no_residual": 4}, "torchvision"),
    ("kernel.transposed", {"transposed": 6}, "torchvision"),
    ("kernel.flipped", {"flipped": 9}, "torchvision"),
    ("stride.misplaced", {"stride_on_expand": 6}, "torchvision"),
    ("dilation.wrong", {"dilation": (8, 2)}, "torchvision"),
]


def porting_bug_figures(data: Path) -> dict:
    """One figure per catalogued float bug: the local error of every op for the port with the bug
    (before) and without it (after), on the cat photo, with the criterion."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    from torchvision_port import Port, randomize  # the tests' torchvision-style port

    from npmnv2 import verify
    from npmnv2.verify.check import LOCAL_NOISE

    photo = data / "cat.bmp"
    figures = {}
    after = verify.check(randomize(Port(), seed=4), photo, config="torchvision")  # the fixed port, faithful
    for cause, bugs, spec in PORTING_BUGS:
        config = verify.spec_config("torchvision", tf_padding=True) if spec == "tf_same_spec" else spec
        before = verify.check(randomize(Port(bugs=bugs), seed=4), photo, config=config)
        fig = viz.figure(figsize=(10, 3.2), layout="constrained")
        ax = fig.add_subplot()
        floor = 1e-12
        for report, color, label in ((before, "tab:red", "with the bug"), (after, "tab:blue", "fixed")):
            ax.semilogy([max(r.local, floor) for r in report.rows], ".-", color=color, lw=1, ms=3, label=label)
        ax.semilogy([LOCAL_NOISE * r.noise for r in before.rows], "--", color="tab:orange", lw=1, label="criterion")
        evidence = before.causes[0] if before.causes else None
        where = before.first_local_divergence
        what = f"{evidence.residual:.1g} under the hypothesis vs {evidence.original:.2g}" if evidence else "no cause"
        ax.set_title(f"{cause}: first wrong op {where}; residual {what}", fontsize=9)
        ax.set_ylabel("local relative error")
        ax.set_xlabel("matched ops, in execution order")
        ax.legend(fontsize=8, loc="upper right")
        figures[f"porting_{cause.replace('.', '_')}.png"] = fig
    figures["porting_upsample_align_corners.png"] = _align_corners_figure(data, verify, LOCAL_NOISE)
    figures.update(_integer_figures(data, verify))
    return figures


def _before_after(title: str, before: list[float], after: list[float], criterion: list[float] | None, ylabel: str):
    fig = viz.figure(figsize=(10, 3.2), layout="constrained")
    ax = fig.add_subplot()
    floor = 1e-12
    ax.semilogy([max(v, floor) for v in before], ".-", color="tab:red", lw=1, ms=3, label="with the bug")
    ax.semilogy([max(v, floor) for v in after], ".-", color="tab:blue", lw=1, ms=3, label="fixed")
    if criterion is not None:
        ax.semilogy(criterion, "--", color="tab:orange", lw=1, label="criterion")
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("matched ops, in execution order")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def _align_corners_figure(data: Path, verify, criterion: float):
    """A DeepLab port whose model ends by resizing its logits with align_corners=True."""
    import torch

    spec = verify.spec_config("transformers", num_labels=21, output_stride=16, image_size=129)
    twin = verify.transformers_twin(verify.random_weights(spec, seed=0, task="segmentation"))

    class WithUpsample(torch.nn.Module):
        def __init__(self, align: bool) -> None:
            super().__init__()
            self.net, self.up = twin, torch.nn.Upsample(size=(129, 129), mode="bilinear", align_corners=align)

        def forward(self, x):
            return self.up(self.net(x).logits)

    image = data / "bird_segmentation.bmp"
    before = verify.check(WithUpsample(True), image, config=spec, task="segmentation")
    after = verify.check(WithUpsample(False), image, config=spec, task="segmentation")
    e = before.causes[0]
    title = (f"upsample.align_corners: first wrong op {before.first_local_divergence}; residual "
             f"{e.residual:.1g} under the hypothesis vs {e.original:.2g}")  # fmt: skip
    return _before_after(title, [r.local for r in before.rows], [r.local for r in after.rows],
                         [criterion * r.noise for r in before.rows], "local relative error")  # fmt: skip


def _integer_figures(data: Path, verify) -> dict:
    """An integer port with one op rounding once, and one with an input zero point off by one:
    the share of each op's integers that differ on the port's own inputs."""
    import npmnv2

    path = data / "mobilenet_v2_1.0_224_quant.tflite"
    model = npmnv2.QuantizedMobileNetV2.from_pretrained(path)
    pixels, _ = verify.tflite_input(path, data / "cat.bmp")
    faithful = verify.tflite_integer_tensors(path, pixels, reference_kernels=True)
    after = verify.check_integer(faithful, model, pixels.transpose(0, 3, 1, 2))
    figures = {}
    for cause, name in (("rounding.single", "layer.4.expand_1x1.convolution"),
                        ("zero_point.off_by_one", "layer.6.conv_3x3.convolution")):  # fmt: skip
        index = model.step_names().index(name)
        step = model.trace(pixels.transpose(0, 3, 1, 2), stop_at=name).steps[-1]
        tensors, port = {model.input_index: pixels.astype(np.int64)}, {}
        for i, op in enumerate(model.graph.ops):
            out = model.run_op(i, tensors)
            if i == index:
                x = tensors[op["inputs"][0]]
                hyp = verify.INTEGER_CATALOGUE[cause](model, i, x, step)
                out = hyp[-1][1]  # the port's way (zero point + 1, or one rounding)
            tensors[op["outputs"][0]] = out
            port[model.step_name(i)] = out.transpose(0, 3, 1, 2) if out.ndim == 4 else out
        before = verify.check_integer(port, model, pixels.transpose(0, 3, 1, 2))
        title = f"{cause}: first wrong op {before.first_local_divergence} (cause named: {before.cause})"
        figures[f"porting_{cause.replace('.', '_')}.png"] = _before_after(
            title, [r.local for r in before.rows], [r.local for r in after.rows], None,
            "share of integers that differ",
        )  # fmt: skip
    return figures


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "figures")
