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
