"""Dense and 1x1 convolution: im2col, then one matrix product.

Forms: textbook forward (`im2col`, `conv2d`, `pointwise_conv2d`) with their MAC counts; backward
(`col2im` scatters columns back, `conv2d_backward`, `pointwise_conv2d_backward`); loop twins
(`*_loops`, one output pixel at a time); the integer form (`conv2d_int`: int32 accumulators of
zero-point-shifted uint8/int8 values, TFLite's reference kernel) and its loop twin. The float and
integer forms use the same `im2col`; the integer one then requantizes with
`npmnv2.ops.quantization.requantize_output`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .padding import (
    Pad2D,
    as_pair,
    check_nhwc,
    conv_output_size,
    kernel_tap,
    output_size_of_padded,
    pad2d,
    pad2d_backward,
    tap_slice,
)
from .pages import OpPage, parameter_grads, spatial
from .quantization import Multiplier, describe_requantization, exact_int_matmul, requantize_output

# ============================================================================ textbook forward


def im2col(x_padded: np.ndarray, *, kernel_size: int | tuple[int, int], stride: int, dilation: int = 1) -> np.ndarray:
    """Unfold every receptive field of a (padded) NHWC input into one row.

    Math: cols[(n, y, x), (i, j, c)] = x_padded[n, y*s + i*d, x*s + j*d, c]
    so that a convolution becomes one matrix product: out = cols @ kernel.reshape(P, C_out).
    The column order (i, j, c) is the row-major order of an HWIO kernel's first three axes.

    Shapes: x_padded (N, Hp, Wp, C_in) -> (N*Ho*Wo, P) with P = KH*KW*C_in,
            Ho = (Hp - K_eff) // s + 1 (same for Wo).

    Parameters:
        x_padded: input, already padded (see `pad2d`).
        kernel_size: KH = KW, or (KH, KW).
        stride: keyword-only int.
        dilation: keyword-only int, a rate (1 = dense).

    References: Chellapilla et al., "High Performance Convolutional Neural Networks for Document
    Processing" (2006) -- the unfolding trick; Caffe's im2col.

    >>> x = np.arange(9.0).reshape(1, 3, 3, 1)
    >>> im2col(x, kernel_size=2, stride=1)
    array([[0., 1., 3., 4.],
           [1., 2., 4., 5.],
           [3., 4., 6., 7.],
           [4., 5., 7., 8.]])
    """
    n, hp, wp, c_in = check_nhwc(x_padded, "im2col")
    kh, kw = as_pair(kernel_size, "kernel_size")
    ho, wo = output_size_of_padded(hp, wp, kernel_size=(kh, kw), stride=stride, dilation=dilation, op="im2col")
    taps = [
        kernel_tap(x_padded, i, j, out_size=(ho, wo), stride=stride, dilation=dilation)  # (N, Ho, Wo, C_in)
        for i in range(kh)
        for j in range(kw)
    ]
    windows = np.stack(taps, axis=3)  # (N, Ho, Wo, KH*KW, C_in): tap (i, j) at index i*KW + j
    return windows.reshape(n * ho * wo, kh * kw * c_in)  # (N*Ho*Wo, P)


def conv2d(
    x: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    stride: int = 1,
    dilation: int = 1,
    padding: Pad2D = Pad2D(0, 0, 0, 0),
) -> np.ndarray:
    """A dense 2-D convolution (cross-correlation, as in every DL framework) via im2col.

    Math: out[n, y, x, o] = bias[o] + sum_{i, j, c} x_pad[n, y*s + i*d, x*s + j*d, c] * kernel[i, j, c, o]

    Shapes: x (N, H, W, C_in), kernel (KH, KW, C_in, C_out), bias (C_out,) -> (N, Ho, Wo, C_out).

    Parameters:
        x: NHWC input.
        kernel: HWIO.
        bias: optional, (C_out,).
        stride: keyword-only int.
        dilation: keyword-only int, a rate (1 = dense).
        padding: Pad2D applied before the convolution.

    >>> x = np.arange(9.0).reshape(1, 3, 3, 1)
    >>> conv2d(x, np.ones((2, 2, 1, 1)))[0, :, :, 0]   # sums of each 2x2 window
    array([[ 8., 12.],
           [20., 24.]])
    """
    n, h, w, c_in = check_nhwc(x, "conv2d")
    kh, kw, k_in, c_out = kernel.shape
    if k_in != c_in:
        raise ValueError(
            f"conv2d: kernel expects {k_in} input channels, input has {c_in} "
            f"(x.shape={x.shape}, kernel.shape={kernel.shape}); kernels are HWIO (KH, KW, C_in, C_out)."
        )
    x_padded = pad2d(x, padding)  # (N, Hp, Wp, C_in)
    cols = im2col(x_padded, kernel_size=(kh, kw), stride=stride, dilation=dilation)  # (N*Ho*Wo, P)
    ho = conv_output_size(h, kernel_size=kh, stride=stride, dilation=dilation, pad=padding.top + padding.bottom)
    wo = conv_output_size(w, kernel_size=kw, stride=stride, dilation=dilation, pad=padding.left + padding.right)
    out = cols @ kernel.reshape(kh * kw * c_in, c_out)  # (N*Ho*Wo, P) @ (P, C_out) -> (N*Ho*Wo, C_out)
    if bias is not None:
        out += bias
    return out.reshape(n, ho, wo, c_out)  # (N, Ho, Wo, C_out)


def conv2d_macs(output_shape: tuple[int, ...], kernel_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of `conv2d`: every output number is a dot product of length KH*KW*C_in.

    MACs = N*Ho*Wo*C_out * KH*KW*C_in        (output_shape NHWC, kernel_shape HWIO)

    >>> conv2d_macs((1, 112, 112, 32), (3, 3, 3, 32))   # MobileNetV2's stem at 224x224
    10838016
    """
    kh, kw, c_in, _ = kernel_shape
    return math.prod(output_shape) * kh * kw * c_in


def pointwise_conv2d(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """A 1x1 convolution, which is a matrix product over the channel axis at every pixel.

    Math: out[n, y, x, o] = bias[o] + sum_c x[n, y, x, c] * kernel[0, 0, c, o]

    Shapes: x (N, H, W, C_in), kernel (1, 1, C_in, C_out), bias (C_out,) -> (N, H, W, C_out).
    In MobileNetV2 it expands (C_in -> M) and projects (M -> C_out) every bottleneck.

    >>> pointwise_conv2d(np.ones((1, 1, 1, 2)), np.arange(6.0).reshape(1, 1, 2, 3))[0, 0, 0]
    array([3., 5., 7.])
    """
    n, h, w, c_in = check_nhwc(x, "pointwise_conv2d")
    if kernel.shape[:3] != (1, 1, c_in):
        raise ValueError(
            f"pointwise_conv2d: expected a kernel of shape (1, 1, {c_in}, C_out) for an input with "
            f"{c_in} channels, got kernel.shape={kernel.shape} (x.shape={x.shape})."
        )
    rows = x.reshape(n * h * w, c_in)  # (N*H*W, C_in): every pixel is one row
    out = rows @ kernel[0, 0]  # (N*H*W, C_in) @ (C_in, C_out) -> (N*H*W, C_out)
    if bias is not None:
        out = out + bias
    return out.reshape(n, h, w, -1)  # (N, H, W, C_out)


def pointwise_conv2d_macs(output_shape: tuple[int, ...], kernel_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of `pointwise_conv2d`: MACs = N*H*W*C_out * C_in.

    >>> pointwise_conv2d_macs((1, 14, 14, 576), (1, 1, 96, 576))   # layer.10's expansion
    10838016
    """
    return math.prod(output_shape) * kernel_shape[2]


# ============================================================================ backward


def col2im(
    cols: np.ndarray, padded_shape: tuple[int, int, int, int], *, kernel_size: int, stride: int, dilation: int = 1
) -> np.ndarray:
    """The adjoint of `ops.im2col`: every column entry is added back to the pixel it was copied from.

    Math: x_pad[n, y*s + i*d, x*s + j*d, c] += cols[(n, y, x), (i, j, c)]   (overlapping windows add up)
    Shapes: cols (N*Ho*Wo, KH*KW*C), padded_shape (N, Hp, Wp, C) -> (N, Hp, Wp, C).

    >>> col2im(np.ones((4, 4)), (1, 3, 3, 1), kernel_size=2, stride=1)[0, :, :, 0]   # how often each pixel is read
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    n, hp, wp, c = padded_shape
    k = kernel_size
    ho = conv_output_size(hp, kernel_size=k, stride=stride, dilation=dilation, pad=0)
    wo = conv_output_size(wp, kernel_size=k, stride=stride, dilation=dilation, pad=0)
    windows = cols.reshape(n, ho, wo, k * k, c)  # (N, Ho, Wo, KH*KW, C)
    x = np.zeros(padded_shape, cols.dtype)
    for i in range(k):
        for j in range(k):
            rows = tap_slice(i * dilation, stride, ho)
            columns = tap_slice(j * dilation, stride, wo)
            x[:, rows, columns] += windows[:, :, :, i * k + j]  # tap (i, j) back to where it was read
    return x


def conv2d_backward(
    x: np.ndarray, kernel: np.ndarray, grad_out: np.ndarray, *, stride: int, dilation: int, padding: Pad2D
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of `ops.conv2d` (im2col + matrix product).

    Math: with cols = im2col(pad(x)) and out = cols @ K (K the kernel as a (P, C_out) matrix),
        grad_K = cols^T @ grad_out,   grad_cols = grad_out @ K^T,   grad_x = crop(col2im(grad_cols)),
        grad_bias = sum of grad_out over N, Ho, Wo.
    Shapes: x (N, H, W, C_in), kernel (KH, KW, C_in, C_out), grad_out (N, Ho, Wo, C_out)
            -> grad_x (N, H, W, C_in), grad_kernel like kernel, grad_bias (C_out,).
    """
    kh, kw, c_in, c_out = kernel.shape
    padded = pad2d(x, padding)  # (N, Hp, Wp, C_in)
    cols = im2col(padded, kernel_size=(kh, kw), stride=stride, dilation=dilation)  # (N*Ho*Wo, P)
    grads = grad_out.reshape(-1, c_out)  # (N*Ho*Wo, C_out)
    grad_kernel = (cols.T @ grads).reshape(kernel.shape)  # (P, N*Ho*Wo) @ (N*Ho*Wo, C_out)
    grad_cols = grads @ kernel.reshape(-1, c_out).T  # (N*Ho*Wo, C_out) @ (C_out, P)
    grad_x = pad2d_backward(col2im(grad_cols, padded.shape, kernel_size=kh, stride=stride, dilation=dilation), padding)
    return grad_x, grad_kernel, grads.sum(axis=0)


def pointwise_conv2d_backward(
    x: np.ndarray, kernel: np.ndarray, grad_out: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of `ops.pointwise_conv2d` (a 1x1 convolution: one matrix product per pixel).

    Math: out = X @ K  =>  grad_X = grad_out @ K^T,  grad_K = X^T @ grad_out,  grad_bias = sum grad_out.
    Shapes: x (N, H, W, C_in), kernel (1, 1, C_in, C_out), grad_out (N, H, W, C_out).
    """
    c_in, c_out = kernel.shape[2:]
    rows, grads = x.reshape(-1, c_in), grad_out.reshape(-1, c_out)  # (N*H*W, C_in), (N*H*W, C_out)
    grad_x = (grads @ kernel[0, 0].T).reshape(x.shape)  # (N*H*W, C_out) @ (C_out, C_in)
    grad_kernel = (rows.T @ grads)[None, None]  # (C_in, N*H*W) @ (N*H*W, C_out) -> (1, 1, C_in, C_out)
    return grad_x, grad_kernel, grads.sum(axis=0)


# ============================================================================ loop twins


def im2col_loops(x_padded: np.ndarray, *, kernel_size: int, stride: int, dilation: int = 1) -> np.ndarray:
    """One row per output pixel (n, y, x), its columns the window's values in (i, j, c) order.
    The twin of `ops.im2col`."""
    n, hp, wp, c = x_padded.shape
    k = kernel_size
    ho = conv_output_size(hp, kernel_size=k, stride=stride, dilation=dilation, pad=0)
    wo = conv_output_size(wp, kernel_size=k, stride=stride, dilation=dilation, pad=0)
    cols = np.zeros((n * ho * wo, k * k * c), dtype=x_padded.dtype)
    row = 0
    for b in range(n):
        for y in range(ho):
            for x_ in range(wo):
                col = 0
                for i in range(k):
                    for j in range(k):
                        for ch in range(c):
                            cols[row, col] = x_padded[b, y * stride + i * dilation, x_ * stride + j * dilation, ch]
                            col += 1
                row += 1
    return cols


def conv2d_loops(
    x: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    stride: int = 1,
    dilation: int = 1,
    padding: Pad2D = Pad2D(0, 0, 0, 0),
) -> np.ndarray:
    """out[n, y, x, o] = bias[o] + sum_{i, j, c} x_pad[n, y*s + i*d, x*s + j*d, c] * kernel[i, j, c, o].

    Shapes: x (N, H, W, C_in), kernel (KH, KW, C_in, C_out) -> (N, Ho, Wo, C_out).
    """
    xp = pad2d(x, padding)
    n, hp, wp, c_in = xp.shape
    kh, kw, _, c_out = kernel.shape
    ho = conv_output_size(hp, kernel_size=kh, stride=stride, dilation=dilation, pad=0)
    wo = conv_output_size(wp, kernel_size=kw, stride=stride, dilation=dilation, pad=0)
    out = np.zeros((n, ho, wo, c_out), dtype=x.dtype)
    for b in range(n):
        for y in range(ho):
            for x_ in range(wo):
                acc = np.zeros(c_out, dtype=x.dtype)
                for i in range(kh):
                    for j in range(kw):
                        pixel = xp[b, y * stride + i * dilation, x_ * stride + j * dilation]  # (C_in,)
                        acc += pixel @ kernel[i, j]  # (C_in,) @ (C_in, C_out) -> (C_out,)
                out[b, y, x_] = acc if bias is None else acc + bias
    return out


def pointwise_conv2d_loops(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """out[n, y, x, o] = bias[o] + sum_c x[n, y, x, c] * kernel[0, 0, c, o], one sum at a time.
    The twin of `ops.pointwise_conv2d`."""
    n, h, w, c_in = x.shape
    c_out = kernel.shape[-1]
    out = np.zeros((n, h, w, c_out), dtype=x.dtype)
    for b in range(n):
        for y in range(h):
            for x_ in range(w):
                for o in range(c_out):
                    acc = 0.0 if bias is None else float(bias[o])
                    for ch in range(c_in):
                        acc += float(x[b, y, x_, ch]) * float(kernel[0, 0, ch, o])
                    out[b, y, x_, o] = acc
    return out


def col2im_loops(cols, padded_shape, *, kernel_size, stride, dilation=1):
    """Add every column entry back to the pixel it was copied from. The twin of `backward.col2im`."""
    n, hp, wp, c = padded_shape
    k = kernel_size
    ho = conv_output_size(hp, kernel_size=k, stride=stride, dilation=dilation, pad=0)
    wo = conv_output_size(wp, kernel_size=k, stride=stride, dilation=dilation, pad=0)
    out = np.zeros(padded_shape, cols.dtype)
    row = 0
    for b in range(n):
        for y in range(ho):
            for x_ in range(wo):
                col = 0
                for i in range(k):
                    for j in range(k):
                        for ch in range(c):
                            out[b, y * stride + i * dilation, x_ * stride + j * dilation, ch] += cols[row, col]
                            col += 1
                row += 1
    return out


def conv2d_backward_loops(x, kernel, grad_out, *, stride, dilation, padding):
    """For every term x_pad[...] * kernel[i, j, c, o] of every output: its gradient to both factors.
    The twin of `backward.conv2d_backward` (returns grad_x, grad_kernel, grad_bias)."""
    xp = pad2d(x, padding)
    kh, kw, c_in, c_out = kernel.shape
    n, ho, wo, _ = grad_out.shape
    grad_xp, grad_k = np.zeros_like(xp), np.zeros_like(kernel)
    for b in range(n):
        for y in range(ho):
            for x_ in range(wo):
                for i in range(kh):
                    for j in range(kw):
                        yy, xx = y * stride + i * dilation, x_ * stride + j * dilation
                        grad_k[i, j] += np.outer(xp[b, yy, xx], grad_out[b, y, x_])  # (C_in, C_out)
                        grad_xp[b, yy, xx] += kernel[i, j] @ grad_out[b, y, x_]  # (C_in, C_out) @ (C_out,)
    return pad2d_backward(grad_xp, padding), grad_k, grad_out.sum(axis=(0, 1, 2))


# ============================================================================ integer form


def conv2d_int(
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
    """The int32 accumulator of a quantized convolution (before requantization).

    Math: acc[n, y, x, o] = bias[o] + sum_{i, j, c} (x_pad[n, y*s + i*d, x*s + j*d, c] - x_zero_point)
                                                    * (kernel[o, i, j, c] - kernel_zero_point[o])
    The padding stands for real zeros, i.e. the value x_zero_point: padded pixels add nothing.
    Shapes: x (N, H, W, C_in) ints, kernel (C_out, KH, KW, C_in) (TFLite's OHWI), bias (C_out,)
            -> (N, Ho, Wo, C_out) int64.
    """
    n = x.shape[0]
    c_out, kh, kw, c_in = kernel.shape
    centred = np.pad(x.astype(np.int64) - x_zero_point, ((0, 0), padding[:2], padding[2:], (0, 0)))  # 0 = x_zero_point
    hp, wp = centred.shape[1:3]
    ho, wo = output_size_of_padded(hp, wp, kernel_size=(kh, kw), stride=stride, dilation=dilation, op="conv2d_int")
    taps = [
        kernel_tap(centred, i, j, out_size=(ho, wo), stride=stride, dilation=dilation)
        for i in range(kh)
        for j in range(kw)
    ]
    cols = np.stack(taps, axis=3).reshape(n * ho * wo, kh * kw * c_in)  # (N*Ho*Wo, P) im2col
    weights = (
        (kernel.astype(np.int64) - np.reshape(kernel_zero_point, (-1, 1, 1, 1))).reshape(c_out, -1).T
    )  # (P, C_out)
    acc = exact_int_matmul(cols, weights)  # (N*Ho*Wo, P) @ (P, C_out)
    if bias is not None:
        acc += bias.astype(np.int64)
    return acc.reshape(n, ho, wo, c_out)


# ============================================================================ integer loop twins


def conv2d_int_requantized(
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
    """A whole quantized CONV_2D, as TFLite's kernels run it: integer sums, then requantized with the
    kernel set's rounding rule `multiply` (the reference kernels' `multiply_by_quantized_multiplier`
    by default; the optimized kernels round the final shift's ties up,
    `multiply_by_quantized_multiplier_ties_up`).

    Math: acc = bias + sum (x - x_zero_point) * (kernel - kernel_zero_point)      (`conv2d_int`, int32)
          out = clamp(out_zero_point + round(acc * M0 * 2^(shift - 31)), act_min, act_max)
    with M0 * 2^(shift - 31) = s_x * s_kernel / s_out (per output channel when the kernel is) and
    (act_min, act_max) the fused activation's range (ReLU6: zero_point .. zero_point + 6 / s_out).
    Shapes: x (N, H, W, C_in), kernel (C_out, KH, KW, C_in) -> (N, Ho, Wo, C_out) int64 holding the
    output type's integers.
    """
    acc = conv2d_int(
        x, x_zero_point, kernel, kernel_zero_point, bias, stride=stride, dilation=dilation, padding=padding
    )
    return requantize_output(acc, m0, shift, out_zero_point, act_range, multiply=multiply)


def conv2d_int_loops(x, x_zero_point, kernel, kernel_zero_point, bias, *, stride, dilation, padding):
    """acc[n, y, x, o] = bias[o] + sum (x - x_zero_point) * (kernel - kernel_zero_point), skipping padded
    positions, as C does.
    Shapes: x (N, H, W, C_in), kernel (C_out, KH, KW, C_in) -> (N, Ho, Wo, C_out)."""
    n, h, w, c_in = x.shape
    c_out, kh, kw, _ = kernel.shape
    top, bottom, left, right = padding
    ho = conv_output_size(h, kernel_size=kh, stride=stride, dilation=dilation, pad=top + bottom)
    wo = conv_output_size(w, kernel_size=kw, stride=stride, dilation=dilation, pad=left + right)
    kernel_zero_point = np.broadcast_to(np.asarray(kernel_zero_point), (c_out,))
    out = np.zeros((n, ho, wo, c_out), np.int64)
    for b in range(n):
        for y in range(ho):
            for x_ in range(wo):
                for o in range(c_out):
                    acc = 0 if bias is None else int(bias[o])
                    for i in range(kh):
                        for j in range(kw):
                            yy, xx = y * stride + i * dilation - top, x_ * stride + j * dilation - left
                            if 0 <= yy < h and 0 <= xx < w:
                                for c in range(c_in):
                                    acc += (int(x[b, yy, xx, c]) - x_zero_point) * (
                                        int(kernel[o, i, j, c]) - int(kernel_zero_point[o])
                                    )
                    out[b, y, x_, o] = acc
    return out


# ============================================================================ the page: describe, differentiate, count

CONV_KINDS = {"depthwise": "depthwise", "pointwise": "1x1 pointwise", "conv": "dense"}


def convolution_attrs(spec: Any, tf_padding: bool) -> dict[str, Any]:
    """The attributes a conv layer spec gives its step (the padding actually applied is added by the layer)."""
    return {
        "conv_type": spec.kind,
        "kernel_size": spec.kernel_size,
        "stride": spec.stride,
        "dilation": spec.dilation,
        "groups": 1,  # the depthwise page's attributes say c_in
        "tf_padding": tf_padding,
        "c_in": spec.c_in,
        "c_out": spec.c_out,
    }


def describe_convolution(step: Any) -> str:
    """Any convolution step (dense, 1x1, depthwise) in words: channels, kernel, stride, dilation,
    the padding it applied and why, the output size and the MACs."""
    a = step.attrs
    k, pad = a["kernel_size"], a["padding"]
    how = "TF SAME padding" if a["tf_padding"] else "PyTorch symmetric padding"
    text = (
        f"{CONV_KINDS[a['conv_type']]} convolution {a['c_in']} -> {a['c_out']} channels, {k}x{k} kernel, stride "
        f"{a['stride']}, dilation {a['dilation']} (groups {a['groups']}). {how} for a {spatial(step.input_shapes[0])} "
        f"input, k={k}, s={a['stride']}, d={a['dilation']}: pad top {pad[0]}, bottom {pad[1]}, left {pad[2]}, right "
        f"{pad[3]}; output {spatial(step.output_shape)}. {step.macs:,} MACs."
    )
    return text + (" Batch norm is folded into this kernel and bias." if a.get("folded_bn") else "")


def conv2d_step_forward(step: Any, inputs: list[np.ndarray]) -> np.ndarray:
    a = step.attrs
    x_padded = pad2d(inputs[0], Pad2D(*a["padding"]))
    return step.op(x_padded, step.params["kernel"], step.params.get("bias"), stride=a["stride"], dilation=a["dilation"])


def pointwise_conv2d_step_forward(step: Any, inputs: list[np.ndarray]) -> np.ndarray:
    return step.op(inputs[0], step.params["kernel"], step.params.get("bias"))


def conv2d_step_backward(step: Any, inputs: list[np.ndarray], grad_out: np.ndarray):
    a = step.attrs
    gx, gk, gb = conv2d_backward(
        inputs[0],
        step.params["kernel"],
        grad_out,
        stride=a["stride"],
        dilation=a["dilation"],
        padding=Pad2D(*a["padding"]),
    )
    return [gx], parameter_grads(step, gk, gb)


def pointwise_conv2d_step_backward(step: Any, inputs: list[np.ndarray], grad_out: np.ndarray):
    gx, gk, gb = pointwise_conv2d_backward(inputs[0], step.params["kernel"], grad_out)
    return [gx], parameter_grads(step, gk, gb)


PAGES = (
    OpPage(
        conv2d,
        describe_convolution,
        conv2d_step_backward,
        conv2d_backward,
        conv2d_macs,
        convolution_attrs,
        conv2d_step_forward,
        conv2d_loops,
    ),
    OpPage(
        pointwise_conv2d,
        describe_convolution,
        pointwise_conv2d_step_backward,
        pointwise_conv2d_backward,
        pointwise_conv2d_macs,
        convolution_attrs,
        pointwise_conv2d_step_forward,
        pointwise_conv2d_loops,
    ),
)


def describe_integer_convolution(step: Any) -> str:
    """An integer CONV_2D or DEPTHWISE_CONV_2D step in words: geometry, integer sums, requantization."""
    a = step.attrs
    kernel = step.params["kernel"].shape  # OHWI, or (1, KH, KW, C) depthwise
    kh, kw = kernel[1:3]
    pad = a["padding"]
    return (
        f"integer {a['tflite_op']} {step.input_shapes[0][1]} -> {step.output_shape[1]} channels, {kh}x{kw} kernel, "
        f"stride {a['stride']}, dilation {a['dilation']}, TF SAME padding for a {spatial(step.input_shapes[0])} "
        f"input: pad top {pad[0]}, bottom {pad[1]}, left {pad[2]}, right {pad[3]}; output "
        f"{spatial(step.output_shape)}. int32 sums of (x - x_zero_point) * (w - w_zero_point) + bias: {step.macs:,} "
        f"MACs; its output stands for the float step {a.get('float_step')}.{describe_requantization(step)}"
    )


INTEGER_PAGES = (OpPage(conv2d_int_requantized, describe_integer_convolution),)
