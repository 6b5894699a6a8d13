"""The fast kernels of the plain forward: one fast form per layer kind, and the tricks they use.

`npmnv2.layer_kinds.LAYER_KINDS` names, for each layer kind, the textbook op a trace runs and the
fast form here that `model(pixel_values)` runs (through `npmnv2.fast.forward.FastLayers`); the
one assembly of the network (`npmnv2.network`) calls neither directly. What happens here, and
why (measurements in docs/decisions.md):

- a 1x1 (or im2col) conv that feeds a depthwise conv writes its output already zero-padded for
  it, with the bias inside the matrix product (`pad2d_homogeneous`): the wide expanded tensor is
  never copied into a padded buffer (`Padded`);
- stride-1 depthwise convs are one einsum over whole image rows (`depthwise_rows`), strided
  ones one einsum over a window view (`depthwise_windows`); both read strided views made with
  `as_strided`, which the textbook ops do not use;
- bias and activation run in place on a conv's output, a whole image row at a time (`along_rows`);
- a 1x1 conv of a channel concatenation is the sum of the 1x1 convs of its parts, and a part that
  is one pixel broadcast to the grid (DeepLab's image pooling) is multiplied once per image
  (`ChannelParts`).

Imports only `npmnv2.ops`: a layer spec is anything with a `ConvSpec`'s fields (`LayerGeometry`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple, Protocol

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..ops import Pad2D, activation, conv_output_size, conv_padding, im2col, pad2d
from ..ops.padding import tap_slice


class LayerGeometry(Protocol):
    """The fields of `npmnv2.architecture.ConvSpec` the fast forms read."""

    name: str
    c_in: int
    kernel_size: int
    stride: int
    dilation: int
    activation: str | None


# ============================================================================ geometry and padding


@functools.lru_cache(maxsize=4096)
def geometry(spec: LayerGeometry, h: int, w: int, tf_padding: bool) -> tuple[Pad2D, int, int]:
    """The padding a conv layer applies to an H x W input and its output size (Ho, Wo), cached:
    the same few sizes come back on every forward pass."""
    k, s, d = spec.kernel_size, spec.stride, spec.dilation
    pad = conv_padding(h, w, kernel_size=k, stride=s, dilation=d, tf_padding=tf_padding)
    ho = conv_output_size(h, kernel_size=k, stride=s, dilation=d, pad=pad.top + pad.bottom)
    wo = conv_output_size(w, kernel_size=k, stride=s, dilation=d, pad=pad.left + pad.right)
    return pad, ho, wo


def pad2d_homogeneous(x: np.ndarray, padding: Pad2D) -> np.ndarray:
    """Zero-pad the spatial axes and append a channel of ones inside the image (zeros in the border).

    Why: a 1x1 convolution with the kernel [[K], [b]] (its bias as one more input row) maps each
    pixel [x, 1] to x @ K + b, and the zero pixels of the border to exactly 0. So
        pad2d_homogeneous(x, p) @ [[K], [b]] == pad2d(x @ K + b, p)
    (homogeneous coordinates, as in projective geometry): an expansion's output comes out already
    padded for the depthwise conv after it, for the price of padding the narrow input.

    Shapes: x (N, H, W, C) -> (N, H + top + bottom, W + left + right, C + 1).

    >>> pad2d_homogeneous(np.full((1, 1, 2, 1), 5.0), Pad2D(0, 1, 1, 0))[0].transpose(2, 0, 1)
    array([[[0., 5., 5.],
            [0., 0., 0.]],
    <BLANKLINE>
           [[0., 1., 1.],
            [0., 0., 0.]]])
    """
    n, h, w, c = x.shape
    top, bottom, left, right = padding
    out = np.zeros((n, h + top + bottom, w + left + right, c + 1), x.dtype)
    inside = out[:, top : top + h, left : left + w]  # (N, H, W, C + 1), a view
    inside[..., :c] = x
    inside[..., c] = 1
    return out


# ============================================================================ depthwise


def depthwise_rows(x_padded: np.ndarray, kernel: np.ndarray, *, dilation: int = 1) -> np.ndarray:
    """Stride-1 depthwise correlation of an already padded input, no bias: one einsum over image rows.

    Math: out[n, y, x, c] = sum_{i, j} x[n, y + i*d, x + j*d, c] * kernel[i, j, c]

    How: in NHWC one image row is W*C numbers in a row, and a shift by j*d pixels is an offset of
    j*d*C numbers. So for output row y and tap (i, j), the Wo*C products needed are two runs of
    Wo*C numbers: input row y + i*d from offset j*d*C, and kernel[i, j] repeated Wo times. A
    strided view holds all those runs (no copy), and one einsum sums over the taps Wo*C numbers
    at a time (a window-by-window einsum works on C numbers at a time, 3x slower for C = 32):
        out_rows[n, y, q] = sum_{i, j} runs[n, y, i, j, q] * tiled[i, j, q],   q = x*C + c.

    Shapes: x_padded (N, H, W, C), kernel (KH, KW, C) -> (N, H - d*(KH-1), W - d*(KW-1), C).

    >>> depthwise_rows(np.arange(4.0).reshape(1, 1, 4, 1), np.ones((1, 2, 1)))[0, 0, :, 0]
    array([1., 3., 5.])
    """
    n, h, w, c = x_padded.shape
    kh, kw, _ = kernel.shape
    ho, wo = h - dilation * (kh - 1), w - dilation * (kw - 1)
    x = np.ascontiguousarray(x_padded)
    sn, sh, sw, sc = x.strides
    runs = as_strided(
        x, shape=(n, ho, kh, kw, wo * c), strides=(sn, sh, dilation * sh, dilation * sw, sc), writeable=False
    )  # (N, Ho, KH, KW, Wo*C), a view: runs[n, y, i, j] = x[n, y + i*d, j*d : j*d + Wo].ravel()
    # (KH, KW, Wo*C): tiled[i, j, x*C + c] = kernel[i, j, c], i.e. kernel[i, j] repeated Wo times
    tiled = np.broadcast_to(kernel[:, :, None, :], (kh, kw, wo, c)).reshape(kh, kw, wo * c)
    out = np.einsum("nyijq,ijq->nyq", runs, tiled)  # (N, Ho, Wo*C)
    return out.reshape(n, ho, wo, c)


def depthwise_windows(x_padded: np.ndarray, kernel: np.ndarray, *, stride: int, dilation: int) -> np.ndarray:
    """Strided depthwise correlation of an already padded input, no bias: one einsum over windows.

    Strided rows are not contiguous runs, so the einsum goes window by window: a strided view
    holds every output pixel's KH x KW neighbourhood (every s-th window, every d-th pixel in it).
    Shapes: x_padded (N, Hp, Wp, C), kernel (KH, KW, C) -> (N, Ho, Wo, C).

    >>> depthwise_windows(np.arange(5.0).reshape(1, 1, 5, 1), np.ones((1, 3, 1)), stride=2, dilation=1).ravel()
    array([3., 9.])
    """
    n, hp, wp, c = x_padded.shape
    kh, kw, _ = kernel.shape
    ho = conv_output_size(hp, kernel_size=kh, stride=stride, dilation=dilation, pad=0)
    wo = conv_output_size(wp, kernel_size=kw, stride=stride, dilation=dilation, pad=0)
    x = np.ascontiguousarray(x_padded)
    sn, sh, sw, sc = x.strides
    windows = as_strided(
        x,
        shape=(n, ho, wo, c, kh, kw),
        strides=(sn, stride * sh, stride * sw, sc, dilation * sh, dilation * sw),
        writeable=False,
    )  # (N, Ho, Wo, C, KH, KW), a view: windows[n, y, x, c, i, j] = x_pad[n, y*s + i*d, x*s + j*d, c]
    return np.einsum("nyxcij,ijc->nyxc", windows, kernel)  # (N, Ho, Wo, C)


def depthwise(x_padded: np.ndarray, kernel: np.ndarray, *, stride: int, dilation: int) -> np.ndarray:
    """`ops.depthwise_conv2d` of an already padded input, no bias, by the faster einsum for the stride."""
    if stride == 1:
        return depthwise_rows(x_padded, kernel, dilation=dilation)
    return depthwise_windows(x_padded, kernel, stride=stride, dilation=dilation)


# ============================================================================ in-place epilogues

# In-place versions of the activations MobileNetV2 uses, for tensors the plain forward owns.
# f(x) overwrites x; f(x, out=z) writes into z instead (z may be a view, e.g. inside a padded buffer).
INPLACE_ACTIVATIONS: dict[str, Callable[..., np.ndarray]] = {
    "relu6": lambda x, out=None: np.clip(x, 0, 6, out=x if out is None else out),
    "relu": lambda x, out=None: np.maximum(x, 0, out=x if out is None else out),
}


def activation_inplace(name: str, x: np.ndarray) -> np.ndarray:
    """Apply activation `name` to x, overwriting x when the activation has an in-place form."""
    if name in INPLACE_ACTIVATIONS:
        INPLACE_ACTIVATIONS[name](x)
        return x
    return activation(name)(x)


def along_rows(x: np.ndarray, *vectors: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """x as image rows, and per-channel vectors repeated to match, for elementwise passes.

    NumPy broadcasts a (C,) vector over (N, H, W, C) in inner loops of C numbers; over the same
    memory seen as (N*H, W*C) rows, with the vector repeated W times, the loops are W*C long
    (1.3-2x faster for MobileNetV2's layers). Falls back to x itself when x is not a contiguous
    NHWC array.

    Shapes: x (N, H, W, C), vectors (C,) -> x as (N*H, W*C) (a view), vectors as (W*C,).

    >>> rows, (v,) = along_rows(np.zeros((1, 2, 3, 2)), np.array([1.0, 2.0]))
    >>> rows.shape, v
    ((2, 6), array([1., 2., 1., 2., 1., 2.]))
    """
    if x.ndim != 4 or not x.flags.c_contiguous:
        return x, list(vectors)
    n, h, w, c = x.shape
    return x.reshape(n * h, w * c), [np.broadcast_to(v, (w, c)).reshape(w * c) for v in vectors]


def bias_activation(x: np.ndarray, bias: np.ndarray | None, name: str | None) -> np.ndarray:
    """x + bias, then activation `name` (None: none), in place: the epilogue of a folded convolution.

    Shapes: x (..., C), bias (C,) -> x.
    """
    if bias is not None:
        rows, (bias,) = along_rows(x, bias)
        rows += bias
    return x if name is None else activation_inplace(name, x)


@functools.cache
def keeps_zero(name: str | None) -> bool:
    """Does activation `name` map 0 to 0 (relu, relu6, gelu, silu, tanh: yes; sigmoid: no)?
    Only then may an activated output be padded before the activation."""
    return name is None or bool(activation(name)(np.zeros(1))[0] == 0)


# ============================================================================ folded layers


class FoldedConv(NamedTuple):
    """One layer as the plain forward runs it: batch norm folded into kernel and bias.

    kernel: depthwise (KH, KW, C); linear (C_in, L); otherwise the 1x1 form (1, 1, P, C_out) of
        the HWIO kernel, P = KH*KW*C_in (a dense conv multiplies the im2col patch image).
    bias: (C_out,), or None when the layer has neither batch norm nor bias.
    homogeneous: (1, 1, P + 1, C_out), the kernel with the bias as one more input row, for inputs
        carrying a channel of ones (`pad2d_homogeneous`); None for depthwise and linear layers.
    All three are new read-only arrays, never the model's own.
    """

    kernel: np.ndarray
    bias: np.ndarray | None
    homogeneous: np.ndarray | None


# ============================================================================ layers


def patch_image(x: np.ndarray, spec: LayerGeometry, tf_padding: bool) -> np.ndarray:
    """A dense conv's input as the image of its patches, so that the conv is a 1x1 conv on it.

    Shapes: x (N, H, W, C_in) -> (N, Ho, Wo, P), P = KH*KW*C_in (`ops.im2col`, reshaped).
    """
    pad, ho, wo = geometry(spec, x.shape[1], x.shape[2], tf_padding)
    cols = im2col(pad2d(x, pad), kernel_size=spec.kernel_size, stride=spec.stride, dilation=spec.dilation)
    return cols.reshape(x.shape[0], ho, wo, cols.shape[-1])  # (N, Ho, Wo, P)


def patch_planes(x: np.ndarray, spec: LayerGeometry, tf_padding: bool, out_pad: Pad2D) -> np.ndarray:
    """The patch image of a dense conv, homogeneous and padded (`pad2d_homogeneous`), channel-major.

    planes[n, (i*KW + j)*C + c, top + y, left + x] = x_pad[n, y*s + i*d, x*s + j*d, c], then a plane
    of ones inside the image, zero in out_pad's border. Built plane by plane: for the 3-channel
    stem, copying whole image planes is several times faster than copying 3 numbers per pixel.
    Shapes: x (N, H, W, C) -> (N, KH*KW*C + 1, Ho + top + bottom, Wo + left + right).
    """
    n, h, w, c = x.shape
    k, s, d = spec.kernel_size, spec.stride, spec.dilation
    pad, ho, wo = geometry(spec, h, w, tf_padding)
    image = np.zeros((n, c, h + pad.top + pad.bottom, w + pad.left + pad.right), x.dtype)  # (N, C, Hp, Wp)
    image[:, :, pad.top : pad.top + h, pad.left : pad.left + w] = x.transpose(0, 3, 1, 2)
    top, bottom, left, right = out_pad
    planes = np.zeros((n, k * k * c + 1, ho + top + bottom, wo + left + right), x.dtype)
    inside = planes[:, :, top : top + ho, left : left + wo]  # (N, P + 1, Ho, Wo), a view
    for i in range(k):
        for j in range(k):
            tap = image[:, :, tap_slice(i * d, s, ho), tap_slice(j * d, s, wo)]
            inside[:, (i * k + j) * c : (i * k + j + 1) * c] = tap  # (N, C, Ho, Wo)
    inside[:, -1] = 1
    return planes


def matmul_pixels(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Every pixel times a (P, C_out) matrix, as one matrix product (one BLAS call, not one per row).

    Shapes: x (N, H, W, P), kernel (P, C_out) -> (N, H, W, C_out).
    """
    n, h, w, p = x.shape
    return (np.ascontiguousarray(x).reshape(n * h * w, p) @ kernel).reshape(n, h, w, -1)


# ============================================================================ what the fast forms hand on


class Padded(NamedTuple):
    """A layer's output written already zero-padded for the depthwise conv that reads it.

    array: (N, Ho + top + bottom, Wo + left + right, C), zero in the border.
    """

    array: np.ndarray


class ChannelParts(NamedTuple):
    """A channel concatenation not yet made: its parts, in channel order, each (N, H, W, C_i)
    (a part may be a broadcast view of one pixel per image)."""

    parts: tuple[np.ndarray, ...]

    def made(self) -> np.ndarray:
        """The concatenation itself, (N, H, W, sum C_i)."""
        return np.concatenate(self.parts, axis=-1)


def as_array(x: np.ndarray | Padded | ChannelParts, name: str) -> np.ndarray:
    """x as a plain NHWC array, for a fast form that takes no `Padded` or `ChannelParts`."""
    if isinstance(x, ChannelParts):
        return x.made()
    if isinstance(x, Padded):
        raise TypeError(f"{name}: a padded tensor reached a step that pads its own input.")
    return x


def _one_pixel_per_image(x: np.ndarray) -> bool:
    """Is x (N, H, W, C) one pixel per image broadcast to the grid (strides 0 along H and W)?"""
    return x.ndim == 4 and x.strides[1] == 0 and x.strides[2] == 0


def _parts_times(x: ChannelParts, kernel: np.ndarray) -> np.ndarray:
    """concat(parts) @ kernel as the sum of part_i @ kernel[rows of part i], a broadcast part
    multiplied once per image:  concat([p, b]) @ K = p @ K[:Cp] + b @ K[Cp:].

    Shapes: parts (N, H, W, C_i), kernel (sum C_i, C_out) -> (N, H, W, C_out).
    """
    out = None
    per_image = []
    start = 0
    for part in x.parts:
        rows = kernel[start : start + part.shape[-1]]
        start += part.shape[-1]
        if _one_pixel_per_image(part):
            per_image.append(matmul_pixels(part[:, :1, :1], rows))  # (N, 1, 1, C_out)
        elif out is None:
            out = matmul_pixels(part, rows)
        else:
            out += matmul_pixels(part, rows)
    if out is None:
        return np.broadcast_to(sum(per_image), (*x.parts[0].shape[:3], kernel.shape[1])).copy()
    for term in per_image:
        np.add(out, term, out=out)
    return out


# ============================================================================ one fast form per layer kind
# Each: (x, spec, folded layer, tf_padding, out_pad) -> the layer's output, bias and activation
# applied; out_pad is the padding the next layer (a depthwise conv) wants, or None.


def fast_depthwise(x, spec: LayerGeometry, f: FoldedConv, tf_padding: bool, out_pad: Pad2D | None) -> np.ndarray:
    """A depthwise layer: its input padded here, or already padded by the layer before (`Padded`)."""
    if isinstance(x, Padded):
        x_padded = x.array
    else:
        pad, _, _ = geometry(spec, x.shape[1], x.shape[2], tf_padding)
        x_padded = pad2d(as_array(x, spec.name), pad)
    y = depthwise(x_padded, f.kernel, stride=spec.stride, dilation=spec.dilation)
    return bias_activation(y, f.bias, spec.activation)


def fast_pointwise(x, spec: LayerGeometry, f: FoldedConv, tf_padding: bool, out_pad: Pad2D | None):
    """A 1x1 layer: one matrix product (of each part, for `ChannelParts`); with out_pad, written
    padded with the bias inside the product (`pad2d_homogeneous`)."""
    if isinstance(x, ChannelParts):
        y = _parts_times(x, f.kernel[0, 0])
    elif out_pad is not None and keeps_zero(spec.activation):
        y = matmul_pixels(pad2d_homogeneous(x, out_pad), f.homogeneous[0, 0])  # W x + b inside, 0 in the border
        return Padded(y if spec.activation is None else activation_inplace(spec.activation, y))
    else:
        y = matmul_pixels(as_array(x, spec.name), f.kernel[0, 0])  # (N, H, W, C_in) @ (C_in, C_out)
    return bias_activation(y, f.bias, spec.activation)


def fast_dense(x, spec: LayerGeometry, f: FoldedConv, tf_padding: bool, out_pad: Pad2D | None):
    """A dense KxK layer: a 1x1 conv of its patch image; with out_pad, written padded
    (`patch_planes`)."""
    x = as_array(x, spec.name)
    if out_pad is None or not keeps_zero(spec.activation):
        y = matmul_pixels(patch_image(x, spec, tf_padding), f.kernel[0, 0])  # (N, Ho, Wo, P) @ (P, C_out)
        return bias_activation(y, f.bias, spec.activation)
    n = x.shape[0]
    planes = patch_planes(x, spec, tf_padding, out_pad)  # (N, P + 1, Hp, Wp)
    _, p1, hp, wp = planes.shape
    rows = planes.reshape(n, p1, hp * wp).transpose(0, 2, 1)  # (N, Hp*Wp, P + 1), a view
    y = (rows @ f.homogeneous[0, 0]).reshape(n, hp, wp, -1)  # (N, Hp, Wp, C_out)
    return Padded(y if spec.activation is None else activation_inplace(spec.activation, y))


def fast_linear(x, spec: LayerGeometry, f: FoldedConv, tf_padding: bool, out_pad: Pad2D | None) -> np.ndarray:
    """The classifier: pooled features (N, h, w, C) @ (C, L) + bias."""
    return bias_activation(matmul_pixels(as_array(x, spec.name), f.kernel), f.bias, spec.activation)
