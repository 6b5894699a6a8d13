"""Depthwise (and dilated) convolution: one KHxKW filter per channel, as KH*KW shifted multiply-adds.

Forms: textbook forward `depthwise_conv2d` and its MAC count; backward
`depthwise_conv2d_backward` (the same taps, run in reverse); loop twins; the integer form
`depthwise_conv2d_int` (the same taps over zero-point-shifted integers, int32 sums) and its loop twin.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .conv import convolution_attrs, describe_convolution, describe_integer_convolution
from .padding import (
    Pad2D,
    check_nhwc,
    conv_output_size,
    kernel_tap,
    output_size_of_padded,
    pad2d,
    pad2d_backward,
    tap_slice,
)
from .pages import OpPage, parameter_grads
from .quantization import Multiplier, requantize_output

# ============================================================================ textbook forward


def depthwise_conv2d(
    x: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    stride: int = 1,
    dilation: int = 1,
    padding: Pad2D = Pad2D(0, 0, 0, 0),
) -> np.ndarray:
    """Depthwise convolution: one KH x KW filter per channel, no mixing across channels.

    Math: out[n, y, x, c] = bias[c] + sum_{i, j} x_pad[n, y*s + i*d, x*s + j*d, c] * kernel[i, j, c]
    (d is the dilation, "atrous" convolution). Cost: Ho*Wo*C*KH*KW MACs, versus Ho*Wo*C*C*KH*KW
    for a dense convolution.

    How: KH*KW shifted multiply-adds. For each kernel tap (i, j), the slice of the padded input
    that tap sees at every output pixel (`kernel_tap`) is multiplied by that tap's C weights and
    added to the output: no channel ever meets another.

    Shapes: x (N, H, W, C), kernel (KH, KW, C), bias (C,) -> (N, Ho, Wo, C).

    Parameters:
        stride: keyword-only int.
        dilation: keyword-only int, a rate (1 = dense).
        padding: Pad2D applied first.

    References: Sandler et al., MobileNetV2 (arXiv 1801.04381), section 3.1; Chen et al.,
    "Rethinking Atrous Convolution" (arXiv 1706.05587) for dilation. The tap-by-tap loop version
    is `depthwise_conv2d_loops` (below).

    >>> x = np.arange(9.0).reshape(1, 3, 3, 1)
    >>> depthwise_conv2d(x, np.ones((3, 3, 1)), dilation=1, padding=Pad2D(1, 1, 1, 1))[0, :, :, 0]
    array([[ 8., 15., 12.],
           [21., 36., 27.],
           [20., 33., 24.]])
    """
    n, h, w, c = check_nhwc(x, "depthwise_conv2d")
    if kernel.ndim != 3 or kernel.shape[2] != c:
        raise ValueError(
            f"depthwise_conv2d: kernel must be (KH, KW, C) with C={c} (one filter per channel), "
            f"got kernel.shape={kernel.shape} for x.shape={x.shape}."
        )
    kh, kw, _ = kernel.shape
    x_padded = pad2d(x, padding)  # (N, Hp, Wp, C)
    _, hp, wp, _ = x_padded.shape
    ho, wo = output_size_of_padded(
        hp, wp, kernel_size=(kh, kw), stride=stride, dilation=dilation, op="depthwise_conv2d"
    )
    out = np.zeros((n, ho, wo, c), dtype=x.dtype)  # (N, Ho, Wo, C)
    for i in range(kh):
        for j in range(kw):
            tap = kernel_tap(x_padded, i, j, out_size=(ho, wo), stride=stride, dilation=dilation)  # (N, Ho, Wo, C)
            out += tap * kernel[i, j]  # (N, Ho, Wo, C) * (C,): each channel by its own weight
    if bias is not None:
        out += bias
    return out


def depthwise_conv2d_macs(output_shape: tuple[int, ...], kernel_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of `depthwise_conv2d`: each output number sums KH*KW products of one channel.

    MACs = N*Ho*Wo*C * KH*KW        (versus N*Ho*Wo*C_out * KH*KW*C_in for a dense conv)

    >>> depthwise_conv2d_macs((1, 7, 7, 576), (3, 3, 576))   # layer.12's stride-2 depthwise conv
    254016
    """
    kh, kw, _ = kernel_shape
    return math.prod(output_shape) * kh * kw


# ============================================================================ backward


def depthwise_conv2d_backward(
    x: np.ndarray, kernel: np.ndarray, grad_out: np.ndarray, *, stride: int, dilation: int, padding: Pad2D
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of `ops.depthwise_conv2d`, tap by tap: what the forward read, the backward writes.

    Math: out = sum_{i, j} tap_ij(x_pad) * k[i, j]  =>
        grad_k[i, j, c] = sum_{n, y, x} tap_ij(x_pad)[n, y, x, c] * grad_out[n, y, x, c]
        grad_x_pad[n, y*s + i*d, x*s + j*d, c] += grad_out[n, y, x, c] * k[i, j, c]; grad_x = crop(grad_x_pad)
    Shapes: x (N, H, W, C), kernel (KH, KW, C), grad_out (N, Ho, Wo, C) -> like x, like kernel, (C,).
    """
    kh, kw, c = kernel.shape
    padded = pad2d(x, padding)  # (N, Hp, Wp, C)
    ho, wo = grad_out.shape[1:3]
    grad_padded = np.zeros(padded.shape, grad_out.dtype)
    grad_kernel = np.zeros(kernel.shape, grad_out.dtype)
    for i in range(kh):
        for j in range(kw):
            tap = kernel_tap(padded, i, j, out_size=(ho, wo), stride=stride, dilation=dilation)  # (N, Ho, Wo, C)
            grad_kernel[i, j] = (tap * grad_out).sum(axis=(0, 1, 2))
            rows = tap_slice(i * dilation, stride, ho)
            columns = tap_slice(j * dilation, stride, wo)
            grad_padded[:, rows, columns] += grad_out * kernel[i, j]
    return pad2d_backward(grad_padded, padding), grad_kernel, grad_out.sum(axis=(0, 1, 2))


# ============================================================================ loop twins


def depthwise_conv2d_loops(
    x: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    stride: int = 1,
    dilation: int = 1,
    padding: Pad2D = Pad2D(0, 0, 0, 0),
) -> np.ndarray:
    """out[n, y, x, c] = bias[c] + sum_{i, j} x_pad[n, y*s + i*d, x*s + j*d, c] * kernel[i, j, c].

    Shapes: x (N, H, W, C), kernel (KH, KW, C) -> (N, Ho, Wo, C).
    """
    xp = pad2d(x, padding)
    n, hp, wp, c = xp.shape
    kh, kw, _ = kernel.shape
    ho = conv_output_size(hp, kernel_size=kh, stride=stride, dilation=dilation, pad=0)
    wo = conv_output_size(wp, kernel_size=kw, stride=stride, dilation=dilation, pad=0)
    out = np.zeros((n, ho, wo, c), dtype=x.dtype)
    for b in range(n):
        for y in range(ho):
            for x_ in range(wo):
                for ch in range(c):
                    acc = 0.0
                    for i in range(kh):
                        for j in range(kw):
                            acc += xp[b, y * stride + i * dilation, x_ * stride + j * dilation, ch] * kernel[i, j, ch]
                    out[b, y, x_, ch] = acc if bias is None else acc + bias[ch]
    return out


def depthwise_conv2d_backward_loops(x, kernel, grad_out, *, stride, dilation, padding):
    """The twin of `backward.depthwise_conv2d_backward`, one term at a time."""
    xp = pad2d(x, padding)
    kh, kw, c = kernel.shape
    n, ho, wo, _ = grad_out.shape
    grad_xp, grad_k = np.zeros_like(xp), np.zeros_like(kernel)
    for b in range(n):
        for y in range(ho):
            for x_ in range(wo):
                for i in range(kh):
                    for j in range(kw):
                        yy, xx = y * stride + i * dilation, x_ * stride + j * dilation
                        grad_k[i, j] += xp[b, yy, xx] * grad_out[b, y, x_]
                        grad_xp[b, yy, xx] += kernel[i, j] * grad_out[b, y, x_]
    return pad2d_backward(grad_xp, padding), grad_k, grad_out.sum(axis=(0, 1, 2))


# ============================================================================ integer form


def depthwise_conv2d_int(
    x: np.ndarray,
    x_zero_point: int,
    kernel: np.ndarray,
    kernel_zero_point: int | np.ndarray,
    bias: np.ndarray | None,
    *,
    stride: int,
    dilation: int,
    padding: Pad2D,
) -> np.ndarray:
    """The int32 accumulator of a quantized depthwise convolution (depth multiplier 1).

    Math: acc[n, y, x, c] = bias[c] + sum_{i, j} (x_pad[n, y*s + i*d, x*s + j*d, c] - x_zero_point)
                                                * (kernel[0, i, j, c] - kernel_zero_point[c])
    Shapes: x (N, H, W, C), kernel (1, KH, KW, C) (TFLite's layout), bias (C,) -> (N, Ho, Wo, C) int64.
    """
    _, kh, kw, c = kernel.shape
    # In float64, which holds these integers exactly (|x - x_zero_point|, |w - weight_zero_point| <= 255: every partial
    # sum is below 9 * 255^2 < 2^20) and which NumPy multiplies faster than int64.
    centred = np.pad(x.astype(np.float64) - x_zero_point, ((0, 0), padding[:2], padding[2:], (0, 0)))
    hp, wp = centred.shape[1:3]
    ho, wo = output_size_of_padded(
        hp, wp, kernel_size=(kh, kw), stride=stride, dilation=dilation, op="depthwise_conv2d_int"
    )
    weights = kernel[0].astype(np.float64) - np.asarray(kernel_zero_point, np.float64)  # (KH, KW, C)
    acc = np.zeros((x.shape[0], ho, wo, c), np.float64)
    for i in range(kh):
        for j in range(kw):
            acc += kernel_tap(centred, i, j, out_size=(ho, wo), stride=stride, dilation=dilation) * weights[i, j]
    if bias is not None:
        acc += bias.astype(np.float64)
    return acc.astype(np.int64)


# ============================================================================ integer loop twins


def depthwise_conv2d_int_requantized(
    x: np.ndarray,
    x_zero_point: int,
    kernel: np.ndarray,
    kernel_zero_point: int | np.ndarray,
    bias: np.ndarray | None,
    m0: int | np.ndarray,
    shift: int | np.ndarray,
    out_zero_point: int,
    act_range: tuple[int, int],
    *,
    stride: int,
    dilation: int,
    padding: Pad2D,
    multiply: Multiplier | None = None,
) -> np.ndarray:
    """A whole quantized DEPTHWISE_CONV_2D, as TFLite's reference kernel runs it.

    Math: acc[c] = bias[c] + sum_taps (x[c] - x_zero_point) * (kernel[c] - kernel_zero_point[c])
                   (`depthwise_conv2d_int`, int32)
          out = clamp(out_zero_point + round(acc * M0 * 2^(shift - 31)), act_min, act_max)
    Shapes: x (N, H, W, C), kernel (1, KH, KW, C) -> (N, Ho, Wo, C) int64.
    """
    acc = depthwise_conv2d_int(
        x, x_zero_point, kernel, kernel_zero_point, bias, stride=stride, dilation=dilation, padding=padding
    )
    return requantize_output(acc, m0, shift, out_zero_point, act_range, multiply=multiply)


def depthwise_conv2d_int_loops(x, x_zero_point, kernel, kernel_zero_point, bias, *, stride, dilation, padding):
    """acc[n, y, x, c] = bias[c] + sum (x - x_zero_point) * (kernel[0, i, j, c] - kernel_zero_point[c]).
    kernel (1, KH, KW, C)."""
    n, h, w, c = x.shape
    _, kh, kw, _ = kernel.shape
    top, bottom, left, right = padding
    ho = conv_output_size(h, kernel_size=kh, stride=stride, dilation=dilation, pad=top + bottom)
    wo = conv_output_size(w, kernel_size=kw, stride=stride, dilation=dilation, pad=left + right)
    kernel_zero_point = np.broadcast_to(np.asarray(kernel_zero_point), (c,))
    out = np.zeros((n, ho, wo, c), np.int64)
    for b in range(n):
        for y in range(ho):
            for x_ in range(wo):
                for ch in range(c):
                    acc = 0 if bias is None else int(bias[ch])
                    for i in range(kh):
                        for j in range(kw):
                            yy, xx = y * stride + i * dilation - top, x_ * stride + j * dilation - left
                            if 0 <= yy < h and 0 <= xx < w:
                                acc += (int(x[b, yy, xx, ch]) - x_zero_point) * (
                                    int(kernel[0, i, j, ch]) - int(kernel_zero_point[ch])
                                )
                    out[b, y, x_, ch] = acc
    return out


# ============================================================================ the page: describe, differentiate, count


def depthwise_conv2d_step_forward(step: Any, inputs: list[np.ndarray]) -> np.ndarray:
    a = step.attrs
    x_padded = pad2d(inputs[0], Pad2D(*a["padding"]))
    kernel, bias = step.params["kernel"], step.params.get("bias")
    return step.op(x_padded, kernel, bias, stride=a["stride"], dilation=a["dilation"])


def depthwise_conv2d_step_backward(step: Any, inputs: list[np.ndarray], grad_out: np.ndarray):
    a = step.attrs
    gx, gk, gb = depthwise_conv2d_backward(
        inputs[0],
        step.params["kernel"],
        grad_out,
        stride=a["stride"],
        dilation=a["dilation"],
        padding=Pad2D(*a["padding"]),
    )
    return [gx], parameter_grads(step, gk, gb)


PAGES = (
    OpPage(
        depthwise_conv2d,
        describe_convolution,
        depthwise_conv2d_step_backward,
        depthwise_conv2d_backward,
        depthwise_conv2d_macs,
        lambda spec, tf_padding: {**convolution_attrs(spec, tf_padding), "groups": spec.c_in},
        depthwise_conv2d_step_forward,
        depthwise_conv2d_loops,
    ),
)

INTEGER_PAGES = (OpPage(depthwise_conv2d_int_requantized, describe_integer_convolution),)
