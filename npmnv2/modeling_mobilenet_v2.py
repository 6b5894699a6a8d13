"""MobileNetV2 (arXiv 1801.04381) and its DeepLabV3 head, top to bottom, in NumPy.

Mirrors transformers' `models/mobilenet_v2/modeling_mobilenet_v2.py`: the same architecture,
module paths (`conv_stem.first_conv`, `layer.12.conv_3x3`, `segmentation_head.conv_pool`, ...),
parameter names and outputs. Inside, activations are NHWC and kernels HWIO (see `ops`); the
public edges take and return transformers' NCHW.

Reading order: the architecture as data (channels, strides, dilation rule) -> one conv layer
(conv -> batch norm -> activation) -> the inverted residual block -> the backbone -> the heads
-> the three model classes.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import itertools
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .configuration_mobilenet_v2 import MobileNetV2Config
from .ops import (
    INPLACE_ACTIVATIONS,
    Pad2D,
    activation,
    activation_inplace,
    avg_pool2d,
    batch_norm,
    bce_with_logits,
    bias_activation,
    conv2d,
    conv_output_size,
    conv_padding,
    cross_entropy,
    depthwise_conv2d,
    fold_batch_norm,
    global_average_pool,
    im2col,
    mse_loss,
    nchw_to_nhwc,
    nhwc_to_nchw,
    pad2d,
    pad2d_homogeneous,
    pointwise_conv2d,
    resize_bilinear,
)
from .outputs import (
    BaseModelOutputWithPoolingAndNoAttention,
    ImageClassifierOutputWithNoAttention,
    SemanticSegmenterOutput,
)
from .warnings import NpMnV2Warning

MIN_INPUT_SIZE = 32  # the documented minimum: 32 / output_stride 32 = a 1x1 final feature map

# ============================================================================ architecture as data

# Output channels of each bottleneck's linear projection, before the depth multiplier:
# index 0 is the stem's projection (the paper's first bottleneck, t=1), 1..16 are `layer.0..15`.
PROJECTION_CHANNELS = [16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160, 160, 320]
# Stride of each block's depthwise conv (`layer.0..15`); the stem's 3x3 conv has stride 2.
BLOCK_STRIDES = [2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]
STEM_CHANNELS = 32  # the stem's 3x3 conv, before the depth multiplier
LAST_CHANNELS = 1280  # the final 1x1 conv (`conv_1x1`), before the depth multiplier
HEAD_CHANNELS = 256  # every DeepLabV3 head conv (not scaled by the depth multiplier)
HEAD_EPS = 1e-5  # transformers' head batch norms use 1e-5, not config.layer_norm_eps


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to the nearest multiple of `divisor`, never below `min_value` and
    never more than 10% below `value` (TF-slim's `_make_divisible`, as transformers uses it).

    >>> make_divisible(32 * 0.35), make_divisible(96 * 0.35), make_divisible(16 * 0.35, 8, 8)
    (16, 32, 8)
    """
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:  # rounding down lost more than 10%: go one step up
        new_value += divisor
    return int(new_value)


def apply_depth_multiplier(config: MobileNetV2Config, channels: int) -> int:
    """channels * depth_multiplier, rounded by `make_divisible` with the config's divisor and floor."""
    return make_divisible(round(channels * config.depth_multiplier), config.depth_divisible_by, config.min_depth)


class ConvSpec(NamedTuple):
    """One conv layer (conv -> optional batch norm -> optional activation), as data.

    name: transformers module path relative to the backbone ("layer.3.expand_1x1").
    kind: "conv" (dense, im2col), "depthwise" or "pointwise" (1x1 matrix product).
    eps: batch-norm epsilon, or None when the layer has no batch norm.
    activation: transformers activation name, or None for a linear layer.
    tf_scope: the TF-slim scope of the same layer, to match TF/TFLite tensors.
    """

    name: str
    kind: str
    c_in: int
    c_out: int
    kernel_size: int
    stride: int = 1
    dilation: int = 1
    activation: str | None = None
    eps: float | None = None
    bias: bool = False
    tf_scope: str = ""


class BlockSpec(NamedTuple):
    """An inverted residual block: its conv layers in order and whether it adds its input back."""

    name: str
    convs: tuple[ConvSpec, ...]
    residual: bool
    tf_scope: str


class BackboneSpec(NamedTuple):
    stem: BlockSpec
    layers: tuple[BlockSpec, ...]
    conv_1x1: ConvSpec


def _bottleneck(
    config: MobileNetV2Config, name: str, scope: str, c_in: int, c_out: int, *, expand: bool, stride: int, dilation: int
) -> tuple[ConvSpec, ...]:
    """expand (1x1, activation) -> depthwise (3x3, activation) -> project (1x1, linear)."""
    act, eps = config.hidden_act, config.layer_norm_eps
    m = make_divisible(round(c_in * config.expand_ratio), config.depth_divisible_by, config.min_depth)
    if not expand:  # the stem: first_conv already produced the expanded channels
        m = c_in
    convs = []
    if expand:
        convs.append(
            ConvSpec(f"{name}.expand_1x1", "pointwise", c_in, m, 1, activation=act, eps=eps, tf_scope=f"{scope}/expand")
        )
    convs.append(
        ConvSpec(f"{name}.conv_3x3", "depthwise", m, m, 3, stride, dilation, act, eps, tf_scope=f"{scope}/depthwise")
    )
    # The projection is linear: no activation, so the low-dimensional bottleneck keeps its
    # information (the paper's "linear bottleneck", section 3.2).
    convs.append(ConvSpec(f"{name}.reduce_1x1", "pointwise", m, c_out, 1, eps=eps, tf_scope=f"{scope}/project"))
    return tuple(convs)


def backbone_spec(config: MobileNetV2Config) -> BackboneSpec:
    """The whole backbone as data: channel counts, strides and dilations of every conv layer."""
    channels = [apply_depth_multiplier(config, c) for c in PROJECTION_CHANNELS]
    stem_channels = apply_depth_multiplier(config, STEM_CHANNELS)
    act, eps = config.hidden_act, config.layer_norm_eps

    first_conv = ConvSpec(
        "conv_stem.first_conv",
        "conv",
        config.num_channels,
        stem_channels,
        3,
        2,
        1,
        act,
        eps,
        tf_scope="MobilenetV2/Conv",
    )
    stem_convs = [first_conv]
    if not config.first_layer_is_expansion:  # an extra 1x1 expansion after the 3x3 stem conv
        stem_convs.append(
            ConvSpec(
                "conv_stem.expand_1x1",
                "pointwise",
                stem_channels,
                stem_channels,
                1,
                activation=act,
                eps=eps,
                tf_scope="MobilenetV2/expanded_conv/expand",
            )
        )
    stem_convs += _bottleneck(
        config, "conv_stem", "MobilenetV2/expanded_conv", stem_channels, channels[0], expand=False, stride=1, dilation=1
    )
    stem = BlockSpec("conv_stem", tuple(stem_convs), residual=False, tf_scope="MobilenetV2/expanded_conv")

    layers = []
    current_stride, dilation = 2, 1  # the stem's first conv has stride 2
    for i, stride in enumerate(BLOCK_STRIDES):
        if current_stride == config.output_stride:
            # Output stride reached: stop shrinking; this block keeps the current dilation and
            # the stride it would have had multiplies the dilation of the blocks after it.
            layer_stride, layer_dilation = 1, dilation
            dilation *= stride
        else:
            # Still shrinking: an ordinary (possibly strided) depthwise conv, no dilation.
            layer_stride, layer_dilation = stride, 1
            current_stride *= stride
        scope = f"MobilenetV2/expanded_conv_{i + 1}"
        convs = _bottleneck(
            config,
            f"layer.{i}",
            scope,
            channels[i],
            channels[i + 1],
            expand=True,
            stride=layer_stride,
            dilation=layer_dilation,
        )
        residual = layer_stride == 1 and channels[i] == channels[i + 1]  # shapes must match to add
        layers.append(BlockSpec(f"layer.{i}", convs, residual, scope))

    if config.finegrained_output and config.depth_multiplier < 1.0:
        last = LAST_CHANNELS  # keep the final features wide even for thin networks
    else:
        last = apply_depth_multiplier(config, LAST_CHANNELS)
    conv_1x1 = ConvSpec(
        "conv_1x1", "pointwise", channels[-1], last, 1, activation=act, eps=eps, tf_scope="MobilenetV2/Conv_1"
    )
    return BackboneSpec(stem, tuple(layers), conv_1x1)


def deeplab_head_spec(config: MobileNetV2Config) -> tuple[ConvSpec, ...]:
    """The DeepLabV3 head: image-pool branch, 1x1 branch, projection, classifier (in that order).

    It is the ASPP of DeepLabV3 reduced to its image-pooling and 1x1 branches (no atrous 3x3
    branches, no v3+ decoder), reading the 320-channel output of `layer.15`.
    """
    c_in = apply_depth_multiplier(config, PROJECTION_CHANNELS[-1])
    head = "segmentation_head"
    return (
        ConvSpec(
            f"{head}.conv_pool",
            "pointwise",
            c_in,
            HEAD_CHANNELS,
            1,
            activation="relu",
            eps=HEAD_EPS,
            tf_scope="image_pooling",
        ),
        ConvSpec(
            f"{head}.conv_aspp", "pointwise", c_in, HEAD_CHANNELS, 1, activation="relu", eps=HEAD_EPS, tf_scope="aspp0"
        ),
        ConvSpec(
            f"{head}.conv_projection",
            "pointwise",
            2 * HEAD_CHANNELS,
            HEAD_CHANNELS,
            1,
            activation="relu",
            eps=HEAD_EPS,
            tf_scope="concat_projection",
        ),
        ConvSpec(
            f"{head}.classifier",
            "pointwise",
            HEAD_CHANNELS,
            config.num_labels,
            1,
            bias=True,
            tf_scope="logits/semantic",
        ),
    )


# ============================================================================ one conv layer


def _record(rec: Any, name: str, kind: str, output: np.ndarray, **info: Any) -> np.ndarray:
    """Hand a step to the recorder (a Trace), if there is one, and go on with what it returns:
    the output itself, or the tensor `run_from` puts in its place. Records are plain data."""
    return output if rec is None else rec.add(name, kind, output, **info)


@functools.lru_cache(maxsize=4096)
def _geometry(spec: ConvSpec, h: int, w: int, tf_padding: bool) -> tuple[Pad2D, int, int]:
    """The padding a conv layer applies to an H x W input, and its output size (Ho, Wo).
    Cached: the same few sizes come back on every forward pass."""
    k, s, d = spec.kernel_size, spec.stride, spec.dilation
    pad = conv_padding(h, w, kernel_size=k, stride=s, dilation=d, tf_padding=tf_padding)
    ho = conv_output_size(h, kernel_size=k, stride=s, dilation=d, pad=pad.top + pad.bottom)
    wo = conv_output_size(w, kernel_size=k, stride=s, dilation=d, pad=pad.left + pad.right)
    return pad, ho, wo


def conv_layer(
    x: np.ndarray, spec: ConvSpec, params: Mapping[str, np.ndarray], *, tf_padding: bool, rec: Any = None
) -> np.ndarray:
    """conv (padding chosen for this input size) -> batch norm -> activation, as transformers'
    `MobileNetV2ConvLayer`.

    Shapes: x (N, H, W, C_in) -> (N, Ho, Wo, C_out).
    params: "kernel" (HWIO, or (KH, KW, C) depthwise), optional "bias", and the batch-norm
    "gamma", "beta", "mean", "var" when the layer has one.
    """
    return _conv_layer(x, spec, params, tf_padding=tf_padding, rec=rec)[0]


def _conv_layer(
    x: np.ndarray,
    spec: ConvSpec,
    params: Mapping[str, np.ndarray],
    *,
    tf_padding: bool,
    rec: Any = None,
    x_padded: np.ndarray | None = None,
    pad_for: ConvSpec | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """`conv_layer`, with two ways to skip copying a tensor into a padded buffer:

    x_padded: x already zero-padded for this layer (by the layer before); the conv reads it.
    pad_for: the depthwise conv that reads this layer's output. A relu6/relu activation then
        writes its output straight into the inside of a zero-padded buffer for that conv.
    Returns (output, the padded buffer around it or None). The output is the same either way.
    """
    n, h, w, c_in = x.shape
    if c_in != spec.c_in:
        raise ValueError(
            f"conv_layer at {spec.name!r}: expected {spec.c_in} input channels, got {c_in} (x.shape={x.shape})."
        )
    pad, _, _ = _geometry(spec, h, w, tf_padding)
    if x_padded is None:
        y = _convolve(x, spec, params["kernel"], params.get("bias"), pad)
    else:
        y = _convolve(x_padded, spec, params["kernel"], params.get("bias"), Pad2D(0, 0, 0, 0))
    folded = spec.eps is not None and "gamma" not in params  # batch norm already merged into kernel and bias
    name = f"{spec.name}.convolution"
    y = _record(rec, name, "convolution", y, inputs=(x,), spec=spec, padding=pad, params=params, folded_bn=folded)
    if "gamma" in params:
        mean, var, gamma, beta = params["mean"], params["var"], params["gamma"], params["beta"]
        z = batch_norm(y, mean, var, gamma, beta, eps=spec.eps, inplace=_owned(rec, name, f"{spec.name}.normalization"))
        name = f"{spec.name}.normalization"
        y = _record(rec, name, "batch_norm", z, inputs=(y,), spec=spec, params=params)
    if spec.activation is None:
        return y, None
    act_name = f"{spec.name}.activation"
    buffer = None
    if pad_for is not None and spec.activation in INPLACE_ACTIVATIONS:
        _, ho, wo, c_out = y.shape
        top, bottom, left, right = _geometry(pad_for, ho, wo, tf_padding)[0]
        buffer = np.zeros((n, ho + top + bottom, wo + left + right, c_out), y.dtype)
        z = buffer[:, top : top + ho, left : left + wo]  # (N, Ho, Wo, C_out), a view of the inside
        INPLACE_ACTIVATIONS[spec.activation](y, out=z)
    elif _owned(rec, name, act_name):
        z = activation_inplace(spec.activation, y)
    else:
        z = activation(spec.activation)(y)
    out = _record(rec, act_name, "activation", z, inputs=(y,), spec=spec)
    return out, (buffer if out is z else None)  # run_from may have put another tensor in its place


def _convolve(x: np.ndarray, spec: ConvSpec, kernel: np.ndarray, bias: np.ndarray | None, pad: Any) -> np.ndarray:
    """The convolution op of this layer's kind: (N, H, W, C_in) -> (N, Ho, Wo, C_out)."""
    if spec.kind == "pointwise":
        return pointwise_conv2d(x, kernel, bias)  # (N, H, W, C_out)
    if spec.kind == "depthwise":
        return depthwise_conv2d(x, kernel, bias, stride=spec.stride, dilation=spec.dilation, padding=pad)
    return conv2d(x, kernel, bias, stride=spec.stride, dilation=spec.dilation, padding=pad)  # im2col


def _owned(rec: Any, name: str, next_name: str) -> bool:
    """May step `next_name` overwrite step `name`'s output in place? Not when a trace keeps either
    of them: `name`'s output is kept as such, and `next_name` keeps it as its input."""
    return rec is None or not (rec.keeps(name) or rec.keeps(next_name))


# ============================================================================ blocks and backbone


def inverted_residual(
    x: np.ndarray,
    block: BlockSpec,
    params: Mapping[str, Mapping[str, np.ndarray]],
    *,
    tf_padding: bool,
    rec: Any = None,
) -> np.ndarray:
    """The paper's bottleneck: expand (1x1) -> depthwise (3x3) -> linear project (1x1) [+ input].

    Shapes: x (N, H, W, C_in) -> (N, Ho, Wo, C_out); the expanded tensor is (N, H, W, M).
    The residual is added only when stride is 1 and C_in == C_out (shapes must agree).
    """
    y, padded = x, None
    for spec, after in zip(block.convs, (*block.convs[1:], None), strict=True):
        pad_for = after if after is not None and after.kind == "depthwise" else None
        y, padded = _conv_layer(
            y, spec, params[spec.name], tf_padding=tf_padding, rec=rec, x_padded=padded, pad_for=pad_for
        )
    if block.residual:
        project = block.convs[-1].name
        last = f"{project}.normalization" if "gamma" in params[project] else f"{project}.convolution"
        total = np.add(y, x, out=y) if _owned(rec, last, block.name) else x + y
        return _record(rec, block.name, "residual_add", total, inputs=(x, y), tf_scope=block.tf_scope)
    # No residual (stride 2 or a channel change): the block output is the projection itself.
    return _record(rec, block.name, "block_output", y, inputs=(y,), tf_scope=block.tf_scope)


def backbone(
    x: np.ndarray,
    arch: BackboneSpec,
    params: Mapping[str, Mapping[str, np.ndarray]],
    *,
    tf_padding: bool,
    run_conv_1x1: bool = True,
    rec: Any = None,
) -> tuple[np.ndarray | None, list[np.ndarray]]:
    """Stem, 16 inverted residual blocks, final 1x1 conv.

    Shapes: x (N, H, W, C_in) -> last (N, H/os, W/os, C_last) and 16 block outputs (NHWC).
    With run_conv_1x1=False (segmentation) the unused final conv is not computed and `last` is None.
    """
    y = inverted_residual(x, arch.stem, params, tf_padding=tf_padding, rec=rec)
    hidden_states = []
    for block in arch.layers:
        y = inverted_residual(y, block, params, tf_padding=tf_padding, rec=rec)
        hidden_states.append(y)
    last = None
    if run_conv_1x1:
        last = conv_layer(y, arch.conv_1x1, params["conv_1x1"], tf_padding=tf_padding, rec=rec)
    return last, hidden_states


def deeplab_head(
    features: np.ndarray,
    head: tuple[ConvSpec, ...],
    params: Mapping[str, Mapping[str, np.ndarray]],
    *,
    tf_padding: bool,
    rec: Any = None,
) -> np.ndarray:
    """DeepLabV3 head: [image pooling -> 1x1 -> broadcast back, 1x1] -> concat -> 1x1 -> classifier.

    Shapes: features (N, H, W, C) -> logits (N, H, W, L).
    """
    n, h, w, c = features.shape
    conv_pool, conv_aspp, conv_projection, classifier = head
    pooled = global_average_pool(features)[:, None, None, :]  # (N, 1, 1, C)
    pooled = _record(rec, "segmentation_head.avg_pool", "pooling", pooled, inputs=(features,), tf_scope="image_pooling")
    pooled = conv_layer(pooled, conv_pool, params[conv_pool.name], tf_padding=tf_padding, rec=rec)  # (N, 1, 1, 256)
    # A 1x1 map resized bilinearly (align_corners=True, as transformers) is a broadcast.
    resized = resize_bilinear(pooled, (h, w), align_corners=True)  # (N, H, W, 256)
    pooled = _record(
        rec, "segmentation_head.interpolate", "resize", resized, inputs=(pooled,), tf_scope="image_pooling"
    )
    branch = conv_layer(features, conv_aspp, params[conv_aspp.name], tf_padding=tf_padding, rec=rec)  # (N, H, W, 256)
    y = np.concatenate([pooled, branch], axis=-1)  # (N, H, W, 512): image pool first, then the 1x1 branch
    y = _record(rec, "segmentation_head.concat", "concat", y, inputs=(pooled, branch), tf_scope="concat")
    y = conv_layer(y, conv_projection, params[conv_projection.name], tf_padding=tf_padding, rec=rec)  # (N, H, W, 256)
    # Dropout2d sits here in transformers; at inference it is the identity.
    return conv_layer(y, classifier, params[classifier.name], tf_padding=tf_padding, rec=rec)  # (N, H, W, L)


# ============================================================================ the plain forward, folded
#
# When nothing is traced, nothing in between needs to be seen, and the same layers can run as
# fewer passes over memory (see docs/decisions.md, "The plain forward"):
# - batch norm is folded into every kernel once (`fold_batch_norm`), not once per call;
# - bias + activation run in place on the convolution's output;
# - a 1x1 (or im2col) conv that feeds a depthwise conv writes its output already padded for it,
#   with the bias inside the matrix product (`pad2d_homogeneous`): the wide expanded tensor is
#   never copied into a padded buffer;
# - in the DeepLab head, the image-pooling half of the projection is computed once per image
#   instead of being broadcast, concatenated and multiplied at every pixel.
# `tests/test_fast_path.py` asserts that this path equals the step-by-step one.


class FoldedConv(NamedTuple):
    """One conv layer as the plain forward runs it: batch norm folded into kernel and bias.

    kernel: depthwise (KH, KW, C); otherwise the 1x1 form (1, 1, P, C_out) of the HWIO kernel,
        P = KH*KW*C_in (for a dense conv it multiplies the im2col patch image, see `_patch_image`).
    bias: (C_out,), or None when the layer has neither batch norm nor bias.
    homogeneous: (1, 1, P + 1, C_out), the kernel with the bias as one more input row, for inputs
        carrying a channel of ones (`ops.pad2d_homogeneous`); None for depthwise layers.
    """

    kernel: np.ndarray
    bias: np.ndarray | None
    homogeneous: np.ndarray | None


def fold_conv(spec: ConvSpec, params: Mapping[str, np.ndarray], dtype: np.dtype) -> FoldedConv:
    """Fold one layer's batch norm (when it has one) and lay its kernel out as `FoldedConv` says."""
    kernel, bias = params["kernel"], params.get("bias")
    if "gamma" in params:
        kernel, bias = fold_batch_norm(
            kernel, bias, params["gamma"], params["beta"], params["mean"], params["var"], eps=spec.eps
        )
    kernel = kernel.astype(dtype, copy=False)
    bias = None if bias is None else bias.astype(dtype, copy=False)
    if spec.kind == "depthwise":
        return FoldedConv(kernel, bias, None)
    kernel = kernel.reshape(1, 1, -1, kernel.shape[-1])  # (1, 1, P, C_out)
    row = np.zeros(kernel.shape[-1], dtype) if bias is None else bias
    homogeneous = np.concatenate([kernel, row[None, None, None, :]], axis=2)  # (1, 1, P + 1, C_out)
    # The plain kernel is the homogeneous one without its bias row: a view, not a second copy.
    return FoldedConv(homogeneous[:, :, :-1], bias, homogeneous)


@functools.cache
def _keeps_zero(name: str | None) -> bool:
    """Does activation `name` map 0 to 0 (relu, relu6, gelu, silu, tanh: yes; sigmoid: no)?
    Only then may an activated output be padded before the activation."""
    return name is None or bool(activation(name)(np.zeros(1))[0] == 0)


def _patch_image(x: np.ndarray, spec: ConvSpec, tf_padding: bool) -> np.ndarray:
    """A dense conv's input as the image of its patches, so that the conv is a 1x1 conv on it.

    Shapes: x (N, H, W, C_in) -> (N, Ho, Wo, P), P = KH*KW*C_in (`ops.im2col`, reshaped).
    """
    pad, ho, wo = _geometry(spec, x.shape[1], x.shape[2], tf_padding)
    cols = im2col(pad2d(x, pad), kernel_size=spec.kernel_size, stride=spec.stride, dilation=spec.dilation)
    return cols.reshape(x.shape[0], ho, wo, cols.shape[-1])  # (N, Ho, Wo, P)


def _patch_planes(x: np.ndarray, spec: ConvSpec, tf_padding: bool, out_pad: Pad2D) -> np.ndarray:
    """The patch image of a dense conv, homogeneous and padded (`ops.pad2d_homogeneous`), channel-major.

    planes[n, (i*KW + j)*C + c, top + y, left + x] = x_pad[n, y*s + i*d, x*s + j*d, c], then a plane
    of ones inside the image, zero in out_pad's border. Built plane by plane: for the 3-channel
    stem, copying whole image planes is several times faster than copying 3 numbers per pixel.
    Shapes: x (N, H, W, C) -> (N, KH*KW*C + 1, Ho + top + bottom, Wo + left + right).
    """
    n, h, w, c = x.shape
    k, s, d = spec.kernel_size, spec.stride, spec.dilation
    pad, ho, wo = _geometry(spec, h, w, tf_padding)
    image = np.zeros((n, c, h + pad.top + pad.bottom, w + pad.left + pad.right), x.dtype)  # (N, C, Hp, Wp)
    image[:, :, pad.top : pad.top + h, pad.left : pad.left + w] = x.transpose(0, 3, 1, 2)
    top, bottom, left, right = out_pad
    planes = np.zeros((n, k * k * c + 1, ho + top + bottom, wo + left + right), x.dtype)
    inside = planes[:, :, top : top + ho, left : left + wo]  # (N, P + 1, Ho, Wo), a view
    for i in range(k):
        for j in range(k):
            tap = image[:, :, i * d : i * d + s * (ho - 1) + 1 : s, j * d : j * d + s * (wo - 1) + 1 : s]
            inside[:, (i * k + j) * c : (i * k + j + 1) * c] = tap  # (N, C, Ho, Wo)
    inside[:, -1] = 1
    return planes


def folded_conv_layer(
    x: np.ndarray, spec: ConvSpec, f: FoldedConv, *, tf_padding: bool, pad_for: ConvSpec | None = None
) -> tuple[np.ndarray, bool]:
    """`conv_layer` with batch norm folded, bias and activation in place.

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
    pad, ho, wo = _geometry(spec, h, w, tf_padding)
    if spec.kind == "depthwise":
        y = depthwise_conv2d(x, f.kernel, stride=spec.stride, dilation=spec.dilation, padding=pad)
        return bias_activation(y, f.bias, spec.activation), False
    if pad_for is None or not _keeps_zero(spec.activation):
        rows = x if spec.kind == "pointwise" else _patch_image(x, spec, tf_padding)  # (N, Ho, Wo, P)
        return bias_activation(pointwise_conv2d(rows, f.kernel), f.bias, spec.activation), False
    out_pad, _, _ = _geometry(pad_for, ho, wo, tf_padding)
    if spec.kind == "pointwise":
        y = pointwise_conv2d(pad2d_homogeneous(x, out_pad), f.homogeneous)  # W x + b inside, 0 in the border
    else:
        planes = _patch_planes(x, spec, tf_padding, out_pad)  # (N, P + 1, Hp, Wp)
        _, p1, hp, wp = planes.shape
        rows = planes.reshape(n, p1, hp * wp).transpose(0, 2, 1)  # (N, Hp*Wp, P + 1), a view
        y = (rows @ f.homogeneous[0, 0]).reshape(n, hp, wp, -1)  # (N, Hp, Wp, C_out)
    return (y if spec.activation is None else activation_inplace(spec.activation, y)), True


def folded_inverted_residual(
    x: np.ndarray, block: BlockSpec, folded: Mapping[str, FoldedConv], *, tf_padding: bool
) -> np.ndarray:
    """`inverted_residual` on folded layers; the expansion hands the depthwise conv a padded tensor.

    Shapes: x (N, H, W, C_in) -> (N, Ho, Wo, C_out).
    """
    y, padded = x, False
    for spec, after in zip(block.convs, (*block.convs[1:], None), strict=True):
        if spec.kind == "depthwise" and padded:  # the layer before already padded its output
            y = depthwise_conv2d(y, folded[spec.name].kernel, stride=spec.stride, dilation=spec.dilation)
            y, padded = bias_activation(y, folded[spec.name].bias, spec.activation), False
            continue
        pad_for = after if after is not None and after.kind == "depthwise" else None
        y, padded = folded_conv_layer(y, spec, folded[spec.name], tf_padding=tf_padding, pad_for=pad_for)
    return np.add(y, x, out=y) if block.residual else y


def folded_backbone(
    x: np.ndarray, arch: BackboneSpec, folded: Mapping[str, FoldedConv], *, tf_padding: bool, run_conv_1x1: bool = True
) -> tuple[np.ndarray | None, list[np.ndarray]]:
    """`backbone` on folded layers (the plain forward). Same shapes and outputs."""
    y = folded_inverted_residual(x, arch.stem, folded, tf_padding=tf_padding)
    hidden_states = []
    for block in arch.layers:
        y = folded_inverted_residual(y, block, folded, tf_padding=tf_padding)
        hidden_states.append(y)
    last = None
    if run_conv_1x1:
        last, _ = folded_conv_layer(y, arch.conv_1x1, folded["conv_1x1"], tf_padding=tf_padding)
    return last, hidden_states


def folded_deeplab_head(
    features: np.ndarray, head: tuple[ConvSpec, ...], folded: Mapping[str, FoldedConv]
) -> np.ndarray:
    """`deeplab_head` on folded layers, without materialising the broadcast image-pool branch.

    The projection of concat([pooled broadcast to every pixel, branch]) splits by its input rows:
        concat([p, b]) @ K + bias = b @ K[256:] + (p @ K[:256] + bias)
    and the second term is one vector per image. Shapes: features (N, H, W, C) -> (N, H, W, L).
    """
    conv_pool, conv_aspp, conv_projection, classifier = head
    pooled = global_average_pool(features)[:, None, None, :]  # (N, 1, 1, C)
    pooled, _ = folded_conv_layer(pooled, conv_pool, folded[conv_pool.name], tf_padding=True)  # (N, 1, 1, 256)
    branch, _ = folded_conv_layer(features, conv_aspp, folded[conv_aspp.name], tf_padding=True)  # (N, H, W, 256)
    projection = folded[conv_projection.name]
    kernel = projection.kernel[0, 0]  # (512, 256): rows 0..255 read the image pool, 256..511 the branch
    per_image = pooled @ kernel[:HEAD_CHANNELS] + projection.bias  # (N, 1, 1, 256)
    y = branch @ kernel[HEAD_CHANNELS:]  # (N, H, W, 256)
    y = bias_activation(np.add(y, per_image, out=y), None, conv_projection.activation)
    logits, _ = folded_conv_layer(y, classifier, folded[classifier.name], tf_padding=True)  # (N, H, W, L)
    return logits


# ============================================================================ parameters <-> transformers


def _hf_tensor_shapes(spec: ConvSpec) -> dict[str, tuple[int, ...]]:
    """transformers' parameter names (suffixes) and shapes for one conv layer."""
    if spec.kind == "depthwise":
        shapes = {"convolution.weight": (spec.c_out, 1, spec.kernel_size, spec.kernel_size)}
    else:
        shapes = {"convolution.weight": (spec.c_out, spec.c_in, spec.kernel_size, spec.kernel_size)}
    if spec.bias:
        shapes["convolution.bias"] = (spec.c_out,)
    if spec.eps is not None:
        for suffix in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"normalization.{suffix}"] = (spec.c_out,)
    return shapes


def _kernel_from_torch(weight: np.ndarray, kind: str) -> np.ndarray:
    """OIHW (PyTorch) -> HWIO, or (C, 1, KH, KW) -> (KH, KW, C) for depthwise kernels."""
    if kind == "depthwise":
        return np.ascontiguousarray(weight[:, 0].transpose(1, 2, 0))  # (C, KH, KW) -> (KH, KW, C)
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0))  # (C_out, C_in, KH, KW) -> (KH, KW, C_in, C_out)


def _kernel_to_torch(kernel: np.ndarray, kind: str) -> np.ndarray:
    """The inverse of `_kernel_from_torch`."""
    if kind == "depthwise":
        return np.ascontiguousarray(kernel.transpose(2, 0, 1)[:, None])  # (KH, KW, C) -> (C, 1, KH, KW)
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))  # (KH, KW, C_in, C_out) -> (C_out, C_in, KH, KW)


_BN_NAMES = {"weight": "gamma", "bias": "beta", "running_mean": "mean", "running_var": "var"}


def _conv_params_from_torch(
    spec: ConvSpec, tensors: Mapping[str, np.ndarray], dtype: np.dtype
) -> dict[str, np.ndarray]:
    params = {"kernel": _kernel_from_torch(tensors["convolution.weight"], spec.kind).astype(dtype)}
    if spec.bias:
        params["bias"] = tensors["convolution.bias"].astype(dtype)
    if spec.eps is not None:
        for hf, ours in _BN_NAMES.items():
            params[ours] = tensors[f"normalization.{hf}"].astype(dtype)
    return params


def identity_batch_norm(bias: np.ndarray, eps: float) -> dict[str, np.ndarray]:
    """transformers batch-norm tensors that only add `bias`: gamma 1, beta = bias, mean 0, var 1 - eps,
    so (y - 0) / sqrt(1 - eps + eps) * 1 + bias = y + bias. How a folded conv fits transformers'
    bias-free conv + batch norm (see docs/decisions.md)."""
    c = bias.shape[0]
    return {
        "normalization.weight": np.ones(c, bias.dtype),
        "normalization.bias": bias,
        "normalization.running_mean": np.zeros(c, bias.dtype),
        "normalization.running_var": np.full(c, 1 - eps, bias.dtype),
    }


def _conv_params_to_torch(spec: ConvSpec, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    tensors = {"convolution.weight": _kernel_to_torch(params["kernel"], spec.kind)}
    if spec.bias:
        tensors["convolution.bias"] = params["bias"]
    if spec.eps is not None:
        if "gamma" in params:
            tensors.update({f"normalization.{hf}": params[ours] for hf, ours in _BN_NAMES.items()})
        else:  # folded
            tensors.update(identity_batch_norm(params["bias"], spec.eps))
        tensors["normalization.num_batches_tracked"] = np.zeros((), dtype=np.int64)
    return tensors


def _describe_mismatch(missing: list[str], unexpected: list[str], wrong: list[str], cls_name: str) -> str:
    parts = []
    if missing:
        parts.append(f"missing {len(missing)}: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    if unexpected:
        parts.append(
            f"unexpected {len(unexpected)}: {', '.join(unexpected[:8])}{' ...' if len(unexpected) > 8 else ''}"
        )
    if wrong:
        parts.append(f"wrong shape {len(wrong)}: {'; '.join(wrong[:8])}{' ...' if len(wrong) > 8 else ''}")
    return (
        f"{cls_name}.from_state_dict: the state dict does not fit this config ({' | '.join(parts)}). "
        "Check that the config (depth_multiplier, num_labels, first_layer_is_expansion, ...) is the one "
        "the weights were trained with."
    )


HEAD_PREFIXES = ("classifier.", "segmentation_head.")


def _backbone_shapes(config: MobileNetV2Config) -> dict[str, tuple[int, ...]]:
    """transformers' backbone tensor shapes (no `mobilenet_v2.` prefix) for a config."""
    arch = backbone_spec(config)
    specs = [c for block in (arch.stem, *arch.layers) for c in block.convs] + [arch.conv_1x1]
    return {f"{s.name}.{k}": v for s in specs for k, v in _hf_tensor_shapes(s).items()}


def infer_config(tensors: Mapping[str, np.ndarray], **known: Any) -> dict[str, Any] | None:
    """Guess the config fields a set of transformers-named tensors was made with, from their shapes.

    Tries the published depth multipliers, channel divisors, expansion ratios and stem variants;
    returns the fields that reproduce every backbone shape (plus num_labels from the head), or None.
    `known` fixes fields that are known already. The conv_1x1 layer may be absent (DeepLab exports).
    """
    shapes = {k.removeprefix("mobilenet_v2."): tuple(np.shape(v)) for k, v in tensors.items()}
    first = shapes.get("conv_stem.first_conv.convolution.weight")
    if first is None or len(first) != 4:
        return None
    fields: dict[str, Any] = {"num_channels": first[1]}
    for name in ("classifier.weight", "segmentation_head.classifier.convolution.weight"):
        if name in shapes:
            fields["num_labels"] = shapes[name][0]
    grid = itertools.product([0.35, 0.5, 0.75, 1.0, 1.3, 1.4], [8, 1], [6.0, 4.0], [True, False], [True, False])
    for dm, divisor, ratio, first_is_expansion, finegrained in grid:
        candidate = {
            "depth_multiplier": dm,
            "depth_divisible_by": divisor,
            "expand_ratio": ratio,
            "first_layer_is_expansion": first_is_expansion,
            "finegrained_output": finegrained,
        }
        candidate.update(known)
        config = MobileNetV2Config(num_channels=fields["num_channels"], **candidate)
        expected = _backbone_shapes(config)
        optional = {k for k in expected if k.startswith("conv_1x1.")}
        if all(shapes.get(k) == v for k, v in expected.items() if k not in optional or k in shapes):
            if not all(k in shapes for k in expected if k not in optional):
                continue
            return {**candidate, **fields}
    return None


def _spatial_to_public(x: np.ndarray) -> np.ndarray:
    """(N, 1, 1, C) -> (N, C) as transformers returns pooled features and logits; a real grid
    (N, h, w, C) -> NCHW (N, C, h, w)."""
    return x[:, 0, 0, :] if x.shape[1:3] == (1, 1) else nhwc_to_nchw(x)


# ============================================================================ input checks


def _check_pixel_values(pixel_values: Any, config: MobileNetV2Config, cls_name: str) -> None:
    """Raise a clear error for anything but a float NCHW batch of size >= 32x32."""
    if not isinstance(pixel_values, np.ndarray):
        raise TypeError(
            f"{cls_name}: pixel_values must be a numpy array (N, C, H, W), got {type(pixel_values).__name__}; "
            "use np.asarray(...) or MobileNetV2ImageProcessor."
        )
    if pixel_values.ndim != 4:
        hint = " Add a batch axis with pixel_values[None]." if pixel_values.ndim == 3 else ""
        raise ValueError(
            f"{cls_name}: pixel_values must have rank 4 (N, C, H, W), got shape {pixel_values.shape}.{hint}"
        )
    if not np.issubdtype(pixel_values.dtype, np.floating):
        raise TypeError(
            f"{cls_name}: pixel_values must be floating point (normalised pixels), got dtype {pixel_values.dtype}. "
            "Raw uint8 images go through MobileNetV2ImageProcessor first (rescale 1/255, normalise to [-1, 1])."
        )
    n, c, h, w = pixel_values.shape
    if c != config.num_channels:
        hint = ""
        if pixel_values.shape[-1] == config.num_channels:
            hint = " This looks like NHWC: pass pixel_values.transpose(0, 3, 1, 2)."
        raise ValueError(
            f"{cls_name}: expected {config.num_channels} channels on axis 1 (N, C, H, W), got shape "
            f"{pixel_values.shape}.{hint}"
        )
    if h < MIN_INPUT_SIZE or w < MIN_INPUT_SIZE:
        raise ValueError(
            f"{cls_name}: input {h}x{w} is smaller than the minimum {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} "
            "(after 5 stride-2 layers the feature map would vanish); resize the image up."
        )
    if not np.isfinite(pixel_values).all():
        raise ValueError(f"{cls_name}: pixel_values contains NaN or Inf; check the preprocessing.")


# ============================================================================ the three model classes


class MobileNetV2PreTrainedModel:
    """What the three model classes share: config, dtype, parameters, weight conversion.

    Parameters live in `self.params`: a dict from layer name (transformers module path,
    "layer.3.expand_1x1", "segmentation_head.conv_pool", "classifier") to that layer's arrays in
    npmnv2's layout ("kernel" HWIO, "bias", batch-norm "gamma", "beta", "mean", "var").
    """

    base_model_prefix = "mobilenet_v2"
    _prefix = "mobilenet_v2."  # parameter-name prefix of the backbone inside this class

    def __init__(self, config: MobileNetV2Config | None = None, *, dtype: Any = np.float32, seed: int = 0) -> None:
        """A model with seeded random weights, initialised as transformers does: conv and linear
        weights ~ N(0, initializer_range), biases 0, batch norm gamma=1, beta=0, mean=0, var=1."""
        self._setup(config, dtype)
        rng = np.random.default_rng(seed)
        std = self.config.initializer_range
        for spec in self._conv_specs():
            shape = (
                (spec.kernel_size, spec.kernel_size, spec.c_out)
                if spec.kind == "depthwise"
                else (spec.kernel_size, spec.kernel_size, spec.c_in, spec.c_out)
            )
            p = {"kernel": rng.normal(0.0, std, shape).astype(self.dtype)}
            if spec.bias:
                p["bias"] = np.zeros(spec.c_out, self.dtype)
            if spec.eps is not None:
                p.update(
                    gamma=np.ones(spec.c_out, self.dtype),
                    beta=np.zeros(spec.c_out, self.dtype),
                    mean=np.zeros(spec.c_out, self.dtype),
                    var=np.ones(spec.c_out, self.dtype),
                )
            self.params[spec.name] = p
        self._init_extra_params(rng)

    def _setup(self, config: MobileNetV2Config | None, dtype: Any) -> None:
        """Config, dtype and architecture; no parameters yet."""
        self.config = MobileNetV2Config() if config is None else config
        if not isinstance(self.config, MobileNetV2Config):
            raise TypeError(f"{type(self).__name__}: config must be a MobileNetV2Config, got {type(config).__name__}.")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"{type(self).__name__}: dtype must be float32 or float64, got {self.dtype}.")
        self.arch = backbone_spec(self.config)
        self.params: dict[str, dict[str, np.ndarray]] = {}
        self.quantization: dict[str, tuple[float, int]] = {}  # activation (scale, zero point), from TFLite

    @classmethod
    def _empty(cls, config: MobileNetV2Config, dtype: Any):
        """A model without parameters, to be filled from a checkpoint (no random draws)."""
        model = cls.__new__(cls)
        model._setup(config, dtype)
        return model

    # -- what subclasses add -------------------------------------------------
    def _head_specs(self) -> tuple[ConvSpec, ...]:
        return ()

    def _init_extra_params(self, rng: np.random.Generator) -> None:
        """Parameters that are not conv layers (the linear classifier)."""

    def _extra_hf_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def _extra_from_torch(self, tensors: Mapping[str, np.ndarray]) -> None:
        pass

    def _extra_to_torch(self) -> dict[str, np.ndarray]:
        return {}

    # -- layers ----------------------------------------------------------------
    def _conv_specs(self) -> list[ConvSpec]:
        """Every conv layer of the model in execution order (backbone, then head)."""
        specs = [c for block in (self.arch.stem, *self.arch.layers) for c in block.convs]
        return [*specs, self.arch.conv_1x1, *self._head_specs()]

    def _hf_name(self, spec: ConvSpec) -> str:
        return spec.name if spec.name.startswith("segmentation_head.") else self._prefix + spec.name

    # -- transformers state dicts ----------------------------------------------
    def expected_state_dict_shapes(self) -> dict[str, tuple[int, ...]]:
        """transformers' parameter names for this class and config, with their PyTorch shapes
        (batch-norm `num_batches_tracked` counters are accepted but not required)."""
        shapes = {}
        for spec in self._conv_specs():
            for suffix, shape in _hf_tensor_shapes(spec).items():
                shapes[f"{self._hf_name(spec)}.{suffix}"] = shape
        shapes.update(self._extra_hf_shapes())
        return shapes

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, Any], config: MobileNetV2Config, dtype: Any = np.float32):
        """Build a model from a mapping of transformers parameter names to arrays (PyTorch layouts).

        Every expected tensor must be present with its exact shape, and nothing else may be;
        otherwise ValueError lists what is missing, unexpected or mis-shaped.
        """
        model = cls._empty(config, dtype)
        expected = model.expected_state_dict_shapes()
        arrays = {k: np.asarray(v) for k, v in state_dict.items()}
        missing = sorted(k for k in expected if k not in arrays)
        unexpected = sorted(k for k in arrays if k not in expected and not k.endswith("num_batches_tracked"))
        wrong = [
            f"{k} {arrays[k].shape} != {expected[k]}"
            for k in expected
            if k in arrays and arrays[k].shape != expected[k]
        ]
        if missing or unexpected or wrong:
            raise ValueError(_describe_mismatch(missing, unexpected, wrong, cls.__name__))
        for k, v in arrays.items():
            if k in expected and not (np.issubdtype(v.dtype, np.floating) or np.issubdtype(v.dtype, np.integer)):
                raise TypeError(f"{cls.__name__}.from_state_dict: {k} has dtype {v.dtype}, expected a number type.")
        for spec in model._conv_specs():
            name = model._hf_name(spec)
            tensors = {s: arrays[f"{name}.{s}"] for s in _hf_tensor_shapes(spec)}
            model.params[spec.name] = _conv_params_from_torch(spec, tensors, model.dtype)
        model._extra_from_torch(arrays)
        return model

    def state_dict(self) -> dict[str, np.ndarray]:
        """transformers' parameter names -> arrays in PyTorch layouts (OIHW kernels)."""
        out = {}
        for spec in self._conv_specs():
            for suffix, value in _conv_params_to_torch(spec, self.params[spec.name]).items():
                out[f"{self._hf_name(spec)}.{suffix}"] = value
        out.update(self._extra_to_torch())
        return out

    def num_parameters(self) -> int:
        """Learnable parameters, batch norm included (transformers' `num_parameters()`)."""
        return sum(
            int(np.prod(s))
            for k, s in self.expected_state_dict_shapes().items()
            if not k.endswith(("running_mean", "running_var"))
        )

    # -- files ---------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls, source: str | os.PathLike, dtype: Any = np.float32, *, config: MobileNetV2Config | str | None = None
    ):
        """Load weights from a transformers checkpoint folder, a .safetensors/.bin file, a .tflite file
        or a hub id ("google/mobilenet_v2_1.0_224").

        A single weight file takes its config from `config=` (a MobileNetV2Config or a config.json
        path) or from a config.json beside it. A checkpoint made for the other head (classification
        vs segmentation) loads its backbone and initialises this class's head afresh, with a warning,
        as transformers does.
        """
        from . import weights

        path = weights.resolve_checkpoint(source)
        return cls._from_checkpoint(*weights.read_source(path), str(path), dtype=dtype, config=config)

    @classmethod
    def _from_checkpoint(
        cls,
        tensors: dict[str, np.ndarray],
        config_dict: dict[str, Any] | None,
        quantization: dict[str, tuple[float, int]] | None,
        where: str,
        *,
        dtype: Any = np.float32,
        config: MobileNetV2Config | str | None = None,
    ):
        """`from_pretrained` after the source was read (the CLI reads a source once, then picks the class)."""
        if isinstance(config, (str, os.PathLike)):
            config = MobileNetV2Config.from_json_file(config)
        if config is None:
            if config_dict is None:
                raise ValueError(
                    f"{cls.__name__}.from_pretrained: {where!r} has no config.json beside it; pass "
                    "config=MobileNetV2Config(...) or config='path/to/config.json'."
                )
            config = MobileNetV2Config.from_dict(config_dict)
        tensors = cls._adopt_checkpoint(tensors, config, dtype, where)
        try:
            model = cls.from_state_dict(tensors, config, dtype=dtype)
        except ValueError as err:
            guess = infer_config(tensors)
            described = ", ".join(f"{k}={v!r}" for k, v in (guess or {}).items())
            hint = f" The tensors look like a model with {described}." if guess else ""
            raise ValueError(f"{err}{hint}") from None
        if quantization is None:  # a checkpoint npmnv2 saved from a TFLite import keeps them in config.json
            saved = config.extra.get("npmnv2_activation_quantization", {})
            quantization = {k: (float(v[0]), int(v[1])) for k, v in saved.items()}
        model.quantization = quantization
        return model

    @classmethod
    def _adopt_checkpoint(
        cls, tensors: dict[str, np.ndarray], config: MobileNetV2Config, dtype: Any, where: str
    ) -> dict[str, np.ndarray]:
        """Fit a checkpoint of a sibling class: add or strip the `mobilenet_v2.` prefix, and swap
        a head this class does not have for a freshly initialised one (with a warning)."""
        expected = cls._empty(config, dtype).expected_state_dict_shapes()
        prefix = cls._prefix
        backbone = {k.removeprefix("mobilenet_v2."): v for k, v in tensors.items() if not k.startswith(HEAD_PREFIXES)}
        adopted = {prefix + k: v for k, v in backbone.items()}
        theirs = {k: v for k, v in tensors.items() if k.startswith(HEAD_PREFIXES)}
        ours = {k for k in expected if k.startswith(HEAD_PREFIXES)}
        if theirs.keys() & ours or (not theirs and not ours):
            adopted.update(theirs)  # same head (or none): strict checking decides
            return adopted
        fresh = cls(config, dtype=dtype).state_dict()  # this class's head, initialised as transformers does
        adopted.update({k: fresh[k] for k in ours})
        dropped = sorted({k.split(".")[0] for k in theirs})
        made = sorted({k.split(".")[0] for k in ours})
        parts = [f"{cls.__name__}.from_pretrained({where!r}): the checkpoint's backbone was loaded"]
        if dropped:
            parts.append(f"its unused head weights ({', '.join(h + '.*' for h in dropped)}) were dropped")
        if made:
            parts.append(
                f"this class's head ({', '.join(h + '.*' for h in made)}) is newly initialised and must be "
                "trained or loaded before its outputs mean anything"
            )
        warnings.warn("; ".join(parts) + ".", NpMnV2Warning, stacklevel=3)
        return adopted

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write a transformers checkpoint folder (config.json + model.safetensors) that
        `transformers.<same class>.from_pretrained` loads with no missing or unexpected keys."""
        from . import weights

        config = self.config.to_dict()
        config["architectures"] = [type(self).__name__]
        if getattr(self, "quantization", None):
            config["npmnv2_activation_quantization"] = {k: list(v) for k, v in self.quantization.items()}
        return weights.save_checkpoint(directory, self.state_dict(), config)

    # -- forward helpers --------------------------------------------------------
    def _prepare(self, pixel_values: Any) -> np.ndarray:
        """Check and convert NCHW pixel_values to the model dtype, NHWC (a view when possible)."""
        _check_pixel_values(pixel_values, self.config, type(self).__name__)
        return nchw_to_nhwc(pixel_values.astype(self.dtype, copy=False))  # (N, H, W, C_in)

    def _backbone(self, x: np.ndarray, *, run_conv_1x1: bool, rec: Any = None):
        if rec is None:  # the plain forward: nothing to record, so run the folded layers
            return folded_backbone(
                x, self.arch, self.folded_params(), tf_padding=self.config.tf_padding, run_conv_1x1=run_conv_1x1
            )
        return backbone(
            x, self.arch, self.params, tf_padding=self.config.tf_padding, run_conv_1x1=run_conv_1x1, rec=rec
        )

    def folded_params(self) -> dict[str, FoldedConv]:
        """Every conv layer with its batch norm folded (`FoldedConv`), as the plain forward runs it.

        Folded once and cached. A layer is refolded when one of its arrays in `self.params` is
        replaced by another array; the arrays a fold was made from are made read-only, so that
        editing one in place (which the cache could not see) fails loudly. To edit a weight,
        assign an edited copy: `p["kernel"] = edited`.
        """
        cache = self.__dict__.setdefault("_folded_cache", {})
        folded = {}
        for spec in self._conv_specs():
            params = self.params[spec.name]
            # Which arrays the layer has now, by identity. The cache holds the arrays it folded,
            # so their ids cannot be reused by other objects while they are cached.
            ids = tuple(map(id, params.values()))
            hit = cache.get(spec.name)
            if hit is None or hit[0] != ids:
                for array in params.values():
                    array.flags.writeable = False
                hit = cache[spec.name] = (ids, fold_conv(spec, params, self.dtype), tuple(params.values()))
            folded[spec.name] = hit[1]
        return folded

    def _pool(self, last: np.ndarray, rec: Any) -> np.ndarray:
        """The pooler: global average (transformers) or TF-slim's fixed 7x7 average, VALID.

        Shapes: last (N, H, W, C) -> (N, 1, 1, C) global, or (N, H-6, W-6, C) fixed_7x7.
        """
        n, h, w, c = last.shape
        if self.config.pooling == "global":
            pooled = global_average_pool(last)[:, None, None, :]  # (N, 1, 1, C)
            attrs = {"window": "global"}
        else:
            if h < 7 or w < 7:
                raise ValueError(
                    f"{type(self).__name__}: pooling='fixed_7x7' needs a final feature map of at least 7x7, got "
                    f"{h}x{w}; use an input of at least {7 * self.config.output_stride - 31}x"
                    f"{7 * self.config.output_stride - 31} or pooling='global'."
                )
            pooled = avg_pool2d(last, kernel_size=7, stride=1)  # (N, H-6, W-6, C)
            attrs = {"window": (7, 7), "stride": 1, "padding": "VALID"}
        return _record(
            rec, "pooler", "pooling", pooled, inputs=(last,), attrs=attrs, tf_scope="MobilenetV2/Logits/AvgPool"
        )

    def __call__(self, *args: Any, **kwargs: Any):
        return self.forward(*args, **kwargs)

    # -- tracing -----------------------------------------------------------------
    def step_names(self) -> list[str]:
        """Every step name a forward records, in execution order (see `trace`)."""
        names = []
        for block in (self.arch.stem, *self.arch.layers):
            names += [n for spec in block.convs for n in self._conv_step_names(spec)]
            names.append(block.name)
        names += self._tail_step_names()
        return names

    def _conv_step_names(self, spec: ConvSpec) -> list[str]:
        names = [f"{spec.name}.convolution"]
        if "gamma" in self.params[spec.name]:
            names.append(f"{spec.name}.normalization")
        if spec.activation is not None:
            names.append(f"{spec.name}.activation")
        return names

    def _tail_step_names(self) -> list[str]:
        return [*self._conv_step_names(self.arch.conv_1x1), "pooler"]

    def _check_step_name(self, name: str, names: list[str] | None = None) -> None:
        from .trace import unknown_name_error

        names = self.step_names() if names is None else names
        if name.removeprefix("mobilenet_v2.") not in names:
            raise unknown_name_error(name, names)

    def trace(
        self,
        pixel_values: np.ndarray,
        layers: str | list[str] | None = None,
        stop_at: str | None = None,
        **forward_kwargs: Any,
    ):
        """Run the forward pass and record every operation as a Step (see `npmnv2.trace.Trace`).

        layers: names or glob patterns ("layer.*.expand_1x1.activation") of the tensors to keep
            (None keeps all; the others are recorded without their tensors, so memory stays low).
        stop_at: stop right after this step; nothing later is computed.
        Names may carry transformers' full-model prefix ("mobilenet_v2.layer.3").
        """
        from .trace import StopForward, Trace

        names = self.step_names()
        patterns = [layers] if isinstance(layers, str) else layers
        if patterns is not None:
            patterns = [p.removeprefix("mobilenet_v2.") for p in patterns]
            for pattern in patterns:
                if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                    self._check_step_name(pattern, names)
        if stop_at is not None:
            stop_at = stop_at.removeprefix("mobilenet_v2.")
            self._check_step_name(stop_at, names)
        trace = Trace(keep=patterns, stop_at=stop_at, tf_padding=self.config.tf_padding)
        trace.pixel_values = pixel_values
        try:
            trace.output = self.forward(pixel_values, rec=trace, **forward_kwargs)
        except StopForward:
            pass
        self._last_trace_input = pixel_values
        return trace

    def steps(self, pixel_values: np.ndarray):
        """Iterate over the steps of one forward pass, in execution order, with all tensors kept."""
        yield from self.trace(pixel_values).steps

    def run_from(self, name: str, tensor: np.ndarray, *, pixel_values: np.ndarray | None = None):
        """Continue the forward pass with `tensor` (NCHW) in place of step `name`'s output.

        The steps before `name` are those of `pixel_values` (default: the input of this model's
        last `trace` call); everything after `name` is computed from `tensor`. Returns the model
        output (logits, ...), so an ablated channel or a removed nonlinearity shows in the prediction.
        """
        from .trace import Trace

        name = name.removeprefix("mobilenet_v2.")
        self._check_step_name(name)
        source = getattr(self, "_last_trace_input", None) if pixel_values is None else pixel_values
        if source is None:
            raise ValueError(
                "run_from needs the input the edited tensor came from: call model.trace(pixel_values) first, "
                "or pass pixel_values=."
            )
        trace = Trace(keep=[], replace={name: tensor}, tf_padding=self.config.tf_padding)
        return self.forward(source, rec=trace)

    def fold_batchnorm(self):
        """An equivalent model whose convolutions carry their batch norm (see `ops.fold_batch_norm`):
        its trace has no normalization steps, and its conv steps say folded_bn=True."""
        folded = copy.copy(self)
        folded.params = {}
        folded._folded_cache = {}
        specs = {s.name: s for s in self._conv_specs()}
        for name, p in self.params.items():
            spec = specs.get(name)
            if spec is not None and "gamma" in p:
                kernel, bias = fold_batch_norm(
                    p["kernel"], p.get("bias"), p["gamma"], p["beta"], p["mean"], p["var"], eps=spec.eps
                )
                folded.params[name] = {"kernel": kernel.astype(self.dtype), "bias": bias.astype(self.dtype)}
            else:
                folded.params[name] = dict(p)
        return folded

    def summary(self, image_size: int | tuple[int, int] = 224):
        """Output shape, parameters, MACs and activation memory per step for one image of this size."""
        from .trace import Summary

        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        trace = self.trace(np.zeros((1, self.config.num_channels, h, w), self.dtype), layers=[])
        rows = [
            {
                "name": s.name,
                "kind": s.kind,
                "shape": s.output_shape,
                "params": s.n_params,
                "macs": s.macs,
                "bytes": int(np.prod(s.output_shape)) * self.dtype.itemsize,
            }
            for s in trace.steps
        ]
        bn = sum(2 * s.c_out for s in self._conv_specs() if s.eps is not None)
        return Summary(rows, trace.total_macs, self.num_parameters(), bn, (h, w))

    def __repr__(self) -> str:
        c = self.config
        return (
            f"{type(self).__name__}(depth_multiplier={c.depth_multiplier}, output_stride={c.output_stride}, "
            f"num_labels={c.num_labels}, dtype={self.dtype.name}, parameters={self.num_parameters():,})"
        )


class MobileNetV2Model(MobileNetV2PreTrainedModel):
    """The bare backbone: stem, 16 inverted residual blocks, final 1x1 conv, global average pool."""

    _prefix = ""
    add_pooling_layer = True  # transformers' default; models made by from_state_dict keep it

    def __init__(
        self,
        config: MobileNetV2Config | None = None,
        *,
        add_pooling_layer: bool = True,
        dtype: Any = np.float32,
        seed: int = 0,
    ) -> None:
        super().__init__(config, dtype=dtype, seed=seed)
        self.add_pooling_layer = add_pooling_layer

    def _tail_step_names(self) -> list[str]:
        names = super()._tail_step_names()
        return names if self.add_pooling_layer else names[:-1]

    def forward(
        self, pixel_values: np.ndarray, output_hidden_states: bool = False, *, rec: Any = None
    ) -> BaseModelOutputWithPoolingAndNoAttention:
        """pixel_values (N, C, H, W) float -> last_hidden_state (N, C_last, H/os, W/os), pooler_output (N, C_last)."""
        x = self._prepare(pixel_values)
        last, hidden = self._backbone(x, run_conv_1x1=True, rec=rec)
        pooled = self._pool(last, rec) if self.add_pooling_layer else None  # (N, h, w, C_last)
        return BaseModelOutputWithPoolingAndNoAttention(
            last_hidden_state=nhwc_to_nchw(last),
            pooler_output=None if pooled is None else _spatial_to_public(pooled),
            hidden_states=tuple(nhwc_to_nchw(h) for h in hidden) if output_hidden_states else None,
        )


def _classification_loss(logits: np.ndarray, labels: Any, config: MobileNetV2Config) -> np.ndarray:
    """transformers' loss for image classification, with the problem type inferred the same way:
    num_labels == 1 -> MSE; integer labels -> cross-entropy; otherwise -> BCE with logits."""
    labels = np.asarray(labels)
    n, num_labels = logits.shape
    problem = config.problem_type
    if problem is None:
        if num_labels == 1:
            problem = "regression"
        elif num_labels > 1 and np.issubdtype(labels.dtype, np.integer):
            problem = "single_label_classification"
        else:
            problem = "multi_label_classification"
    if problem == "regression":
        if num_labels == 1:
            if labels.size != n:
                raise ValueError(f"labels: regression with num_labels=1 expects {n} values, got shape {labels.shape}.")
            return mse_loss(logits.reshape(-1), labels.reshape(-1).astype(logits.dtype))
        if labels.shape != logits.shape:
            raise ValueError(f"labels: regression expects shape {logits.shape}, got {labels.shape}.")
        return mse_loss(logits, labels.astype(logits.dtype))
    if problem == "single_label_classification":
        if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (n,):
            raise ValueError(
                f"labels: single-label classification expects integer class ids of shape ({n},), "
                f"got dtype {labels.dtype} shape {labels.shape}."
            )
        bad = (labels != -100) & ((labels < 0) | (labels >= num_labels))
        if bad.any():
            raise ValueError(
                f"labels: class ids must be in [0, {num_labels}) or -100 (ignored), got {labels[bad][:5]}."
            )
        return cross_entropy(logits, labels)
    if labels.shape != logits.shape:
        raise ValueError(
            f"labels: multi-label classification expects 0/1 targets of shape {logits.shape}, got {labels.shape}."
        )
    return bce_with_logits(logits, labels.astype(logits.dtype))


class MobileNetV2ForImageClassification(MobileNetV2PreTrainedModel):
    """Backbone + global average pool + (dropout, identity at inference) + linear classifier."""

    def _init_extra_params(self, rng: np.random.Generator) -> None:
        c, labels = self.arch.conv_1x1.c_out, self.config.num_labels
        if labels > 0:  # num_labels == 0: no classifier, logits are the pooled features
            self.params["classifier"] = {
                "kernel": rng.normal(0.0, self.config.initializer_range, (c, labels)).astype(self.dtype),  # (C, L)
                "bias": np.zeros(labels, self.dtype),
            }

    def _tail_step_names(self) -> list[str]:
        return [*super()._tail_step_names(), *(["classifier"] if self.config.num_labels > 0 else [])]

    def _extra_hf_shapes(self) -> dict[str, tuple[int, ...]]:
        c, labels = self.arch.conv_1x1.c_out, self.config.num_labels
        return {"classifier.weight": (labels, c), "classifier.bias": (labels,)} if labels > 0 else {}

    def _extra_from_torch(self, tensors: Mapping[str, np.ndarray]) -> None:
        if self.config.num_labels > 0:
            self.params["classifier"] = {
                "kernel": np.ascontiguousarray(tensors["classifier.weight"].T).astype(self.dtype),  # (L, C) -> (C, L)
                "bias": tensors["classifier.bias"].astype(self.dtype),
            }

    def _extra_to_torch(self) -> dict[str, np.ndarray]:
        if self.config.num_labels == 0:
            return {}
        p = self.params["classifier"]
        return {"classifier.weight": np.ascontiguousarray(p["kernel"].T), "classifier.bias": p["bias"]}

    def forward(
        self, pixel_values: np.ndarray, output_hidden_states: bool = False, labels: Any = None, *, rec: Any = None
    ) -> ImageClassifierOutputWithNoAttention:
        """pixel_values (N, C, H, W) float -> logits (N, L) [and the loss when labels are given]."""
        x = self._prepare(pixel_values)
        last, hidden = self._backbone(x, run_conv_1x1=True, rec=rec)
        pooled = self._pool(last, rec)  # (N, h, w, C_last); h = w = 1 unless fixed_7x7 pooling on a large input
        logits = pooled
        if self.config.num_labels > 0:
            p = self.params["classifier"]
            logits = pooled @ p["kernel"] + p["bias"]  # (N, h, w, C_last) @ (C_last, L) -> (N, h, w, L)
            logits = _record(
                rec,
                "classifier",
                "linear",
                logits,
                inputs=(pooled,),
                params=p,
                tf_scope="MobilenetV2/Logits/Conv2d_1c_1x1",
            )
        logits = _spatial_to_public(logits)  # (N, L), or (N, L, h, w) for a grid of logits
        if labels is not None and logits.ndim != 2:
            raise ValueError(
                f"MobileNetV2ForImageClassification: labels need one logit vector per image, but pooling="
                f"{self.config.pooling!r} gave a {logits.shape[2]}x{logits.shape[3]} grid; use a 224x224 input."
            )
        loss = None if labels is None else _classification_loss(logits, labels, self.config)
        return ImageClassifierOutputWithNoAttention(
            loss=loss,
            logits=logits,
            hidden_states=tuple(nhwc_to_nchw(h) for h in hidden) if output_hidden_states else None,
        )


class MobileNetV2ForSemanticSegmentation(MobileNetV2PreTrainedModel):
    """Backbone (without computing its unused final 1x1 conv) + DeepLabV3 head on `layer.15`."""

    def _head_specs(self) -> tuple[ConvSpec, ...]:
        return deeplab_head_spec(self.config)

    def _tail_step_names(self) -> list[str]:
        pool, aspp, projection, classifier = (self._conv_step_names(s) for s in self._head_specs())
        return [
            "segmentation_head.avg_pool",
            *pool,
            "segmentation_head.interpolate",
            *aspp,
            "segmentation_head.concat",
            *projection,
            *classifier,
        ]

    def forward(
        self, pixel_values: np.ndarray, labels: Any = None, output_hidden_states: bool = False, *, rec: Any = None
    ) -> SemanticSegmenterOutput:
        """pixel_values (N, C, H, W) float -> logits (N, L, H/os, W/os) [and the loss for (N, H, W) labels]."""
        if labels is not None and self.config.num_labels == 1:
            raise ValueError("MobileNetV2ForSemanticSegmentation: the loss needs num_labels > 1, the config has 1.")
        x = self._prepare(pixel_values)
        labels = None if labels is None else self._check_labels(labels, pixel_values.shape[0])
        _, hidden = self._backbone(x, run_conv_1x1=False, rec=rec)
        if rec is None:
            logits = folded_deeplab_head(hidden[-1], self._head_specs(), self.folded_params())
        else:
            logits = deeplab_head(
                hidden[-1], self._head_specs(), self.params, tf_padding=self.config.tf_padding, rec=rec
            )
        loss = None
        if labels is not None:
            n, h, w = labels.shape
            upsampled = resize_bilinear(logits, (h, w), align_corners=False)  # (N, H, W, L)
            flat_logits = upsampled.reshape(n * h * w, -1)  # (N*H*W, L)
            loss = cross_entropy(flat_logits, labels.reshape(-1), ignore_index=self.config.semantic_loss_ignore_index)
        return SemanticSegmenterOutput(
            loss=loss,
            logits=nhwc_to_nchw(logits),
            hidden_states=tuple(nhwc_to_nchw(h) for h in hidden) if output_hidden_states else None,
        )

    def _check_labels(self, labels: Any, n: int) -> np.ndarray:
        labels = np.asarray(labels)
        if labels.ndim != 3 or labels.shape[0] != n or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"MobileNetV2ForSemanticSegmentation: labels must be an integer class map of shape ({n}, H, W), "
                f"got dtype {labels.dtype} shape {labels.shape}."
            )
        ignore, num = self.config.semantic_loss_ignore_index, self.config.num_labels
        bad = (labels != ignore) & ((labels < 0) | (labels >= num))
        if bad.any():
            raise ValueError(
                f"MobileNetV2ForSemanticSegmentation: labels must be class ids in [0, {num}) or {ignore} (ignored), "
                f"found {np.unique(labels[bad])[:5]}."
            )
        return labels
