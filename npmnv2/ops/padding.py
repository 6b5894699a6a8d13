"""Padding and the geometry of a sliding window: TF SAME vs symmetric padding, output sizes, taps.

Forms: the textbook functions (`tf_same_padding`, `conv_padding`, `pad2d`, `conv_output_size`,
`kernel_tap`); the backward of padding (`pad2d_backward`: crop the gradient); their loop twins
(`*_loops`, `tf_same_padding_search`), which search or copy one pixel at a time. Every other op
takes its window geometry from here: `conv_output_size` is the one output-size formula and
`kernel_tap` the one tap slice.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# ============================================================================ textbook forward


class Pad2D(NamedTuple):
    """Zero padding of a feature map, in pixels: (top, bottom, left, right)."""

    top: int
    bottom: int
    left: int
    right: int


def as_pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    """Normalise an int or a pair of ints to a pair of ints (height, width)."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of positive ints, got {value!r}.")
    return int(pair[0]), int(pair[1])


def tf_same_padding(size: int, *, kernel_size: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow "SAME" padding along one axis: (before, after).

    Math:
        K_eff = dilation * (kernel_size - 1) + 1
        out   = ceil(size / stride)
        total = max((out - 1) * stride + K_eff - size, 0)
        before = total // 2,  after = total - before      (the odd pixel goes after)
    Why: TF picks the output size first (ceil(size/stride)) and pads just enough to reach it;
    an odd total puts the extra pixel at the bottom/right, which PyTorch's symmetric
    `padding=` argument cannot express.

    Shapes: scalars.

    Parameters:
        size: input length along the axis (H or W).
        kernel_size: of the convolution along that axis.
        stride: of the convolution along that axis.
        dilation: a rate (1 = dense).

    Returns:
        (before, after) in pixels.

    Raises ValueError for stride > 1 together with dilation > 1: TF itself forbids it and
    transformers' shortcut formula differs there; MobileNetV2 never uses it.

    References: TensorFlow, "Notes on padding" (tf.nn); transformers `apply_tf_padding`.

    >>> tf_same_padding(224, kernel_size=3, stride=2)   # 112 outputs need 225 inputs
    (0, 1)
    >>> tf_same_padding(225, kernel_size=3, stride=2)   # 113 outputs need 227 inputs
    (1, 1)
    >>> tf_same_padding(14, kernel_size=3, stride=1, dilation=2)
    (2, 2)
    """
    if stride > 1 and dilation > 1:
        raise ValueError(
            f"tf_same_padding: stride={stride} with dilation={dilation} is not supported; "
            "TensorFlow allows only one of them above 1 (MobileNetV2 never combines them)."
        )
    k_eff = dilation * (kernel_size - 1) + 1
    out = -(-size // stride)  # ceil(size / stride)
    total = max((out - 1) * stride + k_eff - size, 0)
    return total // 2, total - total // 2


def symmetric_padding(*, kernel_size: int, dilation: int = 1) -> tuple[int, int]:
    """PyTorch-style symmetric padding along one axis (used when `tf_padding=False`).

    Math: p = floor((kernel_size - 1) / 2) * dilation on both sides, whatever the input size;
    this is the `padding=` transformers passes to `nn.Conv2d`.

    >>> symmetric_padding(kernel_size=3, dilation=2)
    (2, 2)
    """
    p = (kernel_size - 1) // 2 * dilation
    return p, p


def conv_padding(height: int, width: int, *, kernel_size: int, stride: int, dilation: int, tf_padding: bool) -> Pad2D:
    """The Pad2D a convolution applies to an H x W input: TF SAME or PyTorch symmetric.

    >>> conv_padding(224, 224, kernel_size=3, stride=2, dilation=1, tf_padding=True)
    Pad2D(top=0, bottom=1, left=0, right=1)
    >>> conv_padding(224, 224, kernel_size=3, stride=2, dilation=1, tf_padding=False)
    Pad2D(top=1, bottom=1, left=1, right=1)
    """
    if tf_padding:
        top, bottom = tf_same_padding(height, kernel_size=kernel_size, stride=stride, dilation=dilation)
        left, right = tf_same_padding(width, kernel_size=kernel_size, stride=stride, dilation=dilation)
    else:
        top, bottom = left, right = symmetric_padding(kernel_size=kernel_size, dilation=dilation)
    return Pad2D(top, bottom, left, right)


def pad2d(x: np.ndarray, padding: Pad2D) -> np.ndarray:
    """Zero-pad the two spatial axes of an NHWC array.

    Shapes: x (N, H, W, C) -> (N, H + top + bottom, W + left + right, C).

    >>> pad2d(np.ones((1, 1, 2, 1)), Pad2D(0, 1, 1, 0))[0, :, :, 0]
    array([[0., 1., 1.],
           [0., 0., 0.]])
    """
    if padding == (0, 0, 0, 0):
        return x
    top, bottom, left, right = padding
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))


def conv_output_size(size: int, *, kernel_size: int, stride: int, dilation: int, pad: int) -> int:
    """Output length of a convolution along one axis: floor((size + pad - K_eff) / stride) + 1.

    >>> conv_output_size(225, kernel_size=3, stride=2, dilation=1, pad=2)
    113
    """
    k_eff = dilation * (kernel_size - 1) + 1
    return (size + pad - k_eff) // stride + 1


def check_nhwc(x: np.ndarray, op: str) -> tuple[int, int, int, int]:
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        got = f"shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"{op}: expected an NHWC array of rank 4 (N, H, W, C), got {got}.")
    return x.shape


def output_size_of_padded(hp: int, wp: int, *, kernel_size: tuple[int, int], stride: int, dilation: int, op: str):
    """(Ho, Wo) of a convolution over an already padded Hp x Wp input; an error when the dilated
    kernel does not fit."""
    kh, kw = kernel_size
    k_eff = (dilation * (kh - 1) + 1, dilation * (kw - 1) + 1)  # the dilated kernel's extent
    if hp < k_eff[0] or wp < k_eff[1]:
        raise ValueError(
            f"{op}: the padded input {hp}x{wp} is smaller than the dilated kernel {k_eff[0]}x{k_eff[1]}; "
            "use a larger input."
        )
    return (
        conv_output_size(hp, kernel_size=kh, stride=stride, dilation=dilation, pad=0),
        conv_output_size(wp, kernel_size=kw, stride=stride, dilation=dilation, pad=0),
    )


def tap_slice(start: int, stride: int, count: int) -> slice:
    """The `count` positions start, start + stride, ... one kernel tap visits along an axis.

    >>> range(10)[tap_slice(1, 2, 3)]
    range(1, 6, 2)
    """
    return slice(start, start + stride * (count - 1) + 1, stride)


def kernel_tap(x_padded: np.ndarray, i: int, j: int, *, out_size: tuple[int, int], stride: int, dilation: int):
    """What kernel tap (i, j) sees at every output pixel: a strided slice of the padded input (a view).

    Math: tap[n, y, x, c] = x_padded[n, y*s + i*d, x*s + j*d, c]
    Shapes: x_padded (N, Hp, Wp, C) -> (N, Ho, Wo, C).

    >>> kernel_tap(np.arange(16.0).reshape(1, 4, 4, 1), 1, 1, out_size=(2, 2), stride=2, dilation=1)[0, :, :, 0]
    array([[ 5.,  7.],
           [13., 15.]])
    """
    ho, wo = out_size
    return x_padded[:, tap_slice(i * dilation, stride, ho), tap_slice(j * dilation, stride, wo)]


# ============================================================================ backward


def pad2d_backward(grad_out: np.ndarray, padding: Pad2D) -> np.ndarray:
    """The gradient of zero padding is a crop: the border's gradient goes nowhere.

    Shapes: grad_out (N, H + top + bottom, W + left + right, C) -> (N, H, W, C).

    >>> pad2d_backward(np.arange(6.0).reshape(1, 2, 3, 1), Pad2D(0, 1, 1, 0))[..., 0]
    array([[[1., 2.]]])
    """
    top, bottom, left, right = padding
    h, w = grad_out.shape[1] - top - bottom, grad_out.shape[2] - left - right
    return grad_out[:, top : top + h, left : left + w]


# ============================================================================ loop twins


def tf_same_padding_search(size: int, *, kernel_size: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF SAME padding found by search: the smallest total padding whose output has ceil(size/stride)
    positions, the odd pixel after. The twin of `ops.tf_same_padding`."""
    wanted = -(-size // stride)
    k_eff = dilation * (kernel_size - 1) + 1
    total = 0
    while len(range(0, size + total - k_eff + 1, stride)) < wanted:
        total += 1
    return total // 2, total - total // 2


def conv_output_size_loops(size: int, *, kernel_size: int, stride: int, dilation: int, pad: int) -> int:
    """Count the window positions that fit. The twin of `ops.conv_output_size`."""
    k_eff = dilation * (kernel_size - 1) + 1
    count, start = 0, 0
    while start + k_eff <= size + pad:
        count, start = count + 1, start + stride
    return count


def pad2d_loops(x: np.ndarray, padding: Pad2D) -> np.ndarray:
    """Copy each pixel into a zero canvas at (y + top, x + left). The twin of `ops.pad2d`."""
    n, h, w, c = x.shape
    top, bottom, left, right = padding
    out = np.zeros((n, h + top + bottom, w + left + right, c), dtype=x.dtype)
    for y in range(h):
        for x_ in range(w):
            out[:, y + top, x_ + left] = x[:, y, x_]
    return out


def kernel_tap_loops(
    x_padded: np.ndarray, i: int, j: int, *, out_size: tuple[int, int], stride: int, dilation: int
) -> np.ndarray:
    """tap[n, y, x] = x_padded[n, y*s + i*d, x*s + j*d], pixel by pixel. The twin of `ops.kernel_tap`."""
    n, _, _, c = x_padded.shape
    ho, wo = out_size
    out = np.zeros((n, ho, wo, c), dtype=x_padded.dtype)
    for y in range(ho):
        for x_ in range(wo):
            out[:, y, x_] = x_padded[:, y * stride + i * dilation, x_ * stride + j * dilation]
    return out
