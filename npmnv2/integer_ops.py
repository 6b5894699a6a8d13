"""The integer form of every op, gathered from the op modules for reading in one place.

The shared arithmetic (quantize, dequantize, fixed-point multipliers, requantization) is in
`npmnv2.ops.quantization`; each op's integer form lives beside its float form
(`npmnv2.ops.depthwise.depthwise_conv2d_int`, ...). This module re-exports them under the names
they have always had (`npmnv2.integer_ops.conv2d_int`).
"""

from __future__ import annotations

from .ops.conv import conv2d_int
from .ops.depthwise import depthwise_conv2d_int
from .ops.fully_connected import linear_int
from .ops.merge import add_int, concat_channels_int
from .ops.pooling import avg_pool2d_int, global_average_pool_int
from .ops.probability import exp_on_negative_values, softmax_int
from .ops.quantization import (
    DTYPE_RANGE,
    INT32_MAX,
    INT32_MIN,
    activation_range,
    dequantize,
    multiply_by_quantized_multiplier,
    multiply_by_quantized_multiplier_single_rounding,
    quantize,
    quantize_multiplier,
    requantize,
    requantize_output,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)
from .ops.resize import resize_bilinear_int

__all__ = [
    "DTYPE_RANGE",
    "INT32_MAX",
    "INT32_MIN",
    "activation_range",
    "add_int",
    "avg_pool2d_int",
    "concat_channels_int",
    "conv2d_int",
    "depthwise_conv2d_int",
    "dequantize",
    "exp_on_negative_values",
    "global_average_pool_int",
    "linear_int",
    "multiply_by_quantized_multiplier",
    "multiply_by_quantized_multiplier_single_rounding",
    "quantize",
    "quantize_multiplier",
    "requantize",
    "requantize_output",
    "resize_bilinear_int",
    "rounding_divide_by_pot",
    "saturating_rounding_doubling_high_mul",
    "softmax_int",
]

# The names these forms had before their float twins gave them theirs (still accepted).
fully_connected_int = linear_int
average_pool_int = avg_pool2d_int
mean_int = global_average_pool_int
concatenate_int = concat_channels_int
__all__ += ["average_pool_int", "concatenate_int", "fully_connected_int", "mean_int"]
