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
