"""Average pooling: the global average before the classifier, and a fixed-window (VALID) average.

Forms: textbook forward (`global_average_pool`, `avg_pool2d`); backward (the gradient spread
evenly over each window); loop twins; the integer forms (`avg_pool2d_int` rounds the window
mean half away from zero, `global_average_pool_int` is TFLite's MEAN, with or without keep_dims;
`global_average_pool_int_optimized` and `global_average_pool_int_xnnpack` the other kernel sets')
and their loop twins.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .padding import as_pair, check_nhwc, kernel_tap, output_size_of_padded, tap_slice
from .pages import OpPage, spatial
from .quantization import (
    c_div,
    describe_integer_op,
    multiply_by_quantized_multiplier,
    multiply_by_quantized_multiplier_scalar,
    multiply_by_quantized_multiplier_ties_up,
    quantize_multiplier,
    srdhm_scalar,
)

# ============================================================================ textbook forward


def global_average_pool(x: np.ndarray, *, keepdims: bool = False) -> np.ndarray:
    """Mean over all pixels of each channel (the classifier's pooler, DeepLab's image pooling).

    Math: out[n, c] = 1/(H*W) * sum_{y, x} x[n, y, x, c]
    Shapes: x (N, H, W, C) -> (N, C), or (N, 1, 1, C) with keepdims=True (as the network keeps it).

    >>> global_average_pool(np.arange(4.0).reshape(1, 2, 2, 1))
    array([[1.5]])
    """
    return x.mean(axis=(1, 2), dtype=x.dtype, keepdims=keepdims)


def avg_pool2d(x: np.ndarray, *, kernel_size: int | tuple[int, int], stride: int = 1) -> np.ndarray:
    """Average over each KH x KW window, VALID padding (TF-slim's fixed 7x7 pooling).

    Math: out[n, y, x, c] = mean_{i, j} x[n, y*s + i, x*s + j, c]
    Shapes: x (N, H, W, C) -> (N, (H-KH)//s + 1, (W-KW)//s + 1, C).

    >>> avg_pool2d(np.arange(9.0).reshape(1, 3, 3, 1), kernel_size=2)[0, :, :, 0]
    array([[2., 3.],
           [5., 6.]])
    """
    n, h, w, c = check_nhwc(x, "avg_pool2d")
    kh, kw = as_pair(kernel_size, "kernel_size")
    ho, wo = output_size_of_padded(h, w, kernel_size=(kh, kw), stride=stride, dilation=1, op="avg_pool2d")
    total = np.zeros((n, ho, wo, c), dtype=x.dtype)  # (N, Ho, Wo, C)
    for i in range(kh):
        for j in range(kw):
            total += kernel_tap(x, i, j, out_size=(ho, wo), stride=stride, dilation=1)  # (N, Ho, Wo, C)
    return total / x.dtype.type(kh * kw)


# ============================================================================ backward


def global_average_pool_backward(grad_out: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """Each of the H*W pixels receives 1/(H*W) of its channel's gradient.

    Shapes: grad_out (N, C) -> (N, H, W, C).
    """
    n, h, w, c = input_shape
    return np.broadcast_to(grad_out[:, None, None, :] / grad_out.dtype.type(h * w), input_shape).copy()


def avg_pool2d_backward(grad_out: np.ndarray, input_shape: tuple[int, ...], *, kernel_size: int, stride: int = 1):
    """Each output's gradient is shared equally by the KH*KW inputs of its window (VALID pooling).

    Shapes: grad_out (N, Ho, Wo, C) -> input_shape (N, H, W, C).
    """
    k = kernel_size
    ho, wo = grad_out.shape[1:3]
    grad_x = np.zeros(input_shape, grad_out.dtype)
    share = grad_out / grad_out.dtype.type(k * k)
    for i in range(k):
        for j in range(k):
            grad_x[:, tap_slice(i, stride, ho), tap_slice(j, stride, wo)] += share
    return grad_x


# ============================================================================ loop twins


def global_average_pool_loops(x: np.ndarray, *, keepdims: bool = False) -> np.ndarray:
    """out[n, c] = sum of the channel's H*W values / (H*W). The twin of `ops.global_average_pool`
    ((N, 1, 1, C) with keepdims)."""
    n, h, w, c = x.shape
    out = np.zeros((n, c), dtype=x.dtype)
    for b in range(n):
        for ch in range(c):
            out[b, ch] = sum(float(x[b, y, x_, ch]) for y in range(h) for x_ in range(w)) / (h * w)
    return out.reshape(n, 1, 1, c) if keepdims else out


def avg_pool2d_loops(x: np.ndarray, *, kernel_size: int, stride: int = 1) -> np.ndarray:
    """out[n, y, x, c] = mean of the kernel_size x kernel_size window at (y*s, x*s), VALID padding."""
    n, h, w, c = x.shape
    k = kernel_size
    ho, wo = (h - k) // stride + 1, (w - k) // stride + 1
    out = np.zeros((n, ho, wo, c), dtype=x.dtype)
    for y in range(ho):
        for x_ in range(wo):
            out[:, y, x_] = x[:, y * stride : y * stride + k, x_ * stride : x_ * stride + k].mean(axis=(1, 2))
    return out


def avg_pool2d_backward_loops(grad_out, input_shape, *, kernel_size, stride=1):
    """Share every output's gradient equally among the pixels of its window."""
    k = kernel_size
    out = np.zeros(input_shape, grad_out.dtype)
    for b, y, x_, ch in np.ndindex(grad_out.shape):
        for i in range(k):
            for j in range(k):
                out[b, y * stride + i, x_ * stride + j, ch] += grad_out[b, y, x_, ch] / (k * k)
    return out


# ============================================================================ integer form


def avg_pool2d_int(x: np.ndarray, *, kernel_size: tuple[int, int], act_range: tuple[int, int]) -> np.ndarray:
    """VALID average pooling with stride 1 over whole windows, rounded half up: (sum + count/2) // count.

    Shapes: x (N, H, W, C) -> (N, H - KH + 1, W - KW + 1, C) int64.
    """
    kh, kw = kernel_size
    n, h, w, c = x.shape
    ho, wo = h - kh + 1, w - kw + 1
    total = np.zeros((n, ho, wo, c), np.int64)
    for i in range(kh):
        for j in range(kw):
            total += x[:, i : i + ho, j : j + wo].astype(np.int64)
    count = kh * kw
    return np.clip((total + count // 2) // count, *act_range)


def global_average_pool_int(
    x: np.ndarray, x_zero_point: int, m0: int, shift: int, out_zero_point: int, out_range: tuple[int, int]
) -> np.ndarray:
    """MEAN over H and W of an int8 tensor, as TFLite's reference_integer_ops::Mean computes it.

    Math: the division by count = H*W is folded into the multiplier M0 * 2^shift (= s_in / s_out):
        k = min(floor(log2(count)), 32, 31 + shift);  M0' = floor(M0 * 2^k / count);  shift' = shift - k
        out = clamp(out_zero_point + MBQM(sum (x - x_zero_point), M0', shift'))
    Shapes: x (N, H, W, C) -> (N, 1, 1, C) int64.

    LiteRT's reference MEAN (`QuantizedMeanOrSum` with the multiplier) computes exactly this with or
    without keep_dims (TensorFlow's converter writes keep_dims=False for Keras's
    GlobalAveragePooling2D; the op then returns (N, C)); TensorFlow Lite's older reference kernels
    took a float path without keep_dims. Measured equal to the pinned interpreter on both.
    """
    count = x.shape[1] * x.shape[2]
    k = min(count.bit_length() - 1, 32, 31 + shift)
    folded = (m0 << k) // count
    total = (x.astype(np.int64) - x_zero_point).sum(axis=(1, 2), keepdims=True)  # (N, 1, 1, C)
    return np.clip(multiply_by_quantized_multiplier(total, folded, shift - k) + out_zero_point, *out_range)


def global_average_pool_int_optimized(
    x: np.ndarray, x_scale: float, x_zero_point: int, out_scale: float, out_zero_point: int, out_range: tuple[int, int]
) -> np.ndarray:
    """MEAN over H and W as the interpreter's optimized kernels compute it (`optimized_ops::Mean`,
    uint8 and int8): the raw sum, the count folded into a float32 multiplier, and the input's zero
    point moved into a bias rounded in float32.

    Math: bias = out_zero_point - round_away(float32(x_zero_point * s_in / s_out))
          M0 * 2^shift = float32(s_in / (count * s_out))
          out = clamp(bias + MBQM_ties_up(sum x, M0, shift))        (raw values: no zero point subtracted)
    It differs from the reference kernel's (`global_average_pool_int`: the offset sum, the count
    folded into the integer multiplier, ties away) in about one output in ten: measured equal on every
    element of the TF2 int8 model's MEAN on the five shipped photos, where the reference rule missed
    84 of 1,280 on one of them.
    Shapes: x (N, H, W, C) -> (N, 1, 1, C) int64.
    """
    count = x.shape[1] * x.shape[2]
    s_in, s_out = np.float32(x_scale), np.float32(out_scale)
    moved = np.float32(np.float32(x_zero_point) * s_in / s_out)
    bias = out_zero_point - int(moved + np.float32(0.5) if moved > 0 else moved - np.float32(0.5))
    m0, shift = quantize_multiplier(float(np.float32(s_in / (np.float32(count) * s_out))))
    total = x.astype(np.int64).sum(axis=(1, 2), keepdims=True)  # (N, 1, 1, C)
    return np.clip(multiply_by_quantized_multiplier_ties_up(total, m0, shift) + bias, *out_range)


def global_average_pool_int_xnnpack(
    x: np.ndarray, x_scale: float, x_zero_point: int, out_scale: float, out_zero_point: int, out_range: tuple[int, int]
) -> np.ndarray:
    """MEAN over H and W as the XNNPACK delegate computes it: the int32 sum less the zero points, then
    one float32 multiply, rounded to nearest with ties to even.

    Math: scale = float32(s_in) / (float32(s_out) * float32(count))     (in float32)
          out = clamp(out_zero_point + rint(float32(sum x - count * x_zero_point) * scale))
    Measured equal to XNNPACK on every element of the TF2 int8 model's MEAN on the shipped photos and
    on 200 random inputs through a one-op graph, where the optimized kernels' rule
    (`global_average_pool_int_optimized`) missed 116 of 1,280 on one photo. On those inputs the order
    of the float32 scale's products does not show; this is the order XNNPACK's source writes.
    Shapes: x (N, H, W, C) -> (N, 1, 1, C) int64.
    """
    count = x.shape[1] * x.shape[2]
    scale = np.float32(x_scale) / (np.float32(out_scale) * np.float32(count))
    total = x.astype(np.int64).sum(axis=(1, 2), keepdims=True) - count * int(x_zero_point)  # (N, 1, 1, C)
    return np.clip(np.rint(total.astype(np.float32) * scale).astype(np.int64) + out_zero_point, *out_range)


def global_average_pool_int_xnnpack_loops(x, x_scale, x_zero_point, out_scale, out_zero_point, out_range):
    """XNNPACK's MEAN one channel at a time: a Python-int sum, then float32 arithmetic."""
    n, h, w, c = x.shape
    scale = np.float32(x_scale) / (np.float32(out_scale) * np.float32(h * w))
    out = np.zeros((n, 1, 1, c), np.int64)
    for b in range(n):
        for ch in range(c):
            total = sum(int(x[b, y, x_, ch]) - x_zero_point for y in range(h) for x_ in range(w))
            value = int(np.rint(np.float32(total) * scale)) + out_zero_point
            out[b, 0, 0, ch] = min(max(value, out_range[0]), out_range[1])
    return out


def global_average_pool_int_optimized_loops(x, x_scale, x_zero_point, out_scale, out_zero_point, out_range):
    """The optimized MEAN one channel at a time, in Python ints (the scales as float32, as the kernel has them)."""
    n, h, w, c = x.shape
    s_in, s_out = np.float32(x_scale), np.float32(out_scale)
    moved = float(np.float32(np.float32(x_zero_point) * s_in / s_out))
    bias = out_zero_point - int(moved + 0.5 if moved > 0 else moved - 0.5)
    m0, shift = quantize_multiplier(float(np.float32(s_in / (np.float32(h * w) * s_out))))
    out = np.zeros((n, 1, 1, c), np.int64)
    for b in range(n):
        for ch in range(c):
            total = sum(int(x[b, y, x_, ch]) for y in range(h) for x_ in range(w))
            left, right = max(shift, 0), max(-shift, 0)
            high = srdhm_scalar(total * (1 << left), m0)
            scaled = (high + (1 << (right - 1))) >> right if right else high
            out[b, 0, 0, ch] = min(max(scaled + bias, out_range[0]), out_range[1])
    return out


# ============================================================================ integer loop twins


def avg_pool2d_int_loops(x, *, kernel_size, act_range):
    """(sum of the window + count / 2) / count, per output pixel and channel (VALID, stride 1)."""
    kh, kw = kernel_size
    n, h, w, c = x.shape
    out = np.zeros((n, h - kh + 1, w - kw + 1, c), np.int64)
    for index in np.ndindex(out.shape):
        b, y, x_, ch = index
        total = sum(int(x[b, y + i, x_ + j, ch]) for i in range(kh) for j in range(kw))
        out[index] = min(max(c_div(total + kh * kw // 2, kh * kw), act_range[0]), act_range[1])
    return out


def global_average_pool_int_loops(x, x_zero_point, m0, shift, out_zero_point, out_range):
    """TFLite's reference_integer_ops::Mean: the count folded into the multiplier, per channel."""
    n, h, w, c = x.shape
    count = h * w
    k = min(count.bit_length() - 1, 32, 31 + shift)
    folded = (m0 << k) // count
    out = np.zeros((n, 1, 1, c), np.int64)
    for b in range(n):
        for ch in range(c):
            total = sum(int(x[b, y, x_, ch]) - x_zero_point for y in range(h) for x_ in range(w))
            value = multiply_by_quantized_multiplier_scalar(total, folded, shift - k) + out_zero_point
            out[b, 0, 0, ch] = min(max(value, out_range[0]), out_range[1])
    return out


# ============================================================================ the pages: describe, differentiate


def describe_pooling(step: Any) -> str:
    window = step.attrs.get("window")
    what = "global average" if window == "global" else f"{window[0]}x{window[1]} average (VALID)"
    return f"{what} pooling {spatial(step.input_shapes[0])} -> {spatial(step.output_shape)}."


def global_average_pool_step_backward(step: Any, inputs: list[np.ndarray], grad_out: np.ndarray):
    return [global_average_pool_backward(grad_out.reshape(grad_out.shape[0], -1), inputs[0].shape)], {}


def avg_pool2d_step_backward(step: Any, inputs: list[np.ndarray], grad_out: np.ndarray):
    a = step.attrs
    return [avg_pool2d_backward(grad_out, inputs[0].shape, kernel_size=a["window"][0], stride=a["stride"])], {}


PAGES = (
    OpPage(
        global_average_pool,
        describe_pooling,
        global_average_pool_step_backward,
        global_average_pool_backward,
        forward_step=lambda step, inputs: step.op(inputs[0], keepdims=True),
        loops=global_average_pool_loops,
    ),
    OpPage(
        avg_pool2d,
        describe_pooling,
        avg_pool2d_step_backward,
        avg_pool2d_backward,
        forward_step=lambda step, inputs: step.op(
            inputs[0], kernel_size=step.attrs["window"][0], stride=step.attrs["stride"]
        ),
        loops=avg_pool2d_loops,
    ),
)

INTEGER_PAGES = (
    OpPage(avg_pool2d_int, describe_integer_op("the window's integer mean, rounded half away from zero")),
    OpPage(
        global_average_pool_int, describe_integer_op("TFLite's MEAN over H and W, the count folded into the multiplier")
    ),
    OpPage(
        global_average_pool_int_optimized,
        describe_integer_op("the optimized kernels' MEAN: the raw sum, a float32 multiplier and bias, ties up"),
    ),
    OpPage(
        global_average_pool_int_xnnpack,
        describe_integer_op("XNNPACK's MEAN: the offset sum times one float32 scale, ties to even"),
    ),
)
