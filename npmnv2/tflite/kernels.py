"""The kernel sets the integer model can reproduce: which rounding rule each op of a kernel set uses.

The TFLite interpreter ships more than one implementation of each op. npmnv2 reproduces two, bit
for bit on every op output:

    reference   `OpResolverType.BUILTIN_REF`: the reference kernels (reference_ops, reference_integer_ops)
    optimized   `OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES`: the optimized kernels the
                interpreter runs by default when no delegate takes the graph (optimized_ops, ruy)

Measured op by op on the five shipped models and their photos, each op run on the optimized
kernels' own inputs: the two sets differ in three ops only, and there only in how they round:

    CONV_2D          reference: doubling high multiply, then a shift rounding ties away from zero
                     optimized: the same, but the final shift rounds ties up (toward +infinity)
    FULLY_CONNECTED  reference: one rounding (x * M0 + 2^(30 - shift)) >> (31 - shift)
                     optimized: as its CONV_2D (two roundings, ties up)
    MEAN             reference: the offset sum, the count folded into the integer multiplier
                     optimized: the raw sum, a float32 multiplier and bias (`global_average_pool_int_optimized`)

DEPTHWISE_CONV_2D, ADD, AVERAGE_POOL_2D, SOFTMAX, RESIZE_BILINEAR, CONCATENATION, QUANTIZE,
DEQUANTIZE, RESHAPE and ARG_MAX: the same numbers on every element (the optimized depthwise and
ADD round as the reference ones do). The rules hold for this x86-64 build of the pinned
ai-edge-litert; the interpreter's ARM (NEON) paths are other code and are not measured here.

XNNPACK (the delegate the interpreter applies by default) requantizes in float32 and is not
reproduced yet: asking for it is an error that says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..ops.quantization import (
    Multiplier,
    multiply_by_quantized_multiplier,
    multiply_by_quantized_multiplier_single_rounding,
    multiply_by_quantized_multiplier_ties_up,
)


@dataclass(frozen=True)
class KernelSet:
    """One kernel set: the interpreter's resolver that runs it and each op's rounding rule.

    conv, depthwise, fully_connected: the rule that requantizes the op's int32 sums.
    optimized_mean: MEAN by `ops.pooling.global_average_pool_int_optimized` instead of the
        reference kernel's `global_average_pool_int`.
    """

    name: str
    resolver: str
    conv: Multiplier
    depthwise: Multiplier
    fully_connected: Multiplier
    optimized_mean: bool


KERNEL_SETS: Mapping[str, KernelSet] = {
    "reference": KernelSet(
        "reference",
        "BUILTIN_REF",
        conv=multiply_by_quantized_multiplier,
        depthwise=multiply_by_quantized_multiplier,
        fully_connected=multiply_by_quantized_multiplier_single_rounding,
        optimized_mean=False,
    ),
    "optimized": KernelSet(
        "optimized",
        "BUILTIN_WITHOUT_DEFAULT_DELEGATES",
        conv=multiply_by_quantized_multiplier_ties_up,
        depthwise=multiply_by_quantized_multiplier,
        fully_connected=multiply_by_quantized_multiplier_ties_up,
        optimized_mean=True,
    ),
}


def kernel_set(name: str) -> KernelSet:
    """The kernel set called `name`, or a ValueError saying which ones npmnv2 reproduces."""
    if name == "xnnpack":
        raise ValueError(
            "kernels='xnnpack': npmnv2 does not reproduce the XNNPACK delegate yet (it requantizes in "
            "float32); use kernels='reference' (the interpreter's reference kernels) or 'optimized' (its "
            "default kernels without a delegate)."
        )
    if name not in KERNEL_SETS:
        raise ValueError(f"kernels={name!r}: npmnv2 reproduces {', '.join(map(repr, KERNEL_SETS))}.")
    return KERNEL_SETS[name]
