"""Slow, loop-by-loop versions of the operations in `npmnv2.ops`.

Each function here spells out its formula with explicit Python loops over output pixels, so it
can be read next to the paper and used as a test oracle for the vectorised version in `ops`.
They are far too slow for real images: use them on small arrays only.
"""

from __future__ import annotations

import math

import numpy as np

from .ops import Pad2D, pad2d


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
    ho = (hp - dilation * (kh - 1) - 1) // stride + 1
    wo = (wp - dilation * (kw - 1) - 1) // stride + 1
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
    ho = (hp - dilation * (kh - 1) - 1) // stride + 1
    wo = (wp - dilation * (kw - 1) - 1) // stride + 1
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


def resize_bilinear_loops(x: np.ndarray, size: tuple[int, int], *, align_corners: bool) -> np.ndarray:
    """Bilinear resize one output pixel at a time, with PyTorch's source-coordinate rule.

    Shapes: x (N, H, W, C) -> (N, Ho, Wo, C).
    """
    n, h, w, c = x.shape
    ho, wo = size

    def source(dst: int, in_size: int, out_size: int) -> float:
        if align_corners:
            return dst * (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        return max((dst + 0.5) * in_size / out_size - 0.5, 0.0)

    out = np.zeros((n, ho, wo, c), dtype=x.dtype)
    for y in range(ho):
        sy = source(y, h, ho)
        y0 = min(math.floor(sy), h - 1)
        y1, a = min(y0 + 1, h - 1), sy - y0
        for x_ in range(wo):
            sx = source(x_, w, wo)
            x0 = min(math.floor(sx), w - 1)
            x1, b = min(x0 + 1, w - 1), sx - x0
            out[:, y, x_] = (
                (1 - a) * (1 - b) * x[:, y0, x0]
                + (1 - a) * b * x[:, y0, x1]
                + a * (1 - b) * x[:, y1, x0]
                + a * b * x[:, y1, x1]
            )
    return out


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


# ============================================================================ the rest of the ops, one number at a time


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


def im2col_loops(x_padded: np.ndarray, *, kernel_size: int, stride: int, dilation: int = 1) -> np.ndarray:
    """One row per output pixel (n, y, x), its columns the window's values in (i, j, c) order.
    The twin of `ops.im2col`."""
    n, hp, wp, c = x_padded.shape
    k = kernel_size
    ho = (hp - dilation * (k - 1) - 1) // stride + 1
    wo = (wp - dilation * (k - 1) - 1) // stride + 1
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


def batch_norm_loops(
    x: np.ndarray, mean: np.ndarray, var: np.ndarray, gamma: np.ndarray, beta: np.ndarray, *, eps: float
) -> np.ndarray:
    """y = (x - mean) / sqrt(var + eps) * gamma + beta, number by number, as the paper writes it.
    The twin of `ops.batch_norm`."""
    out = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        ch = index[-1]
        out[index] = (x[index] - mean[ch]) / math.sqrt(var[ch] + eps) * gamma[ch] + beta[ch]
    return out


def fold_batch_norm_loops(
    kernel: np.ndarray,
    bias: np.ndarray | None,
    gamma: np.ndarray,
    beta: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    *,
    eps: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Scale each output channel's weights and bias by gamma / sqrt(var + eps), one channel at a time.
    The twin of `ops.fold_batch_norm`."""
    new_kernel = np.zeros_like(kernel)
    new_bias = np.zeros_like(mean)
    for o in range(kernel.shape[-1]):
        scale = gamma[o] / math.sqrt(var[o] + eps)
        new_kernel[..., o] = kernel[..., o] * scale
        new_bias[o] = ((0.0 if bias is None else bias[o]) - mean[o]) * scale + beta[o]
    return new_kernel, new_bias


# One formula per activation, on a Python float.
_SCALAR_ACTIVATIONS = {
    "relu6": lambda v: min(max(v, 0.0), 6.0),
    "relu": lambda v: max(v, 0.0),
    "sigmoid": lambda v: 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v)),
    "tanh": math.tanh,
    "silu": lambda v: v * _SCALAR_ACTIVATIONS["sigmoid"](v),
    "gelu": lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))),
    "gelu_tanh": lambda v: 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3))),
    "quick_gelu": lambda v: v * _SCALAR_ACTIVATIONS["sigmoid"](1.702 * v),
    "hardswish": lambda v: v * min(max(v + 3, 0.0), 6.0) / 6,
    "leaky_relu": lambda v: v if v >= 0 else 0.01 * v,
    "mish": lambda v: v * math.tanh(math.log1p(math.exp(-abs(v))) + max(v, 0.0)),
    "identity": lambda v: v,
}


def activation_loops(name: str, x: np.ndarray) -> np.ndarray:
    """Apply the activation (its `ops` function name: "relu6", "gelu_tanh", ...) to one number at a time.
    The twin of every activation in `ops`."""
    f = _SCALAR_ACTIVATIONS[name]
    out = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        out[index] = f(float(x[index]))
    return out


def linear_loops(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """out[..., o] = bias[o] + sum_c x[..., c] * kernel[c, o]. The twin of `ops.linear`."""
    out = np.zeros((*x.shape[:-1], kernel.shape[1]), dtype=x.dtype)
    for index in np.ndindex(x.shape[:-1]):
        for o in range(kernel.shape[1]):
            out[(*index, o)] = bias[o] + sum(x[(*index, c)] * kernel[c, o] for c in range(kernel.shape[0]))
    return out


def add_loops(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x + y, number by number. The twin of `ops.add`."""
    out = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        out[index] = x[index] + y[index]
    return out


def concat_channels_loops(*tensors: np.ndarray) -> np.ndarray:
    """Copy each tensor's channels after the previous ones'. The twin of `ops.concat_channels`."""
    n, h, w, _ = tensors[0].shape
    out = np.zeros((n, h, w, sum(t.shape[-1] for t in tensors)), dtype=tensors[0].dtype)
    start = 0
    for t in tensors:
        for ch in range(t.shape[-1]):
            out[..., start + ch] = t[..., ch]
        start += t.shape[-1]
    return out


def global_average_pool_loops(x: np.ndarray) -> np.ndarray:
    """out[n, c] = sum of the channel's H*W values / (H*W). The twin of `ops.global_average_pool`."""
    n, h, w, c = x.shape
    out = np.zeros((n, c), dtype=x.dtype)
    for b in range(n):
        for ch in range(c):
            out[b, ch] = sum(float(x[b, y, x_, ch]) for y in range(h) for x_ in range(w)) / (h * w)
    return out


def softmax_loops(logits: np.ndarray) -> np.ndarray:
    """exp(z_k - max z) / sum_j exp(z_j - max z) for each row (last axis). The twin of `ops.softmax`."""
    out = np.zeros_like(logits)
    for index in np.ndindex(logits.shape[:-1]):
        row = [float(v) for v in logits[index]]
        top = max(row)
        total = sum(math.exp(v - top) for v in row)
        out[index] = [math.exp(v - top) / total for v in row]
    return out


def log_softmax_loops(logits: np.ndarray) -> np.ndarray:
    """z_k - max z - log sum_j exp(z_j - max z) for each row. The twin of `ops.log_softmax`."""
    out = np.zeros_like(logits)
    for index in np.ndindex(logits.shape[:-1]):
        row = [float(v) for v in logits[index]]
        top = max(row)
        log_total = math.log(sum(math.exp(v - top) for v in row))
        out[index] = [v - top - log_total for v in row]
    return out


def cross_entropy_loops(logits: np.ndarray, labels: np.ndarray, *, ignore_index: int = -100) -> float:
    """The mean of -log softmax(logits[k])[labels[k]] over the rows not ignored. The twin of
    `ops.cross_entropy`."""
    kept = [k for k in range(len(labels)) if labels[k] != ignore_index]
    losses = [-log_softmax_loops(logits[k : k + 1])[0, int(labels[k])] for k in kept]
    return sum(losses) / len(losses) if losses else math.nan


def mse_loss_loops(predictions: np.ndarray, targets: np.ndarray) -> float:
    """The mean of (p - t)^2 over every element. The twin of `ops.mse_loss`."""
    diffs = [(float(p) - float(t)) ** 2 for p, t in zip(predictions.ravel(), targets.ravel(), strict=True)]
    return sum(diffs) / len(diffs)


def bce_with_logits_loops(logits: np.ndarray, targets: np.ndarray) -> float:
    """The mean of -[t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))]. The twin of `ops.bce_with_logits`."""
    total = 0.0
    for z, t in zip(logits.ravel(), targets.ravel(), strict=True):
        p = _SCALAR_ACTIVATIONS["sigmoid"](float(z))
        total += -(t * math.log(p) + (1 - t) * math.log1p(-p))
    return total / logits.size


def nchw_to_nhwc_loops(x: np.ndarray) -> np.ndarray:
    """out[n, y, x, c] = x[n, c, y, x]. The twin of `ops.nchw_to_nhwc`."""
    n, c, h, w = x.shape
    out = np.zeros((n, h, w, c), dtype=x.dtype)
    for index in np.ndindex(x.shape):
        b, ch, y, x_ = index
        out[b, y, x_, ch] = x[index]
    return out


def nhwc_to_nchw_loops(x: np.ndarray) -> np.ndarray:
    """out[n, c, y, x] = x[n, y, x, c]. The twin of `ops.nhwc_to_nchw`."""
    n, h, w, c = x.shape
    out = np.zeros((n, c, h, w), dtype=x.dtype)
    for index in np.ndindex(x.shape):
        b, y, x_, ch = index
        out[b, ch, y, x_] = x[index]
    return out


# ============================================================================ integer ops, one Python int at a time
# The twins of `npmnv2.integer_ops`, written as TFLite's C reference kernels are: scalar loops with
# C's integer semantics (division rounding toward zero, arithmetic shifts).


def _c_div(a: int, b: int) -> int:
    """C's integer division: toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def srdhm_scalar(a: int, b: int) -> int:
    """gemmlowp's SaturatingRoundingDoublingHighMul, as written there (with its branch on the sign)."""
    if a == b == -(2**31):
        return 2**31 - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return _c_div(ab + nudge, 1 << 31)


def rounding_divide_by_pot_scalar(x: int, exponent: int) -> int:
    """gemmlowp's RoundingDivideByPOT, as written there (mask, remainder, threshold)."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def multiply_by_quantized_multiplier_scalar(x: int, m0: int, shift: int) -> int:
    """TFLite's MultiplyByQuantizedMultiplier (double rounding)."""
    left, right = max(shift, 0), max(-shift, 0)
    return rounding_divide_by_pot_scalar(srdhm_scalar(x * (1 << left), m0), right)


def conv2d_int_loops(x, x_zp, kernel, k_zp, bias, *, stride, dilation, padding):
    """acc[n, y, x, o] = bias[o] + sum (x - x_zp) * (kernel - k_zp), skipping padded positions, as C does.
    Shapes: x (N, H, W, C_in), kernel (C_out, KH, KW, C_in) -> (N, Ho, Wo, C_out)."""
    n, h, w, c_in = x.shape
    c_out, kh, kw, _ = kernel.shape
    top, bottom, left, right = padding
    ho = (h + top + bottom - dilation * (kh - 1) - 1) // stride + 1
    wo = (w + left + right - dilation * (kw - 1) - 1) // stride + 1
    k_zp = np.broadcast_to(np.asarray(k_zp), (c_out,))
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
                                    acc += (int(x[b, yy, xx, c]) - x_zp) * (int(kernel[o, i, j, c]) - int(k_zp[o]))
                    out[b, y, x_, o] = acc
    return out


def depthwise_conv2d_int_loops(x, x_zp, kernel, k_zp, bias, *, stride, dilation, padding):
    """acc[n, y, x, c] = bias[c] + sum (x - x_zp) * (kernel[0, i, j, c] - k_zp[c]). kernel (1, KH, KW, C)."""
    n, h, w, c = x.shape
    _, kh, kw, _ = kernel.shape
    top, bottom, left, right = padding
    ho = (h + top + bottom - dilation * (kh - 1) - 1) // stride + 1
    wo = (w + left + right - dilation * (kw - 1) - 1) // stride + 1
    k_zp = np.broadcast_to(np.asarray(k_zp), (c,))
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
                                acc += (int(x[b, yy, xx, ch]) - x_zp) * (int(kernel[0, i, j, ch]) - int(k_zp[ch]))
                    out[b, y, x_, ch] = acc
    return out


def fully_connected_int_loops(x, x_zp, weights, w_zp, bias):
    """acc[n, o] = bias[o] + sum_c (x[n, c] - x_zp) * (weights[o, c] - w_zp)."""
    n, c = x.shape
    out = np.zeros((n, weights.shape[0]), np.int64)
    for b in range(n):
        for o in range(weights.shape[0]):
            acc = 0 if bias is None else int(bias[o])
            for k in range(c):
                acc += (int(x[b, k]) - x_zp) * (int(weights[o, k]) - w_zp)
            out[b, o] = acc
    return out


def add_int_loops(a, a_scale, a_zp, b, b_scale, b_zp, out_scale, out_zp, act_range):
    """TFLite's reference quantized Add, element by element."""
    from .integer_ops import quantize_multiplier

    twice_max = 2 * max(float(np.float32(a_scale)), float(np.float32(b_scale)))
    ma, sa = quantize_multiplier(float(np.float32(a_scale)) / twice_max)
    mb, sb = quantize_multiplier(float(np.float32(b_scale)) / twice_max)
    mo, so = quantize_multiplier(twice_max / ((1 << 20) * float(np.float32(out_scale))))
    out = np.zeros(a.shape, np.int64)
    for index in np.ndindex(a.shape):
        sa_val = multiply_by_quantized_multiplier_scalar((int(a[index]) - a_zp) * (1 << 20), ma, sa)
        sb_val = multiply_by_quantized_multiplier_scalar((int(b[index]) - b_zp) * (1 << 20), mb, sb)
        raw = multiply_by_quantized_multiplier_scalar(sa_val + sb_val, mo, so) + out_zp
        out[index] = min(max(raw, act_range[0]), act_range[1])
    return out


def average_pool_int_loops(x, *, kernel_size, act_range):
    """(sum of the window + count / 2) / count, per output pixel and channel (VALID, stride 1)."""
    kh, kw = kernel_size
    n, h, w, c = x.shape
    out = np.zeros((n, h - kh + 1, w - kw + 1, c), np.int64)
    for index in np.ndindex(out.shape):
        b, y, x_, ch = index
        total = sum(int(x[b, y + i, x_ + j, ch]) for i in range(kh) for j in range(kw))
        out[index] = min(max(_c_div(total + kh * kw // 2, kh * kw), act_range[0]), act_range[1])
    return out


def mean_int_loops(x, x_zp, m0, shift, out_zp, out_range):
    """TFLite's reference_integer_ops::Mean: the count folded into the multiplier, per channel."""
    n, h, w, c = x.shape
    count = h * w
    k = min(count.bit_length() - 1, 32, 31 + shift)
    folded = (m0 << k) // count
    out = np.zeros((n, 1, 1, c), np.int64)
    for b in range(n):
        for ch in range(c):
            total = sum(int(x[b, y, x_, ch]) - x_zp for y in range(h) for x_ in range(w))
            value = multiply_by_quantized_multiplier_scalar(total, folded, shift - k) + out_zp
            out[b, 0, 0, ch] = min(max(value, out_range[0]), out_range[1])
    return out


def requantize_loops(x, in_zp, m0, shift, out_zp, out_range):
    """TFLite's Requantize, element by element."""
    out = np.zeros(x.shape, np.int64)
    for index in np.ndindex(x.shape):
        value = multiply_by_quantized_multiplier_scalar(int(x[index]) - in_zp, m0, shift) + out_zp
        out[index] = min(max(value, out_range[0]), out_range[1])
    return out


def resize_bilinear_int_loops(x, size, *, align_corners, half_pixel_centers):
    """TFLite's integer ResizeBilinear (10 fractional bits), pixel by pixel, as the C code reads."""
    n, h, w, c = x.shape
    ho, wo = size

    def scale_10(in_size: int, out_size: int) -> int:
        if align_corners and out_size > 1:
            return _c_div((1 << 10) * (in_size - 1) + (out_size - 1) // 2, out_size - 1)
        return _c_div((1 << 10) * in_size + out_size // 2, out_size)

    def values(i: int, scale: int, in_size: int) -> tuple[int, int, int]:
        v = i * scale + (scale // 2 - (1 << 9) if half_pixel_centers else 0)
        return v, max(_c_div(v, 1 << 10), 0), min(_c_div(v + (1 << 10) - 1, 1 << 10), in_size - 1)

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
                    out[b, y, x_, ch] = _c_div(total + ((1 << 19) if total > 0 else -(1 << 19)), 1 << 20)
    return out


def softmax_int_loops(x, x_scale, *, beta=1.0, out_range):
    """TFLite's reference quantized Softmax, one row at a time with Python ints, following gemmlowp."""
    from .integer_ops import quantize_multiplier

    def fmul(a: int, b: int) -> int:
        return srdhm_scalar(a, b)

    def wrap(v: int) -> int:
        return ((v + 2**31) % 2**32) - 2**31

    def sat_shl(v: int, e: int) -> int:
        return min(max(v << e, -(2**31)), 2**31 - 1)

    def exp_neg(a: int) -> int:  # Q5.26 in, Q0.31 out
        frac_bits = 26
        quarter = 1 << (frac_bits - 2)
        a_mod = (a & (quarter - 1)) - quarter
        xq = wrap(sat_shl(a_mod, 5) + (1 << 28))
        x2 = fmul(xq, xq)
        x3 = fmul(x2, xq)
        x4 = fmul(x2, x2)
        x4_over_4 = rounding_divide_by_pot_scalar(x4, 2)
        inner = rounding_divide_by_pot_scalar(wrap(fmul(wrap(x4_over_4 + x3), 715827883) + x2), 1)
        result = wrap(1895147668 + fmul(1895147668, wrap(xq + inner)))
        remainder = a_mod - a
        for exponent, multiplier in ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
                                     (2, 39332535), (3, 720401), (4, 242)):  # fmt: skip
            if remainder & (1 << (frac_bits + exponent)):
                result = fmul(result, multiplier)
        return 2**31 - 1 if a == 0 else result

    def one_over_one_plus_x(a: int) -> int:
        total = a + 2**31 - 1
        half = _c_div(total + (1 if total >= 0 else -1), 2)
        xq = wrap(1515870810 + fmul(half, -1010580540))
        for _ in range(3):
            xq = wrap(xq + sat_shl(fmul(xq, wrap((1 << 29) - fmul(half, xq))), 2))
        return sat_shl(xq, 1)

    multiplier, left_shift = quantize_multiplier(min(beta * float(np.float32(x_scale)) * (1 << 26), (1 << 31) - 1.0))
    diff_min = -math.floor(31 * (1 << 26) / (1 << left_shift))
    out = np.zeros(x.shape, np.int64)
    for index in np.ndindex(x.shape[:-1]):
        row = [int(v) for v in x[index]]
        top = max(row)
        exps = [exp_neg(srdhm_scalar((v - top) * (1 << left_shift), multiplier)) if v - top >= diff_min else None
                for v in row]  # fmt: skip
        total = wrap(sum(rounding_divide_by_pot_scalar(e, 12) for e in exps if e is not None))
        headroom = 32 - total.bit_length()
        scale = one_over_one_plus_x(wrap((total << headroom) - (1 << 31)))
        exponent = 12 - headroom + 31 - 8
        out[index] = [out_range[0] if e is None else min(max(
            rounding_divide_by_pot_scalar(fmul(scale, e), exponent) + out_range[0], out_range[0]), out_range[1])
            for e in exps]  # fmt: skip
    return out


# ============================================================================ backward ops, one number at a time
# The twins of `npmnv2.backward`: each loops over the forward's terms and sends every term's
# gradient back along the path it came, which is the chain rule read literally.


def col2im_loops(cols, padded_shape, *, kernel_size, stride, dilation=1):
    """Add every column entry back to the pixel it was copied from. The twin of `backward.col2im`."""
    n, hp, wp, c = padded_shape
    k = kernel_size
    ho = (hp - dilation * (k - 1) - 1) // stride + 1
    wo = (wp - dilation * (k - 1) - 1) // stride + 1
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
    top, bottom, left, right = padding
    grad_x = grad_xp[:, top : grad_xp.shape[1] - bottom, left : grad_xp.shape[2] - right]
    return grad_x, grad_k, grad_out.sum(axis=(0, 1, 2))


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
    top, bottom, left, right = padding
    grad_x = grad_xp[:, top : grad_xp.shape[1] - bottom, left : grad_xp.shape[2] - right]
    return grad_x, grad_k, grad_out.sum(axis=(0, 1, 2))


def resize_bilinear_backward_loops(grad_out, input_shape, *, align_corners):
    """Send each output pixel's gradient to its four source pixels with their weights. The twin of
    `backward.resize_bilinear_backward`."""
    n, h, w, c = input_shape
    ho, wo = grad_out.shape[1:3]

    def source(dst: int, in_size: int, out_size: int) -> float:
        if align_corners:
            return dst * (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        return max((dst + 0.5) * in_size / out_size - 0.5, 0.0)

    out = np.zeros(input_shape, grad_out.dtype)
    for y in range(ho):
        sy = source(y, h, ho)
        y0 = min(math.floor(sy), h - 1)
        y1, a = min(y0 + 1, h - 1), sy - y0
        for x_ in range(wo):
            sx = source(x_, w, wo)
            x0 = min(math.floor(sx), w - 1)
            x1, b = min(x0 + 1, w - 1), sx - x0
            g = grad_out[:, y, x_]
            out[:, y0, x0] += (1 - a) * (1 - b) * g
            out[:, y0, x1] += (1 - a) * b * g
            out[:, y1, x0] += a * (1 - b) * g
            out[:, y1, x1] += a * b * g
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


def batch_norm_backward_loops(x, var, gamma, mean, grad_out, *, eps):
    """Per element: d y / d x = gamma / sqrt(var + eps); d y / d gamma = (x - mean) / sqrt(var + eps)."""
    grad_x = np.zeros_like(x)
    grad_gamma, grad_beta = np.zeros_like(gamma), np.zeros_like(gamma)
    for index in np.ndindex(x.shape):
        ch = index[-1]
        inv_std = 1 / math.sqrt(var[ch] + eps)
        grad_x[index] = grad_out[index] * gamma[ch] * inv_std
        grad_gamma[ch] += grad_out[index] * (x[index] - mean[ch]) * inv_std
        grad_beta[ch] += grad_out[index]
    return grad_x, grad_gamma, grad_beta


def cross_entropy_backward_loops(logits, labels, *, ignore_index=-100):
    """Per kept row: softmax minus the one-hot label, divided by the number of kept rows."""
    kept = [k for k in range(len(labels)) if labels[k] != ignore_index]
    grad = np.zeros_like(logits)
    for k in kept:
        row = softmax_loops(logits[k : k + 1])[0]
        row[int(labels[k])] -= 1
        grad[k] = row / len(kept)
    return grad
