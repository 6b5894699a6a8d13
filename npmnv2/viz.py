"""Pictures of MobileNetV2 at work (matplotlib). Every function returns a Figure; nothing calls plt.show().

Figures are made with `matplotlib.figure.Figure` directly, so no GUI backend is needed:
`fig.savefig("out.png")` works anywhere, and Jupyter displays a returned Figure inline.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch


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
        label, shift = k, 7
        while label:
            for channel in range(3):
                palette[k, channel] |= ((label >> channel) & 1) << shift
            label >>= 3
            shift -= 1
    return palette


def colorize(class_map: np.ndarray) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 colours of the PASCAL VOC palette."""
    return pascal_voc_palette()[np.asarray(class_map) % 256]


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
