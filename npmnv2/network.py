"""MobileNetV2 and its DeepLabV3 head, assembled once.

Reading order: one conv layer (pad -> conv -> batch norm -> activation, `conv_layer`) -> the
inverted residual block -> the backbone -> pooling and the classifier -> the DeepLabV3 head.

The assembly says which layers and ops run, in which order, on which tensors; it hands each to
a `Layers`, which says how they run:
- `TextbookLayers` (what `model.trace` uses): every layer is `conv_layer`, one textbook op of
  `npmnv2.ops` per step, each recorded;
- `npmnv2.fast.forward.FastLayers` (what the plain `model(x)` uses): folded layers, each by the
  fast form of its kind, nothing recorded.
So a trace and the plain forward cannot run different networks. The architecture itself
(channels, strides, dilations) is data in `npmnv2.architecture`; what differs between kinds of
layer is one row each of `npmnv2.layer_kinds.LAYER_KINDS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from .architecture import POOLER, BackboneSpec, BlockSpec, ConvSpec, DeepLabHeadSpec
from .layer_kinds import layer_kind
from .ops import (
    activation,
    add,
    avg_pool2d,
    batch_norm,
    concat_channels,
    conv_padding,
    global_average_pool,
    pad2d,
    resize_bilinear,
)
from .trace import NO_TRACE, Recorder

Params = Mapping[str, Mapping[str, np.ndarray]]  # layer name -> {"kernel", "bias", "gamma", ...}


class Layers(Protocol):
    """How the assembly's layers and ops run (`TextbookLayers`, or the fast `FastLayers`)."""

    def conv(self, x: Any, spec: ConvSpec, *, feeds: ConvSpec | None = None) -> Any:
        """One layer with weights (`spec`); `feeds` is the layer that reads its output, if known."""
        ...

    def op(
        self,
        name: str,
        kind: str,
        fn: Callable[..., np.ndarray] | None,
        *inputs: Any,
        attrs: Mapping[str, Any] | None = None,
        tf_scope: str = "",
        **kwargs: Any,
    ) -> Any:
        """One op with no weights: fn(*inputs, **kwargs), recorded as step `name` (fn None: the
        input passed on unchanged)."""
        ...

    def output(self, x: Any) -> np.ndarray:
        """A tensor the network returns, as a plain NHWC array."""
        ...


# ============================================================================ one conv layer


def conv_layer(
    x: np.ndarray, spec: ConvSpec, params: Mapping[str, np.ndarray], *, tf_padding: bool, rec: Recorder = NO_TRACE
) -> np.ndarray:
    """pad -> convolution -> batch norm -> activation, as transformers' `MobileNetV2ConvLayer`.

    The padding is chosen for this input's size: TF SAME (`tf_padding=True`, the odd pixel after)
    or PyTorch's symmetric padding. The convolution is the op of the layer's kind
    (`LAYER_KINDS[spec.kind].op`: `ops.conv2d`, `ops.depthwise_conv2d`, `ops.pointwise_conv2d`,
    or `ops.linear` for the classifier, which pads nothing). A layer whose batch norm was folded
    (`fold_batchnorm`) has no "gamma" and skips the normalization; a linear layer (no activation)
    skips the activation.

    Shapes: x (N, H, W, C_in) -> (N, Ho, Wo, C_out).
    params: "kernel" (HWIO, or (KH, KW, C) depthwise, (C_in, L) linear), optional "bias", and the
    batch-norm "gamma", "beta", "mean", "var" when the layer has one.
    """
    n, h, w, c_in = x.shape
    if c_in != spec.c_in:
        raise ValueError(
            f"conv_layer at {spec.name!r}: expected {spec.c_in} input channels, got {c_in} (x.shape={x.shape})."
        )
    kind = layer_kind(spec)
    attrs: dict[str, Any] = {}
    x_padded = x
    if kind.pads:
        k, s, d = spec.kernel_size, spec.stride, spec.dilation
        padding = conv_padding(h, w, kernel_size=k, stride=s, dilation=d, tf_padding=tf_padding)  # Pad2D
        x_padded = pad2d(x, padding)  # (N, H + top + bottom, W + left + right, C_in)
        folded = spec.eps is not None and "gamma" not in params  # batch norm already merged into kernel and bias
        attrs = {"padding": tuple(padding), "folded_bn": folded}
    kernel, bias = params["kernel"], params.get("bias")
    y = kind.run(x_padded, kernel, bias, spec)  # (N, Ho, Wo, C_out)
    conv_params = {k: v for k, v in params.items() if k in ("kernel", "bias")}  # each parameter on one step
    y = rec.add(spec.conv_step, kind.step_kind, y, op=kind.op, inputs=(x,), spec=spec, params=conv_params, attrs=attrs)
    if "gamma" in params:
        p = {k: params[k] for k in ("gamma", "beta", "mean", "var")}
        z = batch_norm(y, p["mean"], p["var"], p["gamma"], p["beta"], eps=spec.eps)  # (N, Ho, Wo, C_out)
        y = rec.add(spec.norm_step, "batch_norm", z, op=batch_norm, inputs=(y,), spec=spec, params=p)
    if spec.activation is None:  # a linear layer: the bottleneck projections and the classifiers
        return y
    act = activation(spec.activation)
    return rec.add(spec.act_step, "activation", act(y), op=act, inputs=(y,), spec=spec)


class TextbookLayers:
    """How a trace runs the assembly: every layer is `conv_layer` on the model's own parameters,
    every op its textbook function, each step handed to the recorder."""

    def __init__(self, params: Params, *, tf_padding: bool, rec: Recorder = NO_TRACE) -> None:
        self.params = params
        self.tf_padding = tf_padding
        self.rec = rec

    def conv(self, x: np.ndarray, spec: ConvSpec, *, feeds: ConvSpec | None = None) -> np.ndarray:
        return conv_layer(x, spec, self.params[spec.name], tf_padding=self.tf_padding, rec=self.rec)

    def op(
        self,
        name: str,
        kind: str,
        fn: Callable[..., np.ndarray] | None,
        *inputs: np.ndarray,
        attrs: Mapping[str, Any] | None = None,
        tf_scope: str = "",
        **kwargs: Any,
    ) -> np.ndarray:
        output = inputs[0] if fn is None else fn(*inputs, **kwargs)
        return self.rec.add(name, kind, output, op=fn, inputs=inputs, attrs=attrs, tf_scope=tf_scope)

    def output(self, x: np.ndarray) -> np.ndarray:
        return x


# ============================================================================ blocks and backbone


def inverted_residual(x: Any, block: BlockSpec, layers: Layers) -> Any:
    """The paper's bottleneck: expand (1x1) -> depthwise (3x3) -> linear project (1x1) [+ input].

    Shapes: x (N, H, W, C_in) -> (N, Ho, Wo, C_out); the expanded tensor is (N, H, W, M).
    The stem's block has no expansion (its 3x3 conv comes first); the residual is added only
    when stride is 1 and C_in == C_out, so that the shapes agree.
    """
    *expand, depthwise, project = block.convs
    y = x
    for spec, after in zip(expand, [*expand[1:], depthwise], strict=True):
        y = layers.conv(y, spec, feeds=after)  # the 1x1 expansion C_in -> M (+ ReLU6); the stem: its 3x3 conv
    y = layers.conv(y, depthwise, feeds=project)  # (N, Ho, Wo, M) + ReLU6
    y = layers.conv(y, project)  # (N, Ho, Wo, C_out), linear: no activation
    if block.residual:
        return layers.op(block.name, "residual_add", add, x, y, tf_scope=block.tf_scope)
    # No residual (stride 2 or a channel change): the block output is the projection itself.
    return layers.op(block.name, "block_output", None, y, tf_scope=block.tf_scope)


def backbone(x: np.ndarray, arch: BackboneSpec, layers: Layers, *, run_conv_1x1: bool = True):
    """Stem, 16 inverted residual blocks, final 1x1 conv.

    Shapes: x (N, H, W, C_in) -> last (N, H/os, W/os, C_last) and 16 block outputs (NHWC).
    With run_conv_1x1=False (segmentation) the unused final conv is not computed and `last` is None.
    """
    y = inverted_residual(x, arch.stem, layers)
    hidden_states = []
    for block in arch.layers:
        y = inverted_residual(y, block, layers)
        hidden_states.append(layers.output(y))
    last = layers.output(layers.conv(y, arch.conv_1x1)) if run_conv_1x1 else None
    return last, hidden_states


# ============================================================================ pooling, classifier, DeepLabV3 head


def pool(last: np.ndarray, pooling: str, layers: Layers, *, output_stride: int) -> np.ndarray:
    """The pooler: global average (transformers) or TF-slim's fixed 7x7 average, VALID.

    Shapes: last (N, H, W, C) -> (N, 1, 1, C) global, or (N, H-6, W-6, C) fixed_7x7.
    """
    n, h, w, c = last.shape
    scope = "MobilenetV2/Logits/AvgPool"
    if pooling == "global":
        attrs = {"window": "global"}
        return layers.op(POOLER, "pooling", global_average_pool, last, keepdims=True, attrs=attrs, tf_scope=scope)
    if h < 7 or w < 7:
        size = 7 * output_stride - 31
        raise ValueError(
            f"pooling='fixed_7x7' needs a final feature map of at least 7x7, got {h}x{w}; use an input of at "
            f"least {size}x{size} or pooling='global'."
        )
    attrs = {"window": (7, 7), "stride": 1, "padding": "VALID"}
    return layers.op(POOLER, "pooling", avg_pool2d, last, kernel_size=7, stride=1, attrs=attrs, tf_scope=scope)


def classifier_layer(pooled: np.ndarray, spec: ConvSpec, layers: Layers) -> np.ndarray:
    """The linear classifier (dropout before it is the identity at inference).

    Shapes: pooled (N, h, w, C_last) -> (N, h, w, L); h = w = 1 with global pooling.
    """
    return layers.output(layers.conv(pooled, spec))  # (N, h, w, C_last) @ (C_last, L) + bias


def deeplab_head(features: np.ndarray, head: DeepLabHeadSpec, layers: Layers) -> np.ndarray:
    """DeepLabV3 head: [image pooling -> 1x1 -> broadcast back, 1x1] -> concat -> 1x1 -> classifier.

    Shapes: features (N, H, W, C) -> logits (N, H, W, L).
    """
    n, h, w, c = features.shape
    scope = "image_pooling"
    attrs = {"window": "global"}
    pooled = layers.op(
        head.avg_pool, "pooling", global_average_pool, features, keepdims=True, attrs=attrs, tf_scope=scope
    )
    # (N, 1, 1, C)
    pooled = layers.conv(pooled, head.conv_pool)  # (N, 1, 1, 256)
    # A 1x1 map resized bilinearly (align_corners=True, as transformers) is a broadcast.
    pooled = layers.op(
        head.interpolate,
        "resize",
        resize_bilinear,
        pooled,
        size=(h, w),
        align_corners=True,
        attrs={"align_corners": True},
        tf_scope=scope,
    )  # (N, H, W, 256)
    branch = layers.conv(features, head.conv_aspp)  # (N, H, W, 256)
    # image pool first, then the 1x1 branch: (N, H, W, 512)
    y = layers.op(head.concat, "concat", concat_channels, pooled, branch, tf_scope="concat")
    y = layers.conv(y, head.conv_projection)  # (N, H, W, 256)
    # Dropout2d sits here in transformers; at inference it is the identity.
    return layers.output(layers.conv(y, head.classifier))  # (N, H, W, L)
