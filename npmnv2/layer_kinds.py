"""The one table of layer kinds: everything npmnv2 knows about a kind of layer, in one row.

A layer spec (`npmnv2.architecture.ConvSpec`) says which kind it is ("conv", "depthwise",
"pointwise", "linear"); every module that treats kinds differently reads the row here instead of
comparing kind strings:

- the textbook op a trace records and how a layer calls it (`op`, `run`), and whether the layer
  pads its input first (`pads`); the step that holds its output (`step_kind`, `step_suffix`);
- the fast form `model(pixel_values)` runs (`fast`, in `npmnv2.fast.kernels`), whether its folded
  kernel is multiplied as a (P, C_out) matrix (`as_matrix`), whether it reads patches
  (`patches`), and whether the layer before may hand it its input already padded (`reads_padded`);
- its kernel in npmnv2's layout (`kernel_shape`), PyTorch's (`torch_weight`, `torch_shape`,
  `from_torch`, `to_torch`) and TFLite's (`tflite_op`, `from_tflite`);
- how a figure labels and colours it (`role`, `colour`);
- what a port's weight layer of this kind is in `npmnv2.verify`'s vocabulary (`peer_kind`: "conv",
  "depthwise" or "linear"), its kernel's fan-in (`fan_in`, from the kernel's shape, for a
  He-scaled random init), and whether it reads pooled (N, C) features and always has a bias
  (`pooled`: the linear classifier);
- its MACs come from its op's page (`npmnv2.ops.PAGE_OF[row.op].macs`).

Adding a kind of layer is adding a row (and its op page and fast form).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .fast.kernels import fast_dense, fast_depthwise, fast_linear, fast_pointwise
from .ops import conv2d, depthwise_conv2d, linear, pointwise_conv2d
from .tflite.ops import CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED

# How a layer mixes its inputs:
#   "conv"       dense KxK convolution (im2col, then one matrix product)  -- the stem
#   "depthwise"  one KxK filter per channel, no mixing across channels
#   "pointwise"  1x1 convolution: one matrix product over the channel axis
#   "linear"     a fully connected layer on pooled features (transformers' nn.Linear classifier)
ConvKind = Literal["conv", "depthwise", "pointwise", "linear"]


@dataclass(frozen=True)
class LayerKind:
    """One row of `LAYER_KINDS` (see the module docstring for what each field is for)."""

    op: Callable[..., np.ndarray]
    run: Callable[[np.ndarray, np.ndarray, np.ndarray | None, Any], np.ndarray]
    pads: bool
    step_kind: str
    step_suffix: str
    fast: Callable[..., Any]
    as_matrix: bool
    patches: bool
    reads_padded: bool
    kernel_shape: Callable[[Any], tuple[int, ...]]
    torch_weight: str
    torch_shape: Callable[[Any], tuple[int, ...]]
    from_torch: Callable[[np.ndarray], np.ndarray]
    to_torch: Callable[[np.ndarray], np.ndarray]
    tflite_op: str
    from_tflite: Callable[[np.ndarray], np.ndarray]
    role: Callable[[Any], str]
    colour: str
    peer_kind: str
    fan_in: Callable[[tuple[int, ...]], int]
    pooled: bool


LAYER_KINDS: dict[str, LayerKind] = {
    "conv": LayerKind(
        op=conv2d,
        run=lambda x, kernel, bias, spec: conv2d(x, kernel, bias, stride=spec.stride, dilation=spec.dilation),
        pads=True,
        step_kind="convolution",
        step_suffix=".convolution",
        fast=fast_dense,
        as_matrix=True,
        patches=True,
        reads_padded=False,
        kernel_shape=lambda spec: (spec.kernel_size, spec.kernel_size, spec.c_in, spec.c_out),  # HWIO
        torch_weight="convolution.weight",
        torch_shape=lambda spec: (spec.c_out, spec.c_in, spec.kernel_size, spec.kernel_size),  # OIHW
        from_torch=lambda w: w.transpose(2, 3, 1, 0),  # OIHW -> HWIO
        to_torch=lambda k: k.transpose(3, 2, 0, 1),  # HWIO -> OIHW
        tflite_op=CONV_2D.name,
        from_tflite=lambda w: w.transpose(1, 2, 3, 0),  # OHWI -> HWIO
        role=lambda spec: f"{spec.kernel_size}x{spec.kernel_size} conv (stem)",  # how a block diagram labels it
        colour="#a1d99b",
        peer_kind="conv",
        fan_in=lambda shape: shape[0] * shape[1] * shape[2],  # KH * KW * C_in
        pooled=False,
    ),
    "depthwise": LayerKind(
        op=depthwise_conv2d,
        run=lambda x, kernel, bias, spec: depthwise_conv2d(x, kernel, bias, stride=spec.stride, dilation=spec.dilation),
        pads=True,
        step_kind="convolution",
        step_suffix=".convolution",
        fast=fast_depthwise,
        as_matrix=False,
        patches=False,
        reads_padded=True,
        kernel_shape=lambda spec: (spec.kernel_size, spec.kernel_size, spec.c_out),  # (KH, KW, C)
        torch_weight="convolution.weight",
        torch_shape=lambda spec: (spec.c_out, 1, spec.kernel_size, spec.kernel_size),  # (C, 1, KH, KW)
        from_torch=lambda w: w[:, 0].transpose(1, 2, 0),  # (C, 1, KH, KW) -> (KH, KW, C)
        to_torch=lambda k: k.transpose(2, 0, 1)[:, None],  # (KH, KW, C) -> (C, 1, KH, KW)
        tflite_op=DEPTHWISE_CONV_2D.name,
        from_tflite=lambda w: w[0],  # (1, KH, KW, C) -> (KH, KW, C)
        role=lambda spec: f"depthwise {spec.kernel_size}x{spec.kernel_size}",  # how a block diagram labels it
        colour="#fdae6b",
        peer_kind="depthwise",
        fan_in=lambda shape: shape[0] * shape[1],  # KH * KW: one channel each
        pooled=False,
    ),
    "pointwise": LayerKind(
        op=pointwise_conv2d,
        run=lambda x, kernel, bias, spec: pointwise_conv2d(x, kernel, bias),  # a 1x1 conv never pads
        pads=True,
        step_kind="convolution",
        step_suffix=".convolution",
        fast=fast_pointwise,
        as_matrix=True,
        patches=False,
        reads_padded=False,
        kernel_shape=lambda spec: (1, 1, spec.c_in, spec.c_out),  # HWIO
        torch_weight="convolution.weight",
        torch_shape=lambda spec: (spec.c_out, spec.c_in, 1, 1),  # OIHW
        from_torch=lambda w: w.transpose(2, 3, 1, 0),
        to_torch=lambda k: k.transpose(3, 2, 0, 1),
        tflite_op=CONV_2D.name,
        from_tflite=lambda w: w.transpose(1, 2, 3, 0),
        role=lambda spec: "expand 1x1" if "expand" in spec.name else "project 1x1 (linear)",
        colour="#9ecae1",
        peer_kind="conv",  # a port's 1x1 conv is a conv (its kernel says 1x1)
        fan_in=lambda shape: shape[2],  # C_in
        pooled=False,
    ),
    "linear": LayerKind(
        op=linear,
        run=lambda x, kernel, bias, spec: linear(x, kernel, bias),
        pads=False,
        step_kind="linear",
        step_suffix="",  # transformers' classifier is a bare nn.Linear: its output is the module's own
        fast=fast_linear,
        as_matrix=False,
        patches=False,
        reads_padded=False,
        kernel_shape=lambda spec: (spec.c_in, spec.c_out),  # (C_in, L)
        torch_weight="weight",
        torch_shape=lambda spec: (spec.c_out, spec.c_in),  # (L, C_in)
        from_torch=lambda w: w.T,
        to_torch=lambda k: k.T,
        tflite_op=FULLY_CONNECTED.name,
        from_tflite=lambda w: w.T,  # (L, C_in) -> (C_in, L)
        role=lambda spec: "linear classifier",  # how a block diagram labels it
        colour="#bcbddc",
        peer_kind="linear",
        fan_in=lambda shape: shape[0],  # C_in
        pooled=True,
    ),
}


def layer_kind(spec: Any) -> LayerKind:
    """The row of a layer spec's kind, or a ValueError naming the layer and the known kinds."""
    row = LAYER_KINDS.get(spec.kind)
    if row is None:
        raise ValueError(f"layer {spec.name!r}: unknown kind {spec.kind!r}; the kinds are {sorted(LAYER_KINDS)}.")
    return row
