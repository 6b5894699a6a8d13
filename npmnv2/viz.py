"""Pictures of MobileNetV2 at work (matplotlib). Every function returns a Figure; nothing calls plt.show().

Figures are `npmnv2.viz.Figure`: a `matplotlib.figure.Figure` made without pyplot (no GUI backend,
no global state) that shows itself as a PNG in Jupyter with no `%matplotlib` magic, through its
`_repr_png_`. `fig.savefig("out.png")` works anywhere.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping
from typing import Any

import matplotlib.figure
import matplotlib.patches
import numpy as np
from matplotlib.patches import FancyBboxPatch, Patch


class Figure(matplotlib.figure.Figure):
    """A matplotlib Figure that Jupyter (IPython) displays inline as a PNG, with no magic.

    A bare `matplotlib.figure.Figure` shows only its repr, `<Figure size ... with N Axes>`,
    unless pyplot's inline backend was switched on; this class carries its own PNG.
    """

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=90)
        return buffer.getvalue()


def figure(**kwargs: Any) -> Figure:
    """A new `Figure` (keywords as matplotlib's: figsize, layout, ...) for your own drawings."""
    kwargs.setdefault("layout", "constrained")
    return Figure(**kwargs)


def pascal_voc_palette(num_colors: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map: class k's RGB comes from interleaving the bits of k.

    Math: for bit j of k (j = 0, 1, 2, ... in groups of three), red gets bit 0, green bit 1 and
    blue bit 2 of each group, placed at bit (7 - j) of the colour; so class 1 is dark red
    (128, 0, 0), class 2 dark green, class 3 (bird) olive (128, 128, 0).

    Shapes: -> (num_colors, 3) uint8.

    >>> pascal_voc_palette(4).tolist()
    [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    """
    palette = np.zeros((num_colors, 3), dtype=np.uint8)
    for k in range(num_colors):
        label, shift, rgb = k, 7, [0, 0, 0]
        while label:
            for channel in range(3):
                rgb[channel] |= ((label >> channel) & 1) << shift
            label >>= 3
            shift -= 1
        palette[k] = rgb
    return palette


def colorize(class_map: np.ndarray) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 colours of the PASCAL VOC palette."""
    return pascal_voc_palette()[np.asarray(class_map).astype(np.int64) % 256]


def segmentation_overlay(
    image: np.ndarray,
    class_map: np.ndarray,
    id2label: Mapping[int, str] | None = None,
    *,
    alpha: float = 0.55,
    title: str | None = None,
) -> Figure:
    """The image with each pixel's class colour blended on top, and a legend of the classes present.

    Background (class 0) pixels are shown unchanged.

    Shapes: image (H, W, 3) uint8, class_map (H, W) ints of the same size.
    """
    image, class_map = np.asarray(image), np.asarray(class_map)
    if image.shape[:2] != class_map.shape:
        raise ValueError(
            f"segmentation_overlay: image {image.shape[:2]} and class map {class_map.shape} differ in size; "
            "post-process the logits with target_sizes=[image size]."
        )
    blended = (1 - alpha) * image.astype(np.float64) + alpha * colorize(class_map)
    background = (class_map == 0)[..., None]  # class 0 is left as it is: black would only darken the photo
    blended = np.where(background, image, blended)
    present = [int(k) for k in np.unique(class_map)]
    fig = Figure(figsize=(7, 7 * image.shape[0] / image.shape[1] + 0.6), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(blended.astype(np.uint8))
    ax.set_axis_off()
    palette = pascal_voc_palette()
    names = id2label or {}
    handles = [Patch(color=palette[k] / 255, label=f"{k} {names.get(k, '')}".strip()) for k in present]
    ax.legend(handles=handles, loc="upper right", fontsize=9, framealpha=0.8)
    ax.set_title(title or "segmentation: " + ", ".join(names.get(k, str(k)) for k in present))
    return fig


def segmentation_side_by_side(
    image: np.ndarray, predicted: np.ndarray, reference: np.ndarray, id2label: Mapping[int, str] | None = None
) -> Figure:
    """Image, predicted class map and reference class map side by side, with their agreement
    count / (a.size + b.size - count) in the title."""
    count = int((predicted == reference).sum())
    score = count / (predicted.size + reference.size - count)
    fig = Figure(figsize=(12, 4.4), layout="constrained")
    for i, (picture, name) in enumerate(
        [(image, "image"), (colorize(predicted), "predicted"), (colorize(reference), "reference")]
    ):
        ax = fig.add_subplot(1, 3, i + 1)
        ax.imshow(picture)
        ax.set_title(name)
        ax.set_axis_off()
    present = sorted(set(np.unique(predicted)) | set(np.unique(reference)))
    palette, names = pascal_voc_palette(), id2label or {}
    fig.legend(
        handles=[Patch(color=palette[k] / 255, label=f"{k} {names.get(int(k), '')}".strip()) for k in present],
        loc="outside lower center",
        ncol=min(len(present), 8),
    )
    fig.suptitle(f"agreement with the reference: {score:.3f}")
    return fig


# ============================================================================ feature maps and statistics


def _step_and_array(source: Any, name: str | None) -> tuple[str, np.ndarray]:
    """(name, NCHW array) from a Step, a Trace and a name, or an array and a name."""
    if hasattr(source, "steps") and name is not None:
        return name, source[name]
    if hasattr(source, "output") and hasattr(source, "name"):
        if source.output is None:
            raise ValueError(f"step {source.name!r} was not kept; trace with layers=[{source.name!r}].")
        return source.name, source.output
    array = np.asarray(source)
    if array.ndim != 4:
        raise ValueError(f"feature maps need an NCHW tensor, got shape {array.shape}.")
    return name or "tensor", array


def feature_map_grid(
    source: Any, name: str | None = None, *, count: int = 16, rank_by: str = "mean", image: int = 0, cols: int = 8
) -> Figure:
    """The `count` most active channels of one traced tensor, as a grid of images.

    source: a Step, a Trace (with `name`), or an NCHW array. rank_by: "mean" (mean activation) or
    "energy" (mean square). The title gives the layer name, the shape and the value range.
    """
    name, array = _step_and_array(source, name)
    if rank_by not in ("mean", "energy"):
        raise ValueError(f"feature_map_grid: rank_by must be 'mean' or 'energy', got {rank_by!r}.")
    if array.ndim != 4:
        raise ValueError(
            f"feature_map_grid: {name!r} is a {array.ndim}-D tensor {tuple(array.shape)}, not feature maps "
            "(N, C, H, W); its values are one number per class or channel: plot them as bars, or pick a convolution "
            "or block step."
        )
    if not 0 <= image < array.shape[0]:
        raise ValueError(f"feature_map_grid: image={image} is not in this batch of {array.shape[0]}.")
    maps = array[image]  # (C, H, W)
    score = maps.mean(axis=(1, 2)) if rank_by == "mean" else (maps.astype(np.float64) ** 2).mean(axis=(1, 2))
    order = np.argsort(-score, kind="stable")[: min(count, maps.shape[0])]
    rows = -(-len(order) // cols)
    fig = Figure(figsize=(1.6 * cols, 1.7 * rows + 0.6), layout="constrained")
    lo, hi = float(maps[order].min()), float(maps[order].max())
    for i, channel in enumerate(order):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(maps[channel], cmap="viridis", vmin=lo, vmax=hi)
        ax.set_title(f"ch {channel}", fontsize=8)
        ax.set_axis_off()
    fig.suptitle(
        f"{name}  {tuple(array.shape)}  range [{float(array.min()):.3g}, {float(array.max()):.3g}]  "
        f"top {len(order)} channels by {rank_by}",
        fontsize=10,
    )
    return fig


def activation_statistics(trace: Any, *, samples: int = 4000, seed: int = 0) -> Figure:
    """Per block, from a trace that kept its tensors: what ReLU6 does inside the block, and what the
    linear bottleneck keeps.

    Top: the distribution of the expansion and depthwise outputs after ReLU6 (a random sample of
    `samples` values). Middle: the exact share of those values that ReLU6 clipped to 0 (negative
    before it) and to 6. Bottom: the projection outputs, which have no activation, and the share
    that is negative -- the values a ReLU there would erase (the paper's section 3.2).
    """
    rng = np.random.default_rng(seed)
    blocks = [s.name for s in trace.steps if s.kind in ("residual_add", "block_output")]
    activated, linear, labels, zeros, at6 = [], [], [], [], []
    for block in blocks:
        act = [
            s for s in trace.steps if s.name.startswith(block + ".") and s.kind == "activation" and s.output is not None
        ]
        proj = [s for s in trace.steps if s.name.startswith(block + ".reduce_1x1.") and s.output is not None]
        if not act or not proj:
            continue
        values = np.concatenate([s.output.ravel() for s in act])
        labels.append(block.replace("layer.", ""))
        activated.append(rng.choice(values, samples))
        zeros.append(float(np.mean(values == 0)))
        at6.append(float(np.mean(values >= 6)))
        linear.append(rng.choice(proj[-1].output.ravel(), samples))
    if not labels:
        raise ValueError(
            "activation_statistics needs a trace that kept the block activations (trace with layers=None)."
        )
    fig = Figure(figsize=(max(9, 0.65 * len(labels)), 9), layout="constrained")
    top, middle, bottom = fig.subplots(3, 1, sharex=True, height_ratios=[3, 2, 3])
    positions = np.arange(len(labels))
    top.violinplot(activated, positions, showextrema=False)
    top.axhline(6, color="crimson", lw=1, ls="--", label="ReLU6 ceiling (6)")
    top.set_ylabel("expansion + depthwise\noutputs, after ReLU6")
    top.set_ylim(-0.3, 6.6)
    top.legend(loc="upper right", fontsize=8)
    middle.bar(positions - 0.2, [100 * z for z in zeros], 0.4, color="#6baed6", label="clipped to 0 (were negative)")
    middle.bar(positions + 0.2, [100 * a for a in at6], 0.4, color="crimson", label="clipped to 6")
    for x, z, a6 in zip(positions, zeros, at6, strict=True):
        middle.text(x - 0.2, 100 * z + 2, f"{z:.0%}", ha="center", fontsize=7)
        middle.text(x + 0.2, 100 * a6 + 2, f"{a6:.1%}" if a6 else "0", ha="center", fontsize=7, color="crimson")
    middle.set_ylim(0, 110)
    middle.set_ylabel("% of values\nReLU6 clipped")
    middle.legend(loc="upper right", fontsize=8, ncols=2)
    bottom.violinplot(linear, positions, showextrema=False)
    bottom.axhline(0, color="grey", lw=0.8)
    neg = [float(np.mean(v < 0)) for v in linear]
    low, high = bottom.get_ylim()
    bottom.set_ylim(low, high + 0.12 * (high - low))
    for x, frac in zip(positions, neg, strict=True):
        bottom.text(x, high + 0.04 * (high - low), f"{frac:.0%} < 0", ha="center", fontsize=7)
    bottom.set_ylabel("projection outputs\n(linear bottleneck)")
    bottom.set_xticks(positions, labels, fontsize=8)
    bottom.set_xlabel("block")
    fig.suptitle(
        "Inside each block: ReLU6 clips the wide tensors (top, middle); the thin bottleneck keeps its negative "
        "values (bottom)"
    )
    return fig


def padding_picture(step: Any, *, channel: int | None = None, image: int = 0) -> Figure:
    """The padding a traced convolution step really applied, on its real input.

    Draws one channel of the step's (unpadded) input with the zero border the layer added around it
    (hatched), the K_eff x K_eff window of the first and of the last output pixel, and a dot on
    the centre of every window the stride visits. Under TF SAME padding with stride 2 an even input
    is padded only at the bottom and right: the picture shows why (the last window needs one more
    row and column; none is needed at the top).

    step: a convolution `Step` of a trace that kept its tensors (`trace.step(name)`).
    channel: which input channel to show (default: the one with the largest mean).
    """
    if step.kind != "convolution" or not step.inputs:
        raise ValueError(
            f"padding_picture needs a convolution step whose tensors were kept, got {step.name!r} ({step.kind}); "
            "trace with layers=None or layers=[name]."
        )
    x = np.asarray(step.inputs[0][image], dtype=np.float64)  # (C, H, W)
    c = int(x.mean(axis=(1, 2)).argmax()) if channel is None else channel
    top, bottom, left, right = step.attrs["padding"]
    k, s, d = step.attrs["kernel_size"], step.attrs["stride"], step.attrs["dilation"]
    k_eff = d * (k - 1) + 1
    h, w = x.shape[1:]
    ho, wo = step.output_shape[2:]
    padded = np.full((h + top + bottom, w + left + right), np.nan)
    padded[top : top + h, left : left + w] = x[c]
    fig = Figure(figsize=(7.5, 7.8), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(padded, cmap="viridis")
    for r in range(padded.shape[0]):  # the zero border: hatched cells
        for q in range(padded.shape[1]):
            if np.isnan(padded[r, q]):
                cell = matplotlib.patches.Rectangle((q - 0.5, r - 0.5), 1, 1, fill=False, hatch="///", ec="crimson")
                ax.add_patch(cell)
    ax.add_patch(matplotlib.patches.Rectangle((left - 0.5, top - 0.5), w, h, fill=False, ec="white", lw=1.5))
    centres = [(y * s + (k_eff - 1) / 2, xx * s + (k_eff - 1) / 2) for y in range(ho) for xx in range(wo)]
    ax.scatter([q for _, q in centres], [r for r, _ in centres], s=10, c="white", edgecolors="k", lw=0.5)
    corners = ((0, 0, "orange", "first output pixel"), (ho - 1, wo - 1, "crimson", "last output pixel"))
    for y, xx, colour, label in corners:
        ax.add_patch(
            matplotlib.patches.Rectangle(
                (xx * s - 0.5, y * s - 0.5), k_eff, k_eff, fill=False, ec=colour, lw=2.5, label=f"window of the {label}"
            )
        )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.04), ncols=2, fontsize=9, frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    how = "TF SAME" if step.attrs.get("tf_padding") else "PyTorch symmetric"
    ax.set_title(
        f"{step.name}, channel {c}: {h}x{w} input, {k}x{k} kernel, stride {s}, dilation {d}\n"
        f"{how} padding top {top}, bottom {bottom}, left {left}, right {right} (hatched) -> {ho}x{wo} outputs "
        f"(dots: window centres)",
        fontsize=10,
    )
    return fig


# ============================================================================ architecture pictures


def inverted_residual_diagram(model: Any, block: str = "layer.3", image_size: int | tuple[int, int] = 224) -> Figure:
    """One block drawn from the model itself: expand 1x1 -> depthwise 3x3 -> project 1x1 (linear)
    [-> + input], with the real channel counts, strides, dilations, padding and feature-map sizes
    of an `image_size` input (traced, so every number is what the network computes)."""
    from .layer_kinds import layer_kind

    blocks = {b.name: b for b in model.arch.blocks}
    if block not in blocks:
        from .trace import unknown_name_error

        raise unknown_name_error(block, list(blocks), "block")
    spec = blocks[block]
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    trace = model.trace(np.zeros((1, model.config.num_channels, h, w), model.dtype), layers=[], stop_at=block)
    shapes = {s.name: s.output_shape for s in trace.steps}
    boxes = [("input", trace.step(spec.convs[0].conv_step).input_shapes[0], "#dddddd")]
    for conv in spec.convs:
        step = trace.step(conv.conv_step)
        last = [n for n in shapes if n.startswith(conv.name + ".")][-1]
        role = layer_kind(conv).role(conv)
        detail = f"stride {conv.stride}" + (f", dilation {conv.dilation}" if conv.dilation > 1 else "")
        if conv.kernel_size > 1:
            detail += "\npad top,bottom,left,right = " + ",".join(map(str, step.attrs["padding"]))
        act = f"BN + {conv.activation}" if conv.activation else "BN, no activation"
        boxes.append((f"{role}\n{detail}\n{act}", shapes[last], layer_kind(conv).colour))
    if spec.residual:
        boxes.append(("output = input + projection", shapes[block], "#dddddd"))
    width = 2.3
    fig = Figure(figsize=(width * len(boxes) + 1.2, 3.9), layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlim(0, len(boxes) * width + 0.4)
    ax.set_ylim(-1.9, 2.4)
    ax.set_axis_off()
    widest = max(shape[1] for _, shape, _ in boxes)
    lefts = [i * width + 0.2 + (0.4 if spec.residual and i == len(boxes) - 1 else 0) for i in range(len(boxes))]
    for i, (label, shape, colour) in enumerate(boxes):
        x = lefts[i]
        height = 0.4 + 1.4 * min(1.0, shape[1] / widest)  # taller = more channels
        ax.add_patch(FancyBboxPatch((x, 0.9 - height / 2), 1.7, height, boxstyle="round,pad=0.05", fc=colour, ec="k"))
        ax.text(x + 0.85, 0.9, f"{shape[1]} x {shape[2]} x {shape[3]}", ha="center", va="center", fontsize=9)
        ax.text(x + 0.85, -0.3, label, ha="center", va="top", fontsize=8)
        if i and not (spec.residual and i == len(boxes) - 1):
            ax.annotate("", (x, 0.9), (lefts[i - 1] + 1.75, 0.9), arrowprops={"arrowstyle": "->"})
    if spec.residual:
        add_x = lefts[-1] - 0.35  # the add node between the projection and the output
        ax.add_patch(matplotlib.patches.Circle((add_x, 0.9), 0.18, fc="white", ec="crimson", lw=1.5))
        ax.text(add_x, 0.9, "+", ha="center", va="center", fontsize=13, color="crimson")
        ax.annotate("", (add_x - 0.18, 0.9), (lefts[-2] + 1.75, 0.9), arrowprops={"arrowstyle": "->"})
        ax.annotate("", (lefts[-1], 0.9), (add_x + 0.18, 0.9), arrowprops={"arrowstyle": "->"})
        # the skip connection: from the input box, over the block, down into the add node
        ax.plot([lefts[0] + 0.85, lefts[0] + 0.85, add_x], [1.75, 2.05, 2.05], color="crimson", lw=1.2)
        ax.annotate("", (add_x, 1.08), (add_x, 2.05), arrowprops={"arrowstyle": "->", "color": "crimson"})
        ax.text(
            (lefts[0] + add_x) / 2 + 0.4,
            2.12,
            "residual: the input is added back (stride 1, same channels)",
            ha="center",
            fontsize=8,
            color="crimson",
        )
    else:
        ax.text(
            len(boxes) * width / 2,
            2.12,
            "no residual: the stride or the channel count changes",
            ha="center",
            fontsize=8,
        )
    fig.suptitle(f"{block}: inverted residual with a linear bottleneck, real shapes for a {h}x{w} input")
    return fig


def receptive_field_table(model_or_config: Any, image_size: int = 224) -> dict[str, tuple[int, int, int]]:
    """{conv layer name: (receptive field, cumulative stride, feature map size)} of the backbone,
    in execution order: how many input pixels one output pixel of the layer sees, how far apart
    in the input two neighbouring output pixels are, and the layer's output side.

    Math: jump_l = jump_{l-1} * s_l;  rf_l = rf_{l-1} + (K_eff,l - 1) * jump_{l-1},  K_eff = d (K - 1) + 1.

    >>> from npmnv2 import MobileNetV2Config
    >>> receptive_field_table(MobileNetV2Config())["layer.0.conv_3x3"]
    (11, 4, 56)
    """
    from .architecture import backbone_spec
    from .configuration_mobilenet_v2 import MobileNetV2Config

    config = model_or_config if isinstance(model_or_config, MobileNetV2Config) else model_or_config.config
    arch = backbone_spec(config)
    table, rf, jump, size = {}, 1, 1, image_size
    for conv in [c for b in arch.blocks for c in b.convs] + [arch.conv_1x1]:
        k_eff = conv.dilation * (conv.kernel_size - 1) + 1
        rf += (k_eff - 1) * jump
        jump *= conv.stride
        size = -(-size // conv.stride)
        table[conv.name] = (rf, jump, size)
    return table


def receptive_fields(
    model_or_config: Any, image_size: int = 224, output_strides: tuple[int, ...] = (8, 16, 32)
) -> Figure:
    """Receptive field, cumulative stride and feature resolution per conv layer, and how the
    output stride (dilation instead of stride in later blocks) changes the resolution.

    Math: jump_l = jump_{l-1} * s_l;  rf_l = rf_{l-1} + (K_eff,l - 1) * jump_{l-1},  K_eff = d (K - 1) + 1.
    """
    from .configuration_mobilenet_v2 import MobileNetV2Config

    config = model_or_config if isinstance(model_or_config, MobileNetV2Config) else model_or_config.config
    fig = Figure(figsize=(11, 9.5), layout="constrained")
    ax_rf, ax_stride, ax_res = fig.subplots(3, 1, sharex=True)
    # Where curves coincide (the receptive field does not depend on the output stride) they must
    # all stay visible: each output stride gets its own width, dash and marker, widest first.
    styles = [
        {"lw": 5, "alpha": 0.45, "ls": "-", "marker": "o", "ms": 7},
        {"lw": 2.5, "alpha": 0.9, "ls": "--", "marker": "s", "ms": 4},
        {"lw": 1, "alpha": 1.0, "ls": ":", "marker": ".", "ms": 4},
    ]
    for i, os_ in enumerate(output_strides):
        style = styles[i % len(styles)]
        table = receptive_field_table(_with_output_stride(config, os_), image_size)
        convs = list(table)
        rfs, jumps, sizes = ([row[k] for row in table.values()] for k in range(3))
        ax_rf.plot(rfs, label=f"output stride {os_}", **style)
        ax_stride.plot(jumps, label=f"output stride {os_}", **style)
        ax_res.plot(sizes, label=f"output stride {os_}", **style)
    ax_rf.axhline(image_size, color="grey", ls=":", lw=1, label=f"input size {image_size}")
    ax_rf.set_ylabel("receptive field (pixels)")
    ax_rf.set_yscale("log")
    ax_rf.legend(fontsize=8, loc="lower right")
    ax_rf.text(
        0.01,
        0.95,
        "the curves coincide: a dilated conv sees as far as the strided one it replaces",
        transform=ax_rf.transAxes,
        fontsize=9,
        va="top",
    )
    ax_stride.set_ylabel("cumulative stride")
    ax_stride.set_yscale("log", base=2)
    ax_stride.legend(fontsize=8)
    ax_res.set_ylabel("feature map size")
    ax_res.set_yscale("log", base=2)
    ax_res.set_xlabel("conv layer (execution order)")
    ax_res.set_xticks(
        range(0, len(convs), 3),
        [
            name.replace("layer.", "L")
            .replace(".conv_3x3", ".dw")
            .replace(".expand_1x1", ".ex")
            .replace(".reduce_1x1", ".pr")
            for name in convs
        ][::3],
        rotation=60,
        fontsize=7,
    )
    ax_res.legend(fontsize=8)
    fig.suptitle(
        f"Receptive field, stride and feature-map size per conv layer, for each output stride\n"
        f"(depth multiplier {config.depth_multiplier}, {image_size}x{image_size} input)"
    )
    return fig


def _with_output_stride(config: Any, output_stride: int) -> Any:
    from dataclasses import replace

    return replace(config, output_stride=output_stride, extra=dict(config.extra))


# ============================================================================ comparisons


def error_per_layer_figure(report: Any) -> Figure:
    """A `VerifyReport` per op: total error (npmnv2's own output against the port's) and local
    error (npmnv2's op on the port's own inputs), relative RMS on a log scale, with the local
    criterion (the op's rounding noise) drawn, and the first op wrong on its own marked."""
    rows = report.rows
    if not rows:
        raise ValueError("error_per_layer_figure: the report has no matched ops.")
    criterion = report.criterion  # the multiple of the rounding noise an op may reach
    floor = 1e-12  # exact agreement drawn here
    x = np.arange(len(rows))
    fig = Figure(figsize=(12, 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.semilogy(x, [max(r.total, floor) for r in rows], ".-", color="tab:gray", label="total error")
    ax.semilogy(x, [max(r.local, floor) for r in rows], ".-", color="tab:blue", label="local error (own inputs)")
    ax.semilogy(x, [max(criterion * r.noise, floor) for r in rows], "--", color="tab:orange", lw=1,
                label=f"criterion: {criterion:g} x rounding noise")  # fmt: skip
    wrong = [i for i, r in enumerate(rows) if not r.local_ok]
    if wrong:
        ax.semilogy(wrong, [max(rows[i].local, floor) for i in wrong], "o", color="tab:red", label="wrong on its own")
    step = max(1, len(rows) // 40)
    ax.set_xticks(x[::step], [r.name for r in rows][::step], rotation=70, fontsize=6)
    ax.set_ylabel("relative RMS error")
    ax.legend(fontsize=8, loc="upper left")
    title = report.verdict()
    ax.set_title(title if len(title) < 110 else title[:107] + "...", fontsize=10)
    return fig


def comparison_plot(comparison: Any) -> Figure:
    """Per-layer differences of a `compare` result, its verdict and the first divergence.

    Against a float reference: max |diff| on a log scale, with the tolerance. Against a quantized
    model (TFLite): the relative RMS error per layer with the noise criterion's line, and the
    differences in quantization steps (max and RMS), so rounding noise and a real bug look
    different.
    """
    rows = comparison.rows
    if not rows:
        raise ValueError("comparison_plot: the comparison has no matched layers.")
    x = np.arange(len(rows))
    colours = ["tab:blue" if r.ok else "crimson" for r in rows]
    if not comparison.quantized:
        floor = 1e-12  # exact agreement (a difference of 0) is drawn at the floor
        diffs = np.array([max(r.max_abs_diff, floor) for r in rows])
        fig = Figure(figsize=(max(8, 0.08 * len(rows) + 4), 4.5), layout="constrained")
        ax = fig.add_subplot()
        ax.scatter(x, diffs, c=colours, s=12)
        ax.plot(x, diffs, lw=0.6, color="grey")
        ax.set_yscale("log")
        ax.set_ylim(floor / 3, max(10.0, float(diffs.max()) * 10))
        ax.set_ylabel("max |ours - reference|\n(exact: drawn at 1e-12)")
        ax.set_xlabel("layer (execution order)")
        _mark_divergence(ax, comparison, diffs)
        verdict = "no divergence" if comparison.first_divergence is None else "DIVERGES"
        ax.set_title(
            f"ours vs reference, layer by layer: {verdict} (tolerance {comparison.tolerance:g} x max(1, |ref|))"
        )
        return fig
    from .compare import QUANT_RELATIVE_RMS

    rel = np.array([r.relative_rms for r in rows])
    fig = Figure(figsize=(max(9, 0.1 * len(rows) + 4), 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.scatter(x, rel, c=colours, s=14, zorder=3)
    top.plot(x, rel, lw=0.6, color="grey")
    top.axhline(QUANT_RELATIVE_RMS, color="crimson", ls=":", lw=1, label=f"noise criterion ({QUANT_RELATIVE_RMS:g})")
    top.set_ylabel("relative RMS error\nrms(ours - ref) / rms(ref)")
    top.set_ylim(0, max(0.3, 1.15 * float(rel.max())))
    top.legend(loc="upper left", fontsize=8)
    _mark_divergence(top, comparison, rel)
    max_steps = np.array([r.max_steps if r.max_steps is not None else np.nan for r in rows])
    rms_steps = np.array([r.rms_steps if r.rms_steps is not None else np.nan for r in rows])
    bottom.plot(x, max_steps, ".-", lw=0.8, color="tab:orange", label="max |diff| in quantization steps")
    bottom.plot(x, rms_steps, ".-", lw=0.8, color="tab:purple", label="rms diff in quantization steps")
    bottom.set_yscale("log")
    bottom.set_ylabel("quantization steps")
    bottom.set_xlabel("layer (execution order)")
    bottom.legend(loc="upper left", fontsize=8)
    if comparison.first_divergence is None:
        title = "float model vs the integer TFLite model: every layer within quantization noise"
    else:
        title = f"float model vs the integer TFLite model: a real difference from {comparison.first_divergence}"
    fig.suptitle(title)
    return fig


def _mark_divergence(ax: Any, comparison: Any, values: np.ndarray) -> None:
    if comparison.first_divergence:
        i = next(k for k, r in enumerate(comparison.rows) if r.name == comparison.first_divergence)
        ax.axvline(i, color="crimson", ls="--", lw=1)
        ax.text(
            i + 0.5,
            0.5,
            f"first divergence:\n{comparison.first_divergence}",
            transform=ax.get_xaxis_transform(),
            color="crimson",
            fontsize=9,
            va="center",
        )


# ============================================================================ explanations (gradients)


def _model_input(model: Any, image: Any, processor: Any) -> tuple[np.ndarray, np.ndarray]:
    """(pixel_values (1, 3, H, W), the same image as uint8 (H, W, 3), as the model saw it)."""
    from .image_processing_mobilenet_v2 import MobileNetV2ImageProcessor

    processor = processor or MobileNetV2ImageProcessor()
    if isinstance(image, np.ndarray) and image.ndim == 4:
        pixel_values = image.astype(model.dtype)
    else:
        pixel_values = np.asarray(processor(image)["pixel_values"], model.dtype)
    shown = pixel_values[0].transpose(1, 2, 0).astype(np.float64)  # (H, W, 3)
    if getattr(processor, "do_normalize", False):
        shown = shown * np.asarray(processor.image_std) + np.asarray(processor.image_mean)
    if getattr(processor, "do_rescale", False):
        shown = shown / processor.rescale_factor / 255
    return pixel_values, (np.clip(shown, 0, 1) * 255).round().astype(np.uint8)


def _explanation_figure(model: Any, shown: np.ndarray, explanation: Any) -> Figure:
    import matplotlib

    label = model.config.id2label.get(explanation.targets[0], str(explanation.targets[0]))
    heat = explanation.heatmap[0]
    method = {"gradcam": f"Grad-CAM at {explanation.layer}", "saliency": "saliency |d score / d pixel|"}
    fig = Figure(figsize=(11.5, 4.2), layout="constrained")
    axes = fig.subplots(1, 3)
    axes[0].imshow(shown)
    axes[0].set_title("input, as the model saw it")
    colours = matplotlib.colormaps["inferno" if explanation.method == "saliency" else "jet"](heat)[..., :3]
    blend = 0.5 if explanation.method == "gradcam" else 0.7
    axes[1].imshow(((1 - blend) * shown / 255 + blend * colours).clip(0, 1))
    axes[1].set_title(textwrap.fill(f"class {explanation.targets[0]} ({label})", 40))
    image = axes[2].imshow(heat, cmap="inferno" if explanation.method == "saliency" else "jet", vmin=0, vmax=1)
    axes[2].set_title(method[explanation.method])
    fig.colorbar(image, ax=axes[2], fraction=0.046, pad=0.04, label="relative importance")
    for ax in axes:
        ax.set_axis_off()
    score = "logit" if model.task == "classification" else "logit summed over its pixels"
    fig.suptitle(f"why class {explanation.targets[0]} ({label}): its {score} is {explanation.loss:.3f}")
    return fig


def grad_cam(model: Any, image: Any, target: Any = None, *, layer: str | None = None, processor: Any = None) -> Figure:
    """Grad-CAM (Selvaraju et al. 2017): which regions of `image` made the model score `target`.

    image: a path, PIL image, HWC array, or pixel_values (1, 3, H, W) already preprocessed.
    target: None for the predicted class, a class id, or for DeepLab (class, boolean mask of the
    logits' grid). layer: the feature map to weight (default `gradients.default_cam_layer`).
    processor: the preprocessing the model expects (default `MobileNetV2ImageProcessor()`).
    The numbers behind the picture: `npmnv2.gradients.grad_cam`.
    """
    from . import gradients

    pixel_values, shown = _model_input(model, image, processor)
    return _explanation_figure(model, shown, gradients.grad_cam(model, pixel_values, target, layer=layer))


def saliency(model: Any, image: Any, target: Any = None, *, processor: Any = None) -> Figure:
    """A saliency map (Simonyan et al. 2013): how strongly each pixel of `image` moves the score
    of `target` (arguments as `grad_cam`). The numbers: `npmnv2.gradients.saliency`."""
    from . import gradients

    pixel_values, shown = _model_input(model, image, processor)
    return _explanation_figure(model, shown, gradients.saliency(model, pixel_values, target))
