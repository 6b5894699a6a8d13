"""The fast backward of a classifier: the one module of npmnv2 with speed tricks for gradients.

`model.grad` (`npmnv2.gradients`) runs `classifier_gradients` for classifiers whose layers are
all ReLU6 / ReLU / linear, with batch norm not yet folded, when no traced tensor is asked for;
every other case runs the readable backward (each op's backward on its page in `npmnv2.ops`).
tests/test_gradients.py checks the two against each other and against PyTorch autograd. It reuses
the fast kernels of `npmnv2.fast.kernels` (folded layers, strided depthwise views); what differs
between kinds of layer is read from their rows of `npmnv2.layer_kinds.LAYER_KINDS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..architecture import BackboneSpec, ConvSpec
from ..layer_kinds import layer_kind
from ..ops import Pad2D, pad2d
from ..ops.conv import col2im
from .kernels import FoldedConv, bias_activation, depthwise, depthwise_rows, geometry, matmul_pixels, patch_image

# ============================================================================ gradients, fast

# `gradients.grad` runs this for classifiers whose layers are all ReLU6 / ReLU / linear, with
# batch norm not yet folded, when no traced tensor is asked for; tests/test_gradients.py checks
# it against PyTorch autograd and against the readable backward of each op's page. The tricks:
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
    kind = layer_kind(spec)
    if not kind.as_matrix:  # depthwise: its padded input is kept
        patches = pad2d(x, pad)
        y = depthwise(patches, f.kernel, stride=spec.stride, dilation=spec.dilation)
    elif not kind.patches:  # 1x1: the input itself is the matrix's rows
        y = matmul_pixels(x, f.kernel[0, 0])
    else:
        patches = patch_image(x, spec, tf_padding)
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
        x,
        shape=(n, ho, wo, kh, kw, c),
        strides=(sn, stride * sh, stride * sw, dilation * sh, dilation * sw, sc),
        writeable=False,
    )
    return np.einsum("nyxijc,nyxc->ijc", windows, g)


def _depthwise_input_grad(
    g: np.ndarray, kernel: np.ndarray, padded_shape: tuple[int, ...], stride: int, dilation: int
) -> np.ndarray:
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


def _layer_backward(
    k: _Kept,
    g_a: np.ndarray,
    params: Mapping[str, np.ndarray],
    f: FoldedConv,
    tf_padding: bool,
    grads: dict,
    need_input: bool,
) -> np.ndarray | None:
    """One folded layer backward: its parameters' gradients into grads[name], and d loss / d input."""
    spec = k.spec
    g = _activation_grad_inplace(spec.activation, k.a, g_a)  # d loss / d y, (N, Ho, Wo, C_out)
    c_out = g.shape[-1]
    g_sum = g.sum(axis=(0, 1, 2))
    pad, _, _ = geometry(spec, k.x.shape[1], k.x.shape[2], tf_padding)
    g_x = None
    kind = layer_kind(spec)
    if not kind.as_matrix:  # depthwise
        x_padded = k.patches
        kh, kw, _ = f.kernel.shape
        G = _depthwise_kernel_grad(x_padded, g, kh, kw, spec.stride, spec.dilation)  # (KH, KW, C)
        if need_input:
            g_pad = _depthwise_input_grad(g, f.kernel, x_padded.shape, spec.stride, spec.dilation)
            g_x = g_pad[:, pad.top : pad.top + k.x.shape[1], pad.left : pad.left + k.x.shape[2]]
    else:
        rows = k.patches if kind.patches else k.x  # (N, Ho, Wo, P)
        p = rows.shape[-1]
        g_rows = g.reshape(-1, c_out)
        G = (np.ascontiguousarray(rows).reshape(-1, p).T @ g_rows).reshape(params["kernel"].shape)  # like W (HWIO)
        if need_input:
            g_cols = g_rows @ f.kernel[0, 0].T  # (N*Ho*Wo, P)
            if not kind.patches:
                g_x = g_cols.reshape(k.x.shape)
            else:
                n, h, w, c_in = k.x.shape
                padded_shape = (n, h + pad.top + pad.bottom, w + pad.left + pad.right, c_in)
                g_pad = col2im(
                    g_cols, padded_shape, kernel_size=spec.kernel_size, stride=spec.stride, dilation=spec.dilation
                )
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
    g = _layer_backward(
        next(layers), g, params[arch.conv_1x1.name], folded[arch.conv_1x1.name], tf_padding, grads, need_input=True
    )
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
