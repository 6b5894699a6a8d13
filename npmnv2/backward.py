"""The backward pass of every op, gathered from the op modules for reading in one place.

Each backward lives beside its forward in its op module (`npmnv2.ops.depthwise.depthwise_conv2d_backward`,
...); this module re-exports them under the names they have always had (`npmnv2.backward.col2im`).
The math is the chain rule written out: if out = f(x, w), then
    grad_x = (d out / d x)^T grad_out,      grad_w = (d out / d w)^T grad_out
"""

from __future__ import annotations

from .ops.activations import DERIVATIVES, activation_backward
from .ops.batchnorm import batch_norm_backward, batch_norm_train, batch_norm_train_backward
from .ops.conv import col2im, conv2d_backward, pointwise_conv2d_backward
from .ops.depthwise import depthwise_conv2d_backward
from .ops.fully_connected import linear_backward
from .ops.losses import bce_with_logits_backward, cross_entropy_backward, mse_loss_backward
from .ops.merge import add_backward, concat_channels_backward
from .ops.padding import pad2d_backward
from .ops.pooling import avg_pool2d_backward, global_average_pool_backward
from .ops.resize import resize_bilinear_backward

__all__ = [
    "DERIVATIVES",
    "activation_backward",
    "add_backward",
    "avg_pool2d_backward",
    "batch_norm_backward",
    "batch_norm_train",
    "batch_norm_train_backward",
    "bce_with_logits_backward",
    "col2im",
    "concat_channels_backward",
    "conv2d_backward",
    "cross_entropy_backward",
    "depthwise_conv2d_backward",
    "global_average_pool_backward",
    "linear_backward",
    "mse_loss_backward",
    "pad2d_backward",
    "pointwise_conv2d_backward",
    "resize_bilinear_backward",
]
