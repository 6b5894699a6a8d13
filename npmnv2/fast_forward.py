"""The plain forward pass, fast: the one module of npmnv2 with performance tricks.

`model(pixel_values)` without a trace runs this module; `model.trace` runs the readable layers of
`modeling_mobilenet_v2`, which compute the same numbers one textbook op at a time.
`tests/test_fast_path.py` asserts the two agree on every block output, logits included, for many
configurations. What happens here, and why (measurements in docs/decisions.md):

- batch norm is folded into every kernel once (`fold_conv`) and cached (`FoldCache`), not once
  per call; the cache folds copies, so the model's and the caller's arrays are never changed;
- a 1x1 (or im2col) conv that feeds a depthwise conv writes its output already zero-padded for
  it, with the bias inside the matrix product (`pad2d_homogeneous`): the wide expanded tensor is
  never copied into a padded buffer;
- stride-1 depthwise convs are one einsum over whole image rows (`depthwise_rows`), strided
  ones one einsum over a window view (`depthwise_windows`); both read strided views made with
  `as_strided`, which the textbook ops do not use;
- bias and activation run in place on a conv's output, a whole image row at a time (`along_rows`);
- in the DeepLab head, the image-pooling half of the projection is computed once per image
  instead of being broadcast, concatenated and multiplied at every pixel.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .architecture import HEAD_CHANNELS, BackboneSpec, BlockSpec, ConvSpec, DeepLabHeadSpec
from .ops import (
    Pad2D,
    activation,
    conv_output_size,
    conv_padding,
    fold_batch_norm,
    global_average_pool,
    im2col,
    pad2d,
)
from .ops.padding import tap_slice

# ============================================================================ geometry and padding


@functools.lru_cache(maxsize=4096)
def geometry(spec: ConvSpec, h: int, w: int, tf_padding: bool) -> tuple[Pad2D, int, int]:
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


# ============================================================================ folding


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


def _frozen(array: np.ndarray | None) -> np.ndarray | None:
    if array is not None:
        array.flags.writeable = False
    return array


def fold_conv(spec: ConvSpec, params: Mapping[str, np.ndarray], dtype: np.dtype) -> FoldedConv:
    """Fold one layer's batch norm (when it has one) into new arrays laid out as `FoldedConv` says."""
    kernel, bias = params["kernel"], params.get("bias")
    if "gamma" in params:
        kernel, bias = fold_batch_norm(
            kernel, bias, params["gamma"], params["beta"], params["mean"], params["var"], eps=spec.eps
        )
    kernel = np.array(kernel, dtype=dtype)  # always a copy: the model's arrays stay as they are
    bias = None if bias is None else np.array(bias, dtype=dtype)
    if spec.kind in ("depthwise", "linear"):
        return FoldedConv(_frozen(kernel), _frozen(bias), None)
    kernel = kernel.reshape(1, 1, -1, kernel.shape[-1])  # (1, 1, P, C_out)
    row = np.zeros(kernel.shape[-1], dtype) if bias is None else bias
    homogeneous = np.concatenate([kernel, row[None, None, None, :]], axis=2)  # (1, 1, P + 1, C_out)
    _frozen(homogeneous)
    # The plain kernel is the homogeneous one without its bias row: a view, not a second copy.
    return FoldedConv(homogeneous[:, :, :-1], _frozen(bias), homogeneous)


class FoldCache:
    """Folded layers, folded once and reused while the model's arrays stay the same objects.

    A layer is refolded when any of its arrays in `model.params` is replaced by another array
    (the cache holds the arrays it folded, so their ids cannot be reused while cached). The model's
    arrays are read-only (`npmnv2.parameters`), so replacing one is the only way to change it.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[tuple[int, ...], FoldedConv, tuple[np.ndarray, ...]]] = {}

    def folded(
        self, specs: list[ConvSpec], params: Mapping[str, Mapping[str, np.ndarray]], dtype: np.dtype
    ) -> dict[str, FoldedConv]:
        out = {}
        for spec in specs:
            arrays = tuple(params[spec.name].values())
            ids = tuple(map(id, arrays))
            hit = self._entries.get(spec.name)
            if hit is None or hit[0] != ids:
                hit = self._entries[spec.name] = (ids, fold_conv(spec, params[spec.name], dtype), arrays)
            out[spec.name] = hit[1]
        return out

    def clear(self) -> None:
        self._entries.clear()


# ============================================================================ layers


def patch_image(x: np.ndarray, spec: ConvSpec, tf_padding: bool) -> np.ndarray:
    """A dense conv's input as the image of its patches, so that the conv is a 1x1 conv on it.

    Shapes: x (N, H, W, C_in) -> (N, Ho, Wo, P), P = KH*KW*C_in (`ops.im2col`, reshaped).
    """
    pad, ho, wo = geometry(spec, x.shape[1], x.shape[2], tf_padding)
    cols = im2col(pad2d(x, pad), kernel_size=spec.kernel_size, stride=spec.stride, dilation=spec.dilation)
    return cols.reshape(x.shape[0], ho, wo, cols.shape[-1])  # (N, Ho, Wo, P)


def _patch_planes(x: np.ndarray, spec: ConvSpec, tf_padding: bool, out_pad: Pad2D) -> np.ndarray:
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


def conv_layer(
    x: np.ndarray, spec: ConvSpec, f: FoldedConv, *, tf_padding: bool, pad_for: ConvSpec | None = None
) -> tuple[np.ndarray, bool]:
    """The readable `conv_layer` with batch norm folded, bias and activation in place.

    pad_for: the depthwise conv that reads this layer's output. When given (and the activation
    keeps 0 at 0), the output comes back already zero-padded for it.
    Shapes: x (N, H, W, C_in) -> (N, Ho, Wo, C_out), or (N, Ho + pads, Wo + pads, C_out) padded.
    Returns the output and whether it is padded.
    """
    n, h, w, c_in = x.shape
    if c_in != spec.c_in:
        raise ValueError(
            f"conv_layer at {spec.name!r}: expected {spec.c_in} input channels, got {c_in} (x.shape={x.shape})."
        )
    pad, ho, wo = geometry(spec, h, w, tf_padding)
    if spec.kind == "depthwise":
        y = depthwise(pad2d(x, pad), f.kernel, stride=spec.stride, dilation=spec.dilation)
        return bias_activation(y, f.bias, spec.activation), False
    if pad_for is None or not keeps_zero(spec.activation):
        rows = x if spec.kind == "pointwise" else patch_image(x, spec, tf_padding)  # (N, Ho, Wo, P)
        y = matmul_pixels(rows, f.kernel[0, 0])  # (N, Ho, Wo, P) @ (P, C_out) -> (N, Ho, Wo, C_out)
        return bias_activation(y, f.bias, spec.activation), False
    out_pad, _, _ = geometry(pad_for, ho, wo, tf_padding)
    if spec.kind == "pointwise":
        y = matmul_pixels(pad2d_homogeneous(x, out_pad), f.homogeneous[0, 0])  # W x + b inside, 0 in the border
    else:
        planes = _patch_planes(x, spec, tf_padding, out_pad)  # (N, P + 1, Hp, Wp)
        _, p1, hp, wp = planes.shape
        rows = planes.reshape(n, p1, hp * wp).transpose(0, 2, 1)  # (N, Hp*Wp, P + 1), a view
        y = (rows @ f.homogeneous[0, 0]).reshape(n, hp, wp, -1)  # (N, Hp, Wp, C_out)
    return (y if spec.activation is None else activation_inplace(spec.activation, y)), True


def inverted_residual(x: np.ndarray, block: BlockSpec, folded: Mapping[str, FoldedConv], *, tf_padding: bool):
    """The readable `inverted_residual` on folded layers; the expansion hands the depthwise conv a
    padded tensor. Shapes: x (N, H, W, C_in) -> (N, Ho, Wo, C_out)."""
    y, padded = x, False
    for spec, after in zip(block.convs, (*block.convs[1:], None), strict=True):
        if spec.kind == "depthwise" and padded:  # the layer before already padded its output
            y = depthwise(y, folded[spec.name].kernel, stride=spec.stride, dilation=spec.dilation)
            y, padded = bias_activation(y, folded[spec.name].bias, spec.activation), False
            continue
        pad_for = after if after is not None and after.kind == "depthwise" else None
        y, padded = conv_layer(y, spec, folded[spec.name], tf_padding=tf_padding, pad_for=pad_for)
    return np.add(y, x, out=y) if block.residual else y


def backbone(
    x: np.ndarray, arch: BackboneSpec, folded: Mapping[str, FoldedConv], *, tf_padding: bool, run_conv_1x1: bool = True
) -> tuple[np.ndarray | None, list[np.ndarray]]:
    """The readable `backbone` on folded layers. Same shapes and outputs."""
    y = inverted_residual(x, arch.stem, folded, tf_padding=tf_padding)
    hidden_states = []
    for block in arch.layers:
        y = inverted_residual(y, block, folded, tf_padding=tf_padding)
        hidden_states.append(y)
    last = None
    if run_conv_1x1:
        last, _ = conv_layer(y, arch.conv_1x1, folded[arch.conv_1x1.name], tf_padding=tf_padding)
    return last, hidden_states


def deeplab_head(features: np.ndarray, head: DeepLabHeadSpec, folded: Mapping[str, FoldedConv]) -> np.ndarray:
    """The readable `deeplab_head` on folded layers, without materialising the broadcast image-pool branch.

    The projection of concat([pooled broadcast to every pixel, branch]) splits by its input rows:
        concat([p, b]) @ K + bias = b @ K[256:] + (p @ K[:256] + bias)
    and the second term is one vector per image. Shapes: features (N, H, W, C) -> (N, H, W, L).
    """
    pooled = global_average_pool(features)[:, None, None, :]  # (N, 1, 1, C)
    pooled, _ = conv_layer(pooled, head.conv_pool, folded[head.conv_pool.name], tf_padding=True)  # (N, 1, 1, 256)
    branch, _ = conv_layer(features, head.conv_aspp, folded[head.conv_aspp.name], tf_padding=True)  # (N, H, W, 256)
    projection = folded[head.conv_projection.name]
    kernel = projection.kernel[0, 0]  # (512, 256): rows 0..255 read the image pool, 256..511 the branch
    per_image = pooled @ kernel[:HEAD_CHANNELS] + projection.bias  # (N, 1, 1, 256)
    y = matmul_pixels(branch, kernel[HEAD_CHANNELS:])  # (N, H, W, 256)
    y = bias_activation(np.add(y, per_image, out=y), None, head.conv_projection.activation)
    logits, _ = conv_layer(y, head.classifier, folded[head.classifier.name], tf_padding=True)  # (N, H, W, L)
    return logits
