"""The operations MobileNetV2 is made of: one module per op family, each holding every form of it.

    padding       TF SAME / symmetric padding, output sizes, kernel taps
    conv          im2col, dense and 1x1 convolution
    depthwise     depthwise (and dilated) convolution
    batchnorm     batch norm: inference, training, folding
    activations   ReLU6 and the activations transformers names
    fully_connected  the linear classifier
    merge         residual add, channel concat
    pooling       global and fixed-window average pooling
    resize        bilinear resize
    probability   softmax, log-softmax
    losses        cross-entropy, MSE, BCE with logits
    quantization  the integer arithmetic the integer forms share
    layout        NCHW <-> NHWC

Each module holds an op's textbook forward (math and shapes in the docstring), its MAC count, its
backward, its loop twin and, where the integer model has one, its integer form. This package
re-exports the textbook forwards, so `npmnv2.ops.depthwise_conv2d` is
`npmnv2.ops.depthwise.depthwise_conv2d`.

Layout inside npmnv2 (see docs/decisions.md): activations NHWC (N, H, W, C); kernels HWIO
(KH, KW, C_in, C_out), depthwise (KH, KW, C). The last kernel axis is always the output channel.
Shape vocabulary: N batch; H, W in; Ho, Wo out; C_in, C_out; M expanded channels; KH, KW kernel;
K_eff = d*(K-1)+1 the dilated kernel extent; L labels; P = KH*KW*C_in.

These are the textbook forms, the ones a trace runs: each op allocates its output and never
writes into its inputs. The tricks that make the plain forward fast live in `npmnv2.fast`
(`fast.kernels`, `fast.forward`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import (
    activations,
    batchnorm,
    conv,
    depthwise,
    fully_connected,
    layout,
    losses,
    merge,
    padding,
    pooling,
    probability,
    quantization,
    resize,
)
from .activations import (
    ACTIVATIONS,
    activation,
    gelu,
    gelu_tanh,
    hardswish,
    identity,
    leaky_relu,
    mish,
    quick_gelu,
    relu,
    relu6,
    sigmoid,
    silu,
    tanh,
)
from .batchnorm import batch_norm, fold_batch_norm
from .conv import conv2d, conv2d_macs, im2col, pointwise_conv2d, pointwise_conv2d_macs
from .depthwise import depthwise_conv2d, depthwise_conv2d_macs
from .fully_connected import linear, linear_macs
from .layout import nchw_to_nhwc, nhwc_to_nchw
from .losses import bce_with_logits, cross_entropy, mse_loss
from .merge import add, concat_channels
from .padding import Pad2D, conv_output_size, conv_padding, kernel_tap, pad2d, symmetric_padding, tf_same_padding
from .pages import OpPage
from .pooling import avg_pool2d, global_average_pool
from .probability import log_softmax, softmax
from .resize import bilinear_source, resize_bilinear

FAMILIES = (
    padding,
    conv,
    depthwise,
    batchnorm,
    activations,
    fully_connected,
    merge,
    pooling,
    resize,
    probability,
    losses,
    quantization,
    layout,
)

# Every op the readable layers record, and its page: how to describe, differentiate and count it
# (see `npmnv2.ops.pages`). A new op module adds its PAGES to FAMILIES; nothing else changes.
PAGE_OF: dict[Callable[..., np.ndarray], OpPage] = {
    page.forward: page
    for family in FAMILIES
    for page in (*getattr(family, "PAGES", ()), *getattr(family, "INTEGER_PAGES", ()))
}

# Each op that multiplies by weights, and the formula (beside the op in its module) counting its
# multiply-accumulates from its output shape and its kernel shape (both in npmnv2's layout).
MACS: dict[Callable[..., np.ndarray], Callable[[tuple[int, ...], tuple[int, ...]], int]] = {
    page.forward: page.macs for page in PAGE_OF.values() if page.macs is not None
}

__all__ = [
    "ACTIVATIONS",
    "FAMILIES",
    "MACS",
    "PAGE_OF",
    "OpPage",
    "Pad2D",
    "activation",
    "add",
    "avg_pool2d",
    "batch_norm",
    "bce_with_logits",
    "bilinear_source",
    "concat_channels",
    "conv2d",
    "conv2d_macs",
    "conv_output_size",
    "conv_padding",
    "cross_entropy",
    "depthwise_conv2d",
    "depthwise_conv2d_macs",
    "fold_batch_norm",
    "gelu",
    "gelu_tanh",
    "global_average_pool",
    "hardswish",
    "identity",
    "im2col",
    "kernel_tap",
    "leaky_relu",
    "linear",
    "linear_macs",
    "log_softmax",
    "mish",
    "mse_loss",
    "nchw_to_nhwc",
    "nhwc_to_nchw",
    "pad2d",
    "pointwise_conv2d",
    "pointwise_conv2d_macs",
    "quick_gelu",
    "relu",
    "relu6",
    "resize_bilinear",
    "sigmoid",
    "silu",
    "softmax",
    "symmetric_padding",
    "tanh",
    "tf_same_padding",
]
