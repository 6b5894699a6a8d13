"""The integer model, fast: what `QuantizedMobileNetV2(pixel_values)` runs without a trace.

A trace, `run_op` and `npmnv2.verify` run the readable integer ops of `npmnv2.ops` (the step path);
a plain call runs each op by the fast form of its type here, where one exists, and by that same
readable op where not. Every fast form gives the same integers as the op it stands for, in every
kernel set (`tests/test_fast_integer.py`: every op output of every shipped model, on photos and on
random pixels). The tricks, none of which the step path uses:

- activations stay in their storage type (uint8 / int8) from op to op, 8x less memory than int64;
- a convolution's int32 sums are one float32 matrix product (an einsum for depthwise) of the raw
  integers, the input zero point moved into the bias. It is exact: each layer's largest possible
  partial sum, max|x| * max over outputs of sum |w - w_zero_point| (+ |bias|), is checked once to be
  below 2^24, under which float32 holds every integer; a layer above it sums in float64;
- a per-tensor requantization under TFLite's fixed-point rules is one table lookup: the kernel set's
  own rule, evaluated once on every sum that lands inside the output range (the rules are monotone,
  so the sums below and above it clamp to the table's ends); the table is the textbook rule;
- XNNPACK's requantization is already float32 arithmetic (`multiply_by_float32_scale`): done in
  place; per-channel fixed-point layers use one int64 expression equal to the double rounding;
- an ADD of two 8-bit tensors is a 65,536-entry table of the kernel set's own add, a QUANTIZE
  between 8-bit scales a 256-entry one;
- an int8 RESIZE_BILINEAR is separable in exact int32 arithmetic: along W on the input's rows, then along H.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..ops import Pad2D, im2col
from ..ops.padding import output_size_of_padded
from ..ops.quantization import (
    DTYPE_RANGE,
    multiply_by_float32_scale,
    multiply_by_quantized_multiplier,
    multiply_by_quantized_multiplier_ties_up,
    requantize_output,
)
from ..tflite.ops import ADD, ARG_MAX, CONV_2D, DEPTHWISE_CONV_2D, QUANTIZE, RESHAPE, RESIZE_BILINEAR, tflite_op
from .kernels import depthwise

EXACT_FLOAT32 = 2**24  # every integer of smaller magnitude is a float32
TABLE_LIMIT = 1 << 22  # entries a requantization table may hold (4 MiB of uint8)

FastOp = Callable[[dict[int, np.ndarray]], np.ndarray]


# ============================================================================ requantization


def _float32_rule(multiply: Any) -> bool:
    return multiply is multiply_by_float32_scale


def requantization_table(multiply: Any, m0: Any, shift: Any, zero_point: int, act_range: tuple[int, int]):
    """(first sum, table) with table[s - first] the output of the int32 sum s under the fixed-point rule
    `multiply`, for every s whose output lies inside act_range, plus a clamped end on each side; None
    when the table would exceed TABLE_LIMIT entries. Built by the textbook `requantize_output` itself."""
    multiplier = float(m0) * 2.0 ** (int(shift) - 31)
    low, high = act_range
    first = int(np.floor((low - zero_point - 2) / multiplier)) - 2
    last = int(np.ceil((high - zero_point + 2) / multiplier)) + 2
    if last - first > TABLE_LIMIT:
        return None
    sums = np.arange(first, last + 1, dtype=np.int64)
    table = requantize_output(sums, m0, shift, zero_point, act_range, multiply=multiply)
    if table[0] != low or table[-1] != high:  # not saturated at both ends: the lookup would be wrong
        return None
    return first, table


def fixed_point_constants(m0: Any, shift: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(M0, the rounding constant K, the ties-away correction D, the total shift) per channel for
    `fixed_point_int64`, computed once per layer."""
    right = -np.asarray(shift, np.int64)
    shifted = right > 0
    rounding = np.where(shifted, (1 << 30) + (np.int64(1) << (30 + np.maximum(right, 0))), 1 << 30)
    return np.asarray(m0, np.int64), rounding, np.where(shifted, np.int64(1) << 31, 0), 31 + right


def fixed_point_int64(acc: np.ndarray, constants: tuple[np.ndarray, ...], *, ties_up: bool) -> np.ndarray:
    """TFLite's double rounding (doubling high multiply, then a rounding shift), per channel, as one
    int64 expression; for shift <= 0, with R = -shift and P = acc * M0:
        ties away (reference kernels): (P + 2^30 + 2^(30+R) - 2^31 [P < -2^30]) >> (31 + R)   (R > 0)
        ties up (optimized kernels):   (P + 2^30 + 2^(30+R)) >> (31 + R)                      (R > 0)
        R = 0, either rule:            (P + 2^30) >> 31
    Why: floor((floor(y) + c) / d) = floor((y + c) / d) for integers c and d merges the two shifts,
    and the doubling high multiply is negative exactly when P < -2^30. acc is modified."""
    m0, rounding, correction, total_shift = constants
    acc *= m0
    if not ties_up:
        negative = acc < -(1 << 30)
        acc += rounding
        acc -= negative * correction
    else:
        acc += rounding
    acc >>= total_shift
    return acc


class Requantizer:
    """A conv or FC layer's requantization, fast: float sums (exact integers) -> the output's storage type."""

    def __init__(self, multiply: Any, m0: Any, shift: Any, zero_point: int, act_range: tuple[int, int], dtype):
        self.multiply, self.zero_point, self.act_range, self.dtype = multiply, zero_point, act_range, dtype
        self.m0, self.shift = m0, shift
        per_tensor = np.ndim(m0) == 0 or np.size(m0) == 1
        self.table = None
        if per_tensor and not _float32_rule(multiply) and int(np.ravel(shift)[0]) <= 0:
            made = requantization_table(multiply, np.ravel(m0)[0], np.ravel(shift)[0], zero_point, act_range)
            self.table = None if made is None else (made[0], made[1].astype(dtype))
        self.ties_up = multiply is multiply_by_quantized_multiplier_ties_up
        self.int64 = (
            self.table is None
            and multiply in (multiply_by_quantized_multiplier, multiply_by_quantized_multiplier_ties_up)
            and bool(np.all(np.asarray(shift) <= 0))
        )
        self.constants = fixed_point_constants(m0, shift) if self.int64 else None

    def __call__(self, acc: np.ndarray) -> np.ndarray:
        """acc: the exact int32 sums, bias included, as float32 (below 2^24) or float64."""
        low, high = self.act_range
        if self.table is not None:
            first, table = self.table
            acc -= first
            np.clip(acc, 0, table.size - 1, out=acc)
            return table[acc.astype(np.intp)]
        if _float32_rule(self.multiply):  # XNNPACK: float32(acc) * float32 scale, ties to even
            v = acc if acc.dtype == np.float32 else acc.astype(np.float32)
            v *= np.asarray(self.m0, np.float32)
            np.rint(v, out=v)
            v += self.zero_point
            np.clip(v, low, high, out=v)
            return v.astype(self.dtype)
        if self.int64:
            out = fixed_point_int64(acc.astype(np.int64), self.constants, ties_up=self.ties_up)
            out += self.zero_point
            np.clip(out, low, high, out=out)
            return out.astype(self.dtype)
        out = requantize_output(
            acc.astype(np.int64), self.m0, self.shift, self.zero_point, self.act_range, multiply=self.multiply
        )
        return out.astype(self.dtype)


# ============================================================================ one fast form per op type


def _storage(model: Any, t: int) -> np.dtype:
    return model.graph.type_of(t)


def _sum_dtype(bound: float) -> np.dtype:
    if bound >= 2**53:
        raise ValueError(f"integer sums up to {bound:.3g} could exceed 2^53; no float type holds them exactly.")
    return np.dtype(np.float32) if bound < EXACT_FLOAT32 else np.dtype(np.float64)


class FastConv:
    """CONV_2D or DEPTHWISE_CONV_2D: raw integers as floats (padded with the zero point, which stands
    for 0), one matrix product or depthwise einsum against the offset weights, the input zero point's
    share moved into the bias, then the layer's `Requantizer`."""

    def __init__(self, model: Any, index: int) -> None:
        op = model.graph.ops[index]
        x_t, w_t, b_t, out = op["inputs"][0], op["inputs"][1], op["inputs"][2], op["outputs"][0]
        self.op, self.model, self.x_t = op, model, x_t
        self.depthwise = tflite_op(op) is DEPTHWISE_CONV_2D
        x_q, w_q, out_q = model.quantization_of(x_t), model.quantization_of(w_t), model.quantization_of(out)
        self.x_zero_point = x_q.tensor_zero_point
        kernel = model.constant(w_t).astype(np.int64)
        w_zp = np.asarray(w_q.zero_point if w_q.per_channel else w_q.tensor_zero_point, np.int64)
        if self.depthwise:  # (1, KH, KW, C) -> (KH, KW, C)
            weights = kernel[0] - w_zp
            per_output = weights.reshape(-1, weights.shape[-1])  # (KH*KW, C)
        else:  # (C_out, KH, KW, C_in) -> (KH*KW*C_in, C_out), im2col's column order
            weights = (kernel - w_zp.reshape(-1, 1, 1, 1)).reshape(kernel.shape[0], -1).T
            per_output = weights
        self.kernel_size = kernel.shape[1]
        bias = model.constant(b_t).astype(np.int64) if b_t >= 0 else np.zeros(per_output.shape[1], np.int64)
        bias = bias - self.x_zero_point * per_output.sum(axis=0)  # sum (x - zp) w = sum x w - zp sum w
        low, high = DTYPE_RANGE[_storage(model, x_t)]
        bound = max(abs(low), abs(high)) * float(np.abs(per_output).sum(axis=0).max()) + float(np.abs(bias).max())
        self.sums = _sum_dtype(bound)
        self.weights = weights.astype(self.sums)
        self.bias = bias.astype(self.sums)
        multiply = model.kernels.rule_for(op)
        m0, shift = model.requantization(x_q.tensor_scale, w_q, out_q.tensor_scale, multiply)
        self.requantize = Requantizer(
            multiply, m0, shift, out_q.tensor_zero_point, model.output_range(op, out), _storage(model, out)
        )

    def __call__(self, tensors: dict[int, np.ndarray]) -> np.ndarray:
        x = tensors[self.x_t]
        op, k = self.op, self.kernel_size
        stride, dilation = op["stride"][0], op["dilation"][0]
        padding = self.model.padding(op, x.shape)
        xf = x.astype(self.sums)
        if padding != Pad2D(0, 0, 0, 0):
            xf = np.pad(xf, ((0, 0), padding[:2], padding[2:], (0, 0)), constant_values=self.x_zero_point)
        n, hp, wp, _ = xf.shape
        ho, wo = output_size_of_padded(hp, wp, kernel_size=(k, k), stride=stride, dilation=dilation, op=op["type"])
        if self.depthwise:
            acc = depthwise(xf, self.weights, stride=stride, dilation=dilation).reshape(n * ho * wo, -1)
        elif k == 1 and stride == 1:
            acc = xf.reshape(n * ho * wo, -1) @ self.weights
        else:
            acc = im2col(xf, kernel_size=k, stride=stride, dilation=dilation) @ self.weights
        shape = (n, ho, wo, acc.shape[-1])
        acc += self.bias
        return self.requantize(acc).reshape(shape)


class FastTable:
    """An op of one or two 8-bit inputs as a table of all its outputs (256 or 65,536 entries), computed
    once by the model's own readable op (`run_op`) on every possible input value or pair."""

    def __init__(self, model: Any, index: int) -> None:
        op = model.graph.ops[index]
        self.inputs = [t for t in op["inputs"] if t >= 0]
        self.low = DTYPE_RANGE[_storage(model, self.inputs[0])][0]
        values = np.arange(self.low, self.low + 256, dtype=np.int64)
        if len(self.inputs) == 1:
            grid = {self.inputs[0]: values.reshape(1, 1, -1, 1)}
        else:
            a, b = np.meshgrid(values, values, indexing="ij")  # (256, 256): a's value, b's value
            grid = {self.inputs[0]: a.reshape(1, 256, 256, 1), self.inputs[1]: b.reshape(1, 256, 256, 1)}
        self.table = model.run_op(index, grid).reshape(-1).astype(_storage(model, op["outputs"][0]))

    def __call__(self, tensors: dict[int, np.ndarray]) -> np.ndarray:
        first = tensors[self.inputs[0]]
        index = first.astype(np.intp) - self.low
        if len(self.inputs) == 2:
            index *= 256
            index += tensors[self.inputs[1]]
            index -= self.low
        return self.table[index]


class FastResize:
    """RESIZE_BILINEAR of an int8 tensor (TFLite's 10-bit integer rule) in exact int32, separably: each
    input row along W (two neighbours, 10-bit weights), then those rows along H; the same sum of four
    weighted neighbours, in units of 2^-20, as `resize_bilinear_int`, rounded half away from zero.
    (The uint8 rules, `resize_bilinear_uint8*` and `resize_bilinear_int_xnnpack`, are vectorised
    already and run as they are.)"""

    def __init__(self, model: Any, index: int) -> None:
        from ..ops.resize import source_pixels_10bit

        op = model.graph.ops[index]
        self.x_t = op["inputs"][0]
        self.size = tuple(int(v) for v in np.ravel(model.constant(op["inputs"][1])))
        self.flags = {"align_corners": op["align_corners"], "half_pixel_centers": op["half_pixel_centers"]}
        self.source = source_pixels_10bit
        self.dtype = _storage(model, op["outputs"][0])
        self.signed = DTYPE_RANGE[_storage(model, self.x_t)][0] < 0

    def __call__(self, tensors: dict[int, np.ndarray]) -> np.ndarray:
        x = tensors[self.x_t].astype(np.int32)
        n, h, w, c = x.shape
        ho, wo = self.size
        wy, y0, y1 = self.source(ho, h, **self.flags)
        wx, x0, x1 = self.source(wo, w, **self.flags)
        wx = wx.astype(np.int32)[:, None]  # (Wo, 1)
        cols = x[:, :, x0] * ((1 << 10) - wx)  # (N, H, Wo, C), in units of 2^-10
        cols += x[:, :, x1] * wx
        wy = wy.astype(np.int32)[:, None, None]  # (Ho, 1, 1)
        total = cols[:, y0] * ((1 << 10) - wy)  # (N, Ho, Wo, C), in units of 2^-20
        total += cols[:, y1] * wy
        total += 1 << 19
        if self.signed:  # half away from zero: a negative sum rounds with 2^19 - 1
            total -= total < (1 << 19)
        total >>= 20
        return total.astype(self.dtype)


class FastStored:
    """An op whose readable handler only moves or compares values (ARG_MAX, RESHAPE), run on the 8-bit
    tensors as stored: no int64 copy of a 513 x 513 x 21 tensor first."""

    def __init__(self, model: Any, index: int) -> None:
        self.op = model.graph.ops[index]
        self.run, _ = model.handler(self.op)
        self.dtype = _storage(model, self.op["outputs"][0])

    def __call__(self, tensors: dict[int, np.ndarray]) -> np.ndarray:
        return self.run(self.op, tensors).astype(self.dtype, copy=False)


def fast_form(model: Any, index: int) -> FastOp | None:
    """The fast form of op `index`, or None where the readable op is as fast (small ops)."""
    op = model.graph.ops[index]
    row = tflite_op(op)
    if row is CONV_2D or row is DEPTHWISE_CONV_2D:
        return FastConv(model, index)
    if row is ADD:
        shapes = {model.graph.shape(t) for t in op["inputs"]}
        return FastTable(model, index) if len(shapes) == 1 else None
    if row is QUANTIZE and not model.reads_float(op):
        return FastTable(model, index)
    if row is ARG_MAX or row is RESHAPE:
        return FastStored(model, index)
    if row is RESIZE_BILINEAR and model.graph.type_of(op["inputs"][0]) == np.dtype(np.int8):
        return FastResize(model, index)  # the int8 rule; the uint8 ones are vectorised float32 or int arithmetic
    return None


class FastIntegerModel:
    """Every op of a `QuantizedMobileNetV2` by its fast form, or its readable handler where it has none."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.forms = [fast_form(model, index) for index in range(len(model.graph.ops))]

    def run(self, x: np.ndarray) -> dict[int, np.ndarray]:
        """All tensors of one forward pass from the checked NHWC input; 8-bit tensors in their own type."""
        model, graph = self.model, self.model.graph
        stored = x if x.dtype.kind == "f" else x.astype(graph.type_of(model.input_index))
        tensors: dict[int, np.ndarray] = {model.input_index: stored}
        for index, op in enumerate(graph.ops):
            form = self.forms[index]
            if form is not None:
                out = form(tensors)
            else:  # the readable handler, on int64 inputs as the step path gives them
                run, _ = model.handler(op)
                given = {t: tensors[t] for t in op["inputs"] if t in tensors}
                given = {t: v if v.dtype.kind == "f" else v.astype(np.int64) for t, v in given.items()}
                out = run(op, given)
                kind = graph.type_of(op["outputs"][0])
                out = out if kind.kind == "f" or out.dtype.kind == "f" else out.astype(kind)
            tensors[op["outputs"][0]] = out
        return tensors
