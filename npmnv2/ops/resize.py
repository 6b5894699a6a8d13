"""Bilinear resizing (the DeepLabV3 head's upsampling), align_corners or half-pixel.

Forms: textbook forward (`bilinear_source` gives each output pixel's two source pixels and
weights, `resize_bilinear` blends them); backward (`resize_bilinear_backward` scatters the
gradient with the same weights); loop twins; the integer form `resize_bilinear_int` (TFLite's
fixed-point weights) and its loop twin.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .padding import as_pair, check_nhwc
from .pages import OpPage, spatial
from .quantization import c_div, describe_integer_op

# ============================================================================ textbook forward


def bilinear_source(out_size: int, in_size: int, *, align_corners: bool, dtype: np.dtype):
    """For each output index along one axis: the two source indices and the weight of the second.

    Math (PyTorch `interpolate(mode="bilinear")`):
        align_corners=True:  src = dst * (in - 1) / (out - 1)          (src = 0 when out == 1)
        align_corners=False: src = max((dst + 0.5) * in / out - 0.5, 0)
        i0 = floor(src), i1 = min(i0 + 1, in - 1), weight = src - i0
    """
    dst = np.arange(out_size, dtype=dtype)
    if align_corners:
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        src = dst * dtype.type(scale)
    else:
        src = np.maximum((dst + dtype.type(0.5)) * dtype.type(in_size / out_size) - dtype.type(0.5), 0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    return i0, i1, (src - i0).astype(dtype)


def resize_bilinear(x: np.ndarray, size: tuple[int, int], *, align_corners: bool) -> np.ndarray:
    """Bilinear resize of an NHWC array, matching `torch.nn.functional.interpolate(mode="bilinear")`.

    Math: separable linear interpolation, first along H then along W:
        out[y, x] = (1-a)(1-b) x[y0, x0] + (1-a) b x[y0, x1] + a (1-b) x[y1, x0] + a b x[y1, x1]
    with (y0, y1, a) and (x0, x1, b) from the source-coordinate rule of `align_corners`
    (see `bilinear_source`).

    Shapes: x (N, H, W, C) -> (N, Ho, Wo, C) with (Ho, Wo) = size.

    >>> resize_bilinear(np.array([0.0, 2.0]).reshape(1, 1, 2, 1), (1, 3), align_corners=True).ravel()
    array([0., 1., 2.])
    """
    n, h, w, c = check_nhwc(x, "resize_bilinear")
    ho, wo = as_pair(size, "size")
    y0, y1, a = bilinear_source(ho, h, align_corners=align_corners, dtype=x.dtype)
    x0, x1, b = bilinear_source(wo, w, align_corners=align_corners, dtype=x.dtype)
    a = a[:, None, None]  # (Ho, 1, 1) broadcasts over W, C
    rows = x[:, y0] * (1 - a) + x[:, y1] * a  # (N, Ho, W, C)
    b = b[:, None]  # (Wo, 1) broadcasts over C
    return rows[:, :, x0] * (1 - b) + rows[:, :, x1] * b  # (N, Ho, Wo, C)


# ============================================================================ backward


def resize_bilinear_backward(grad_out: np.ndarray, input_shape: tuple[int, ...], *, align_corners: bool) -> np.ndarray:
    """The adjoint of `ops.resize_bilinear`: each output's gradient goes back to its four source
    pixels, with the same weights (overlapping contributions add up). Separable: W first, then H.

    Shapes: grad_out (N, Ho, Wo, C) -> input_shape (N, H, W, C).
    """
    n, h, w, c = input_shape
    ho, wo = grad_out.shape[1:3]
    x0, x1, b = bilinear_source(wo, w, align_corners=align_corners, dtype=grad_out.dtype)
    rows = np.zeros((n, ho, w, c), grad_out.dtype)  # the gradient of the H-resized rows
    np.add.at(rows, (slice(None), slice(None), x0), grad_out * (1 - b)[:, None])
    np.add.at(rows, (slice(None), slice(None), x1), grad_out * b[:, None])
    y0, y1, a = bilinear_source(ho, h, align_corners=align_corners, dtype=grad_out.dtype)
    grad_x = np.zeros(input_shape, grad_out.dtype)
    np.add.at(grad_x, (slice(None), y0), rows * (1 - a)[:, None, None])
    np.add.at(grad_x, (slice(None), y1), rows * a[:, None, None])
    return grad_x


# ============================================================================ loop twins


def source_pixels_scalar(dst: int, in_size: int, out_size: int, *, align_corners: bool) -> tuple[int, int, float]:
    """The two source pixels of output pixel `dst` along one axis and the weight of the second,
    one number at a time (PyTorch's rule; the loop twins' version of `bilinear_source`)."""
    if align_corners:
        src = dst * (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    else:
        src = max((dst + 0.5) * in_size / out_size - 0.5, 0.0)
    i0 = min(math.floor(src), in_size - 1)
    return i0, min(i0 + 1, in_size - 1), src - i0


def resize_bilinear_loops(x: np.ndarray, size: tuple[int, int], *, align_corners: bool) -> np.ndarray:
    """Bilinear resize one output pixel at a time, with PyTorch's source-coordinate rule.

    Shapes: x (N, H, W, C) -> (N, Ho, Wo, C).
    """
    n, h, w, c = x.shape
    ho, wo = size
    out = np.zeros((n, ho, wo, c), dtype=x.dtype)
    for y in range(ho):
        y0, y1, a = source_pixels_scalar(y, h, ho, align_corners=align_corners)
        for x_ in range(wo):
            x0, x1, b = source_pixels_scalar(x_, w, wo, align_corners=align_corners)
            out[:, y, x_] = (
                (1 - a) * (1 - b) * x[:, y0, x0]
                + (1 - a) * b * x[:, y0, x1]
                + a * (1 - b) * x[:, y1, x0]
                + a * b * x[:, y1, x1]
            )
    return out


def resize_bilinear_backward_loops(grad_out, input_shape, *, align_corners):
    """Send each output pixel's gradient to its four source pixels with their weights. The twin of
    `backward.resize_bilinear_backward`."""
    n, h, w, c = input_shape
    ho, wo = grad_out.shape[1:3]
    out = np.zeros(input_shape, grad_out.dtype)
    for y in range(ho):
        y0, y1, a = source_pixels_scalar(y, h, ho, align_corners=align_corners)
        for x_ in range(wo):
            x0, x1, b = source_pixels_scalar(x_, w, wo, align_corners=align_corners)
            g = grad_out[:, y, x_]
            out[:, y0, x0] += (1 - a) * (1 - b) * g
            out[:, y0, x1] += (1 - a) * b * g
            out[:, y1, x0] += a * (1 - b) * g
            out[:, y1, x1] += a * b * g
    return out


# ============================================================================ integer form


def _trunc_div(a: np.ndarray, b: int) -> np.ndarray:
    """Integer division rounding toward zero, as C's `/`."""
    return np.where(a >= 0, a // b, -((-a) // b))


def source_pixels_10bit(
    out_size: int, in_size: int, *, align_corners: bool, half_pixel_centers: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TFLite's integer source positions along one axis: (weight of the second neighbour in units of
    2^-10, first neighbour, second neighbour) for every output index (see `resize_bilinear_int`)."""
    if align_corners and out_size > 1:
        scale = ((1 << 10) * (in_size - 1) + (out_size - 1) // 2) // (out_size - 1)
    else:
        scale = ((1 << 10) * in_size + out_size // 2) // out_size
    value = np.arange(out_size, dtype=np.int64) * scale
    if half_pixel_centers:
        value = value + scale // 2 - (1 << 9)
    low = np.maximum(_trunc_div(value, 1 << 10), 0)
    high = np.minimum(_trunc_div(value + (1 << 10) - 1, 1 << 10), in_size - 1)
    return value - (1 << 10) * low, low, high


def resize_bilinear_int(
    x: np.ndarray, size: tuple[int, int], *, align_corners: bool, half_pixel_centers: bool
) -> np.ndarray:
    """RESIZE_BILINEAR of a uint8 or int8 tensor as TFLite's reference kernel computes it, in
    integers with 10 fractional bits.

    Math: scale = round(2^10 * in / out) (with align_corners: (in - 1) / (out - 1)); the source
    position of output pixel y is v = y * scale (half_pixel_centers: + scale/2 - 2^9), its
    neighbours y0 = v // 2^10, y1 = min(ceil(v / 2^10), in - 1), its weight v - 2^10 * y0;
        out = (sum of the four neighbours times their weights, in units of 2^-20 + 2^19) / 2^20
    rounded half away from zero.
    Shapes: x (N, H, W, C) -> (N, Ho, Wo, C) int64.
    """
    n, h, w, c = x.shape
    ho, wo = size
    wy, y0, y1 = source_pixels_10bit(ho, h, align_corners=align_corners, half_pixel_centers=half_pixel_centers)
    wx, x0, x1 = source_pixels_10bit(wo, w, align_corners=align_corners, half_pixel_centers=half_pixel_centers)
    # float64 holds every value below exactly (|x| <= 255 times 2^20 four times < 2^31)
    wy = wy.astype(np.float64)[:, None, None]  # (Ho, 1, 1): weight of the lower neighbour y1
    wx = wx.astype(np.float64)[None, :, None]  # (1, Wo, 1)
    v = x.astype(np.float64)
    rows0, rows1 = v[:, y0], v[:, y1]  # (N, Ho, W, C)
    top = rows0[:, :, x0] * ((1 << 10) - wx) + rows0[:, :, x1] * wx  # (N, Ho, Wo, C), in units of 2^-10
    bottom = rows1[:, :, x0] * ((1 << 10) - wx) + rows1[:, :, x1] * wx
    total = top * ((1 << 10) - wy) + bottom * wy  # in units of 2^-20
    return np.trunc((total + np.where(total > 0, 1 << 19, -(1 << 19))) / (1 << 20)).astype(np.int64)


# ============================================================================ integer loop twins


def resize_bilinear_int_loops(x, size, *, align_corners, half_pixel_centers):
    """TFLite's integer ResizeBilinear (10 fractional bits), pixel by pixel, as the C code reads."""
    n, h, w, c = x.shape
    ho, wo = size

    def scale_10(in_size: int, out_size: int) -> int:
        if align_corners and out_size > 1:
            return c_div((1 << 10) * (in_size - 1) + (out_size - 1) // 2, out_size - 1)
        return c_div((1 << 10) * in_size + out_size // 2, out_size)

    def values(i: int, scale: int, in_size: int) -> tuple[int, int, int]:
        v = i * scale + (scale // 2 - (1 << 9) if half_pixel_centers else 0)
        return v, max(c_div(v, 1 << 10), 0), min(c_div(v + (1 << 10) - 1, 1 << 10), in_size - 1)

    sy, sx = scale_10(h, ho), scale_10(w, wo)
    out = np.zeros((n, ho, wo, c), np.int64)
    for b in range(n):
        for y in range(ho):
            vy, y0, y1 = values(y, sy, h)
            for x_ in range(wo):
                vx, x0, x1 = values(x_, sx, w)
                dy, dx = vy - (1 << 10) * y0, vx - (1 << 10) * x0  # weights of the second neighbours
                for ch in range(c):
                    total = (
                        int(x[b, y0, x0, ch]) * ((1 << 10) - dy) * ((1 << 10) - dx)
                        + int(x[b, y1, x0, ch]) * dy * ((1 << 10) - dx)
                        + int(x[b, y0, x1, ch]) * ((1 << 10) - dy) * dx
                        + int(x[b, y1, x1, ch]) * dy * dx
                    )
                    out[b, y, x_, ch] = c_div(total + ((1 << 19) if total > 0 else -(1 << 19)), 1 << 20)
    return out


# ============================================================================ the page: describe, differentiate


def describe_resize(step: Any) -> str:
    return (
        f"bilinear resize {spatial(step.input_shapes[0])} -> {spatial(step.output_shape)} "
        f"(align_corners={step.attrs.get('align_corners')})."
    )


def resize_bilinear_step_backward(step: Any, inputs: list[np.ndarray], grad_out: np.ndarray):
    align = step.attrs.get("align_corners", True)
    return [resize_bilinear_backward(grad_out, inputs[0].shape, align_corners=align)], {}


PAGES = (
    OpPage(
        resize_bilinear,
        describe_resize,
        resize_bilinear_step_backward,
        resize_bilinear_backward,
        forward_step=lambda step, inputs: step.op(
            inputs[0], tuple(step.output_shape[2:]), align_corners=step.attrs.get("align_corners", True)
        ),
        loops=resize_bilinear_loops,
    ),
)

INTEGER_PAGES = (OpPage(resize_bilinear_int, describe_integer_op("bilinear resize with 10-bit fixed-point weights")),)
