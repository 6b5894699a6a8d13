"""Bilinear resizing (the DeepLabV3 head's upsampling), align_corners or half-pixel.

Forms: textbook forward (`bilinear_source` gives each output pixel's two source pixels and
weights, `resize_bilinear` blends them); backward (`resize_bilinear_backward` scatters the
gradient with the same weights); loop twins; the integer forms: `resize_bilinear_int` (TFLite's
int8 kernel, 10-bit fixed-point weights) and its loop twin, `resize_bilinear_uint8` (TFLite's
reference uint8 kernel, float32), `resize_bilinear_uint8_optimized` (its optimized one) and
`resize_bilinear_int_xnnpack` (the XNNPACK delegate's, 11-bit weights).
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


def interpolation_values_float32(
    out_size: int, in_size: int, *, align_corners: bool, half_pixel_centers: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TFLite's float source positions along one axis (`ComputeInterpolationValues`), in float32:
    (position v, lower neighbour max(floor(v), 0), upper neighbour min(ceil(v), in - 1)) per output index.

    Math: scale = in / out (align_corners: (in - 1) / (out - 1)), in float32;
          v = dst * scale, or (dst + 0.5) * scale - 0.5 with half_pixel_centers.
    The weight of the upper neighbour is v - lower (negative near the edge with half_pixel_centers:
    both neighbours are then pixel 0, so the weights still sum to 1).
    """
    if align_corners and out_size > 1:
        scale = np.float32(in_size - 1) / np.float32(out_size - 1)
    else:
        scale = np.float32(in_size) / np.float32(out_size)
    dst = np.arange(out_size).astype(np.float32)
    v = (dst + np.float32(0.5)) * scale - np.float32(0.5) if half_pixel_centers else dst * scale
    low = np.maximum(np.floor(v).astype(np.int64), 0)
    high = np.minimum(np.ceil(v).astype(np.int64), in_size - 1)
    return v.astype(np.float32), low, high


def _float32_neighbours(x: np.ndarray, size: tuple[int, int], align_corners: bool, half_pixel_centers: bool):
    """What both float32 uint8 rules read: the input rows y0 and y1 of every output row (N, Ho, W, C)
    as float32, the columns x0 and x1, and the weights dy (Ho, 1, 1) and dx (1, Wo, 1) of the second
    neighbours, from `interpolation_values_float32`."""
    flags = {"align_corners": align_corners, "half_pixel_centers": half_pixel_centers}
    vy, y0, y1 = interpolation_values_float32(size[0], x.shape[1], **flags)
    vx, x0, x1 = interpolation_values_float32(size[1], x.shape[2], **flags)
    dy = (vy - y0.astype(np.float32))[:, None, None]
    dx = (vx - x0.astype(np.float32))[None, :, None]
    v = np.asarray(x).astype(np.float32)
    return v[:, y0], v[:, y1], x0, x1, dy, dx


def resize_bilinear_uint8(
    x: np.ndarray, size: tuple[int, int], *, align_corners: bool, half_pixel_centers: bool
) -> np.ndarray:
    """RESIZE_BILINEAR of a uint8 tensor as TFLite's reference kernel computes it (reference_ops::
    ResizeBilinear on uint8): in float32, the four neighbours in the order the C code writes them,
    plus 0.5, truncated.

    Math: with (v_y, y0, y1), (v_x, x0, x1) from `interpolation_values_float32`, dy = v_y - y0, dx = v_x - x0:
        out = trunc(x[y0,x0] (1-dy)(1-dx) + x[y1,x0] dy (1-dx) + x[y0,x1] (1-dy) dx + x[y1,x1] dy dx + 0.5)
    each product and sum rounded to float32 left to right, as C does.
    Measured equal to the interpreter's reference kernels on every element, for align_corners,
    half_pixel_centers and neither, on one-op graphs of DeepLab's resize at four output sizes.
    Shapes: x (N, H, W, C) uint8 -> (N, Ho, Wo, C) int64.
    """
    rows0, rows1, x0, x1, dy, dx = _float32_neighbours(x, size, align_corners, half_pixel_centers)
    one = np.float32(1)
    total = rows0[:, :, x0] * (one - dy) * (one - dx)
    total = total + rows1[:, :, x0] * dy * (one - dx)
    total = total + rows0[:, :, x1] * (one - dy) * dx
    total = total + rows1[:, :, x1] * dy * dx
    return np.trunc(total + np.float32(0.5)).astype(np.int64)


def resize_bilinear_uint8_optimized(
    x: np.ndarray, size: tuple[int, int], *, align_corners: bool, half_pixel_centers: bool
) -> np.ndarray:
    """RESIZE_BILINEAR of a uint8 tensor as the interpreter's optimized kernels compute it
    (optimized_ops::ResizeBilinearGenericSmallChannel): the four weights multiplied out first, the
    neighbours summed in memory order (y0 x0, y0 x1, y1 x0, y1 x1), plus 0.5, truncated.

    Math: w00 = (1-dy)(1-dx), w01 = (1-dy) dx, w10 = dy (1-dx), w11 = dy dx (float32);
          out = trunc(x[y0,x0] w00 + x[y0,x1] w01 + x[y1,x0] w10 + x[y1,x1] w11 + 0.5)
    The same real number as `resize_bilinear_uint8`, rounded in another order: 15 of 5,526,549
    values differ between the two on DeepLab's 33 -> 513 resize without align_corners, 214 of
    132,405 at 65 x 97 with it; this rule matches the optimized kernels on all of them.
    Shapes: x (N, H, W, C) uint8 -> (N, Ho, Wo, C) int64.
    """
    rows0, rows1, x0, x1, dy, dx = _float32_neighbours(x, size, align_corners, half_pixel_centers)
    one = np.float32(1)
    total = rows0[:, :, x0] * ((one - dy) * (one - dx))
    total = total + rows0[:, :, x1] * ((one - dy) * dx)
    total = total + rows1[:, :, x0] * (dy * (one - dx))
    total = total + rows1[:, :, x1] * (dy * dx)
    return np.trunc(total + np.float32(0.5)).astype(np.int64)


def xnnpack_source_pixels(
    out_size: int, in_size: int, *, align_corners: bool, half_pixel_centers: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """XNNPACK's source positions along one axis: (weight of the second neighbour in units of 2^-11,
    first neighbour, second neighbour). The position as in `interpolation_values_float32`, clamped
    at 0; the weight rint(2048 * (v - floor v)), in float32."""
    v, _, _ = interpolation_values_float32(
        out_size, in_size, align_corners=align_corners, half_pixel_centers=half_pixel_centers
    )
    v = np.maximum(v, np.float32(0))
    low = np.minimum(np.floor(v).astype(np.int64), in_size - 1)
    high = np.minimum(low + 1, in_size - 1)
    weight = np.rint((v - low.astype(np.float32)) * np.float32(2048)).astype(np.int64)
    return weight, low, high


def resize_bilinear_int_xnnpack(
    x: np.ndarray, size: tuple[int, int], *, align_corners: bool, half_pixel_centers: bool
) -> np.ndarray:
    """RESIZE_BILINEAR as the XNNPACK delegate computes it (its qu8 "ibilinear" kernels): 11-bit
    integer weights, first along W, then along H, one rounding shift.

    Math: with (a_x, x0, x1), (a_y, y0, y1) from `xnnpack_source_pixels` (weights in units of 2^-11):
        top = x[y0,x0] * 2^11 + (x[y0,x1] - x[y0,x0]) * a_x        (bottom likewise on row y1)
        out = (top * 2^11 + (bottom - top) * a_y + 2^21) >> 22      (rounds half up)
    Measured equal to XNNPACK on every element for align_corners, half_pixel_centers and neither, at
    four output sizes of DeepLab's resize (one-op graphs, random inputs), where TFLite's rules miss
    up to 70,704 of 5,526,549 values.
    Shapes: x (N, H, W, C) -> (N, Ho, Wo, C) int64.
    """
    ay, y0, y1 = xnnpack_source_pixels(
        size[0], x.shape[1], align_corners=align_corners, half_pixel_centers=half_pixel_centers
    )
    ax, x0, x1 = xnnpack_source_pixels(
        size[1], x.shape[2], align_corners=align_corners, half_pixel_centers=half_pixel_centers
    )
    v = np.asarray(x).astype(np.int64)
    ax = ax[:, None]  # (Wo, 1)
    left, right = v[:, :, x0], v[:, :, x1]  # (N, H, Wo, C)
    across = (left << 11) + (right - left) * ax  # every input row along W, in units of 2^-11
    top, bottom = across[:, y0], across[:, y1]  # (N, Ho, Wo, C)
    total = (top << 11) + (bottom - top) * ay[:, None, None]  # in units of 2^-22
    return (total + (1 << 21)) >> 22


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

INTEGER_PAGES = (
    OpPage(resize_bilinear_int, describe_integer_op("bilinear resize with 10-bit fixed-point weights (int8)")),
    OpPage(resize_bilinear_uint8, describe_integer_op("bilinear resize in float32, plus 0.5, truncated (uint8)")),
    OpPage(
        resize_bilinear_uint8_optimized, describe_integer_op("bilinear resize, the optimized kernels' float32 order")
    ),
    OpPage(resize_bilinear_int_xnnpack, describe_integer_op("XNNPACK's bilinear resize with 11-bit weights")),
)
