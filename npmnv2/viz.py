"""Pictures of MobileNetV2 at work (matplotlib). Every function returns a Figure; nothing calls plt.show().

Figures are made with `matplotlib.figure.Figure` directly, so no GUI backend is needed:
`fig.savefig("out.png")` works anywhere, and Jupyter displays a returned Figure inline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Patch


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
    """Per block: the distribution of the expansion/depthwise outputs (after ReLU6) and of the
    linear bottleneck outputs (the projection, no activation).

    The upper panel marks the ReLU6 ceiling at 6; the lower shows that bottleneck values keep
    their sign -- the information a ReLU there would destroy (the paper's section 3.2).
    """
    rng = np.random.default_rng(seed)
    blocks = [s.name for s in trace.steps if s.kind in ("residual_add", "block_output")]
    activated, linear, labels = [], [], []
    for block in blocks:
        act = [
            s for s in trace.steps if s.name.startswith(block + ".") and s.kind == "activation" and s.output is not None
        ]
        proj = [s for s in trace.steps if s.name.startswith(block + ".reduce_1x1.") and s.output is not None]
        if not act or not proj:
            continue
        labels.append(block.replace("layer.", ""))
        activated.append(rng.choice(np.concatenate([s.output.ravel() for s in act]), samples))
        linear.append(rng.choice(proj[-1].output.ravel(), samples))
    if not labels:
        raise ValueError(
            "activation_statistics needs a trace that kept the block activations (trace with layers=None)."
        )
    fig = Figure(figsize=(max(8, 0.6 * len(labels)), 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    positions = np.arange(len(labels))
    top.violinplot(activated, positions, showextrema=False)
    top.axhline(6, color="crimson", lw=1, ls="--", label="ReLU6 saturation (6)")
    at6 = [float(np.mean(a >= 6)) for a in activated]
    for x, frac in zip(positions, at6, strict=True):
        top.text(x, 6.2, f"{frac:.0%}", ha="center", fontsize=7, color="crimson")
    top.set_ylabel("expansion + depthwise\n(after ReLU6)")
    top.legend(loc="upper left", fontsize=8)
    bottom.violinplot(linear, positions, showextrema=False)
    bottom.axhline(0, color="grey", lw=0.8)
    neg = [float(np.mean(v < 0)) for v in linear]
    for x, frac in zip(positions, neg, strict=True):
        bottom.text(x, bottom.get_ylim()[0], f"{frac:.0%}<0", ha="center", va="bottom", fontsize=7)
    bottom.set_ylabel("linear bottleneck\n(projection, no activation)")
    bottom.set_xticks(positions, labels, fontsize=8)
    bottom.set_xlabel("block")
    fig.suptitle("activation statistics per block (random sample of values)")
    return fig


# ============================================================================ architecture pictures


def inverted_residual_diagram(model: Any, block: str = "layer.3", image_size: int | tuple[int, int] = 224) -> Figure:
    """One block drawn from the model itself: expand 1x1 -> depthwise 3x3 -> project 1x1 (linear),
    with the real channel counts, strides, dilations and feature-map sizes at `image_size`."""
    names = [b.name for b in (model.arch.stem, *model.arch.layers)]
    if block not in names:
        from .trace import unknown_name_error

        raise unknown_name_error(block, names, "block")
    spec = next(b for b in (model.arch.stem, *model.arch.layers) if b.name == block)
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    trace = model.trace(np.zeros((1, model.config.num_channels, h, w), model.dtype), layers=[], stop_at=block)
    shapes = {s.name: s.output_shape for s in trace.steps}
    first = trace.step(f"{spec.convs[0].name}.convolution")
    boxes = [("input", first.input_shapes[0], "#dddddd")]
    colours = {"pointwise": "#9ecae1", "depthwise": "#fdae6b", "conv": "#a1d99b"}
    for conv in spec.convs:
        last = [n for n in shapes if n.startswith(conv.name + ".")][-1]
        what = {"pointwise": "1x1 conv", "depthwise": "3x3 depthwise", "conv": "3x3 conv"}[conv.kind]
        role = "expand" if "expand" in conv.name else "project (linear)" if "reduce" in conv.name else what
        extra = f", s={conv.stride}" + (f", d={conv.dilation}" if conv.dilation > 1 else "")
        act = conv.activation or "no activation"
        boxes.append((f"{role}\n{what}{extra}\n+ BN, {act}", shapes[last], colours[conv.kind]))
    fig = Figure(figsize=(2.3 * len(boxes) + 1, 3.6), layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlim(0, len(boxes) * 2.3)
    ax.set_ylim(-1.6, 2.2)
    ax.set_axis_off()
    for i, (label, shape, colour) in enumerate(boxes):
        x = i * 2.3 + 0.2
        height = 0.4 + 1.4 * min(1.0, shape[1] / max(s[1][1] for s in boxes))  # taller = more channels
        ax.add_patch(FancyBboxPatch((x, 0.9 - height / 2), 1.7, height, boxstyle="round,pad=0.05", fc=colour, ec="k"))
        ax.text(x + 0.85, 0.9, f"{shape[1]} x {shape[2]} x {shape[3]}", ha="center", va="center", fontsize=9)
        ax.text(x + 0.85, -0.35, label, ha="center", va="top", fontsize=8)
        if i:
            ax.annotate("", (x, 0.9), (x - 0.6, 0.9), arrowprops={"arrowstyle": "->"})
    if spec.residual:
        ax.annotate(
            "",
            (len(boxes) * 2.3 - 0.2, 2.0),
            (0.2 + 0.85, 2.0),
            arrowprops={"arrowstyle": "->", "connectionstyle": "arc3,rad=0", "color": "crimson"},
        )
        ax.text(
            len(boxes) * 1.15,
            2.05,
            "residual: input + projection (stride 1, same channels)",
            ha="center",
            fontsize=8,
            color="crimson",
        )
    else:
        ax.text(len(boxes) * 1.15, 2.05, "no residual (stride or channel count changes)", ha="center", fontsize=8)
    fig.suptitle(f"{block}: inverted residual with linear bottleneck, input {h}x{w}")
    return fig


def receptive_fields(
    model_or_config: Any, image_size: int = 224, output_strides: tuple[int, ...] = (8, 16, 32)
) -> Figure:
    """Receptive field, cumulative stride and feature resolution per conv layer, and how the
    output stride (dilation instead of stride in later blocks) changes the resolution.

    Math: jump_l = jump_{l-1} * s_l;  rf_l = rf_{l-1} + (K_eff,l - 1) * jump_{l-1},  K_eff = d (K - 1) + 1.
    """
    from .architecture import backbone_spec
    from .configuration_mobilenet_v2 import MobileNetV2Config

    config = model_or_config if isinstance(model_or_config, MobileNetV2Config) else model_or_config.config
    fig = Figure(figsize=(11, 9), layout="constrained")
    ax_rf, ax_stride, ax_res = fig.subplots(3, 1, sharex=True)
    for os_ in output_strides:
        arch = backbone_spec(_with_output_stride(config, os_))
        convs = [c for b in (arch.stem, *arch.layers) for c in b.convs] + [arch.conv_1x1]
        rf, jump, size, rfs, jumps, sizes = 1, 1, image_size, [], [], []
        for conv in convs:
            k_eff = conv.dilation * (conv.kernel_size - 1) + 1
            rf += (k_eff - 1) * jump
            jump *= conv.stride
            size = -(-size // conv.stride)
            rfs.append(rf)
            jumps.append(jump)
            sizes.append(size)
        ax_rf.plot(rfs, marker=".", label=f"output stride {os_}")
        ax_stride.plot(jumps, marker=".", label=f"output stride {os_}")
        ax_res.plot(sizes, marker=".", label=f"output stride {os_}")
    ax_rf.axhline(image_size, color="grey", ls=":", lw=1, label=f"input size {image_size}")
    ax_rf.set_ylabel("receptive field (pixels)")
    ax_rf.set_yscale("log")
    ax_rf.legend(fontsize=8)
    ax_stride.set_ylabel("cumulative stride")
    ax_stride.set_yscale("log", base=2)
    ax_stride.legend(fontsize=8)
    ax_res.set_ylabel("feature map size")
    ax_res.set_yscale("log", base=2)
    ax_res.set_xlabel("conv layer (execution order)")
    ax_res.set_xticks(
        range(0, len(convs), 3),
        [
            c.name.replace("layer.", "L")
            .replace(".conv_3x3", ".dw")
            .replace(".expand_1x1", ".ex")
            .replace(".reduce_1x1", ".pr")
            for c in convs
        ][::3],
        rotation=60,
        fontsize=7,
    )
    ax_res.legend(fontsize=8)
    fig.suptitle(
        f"receptive field and resolution per layer "
        f"(depth multiplier {config.depth_multiplier}, {image_size}x{image_size})"
    )
    return fig


def _with_output_stride(config: Any, output_stride: int) -> Any:
    from dataclasses import replace

    return replace(config, output_stride=output_stride, extra=dict(config.extra))


# ============================================================================ comparisons


def comparison_plot(comparison: Any) -> Figure:
    """Per-layer max |diff| of a `compare` result on a log scale, the tolerance and the first divergence."""
    rows = comparison.rows
    if not rows:
        raise ValueError("comparison_plot: the comparison has no matched layers.")
    diffs = np.array([max(r.max_abs_diff, 1e-30) for r in rows])
    fig = Figure(figsize=(max(8, 0.08 * len(rows) + 4), 4.5), layout="constrained")
    ax = fig.add_subplot()
    colours = ["tab:blue" if r.ok else "crimson" for r in rows]
    ax.scatter(range(len(rows)), diffs, c=colours, s=12)
    ax.plot(range(len(rows)), diffs, lw=0.6, color="grey")
    ax.set_yscale("log")
    ax.set_ylabel("max |ours - reference|")
    ax.set_xlabel("layer (execution order)")
    if comparison.first_divergence:
        i = next(k for k, r in enumerate(rows) if r.name == comparison.first_divergence)
        ax.axvline(i, color="crimson", ls="--", lw=1)
        ax.annotate(
            f"first divergence:\n{comparison.first_divergence}",
            (i, diffs[i]),
            xytext=(10, 10),
            textcoords="offset points",
            color="crimson",
            fontsize=8,
        )
    ax.set_title(f"layer-by-layer comparison, tolerance {comparison.tolerance:g} x max(1, max|reference|)")
    return fig
