"""The loop twin of every op, gathered from the op modules for reading in one place.

Each loop twin lives beside its op in `npmnv2.ops.<family>` (`depthwise_conv2d_loops` next to
`depthwise_conv2d`); this module re-exports them under the names they have always had. They spell
out each formula with explicit Python loops: test oracles for small arrays only.
"""

from __future__ import annotations

from .ops.activations import activation_loops
from .ops.batchnorm import batch_norm_backward_loops, batch_norm_loops, fold_batch_norm_loops
from .ops.conv import (
    col2im_loops,
    conv2d_backward_loops,
    conv2d_int_loops,
    conv2d_loops,
    im2col_loops,
    pointwise_conv2d_loops,
)
from .ops.depthwise import depthwise_conv2d_backward_loops, depthwise_conv2d_int_loops, depthwise_conv2d_loops
from .ops.fully_connected import linear_int_loops, linear_loops
from .ops.layout import nchw_to_nhwc_loops, nhwc_to_nchw_loops
from .ops.losses import bce_with_logits_loops, cross_entropy_backward_loops, cross_entropy_loops, mse_loss_loops
from .ops.merge import add_int_loops, add_loops, concat_channels_loops
from .ops.padding import conv_output_size_loops, kernel_tap_loops, pad2d_loops, tf_same_padding_search
from .ops.pooling import (
    avg_pool2d_backward_loops,
    avg_pool2d_int_loops,
    avg_pool2d_loops,
    global_average_pool_int_loops,
    global_average_pool_loops,
)
from .ops.probability import log_softmax_loops, softmax_int_loops, softmax_loops
from .ops.quantization import (
    multiply_by_quantized_multiplier_scalar,
    requantize_loops,
    rounding_divide_by_pot_scalar,
    srdhm_scalar,
)
from .ops.resize import resize_bilinear_backward_loops, resize_bilinear_int_loops, resize_bilinear_loops

__all__ = [
    "activation_loops",
    "add_int_loops",
    "add_loops",
    "avg_pool2d_backward_loops",
    "avg_pool2d_int_loops",
    "avg_pool2d_loops",
    "batch_norm_backward_loops",
    "batch_norm_loops",
    "bce_with_logits_loops",
    "col2im_loops",
    "concat_channels_loops",
    "conv2d_backward_loops",
    "conv2d_int_loops",
    "conv2d_loops",
    "conv_output_size_loops",
    "cross_entropy_backward_loops",
    "cross_entropy_loops",
    "depthwise_conv2d_backward_loops",
    "depthwise_conv2d_int_loops",
    "depthwise_conv2d_loops",
    "fold_batch_norm_loops",
    "global_average_pool_int_loops",
    "global_average_pool_loops",
    "im2col_loops",
    "kernel_tap_loops",
    "linear_int_loops",
    "linear_loops",
    "log_softmax_loops",
    "mse_loss_loops",
    "multiply_by_quantized_multiplier_scalar",
    "nchw_to_nhwc_loops",
    "nhwc_to_nchw_loops",
    "pad2d_loops",
    "pointwise_conv2d_loops",
    "requantize_loops",
    "resize_bilinear_backward_loops",
    "resize_bilinear_int_loops",
    "resize_bilinear_loops",
    "rounding_divide_by_pot_scalar",
    "softmax_int_loops",
    "softmax_loops",
    "srdhm_scalar",
    "tf_same_padding_search",
]
