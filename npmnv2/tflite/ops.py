"""The one table of TFLite ops: everything npmnv2 knows about a TFLite builtin op, in one row.

The float importer (`npmnv2.tflite.float_import`, `graph`, `layers`), the validator (`validate`),
the integer model (`integer_model`), `npmnv2.verify` and the explorer read an op's facts here
instead of comparing op-type strings:

- what the file may say about it: the builtin options type it carries (`options`, schema.fbs
  `BuiltinOptions`; 0 = none, TFLite's defaults apply), the op versions npmnv2 reproduces
  (`versions`) and how many inputs it takes (`inputs`);
- what it is in npmnv2's vocabulary: the kind of its step (`step_kind`), the layer kind of a
  weighted op (`layer`, a row of `npmnv2.layer_kinds.LAYER_KINDS`: its kernel layout and the
  float op), whether it fuses an activation (`fused_activation`), pools (`pools`), joins
  branches (`joins`), is a residual add (`adds`), or may follow the network's output without
  changing what it computes (`passes_on`);
- how the integer model runs it (`handler`: the integer model's and the validator's method for
  it, and `integer_op`: the op function on its page that a step names).

Adding a TFLite op is adding a row, its integer handler and its validator check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ops.conv import conv2d_int_requantized
from ..ops.depthwise import depthwise_conv2d_int_requantized
from ..ops.fully_connected import linear_int_requantized
from ..ops.merge import add_int, concat_channels_int
from ..ops.pooling import avg_pool2d_int, global_average_pool_int
from ..ops.probability import softmax_int
from ..ops.quantization import dequantize_float32, requantize
from ..ops.resize import resize_bilinear_int


@dataclass(frozen=True)
class TfliteOp:
    """One row of `TFLITE_OPS` (see the module docstring for what each field is for)."""

    name: str
    options: tuple[int, ...]
    versions: range
    inputs: tuple[int, ...]
    step_kind: str
    handler: str
    integer_op: Callable[..., Any]
    layer: str | None = None
    fused_activation: bool = False
    pools: bool = False
    joins: bool = False
    adds: bool = False
    passes_on: bool = False

    @property
    def weighted(self) -> bool:
        """Whether the op multiplies by a weight tensor (its input 1) and adds a bias (input 2)."""
        return self.layer is not None

    @property
    def depthwise(self) -> bool:
        return self.layer == "depthwise"

    @property
    def fully_connected(self) -> bool:
        return self.layer == "linear"

    @property
    def convolution(self) -> bool:
        """A CONV_2D or DEPTHWISE_CONV_2D: padding, stride and dilation options."""
        return self.layer in ("conv", "depthwise")

    @property
    def channel_axis(self) -> int:
        """The axis of its weights that holds the output channels (a per-channel scale's axis)."""
        return 3 if self.depthwise else 0

    @property
    def plain_name(self) -> str:
        """The step name of an op the float model has no step for ("reshape", "softmax", ...)."""
        return self.name.lower()


# The op versions are those the interpreter's reference op resolver (BUILTIN_REF, the kernels
# npmnv2 reproduces) registers, measured on the pinned ai-edge-litert by loading real files with
# each version written into their operator codes (RESHAPE: its registration's default, version 1).
# The optimized resolver takes one more version of ADD, ARG_MAX, DEPTHWISE_CONV_2D and SOFTMAX;
# npmnv2 refuses those.
# fmt: off
CONV_2D = TfliteOp("CONV_2D", (1,), range(1, 9), (3,), "convolution", "conv", conv2d_int_requantized,
                   layer="conv", fused_activation=True)
DEPTHWISE_CONV_2D = TfliteOp("DEPTHWISE_CONV_2D", (2,), range(1, 7), (3,), "convolution", "conv",
                             depthwise_conv2d_int_requantized, layer="depthwise", fused_activation=True)
FULLY_CONNECTED = TfliteOp("FULLY_CONNECTED", (8, 0), range(1, 15), (3,), "linear", "fully_connected",
                           linear_int_requantized, layer="linear", fused_activation=True)
ADD = TfliteOp("ADD", (11, 0), range(1, 6), (2,), "residual_add", "add", add_int, fused_activation=True, adds=True)
AVERAGE_POOL_2D = TfliteOp("AVERAGE_POOL_2D", (5,), range(1, 4), (1,), "pooling", "average_pool", avg_pool2d_int,
                           fused_activation=True, pools=True)
MEAN = TfliteOp("MEAN", (27,), range(1, 4), (2,), "pooling", "mean", global_average_pool_int, pools=True)
RESHAPE = TfliteOp("RESHAPE", (17, 0), range(1, 2), (1, 2), "reshape", "reshape", np.reshape, passes_on=True)
SOFTMAX = TfliteOp("SOFTMAX", (9,), range(1, 4), (1,), "softmax", "softmax", softmax_int, passes_on=True)
RESIZE_BILINEAR = TfliteOp("RESIZE_BILINEAR", (15,), range(1, 5), (2,), "resize", "resize", resize_bilinear_int,
                           passes_on=True)
CONCATENATION = TfliteOp("CONCATENATION", (10,), range(1, 8), tuple(range(2, 9)), "concat", "concat",
                         concat_channels_int, fused_activation=True, joins=True)
QUANTIZE = TfliteOp("QUANTIZE", (0,), range(1, 7), (1,), "quantize", "quantize", requantize, passes_on=True)
DEQUANTIZE = TfliteOp("DEQUANTIZE", (0,), range(1, 10), (1,), "dequantize", "dequantize", dequantize_float32,
                      passes_on=True)
ARG_MAX = TfliteOp("ARG_MAX", (40, 0), range(1, 3), (2,), "argmax", "argmax", np.argmax, passes_on=True)
_ROWS = (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, AVERAGE_POOL_2D, MEAN, RESHAPE, SOFTMAX, RESIZE_BILINEAR,
         CONCATENATION, QUANTIZE, DEQUANTIZE, ARG_MAX)
# fmt: on
TFLITE_OPS: Mapping[str, TfliteOp] = {row.name: row for row in _ROWS}

# SQUEEZE is no op npmnv2 runs, but a graph may apply it to the network's output.
PASSES_ON = frozenset({*(row.name for row in _ROWS if row.passes_on), "SQUEEZE"})


def tflite_op(op: Mapping[str, Any] | str) -> TfliteOp | None:
    """The row of an op record (`TFLiteGraph.ops[i]`) or op-type name; None for an op npmnv2 does not run."""
    return TFLITE_OPS.get(op if isinstance(op, str) else op["type"])


def op_is(op: Mapping[str, Any] | None, *rows: TfliteOp) -> bool:
    """Whether op record `op` is one of the table's `rows`: `op_is(op, QUANTIZE, DEQUANTIZE)`.
    None (no such op, e.g. no producer) is none of them."""
    return op is not None and tflite_op(op) in rows


def has(op: Mapping[str, Any] | None, fact: str) -> bool:
    """Whether op record `op` is a known op with the yes/no `fact` of its row: `has(op, "pools")`."""
    row = None if op is None else tflite_op(op)
    return row is not None and bool(getattr(row, fact))
