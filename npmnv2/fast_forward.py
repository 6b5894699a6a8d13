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
from .backward import col2im
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
    (the cache holds the arrays it folded, so their ids cannot be reused while cached). An array
    changed in place is not seen here: `clear()` (the model's `refold()`) forgets every fold.
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


def _patch_image(x: np.ndarray, spec: ConvSpec, tf_padding: bool) -> np.ndarray:
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
        rows = x if spec.kind == "pointwise" else _patch_image(x, spec, tf_padding)  # (N, Ho, Wo, P)
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


# ============================================================================ gradients, fast

# `gradients.grad` runs this for classifiers whose layers are all ReLU6 / ReLU / linear, with
# batch norm not yet folded, when no traced tensor is asked for; tests/test_gradients.py checks
# it against PyTorch autograd and against the readable backward of `npmnv2.backward`. The tricks:
# the forward runs on folded layers and keeps only each layer's input and activated output; the
# ReLU6 derivative is read from the activated output (a in (0, 6) exactly where y is); batch
# norm's gradients come from the kernel's gradient (no normalised tensor is ever formed):
#     y = z * s + (beta - mean * s),  s = gamma / sqrt(var + eps),  z = conv(x, W)
#     G = conv-kernel gradient for d loss / d y      (what the folded kernel's gradient would be)
#     d W = G * s,   d gamma = (sum(W * G) - mean * sum(g_y)) / sqrt(var + eps),   d beta = sum(g_y)
# and the depthwise backward is two einsums over strided views, like the forward's.

FAST_GRAD_ACTIVATIONS = {None, "relu6", "relu"}


class _Kept(NamedTuple):
    spec: ConvSpec
    x: np.ndarray  # the layer's input (N, H, W, C_in)
    a: np.ndarray  # its activated output (N, Ho, Wo, C_out)
    patches: np.ndarray | None  # a dense conv's patch image (N, Ho, Wo, P); a depthwise conv's padded input


def _conv_keep(x: np.ndarray, spec: ConvSpec, f: FoldedConv, tf_padding: bool, kept: list[_Kept]) -> np.ndarray:
    pad, _, _ = geometry(spec, x.shape[1], x.shape[2], tf_padding)
    patches = None
    if spec.kind == "depthwise":
        patches = pad2d(x, pad)
        y = depthwise(patches, f.kernel, stride=spec.stride, dilation=spec.dilation)
    elif spec.kind == "pointwise":
        y = matmul_pixels(x, f.kernel[0, 0])
    else:
        patches = _patch_image(x, spec, tf_padding)
        y = matmul_pixels(patches, f.kernel[0, 0])
    a = bias_activation(y, f.bias, spec.activation)
    kept.append(_Kept(spec, x, a, patches))
    return a


def _activation_grad_inplace(name: str | None, a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """d loss / d y from d loss / d a, overwriting g (a = f(y); f' read from a)."""
    if name in ("relu6", "relu"):
        passes = np.greater(a, 0)
        if name == "relu6":
            np.logical_and(passes, np.less(a, 6), out=passes)
        np.multiply(g, passes, out=g)  # 5x faster than g[~passes] = 0 or np.copyto(..., where=)
    return g


def _depthwise_kernel_grad(x_padded: np.ndarray, g: np.ndarray, kh: int, kw: int, stride: int, dilation: int):
    """grad_k[i, j, c] = sum_{n, y, x} x_pad[n, y*s + i*d, x*s + j*d, c] * g[n, y, x, c], by one einsum
    over the forward's strided view (no tap is copied)."""
    n, hp, wp, c = x_padded.shape
    _, ho, wo, _ = g.shape
    x = np.ascontiguousarray(x_padded)
    sn, sh, sw, sc = x.strides
    if stride == 1:
        runs = as_strided(
            x, shape=(n, ho, kh, kw, wo * c), strides=(sn, sh, dilation * sh, dilation * sw, sc), writeable=False
        )
        per_column = np.einsum("nyijq,nyq->ijq", runs, np.ascontiguousarray(g).reshape(n, ho, wo * c))
        return per_column.reshape(kh, kw, wo, c).sum(axis=2)
    windows = as_strided(
        x, shape=(n, ho, wo, kh, kw, c), strides=(sn, stride * sh, stride * sw, dilation * sh, dilation * sw, sc),
        writeable=False,
    )  # fmt: skip
    return np.einsum("nyxijc,nyxc->ijc", windows, g)


def _depthwise_input_grad(g: np.ndarray, kernel: np.ndarray, padded_shape: tuple[int, ...], stride: int,
                          dilation: int) -> np.ndarray:  # fmt: skip
    """grad_x_pad of a depthwise conv: a stride-1 correlation of the (zero-dilated, when strided)
    output gradient, padded by the kernel's extent, with the kernel rotated 180 degrees."""
    n, ho, wo, c = g.shape
    kh, kw, _ = kernel.shape
    if stride > 1:  # put each gradient where its window starts; the pixels between get none
        spread = np.zeros((n, (ho - 1) * stride + 1, (wo - 1) * stride + 1, c), g.dtype)
        spread[:, ::stride, ::stride] = g
        g = spread
    eh, ew = dilation * (kh - 1), dilation * (kw - 1)
    full = depthwise_rows(pad2d(g, Pad2D(eh, eh, ew, ew)), kernel[::-1, ::-1], dilation=dilation)
    out = np.zeros(padded_shape, g.dtype)  # rows and columns past the last window get no gradient
    out[:, : full.shape[1], : full.shape[2]] = full
    return out


def _layer_backward(k: _Kept, g_a: np.ndarray, params: Mapping[str, np.ndarray], f: FoldedConv, tf_padding: bool,
                    grads: dict, need_input: bool) -> np.ndarray | None:  # fmt: skip
    """One folded layer backward: its parameters' gradients into grads[name], and d loss / d input."""
    spec = k.spec
    g = _activation_grad_inplace(spec.activation, k.a, g_a)  # d loss / d y, (N, Ho, Wo, C_out)
    c_out = g.shape[-1]
    g_sum = g.sum(axis=(0, 1, 2))
    pad, _, _ = geometry(spec, k.x.shape[1], k.x.shape[2], tf_padding)
    g_x = None
    if spec.kind == "depthwise":
        x_padded = k.patches
        kh, kw, _ = f.kernel.shape
        G = _depthwise_kernel_grad(x_padded, g, kh, kw, spec.stride, spec.dilation)  # (KH, KW, C)
        if need_input:
            g_pad = _depthwise_input_grad(g, f.kernel, x_padded.shape, spec.stride, spec.dilation)
            g_x = g_pad[:, pad.top : pad.top + k.x.shape[1], pad.left : pad.left + k.x.shape[2]]
    else:
        rows = k.x if spec.kind == "pointwise" else k.patches  # (N, Ho, Wo, P)
        p = rows.shape[-1]
        g_rows = g.reshape(-1, c_out)
        G = (np.ascontiguousarray(rows).reshape(-1, p).T @ g_rows).reshape(params["kernel"].shape)  # like W (HWIO)
        if need_input:
            g_cols = g_rows @ f.kernel[0, 0].T  # (N*Ho*Wo, P)
            if spec.kind == "pointwise":
                g_x = g_cols.reshape(k.x.shape)
            else:
                n, h, w, c_in = k.x.shape
                padded_shape = (n, h + pad.top + pad.bottom, w + pad.left + pad.right, c_in)
                g_pad = col2im(g_cols, padded_shape, kernel_size=spec.kernel_size, stride=spec.stride,
                               dilation=spec.dilation)  # fmt: skip
                g_x = g_pad[:, pad.top : pad.top + h, pad.left : pad.left + w]
    entry: dict[str, np.ndarray] = {}
    if "gamma" in params:
        inv_std = 1 / np.sqrt(params["var"] + spec.eps)
        s = params["gamma"] * inv_std  # (C_out,)
        kernel_axes = tuple(range(G.ndim - 1))
        wg = (params["kernel"] * G).sum(axis=kernel_axes)  # sum over positions of g_y * conv(x, W)
        if "bias" in params:
            wg = wg + params["bias"] * g_sum
            entry["bias"] = (g_sum * s).astype(G.dtype)
        entry["kernel"] = (G * s).astype(G.dtype)
        entry["gamma"] = ((wg - params["mean"] * g_sum) * inv_std).astype(G.dtype)
        entry["beta"] = g_sum
    else:
        entry["kernel"] = G
        if "bias" in params:
            entry["bias"] = g_sum
    grads[spec.name] = entry
    return g_x


def final_map_size(arch: BackboneSpec, h: int, w: int, *, tf_padding: bool) -> tuple[int, int]:
    """The backbone's last feature map size for an h x w input."""
    for block in (arch.stem, *arch.layers):
        for spec in block.convs:
            _, h, w = geometry(spec, h, w, tf_padding)
    _, h, w = geometry(arch.conv_1x1, h, w, tf_padding)
    return h, w


def classifier_gradients(
    x: np.ndarray,
    arch: BackboneSpec,
    classifier: ConvSpec,
    params: Mapping[str, Mapping[str, np.ndarray]],
    folded: Mapping[str, FoldedConv],
    loss_gradient: Callable[[np.ndarray], tuple[float, np.ndarray]],
    *,
    tf_padding: bool,
) -> tuple[float, dict[str, dict[str, np.ndarray]], np.ndarray]:
    """The classifier's loss, its parameter gradients {layer: {kernel, bias, gamma, beta}} and
    d loss / d x, by the folded forward above and the backward of each folded layer.

    loss_gradient: logits (N, 1, 1, L) -> (loss, d loss / d logits). Shapes: x (N, H, W, 3).
    """
    kept: list[_Kept] = []
    blocks = [arch.stem, *arch.layers]
    block_inputs = []
    y = x
    for block in blocks:
        block_inputs.append(y)
        z = y
        for spec in block.convs:
            z = _conv_keep(z, spec, folded[spec.name], tf_padding, kept)
        y = z + y if block.residual else z
    last = _conv_keep(y, arch.conv_1x1, folded[arch.conv_1x1.name], tf_padding, kept)  # (N, h, w, C)
    pooled = last.mean(axis=(1, 2))  # (N, C)
    f = folded[classifier.name]
    logits = pooled @ f.kernel + f.bias  # (N, L)
    loss, g_logits = loss_gradient(logits[:, None, None, :])
    g_logits = g_logits.reshape(logits.shape)
    grads: dict[str, dict[str, np.ndarray]] = {
        classifier.name: {"kernel": pooled.T @ g_logits, "bias": g_logits.sum(axis=0)}
    }
    g_pooled = g_logits @ f.kernel.T  # (N, C)
    h, w = last.shape[1:3]
    g = np.broadcast_to((g_pooled / g_pooled.dtype.type(h * w))[:, None, None, :], last.shape).copy()
    layers = iter(reversed(kept))
    g = _layer_backward(next(layers), g, params[arch.conv_1x1.name], folded[arch.conv_1x1.name], tf_padding,
                        grads, need_input=True)  # fmt: skip
    for block in reversed(blocks):
        g_out = g  # when the block is residual, its input also gets g_out, by the skip path
        if block.residual and block.convs[-1].activation is not None:
            g = g_out.copy()  # the last layer's activation gradient would overwrite the skip path's
        for spec in reversed(block.convs):
            k = next(layers)
            g = _layer_backward(k, g, params[spec.name], folded[spec.name], tf_padding, grads, need_input=True)
        if block.residual:
            g = g + g_out
    return loss, grads, g
