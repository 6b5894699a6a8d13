"""The kernel sets the integer model can reproduce: which rounding rule each op of a kernel set uses.

The TFLite interpreter ships more than one implementation of each op. npmnv2 reproduces three, bit
for bit on every op output:

    reference   `OpResolverType.BUILTIN_REF`: the reference kernels (reference_ops, reference_integer_ops)
    optimized   `OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES`: the optimized kernels the
                interpreter runs when no delegate takes the graph (optimized_ops, ruy)
    xnnpack     `OpResolverType.BUILTIN`: the interpreter's default, the XNNPACK delegate, which takes
                the ops it supports and leaves the rest to the optimized kernels

Measured op by op on the five shipped models and their photos, each op run on the kernel set's own
inputs (for XNNPACK, whose intermediates are not readable, every op output is made a graph output:
`npmnv2.verify.interpreter_tensors(..., kernels="xnnpack")`), and on one-op graphs with random inputs:

    op               reference                    optimized                 xnnpack
    CONV_2D          double rounding, ties away   double rounding, ties up  float32 scale, ties to even
    DEPTHWISE_CONV   double rounding, ties away   as reference              float32 scale, ties to even
    FULLY_CONNECTED  single rounding              as its CONV_2D            float32 scale, ties to even
    ADD              three 31-bit requantizations as reference              20-bit multipliers, one shift
    MEAN             count in the multiplier      raw sum, float32 bias     offset sum, float32 scale
    QUANTIZE (8->8)  31-bit multiplier            as reference              8-bit multiplier, one shift
    RESIZE (uint8)   float32, C order, + 0.5      float32, weights first    11-bit weights, one shift
    RESIZE (int8)    10-bit weights (align_corners only)  as reference      not measured: refused

DEPTHWISE_CONV_2D (optimized), AVERAGE_POOL_2D, SOFTMAX, CONCATENATION, QUANTIZE of a float input,
DEQUANTIZE, RESHAPE and ARG_MAX: the reference numbers in every set, measured on one-op graphs
through each resolver (whether XNNPACK takes such an op or leaves it to the optimized kernels, the
numbers are the same). The functions named in each row are on the op's page (`npmnv2.ops.quantization`,
`npmnv2.ops.merge`, `npmnv2.ops.pooling`).

The rules depend on the processor: they were measured on x86-64 with the pinned ai-edge-litert. On
ARM the optimized kernels take NEON paths and XNNPACK may requantize with fixed-point ("rndnu")
kernels, neither measured here, so `kernel_set` refuses "optimized" and "xnnpack" on any other
machine instead of pretending (`check_machine`).
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..ops.merge import add_int, add_int_xnnpack
from ..ops.pooling import global_average_pool_int, global_average_pool_int_optimized, global_average_pool_int_xnnpack
from ..ops.quantization import (
    Multiplier,
    multiply_by_float32_scale,
    multiply_by_quantized_multiplier,
    multiply_by_quantized_multiplier_single_rounding,
    multiply_by_quantized_multiplier_ties_up,
    requantize,
    requantize_xnnpack,
)
from ..ops.resize import resize_bilinear_int_xnnpack, resize_bilinear_uint8, resize_bilinear_uint8_optimized
from .ops import has

MEASURED_ON = ("x86_64", "AMD64")  # platform.machine() of the builds the optimized and XNNPACK rules hold for


@dataclass(frozen=True)
class KernelSet:
    """One kernel set: the interpreter's resolver that runs it and each op's rule.

    conv, depthwise, fully_connected: the rule that requantizes the op's int32 sums.
    add, mean, requantize: the op functions for ADD, MEAN over H and W, and QUANTIZE between 8-bit scales.
    resize_uint8: the op function for RESIZE_BILINEAR of a uint8 tensor (int8: `resize_bilinear_int`).
    delegate: the set is a delegate that keeps its intermediates to itself (read them by making every op
        output a graph output, `npmnv2.verify.interpreter_tensors`).
    """

    name: str
    resolver: str
    conv: Multiplier
    depthwise: Multiplier
    fully_connected: Multiplier
    add: Callable[..., Any]
    mean: Callable[..., Any]
    requantize: Callable[..., Any]
    resize_uint8: Callable[..., Any]
    delegate: bool = False

    def rule_for(self, op: dict) -> Multiplier:
        """The rule that requantizes weighted op `op` (CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED)."""
        if has(op, "fully_connected"):
            return self.fully_connected
        return self.depthwise if has(op, "depthwise") else self.conv


KERNEL_SETS: Mapping[str, KernelSet] = {
    "reference": KernelSet(
        "reference",
        "BUILTIN_REF",
        conv=multiply_by_quantized_multiplier,
        depthwise=multiply_by_quantized_multiplier,
        fully_connected=multiply_by_quantized_multiplier_single_rounding,
        add=add_int,
        mean=global_average_pool_int,
        requantize=requantize,
        resize_uint8=resize_bilinear_uint8,
    ),
    "optimized": KernelSet(
        "optimized",
        "BUILTIN_WITHOUT_DEFAULT_DELEGATES",
        conv=multiply_by_quantized_multiplier_ties_up,
        depthwise=multiply_by_quantized_multiplier,
        fully_connected=multiply_by_quantized_multiplier_ties_up,
        add=add_int,
        mean=global_average_pool_int_optimized,
        requantize=requantize,
        resize_uint8=resize_bilinear_uint8_optimized,
    ),
    "xnnpack": KernelSet(
        "xnnpack",
        "BUILTIN",
        conv=multiply_by_float32_scale,
        depthwise=multiply_by_float32_scale,
        fully_connected=multiply_by_float32_scale,
        add=add_int_xnnpack,
        mean=global_average_pool_int_xnnpack,
        requantize=requantize_xnnpack,
        resize_uint8=resize_bilinear_int_xnnpack,
        delegate=True,
    ),
}


def check_machine(name: str, machine: str | None = None) -> None:
    """Refuse a kernel set whose rules were not measured on this processor, naming what would differ."""
    machine = platform.machine() if machine is None else machine
    if name != "reference" and machine not in MEASURED_ON:
        raise ValueError(
            f"kernels={name!r}: the {name} kernels' rules were measured on x86-64, and this machine is "
            f"{machine!r}. There the interpreter's optimized CONV_2D / FULLY_CONNECTED / MEAN take NEON paths and "
            "XNNPACK may requantize convolutions in fixed point ('rndnu') rather than float32; npmnv2 has not "
            "measured them. Use kernels='reference' (the same on every machine)."
        )


def kernel_set(name: str) -> KernelSet:
    """The kernel set called `name`, or a ValueError saying which ones npmnv2 reproduces (and where)."""
    if name not in KERNEL_SETS:
        raise ValueError(f"kernels={name!r}: npmnv2 reproduces {', '.join(map(repr, KERNEL_SETS))}.")
    check_machine(name)
    return KERNEL_SETS[name]
