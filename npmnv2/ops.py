"""The array operations MobileNetV2 is made of, one small pure NumPy function each.

Layout inside npmnv2 (see docs/decisions.md):
    activations  NHWC   (N, H, W, C)
    kernels      HWIO   (KH, KW, C_in, C_out); depthwise kernels (KH, KW, C)
The last kernel axis is always the output channel, so a 1x1 convolution is `x @ kernel[0, 0]`
and batch-norm folding broadcasts the same way for every convolution.

Shape vocabulary: N batch; H, W in; Ho, Wo out; C_in, C_out; M expanded channels;
KH, KW kernel; K_eff = d*(K-1)+1 the dilated kernel extent; L labels; P = KH*KW*C_in.

Sections: padding | im2col + conv | depthwise | batch norm | activations | linear, add, concat |
pooling + resize | softmax + losses | layout | MACs. Nothing here draws, prints or keeps state.

These are the textbook forms, the ones a trace runs: each op allocates its output and never
writes into its inputs. The loop twin of every op is in `npmnv2.reference`; the tricks that
make the plain forward fast live in `npmnv2.fast_forward` only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

# ============================================================================ padding


class Pad2D(NamedTuple):
    """Zero padding of a feature map, in pixels: (top, bottom, left, right)."""

    top: int
    bottom: int
    left: int
    right: int


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
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


def _check_nhwc(x: np.ndarray, op: str) -> tuple[int, int, int, int]:
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        got = f"shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise ValueError(f"{op}: expected an NHWC array of rank 4 (N, H, W, C), got {got}.")
    return x.shape


def _output_size_of_padded(hp: int, wp: int, *, kernel_size: tuple[int, int], stride: int, dilation: int, op: str):
    """(Ho, Wo) of a convolution over an already padded Hp x Wp input; an error when the dilated
    kernel does not fit."""
    kh, kw = kernel_size
    k_eff = (dilation * (kh - 1) + 1, dilation * (kw - 1) + 1)  # the dilated kernel's extent
    if hp < k_eff[0] or wp < k_eff[1]:
        raise ValueError(
            f"{op}: the padded input {hp}x{wp} is smaller than the dilated kernel {k_eff[0]}x{k_eff[1]}; "
            "use a larger input."
        )
    return (hp - k_eff[0]) // stride + 1, (wp - k_eff[1]) // stride + 1


def kernel_tap(x_padded: np.ndarray, i: int, j: int, *, out_size: tuple[int, int], stride: int, dilation: int):
    """What kernel tap (i, j) sees at every output pixel: a strided slice of the padded input (a view).

    Math: tap[n, y, x, c] = x_padded[n, y*s + i*d, x*s + j*d, c]
    Shapes: x_padded (N, Hp, Wp, C) -> (N, Ho, Wo, C).

    >>> kernel_tap(np.arange(16.0).reshape(1, 4, 4, 1), 1, 1, out_size=(2, 2), stride=2, dilation=1)[0, :, :, 0]
    array([[ 5.,  7.],
           [13., 15.]])
    """
    ho, wo = out_size
    top, left = i * dilation, j * dilation
    return x_padded[:, top : top + stride * (ho - 1) + 1 : stride, left : left + stride * (wo - 1) + 1 : stride]


# ============================================================================ im2col + conv


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
    n, hp, wp, c_in = _check_nhwc(x_padded, "im2col")
    kh, kw = _pair(kernel_size, "kernel_size")
    ho, wo = _output_size_of_padded(hp, wp, kernel_size=(kh, kw), stride=stride, dilation=dilation, op="im2col")
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
    n, h, w, c_in = _check_nhwc(x, "conv2d")
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
    n, h, w, c_in = _check_nhwc(x, "pointwise_conv2d")
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


# ============================================================================ depthwise


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
    is `npmnv2.reference.depthwise_conv2d_loops`.

    >>> x = np.arange(9.0).reshape(1, 3, 3, 1)
    >>> depthwise_conv2d(x, np.ones((3, 3, 1)), dilation=1, padding=Pad2D(1, 1, 1, 1))[0, :, :, 0]
    array([[ 8., 15., 12.],
           [21., 36., 27.],
           [20., 33., 24.]])
    """
    n, h, w, c = _check_nhwc(x, "depthwise_conv2d")
    if kernel.ndim != 3 or kernel.shape[2] != c:
        raise ValueError(
            f"depthwise_conv2d: kernel must be (KH, KW, C) with C={c} (one filter per channel), "
            f"got kernel.shape={kernel.shape} for x.shape={x.shape}."
        )
    kh, kw, _ = kernel.shape
    x_padded = pad2d(x, padding)  # (N, Hp, Wp, C)
    _, hp, wp, _ = x_padded.shape
    ho, wo = _output_size_of_padded(
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


# ============================================================================ batch norm


def batch_norm(
    x: np.ndarray, mean: np.ndarray, var: np.ndarray, gamma: np.ndarray, beta: np.ndarray, *, eps: float
) -> np.ndarray:
    """Inference-mode batch normalisation with running statistics, per channel (last axis).

    Math: y = (x - mean) / sqrt(var + eps) * gamma + beta
    computed as y = x * scale + shift with scale = gamma / sqrt(var + eps), shift = beta - mean * scale
    (the form PyTorch's CPU kernel uses).

    Shapes: x (..., C); mean, var, gamma, beta (C,) -> (..., C).

    Parameters:
        eps: the layer's own epsilon (transformers: 1e-3 in the backbone, 1e-5 in the DeepLab head).

    >>> batch_norm(np.array([[3.0]]), np.array([1.0]), np.array([4.0]), np.array([2.0]), np.array([0.5]), eps=0.0)
    array([[2.5]])
    """
    scale = (gamma / np.sqrt(var + eps)).astype(x.dtype, copy=False)  # (C,)
    shift = (beta - mean * scale).astype(x.dtype, copy=False)  # (C,)
    return x * scale + shift  # (..., C) * (C,) + (C,)


def fold_batch_norm(
    kernel: np.ndarray,
    bias: np.ndarray | None,
    gamma: np.ndarray,
    beta: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    *,
    eps: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Merge an inference-mode batch norm into the convolution before it.

    Math (per output channel o):
        scale[o]  = gamma[o] / sqrt(var[o] + eps)
        kernel'[..., o] = kernel[..., o] * scale[o]
        bias'[o]  = (bias[o] - mean[o]) * scale[o] + beta[o]        (bias = 0 when the conv has none)
    Why: BN(conv(x)) = (W*x + b - mean) * scale + beta = (scale*W)*x + ((b - mean)*scale + beta):
    conv and BN are both affine, so their composition is one affine map.

    Shapes: kernel (KH, KW, C_in, C_out) or depthwise (KH, KW, C); bias, gamma, beta, mean, var
    (C_out,). Returns (kernel', bias') of the same shapes. Works because the last kernel axis is
    always the output channel.

    >>> k, b = fold_batch_norm(np.ones((1, 1, 1, 1)), None, np.array([2.0]), np.array([1.0]),
    ...                        np.array([0.5]), np.array([4.0]), eps=0.0)
    >>> k.ravel(), b
    (array([1.]), array([0.5]))
    """
    scale = gamma / np.sqrt(var + eps)  # (C_out,)
    conv_bias = np.zeros_like(mean) if bias is None else bias
    return kernel * scale, (conv_bias - mean) * scale + beta


# ============================================================================ activations


def relu6(x: np.ndarray) -> np.ndarray:
    """min(max(x, 0), 6): ReLU capped at 6, robust under low-precision arithmetic (MobileNetV1/V2)."""
    return np.clip(x, 0, 6)


def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0)."""
    return np.maximum(x, 0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), written to avoid overflow: exp(-|x|) never exceeds 1.

    >>> sigmoid(np.array([0.0]))
    array([0.5])
    """
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z)).astype(x.dtype, copy=False)


def tanh(x: np.ndarray) -> np.ndarray:
    """tanh(x)."""
    return np.tanh(x)


def silu(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(x), a.k.a. swish."""
    return x * sigmoid(x)


_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU: 0.5 * x * (1 + erf(x / sqrt(2))).

    NumPy has no erf ufunc, so this evaluates Python's correctly rounded `math.erf` per
    element: exact, but slow -- fine for experiments with `hidden_act="gelu"`.
    """
    return (0.5 * x * (1 + _erf(x / math.sqrt(2)).astype(x.dtype))).astype(x.dtype, copy=False)


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """Tanh-approximated GELU: 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))."""
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def quick_gelu(x: np.ndarray) -> np.ndarray:
    """x * sigmoid(1.702 * x)."""
    return x * sigmoid(1.702 * x)


def hardswish(x: np.ndarray) -> np.ndarray:
    """x * relu6(x + 3) / 6 (MobileNetV3)."""
    return x * np.clip(x + 3, 0, 6) / 6


def leaky_relu(x: np.ndarray) -> np.ndarray:
    """x if x >= 0 else 0.01 * x (PyTorch's default slope)."""
    return np.where(x >= 0, x, x * x.dtype.type(0.01))


def mish(x: np.ndarray) -> np.ndarray:
    """x * tanh(softplus(x)), softplus(x) = log(1 + exp(x)) computed stably."""
    return x * np.tanh(np.logaddexp(0, x).astype(x.dtype, copy=False))


def identity(x: np.ndarray) -> np.ndarray:
    """x unchanged (transformers' "linear")."""
    return x


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    # the names transformers' ACT2FN gives these functions
    "relu6": relu6,
    "relu": relu,
    "gelu": gelu,
    "gelu_new": gelu_tanh,
    "gelu_pytorch_tanh": gelu_tanh,
    "gelu_fast": gelu_tanh,
    "quick_gelu": quick_gelu,
    "silu": silu,
    "swish": silu,
    "tanh": tanh,
    "sigmoid": sigmoid,
    "hardswish": hardswish,
    "leaky_relu": leaky_relu,
    "mish": mish,
    "linear": identity,
}


def activation(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """The activation function transformers calls `name` (see ACTIVATIONS for the list)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; supported: {', '.join(sorted(ACTIVATIONS))}.")
    return ACTIVATIONS[name]


# ============================================================================ linear, add, concat


def linear(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """A fully connected layer on the last axis (transformers' classifier, an nn.Linear).

    Math: out[..., o] = bias[o] + sum_c x[..., c] * kernel[c, o]
    Shapes: x (..., C_in), kernel (C_in, L) (PyTorch's (L, C_in) weight, transposed), bias (L,) -> (..., L).

    >>> linear(np.array([[1.0, 2.0]]), np.array([[1.0], [10.0]]), np.array([0.5]))
    array([[21.5]])
    """
    return x @ kernel + bias  # (..., C_in) @ (C_in, L) -> (..., L)


def linear_macs(output_shape: tuple[int, ...], kernel_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of `linear`: MACs = (number of output vectors) * L * C_in.

    >>> linear_macs((1, 1, 1, 1001), (1280, 1001))
    1281280
    """
    return math.prod(output_shape) * kernel_shape[0]


def add(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The residual connection: x + y, elementwise; both (N, H, W, C) of the same shape.

    >>> add(np.ones((1, 1, 1, 2)), np.full((1, 1, 1, 2), 2.0)).ravel()
    array([3., 3.])
    """
    if x.shape != y.shape:
        raise ValueError(f"add: a residual connection needs equal shapes, got {x.shape} and {y.shape}.")
    return x + y


def concat_channels(*tensors: np.ndarray) -> np.ndarray:
    """Stack NHWC tensors along the channel axis, in the order given.

    Shapes: (N, H, W, C_1), (N, H, W, C_2), ... -> (N, H, W, C_1 + C_2 + ...).

    >>> concat_channels(np.zeros((1, 2, 2, 3)), np.ones((1, 2, 2, 5))).shape
    (1, 2, 2, 8)
    """
    return np.concatenate(tensors, axis=-1)


# ============================================================================ pooling + resize


def global_average_pool(x: np.ndarray) -> np.ndarray:
    """Mean over all pixels of each channel (the classifier's pooler, DeepLab's image pooling).

    Math: out[n, c] = 1/(H*W) * sum_{y, x} x[n, y, x, c]
    Shapes: x (N, H, W, C) -> (N, C).

    >>> global_average_pool(np.arange(4.0).reshape(1, 2, 2, 1))
    array([[1.5]])
    """
    return x.mean(axis=(1, 2), dtype=x.dtype)


def avg_pool2d(x: np.ndarray, *, kernel_size: int | tuple[int, int], stride: int = 1) -> np.ndarray:
    """Average over each KH x KW window, VALID padding (TF-slim's fixed 7x7 pooling).

    Math: out[n, y, x, c] = mean_{i, j} x[n, y*s + i, x*s + j, c]
    Shapes: x (N, H, W, C) -> (N, (H-KH)//s + 1, (W-KW)//s + 1, C).

    >>> avg_pool2d(np.arange(9.0).reshape(1, 3, 3, 1), kernel_size=2)[0, :, :, 0]
    array([[2., 3.],
           [5., 6.]])
    """
    n, h, w, c = _check_nhwc(x, "avg_pool2d")
    kh, kw = _pair(kernel_size, "kernel_size")
    ho, wo = _output_size_of_padded(h, w, kernel_size=(kh, kw), stride=stride, dilation=1, op="avg_pool2d")
    total = np.zeros((n, ho, wo, c), dtype=x.dtype)  # (N, Ho, Wo, C)
    for i in range(kh):
        for j in range(kw):
            total += kernel_tap(x, i, j, out_size=(ho, wo), stride=stride, dilation=1)  # (N, Ho, Wo, C)
    return total / x.dtype.type(kh * kw)


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
    n, h, w, c = _check_nhwc(x, "resize_bilinear")
    ho, wo = _pair(size, "size")
    y0, y1, a = bilinear_source(ho, h, align_corners=align_corners, dtype=x.dtype)
    x0, x1, b = bilinear_source(wo, w, align_corners=align_corners, dtype=x.dtype)
    a = a[:, None, None]  # (Ho, 1, 1) broadcasts over W, C
    rows = x[:, y0] * (1 - a) + x[:, y1] * a  # (N, Ho, W, C)
    b = b[:, None]  # (Wo, 1) broadcasts over C
    return rows[:, :, x0] * (1 - b) + rows[:, :, x1] * b  # (N, Ho, Wo, C)


# ============================================================================ softmax + losses


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """exp(z - max z) / sum exp(z - max z) along `axis` (shifting by the max avoids overflow).

    >>> softmax(np.array([0.0, np.log(3.0)]))
    array([0.25, 0.75])
    """
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """z - max z - log(sum exp(z - max z)) along `axis`.

    >>> np.exp(log_softmax(np.array([0.0, np.log(3.0)])))
    array([0.25, 0.75])
    """
    z = logits - logits.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def cross_entropy(logits: np.ndarray, labels: np.ndarray, *, ignore_index: int = -100) -> np.ndarray:
    """Mean negative log-likelihood of the true class, skipping `ignore_index` (torch's default reduction).

    Math: loss = -1/|V| * sum_{k in V} log_softmax(logits[k])[labels[k]],  V = {k : labels[k] != ignore_index}
    (NaN when every label is ignored, as in PyTorch).

    Shapes: logits (K, L) with classes on the last axis, labels (K,) ints -> scalar.

    >>> float(cross_entropy(np.array([[0.0, 0.0], [5.0, 5.0]]), np.array([1, -100])))
    0.6931471805599453
    """
    keep = labels != ignore_index  # (K,)
    log_p = log_softmax(logits[keep], axis=-1)  # (|V|, L)
    picked = np.take_along_axis(log_p, labels[keep][:, None].astype(np.int64), axis=-1)  # (|V|, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return -picked.sum(dtype=logits.dtype) / logits.dtype.type(keep.sum())


def mse_loss(predictions: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """mean((predictions - targets)^2) (regression, `num_labels == 1`).

    >>> float(mse_loss(np.array([1.0, 3.0]), np.array([0.0, 0.0])))
    5.0
    """
    return np.mean((predictions - targets) ** 2, dtype=predictions.dtype)


def bce_with_logits(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Binary cross-entropy on logits, averaged over every element (multi-label classification).

    Math: mean(max(z, 0) - z*t + log(1 + exp(-|z|)))   -- the overflow-free form of
          -[t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))].

    >>> round(float(bce_with_logits(np.array([0.0]), np.array([1.0]))), 6)
    0.693147
    """
    z = logits
    return np.mean(np.maximum(z, 0) - z * targets + np.log1p(np.exp(-np.abs(z))), dtype=z.dtype)


# ============================================================================ layout


def nchw_to_nhwc(x: np.ndarray) -> np.ndarray:
    """The public API's NCHW (transformers' layout) to npmnv2's NHWC: a view, no copy.

    Shapes: (N, C, H, W) -> (N, H, W, C).
    """
    return x.transpose(0, 2, 3, 1)


def nhwc_to_nchw(x: np.ndarray) -> np.ndarray:
    """npmnv2's NHWC back to the public API's NCHW: a view, no copy.

    Shapes: (N, H, W, C) -> (N, C, H, W).
    """
    return x.transpose(0, 3, 1, 2)


# ============================================================================ MACs

# Each op that multiplies by weights, and the formula (beside the op above) counting its
# multiply-accumulates from its output shape and its kernel shape (both in npmnv2's layout).
MACS: dict[Callable[..., np.ndarray], Callable[[tuple[int, ...], tuple[int, ...]], int]] = {
    conv2d: conv2d_macs,
    pointwise_conv2d: pointwise_conv2d_macs,
    depthwise_conv2d: depthwise_conv2d_macs,
    linear: linear_macs,
}
